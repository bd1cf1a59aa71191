"""Frozen settings: what to launch and the policies that bound every wait.

One frozen `SupervisorConfig` is passed around instead of many arguments, so a module never grows a
33-parameter signature and a config can be logged, compared and reused safely. Every value is
checked on construction and a bad one raises `ConfigError` with one line that says what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._cluster import ClusterSpec
from ._errors import ConfigError
from ._memory import MemoryPolicy
from ._progress import ProgressPolicy
from ._snapshot import SnapshotPolicy
from ._timeline import TimingReader

__all__ = [
    "EXPECTATIONS",
    "HealthPolicy",
    "LaunchSpec",
    "LivenessPolicy",
    "LogPolicy",
    "StopPolicy",
    "SupervisorConfig",
    "WarmupPayload",
    "WarmupPolicy",
]

#: What a warmup answer may be required to contain (`expect` in a payload).
EXPECTATIONS = frozenset(
    {
        "status",
        "content",
        "tool_calls",
        "reasoning_content",
        "no_reasoning",
        "text",
        "stream",
        "json",
    }
)


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class LaunchSpec:
    """The command to run and the environment to add to the supervisor's own.

    `inherit_env=False` gives the child exactly `env` (TGI's `env_clear`), for callers who want
    nothing of the host to leak in.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    inherit_env: bool = True

    def __post_init__(self) -> None:
        argv = tuple(self.argv)
        if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            raise ConfigError("the command is empty: give the server's command after `--`")
        object.__setattr__(self, "argv", argv)
        env = dict(self.env)
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key:
                raise ConfigError(f"environment entry {key!r} must be a NAME=string pair")
        object.__setattr__(self, "env", MappingProxyType(env))


@dataclass(frozen=True)
class HealthPolicy:
    """How startup waits for the health path: backoff with jitter, a cap, and a hard deadline.

    A connection refused (weights still loading) and a 503 (SGLang's own warmup) mean "not yet".
    The probe timeout stays above SGLang's 20 s internal health timeout so that a slow but working
    generation is not counted as a failure.
    """

    path: str = "/health"
    startup_timeout: float = 3600.0
    probe_timeout: float = 30.0
    initial_backoff: float = 0.25
    max_backoff: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigError(f"health path must start with '/', got {self.path!r}")
        _positive("startup timeout", self.startup_timeout)
        _positive("health probe timeout", self.probe_timeout)
        _positive("initial backoff", self.initial_backoff)
        _positive("max backoff", self.max_backoff)
        _positive("jitter", self.jitter, allow_zero=True)
        if self.max_backoff < self.initial_backoff:
            raise ConfigError("max backoff must be at least the initial backoff")


@dataclass(frozen=True)
class LivenessPolicy:
    """Sparse probes while serving; the server is recycled after `failures` failures in a row.

    The defaults suit SGLang, whose /health runs a real 1-token generation (about 1 s, 20 s
    internal timeout), does not cancel a timed-out probe on the scheduler side (sglang #35884),
    and can trip falsely during long chunked prefills (#22511): one probe every 30 s, 30 s each,
    never two at once, and four failures in a row (two to four minutes) before giving up.
    """

    interval: float = 30.0
    timeout: float = 30.0
    failures: int = 4
    enabled: bool = True

    def __post_init__(self) -> None:
        _positive("liveness interval", self.interval)
        _positive("liveness timeout", self.timeout)
        if not isinstance(self.failures, int) or self.failures < 1:
            raise ConfigError(
                f"liveness failures must be a whole number >= 1, got {self.failures!r}"
            )


@dataclass(frozen=True)
class WarmupPayload:
    """One request sent once the server is healthy, and what a valid answer must contain.

    `expect` names checks from `EXPECTATIONS`: `status` (any 200), `content`, `tool_calls`,
    `reasoning_content` (each non-empty in the first choice), `no_reasoning` (reasoning empty) and
    `text` (a legacy completion's non-empty text), `stream` (a server-sent event stream of JSON
    chunks that carries content and ends in `data: [DONE]`) and `json` (the content parses as
    JSON: JSON mode). `timeout` bounds the whole exchange (connect,
    headers and body) and `max_answer_bytes` the body: a longer answer is a failed warmup, not a
    supervisor that grows without end.
    """

    name: str
    path: str
    body: Mapping[str, Any]
    expect: tuple[str, ...] = ("status",)
    timeout: float = 300.0
    method: str = "POST"
    max_answer_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError('every warmup payload needs a non-empty "name"')
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"warmup {self.name!r}: \"path\" must start with '/'")
        if not isinstance(self.body, Mapping):
            raise ConfigError(f'warmup {self.name!r}: "body" must be a JSON object')
        expect = (self.expect,) if isinstance(self.expect, str) else tuple(self.expect)
        unknown = sorted(set(expect) - EXPECTATIONS)
        if unknown or not expect:
            raise ConfigError(
                f"warmup {self.name!r}: unknown expect {unknown or '[]'}; "
                f"use some of {sorted(EXPECTATIONS)}"
            )
        object.__setattr__(self, "expect", expect)
        object.__setattr__(self, "body", MappingProxyType(dict(self.body)))
        _positive(f"warmup {self.name!r} timeout", self.timeout)
        if self.method not in ("POST", "GET"):
            raise ConfigError(f"warmup {self.name!r}: method must be POST or GET")
        cap = self.max_answer_bytes
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError(
                f"warmup {self.name!r}: max_answer_bytes must be a whole number >= 1, got {cap!r}"
            )

    @classmethod
    def from_json(cls, item: object, *, default_timeout: float = 300.0) -> WarmupPayload:
        """Build from one object of a `--warmup` file, rejecting unknown keys by name."""
        if not isinstance(item, Mapping):
            raise ConfigError("each warmup entry must be a JSON object with name, path and body")
        allowed = {"name", "path", "body", "expect", "timeout", "method", "max_answer_bytes"}
        extra = sorted(set(item) - allowed)
        if extra:
            raise ConfigError(f"warmup entry has unknown keys {extra}; allowed: {sorted(allowed)}")
        missing = [k for k in ("name", "path", "body") if k not in item]
        if missing:
            raise ConfigError(f"warmup entry {item.get('name', '?')!r} is missing {missing}")
        return cls(
            name=item["name"],
            path=item["path"],
            body=item["body"],
            expect=item.get("expect", ("status",)),
            timeout=float(item.get("timeout", default_timeout)),
            method=item.get("method", "POST"),
            max_answer_bytes=item.get("max_answer_bytes", cls.max_answer_bytes),
        )


@dataclass(frozen=True)
class WarmupPolicy:
    """Payloads sent concurrently; by default one failure fails startup."""

    payloads: tuple[WarmupPayload, ...] = ()
    fail_startup: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "payloads", tuple(self.payloads))
        names = [p.name for p in self.payloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"warmup names must be unique; repeated: {dupes}")


@dataclass(frozen=True)
class StopPolicy:
    """Graceful stop: SIGTERM to the main pid, `stop_timeout` to drain, then SIGKILL the tree.

    `kill_timeout` bounds the wait for SIGKILLed processes to vanish; past it the supervisor
    reports the survivors instead of waiting forever (a process in uninterruptible sleep on a
    broken GPU can outlive SIGKILL for a while).
    """

    stop_timeout: float = 25.0
    kill_timeout: float = 5.0

    def __post_init__(self) -> None:
        _positive("stop timeout", self.stop_timeout, allow_zero=True)
        _positive("kill timeout", self.kill_timeout)


@dataclass(frozen=True)
class LogPolicy:
    """How much of the child's log is kept for the crash report, and the longest line kept whole.

    `max_line_bytes` bounds the partial line held in memory: a longer line is passed on in pieces
    of about that size. 1 MiB keeps SGLang's longest line (`server_args=`, with a JSON config or
    two) whole; memory does not depend on it much, since each tail entry is clipped to 8 KiB.
    """

    tail_lines: int = 200
    max_line_bytes: int = 1 << 20
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tail_lines < 1:
            raise ConfigError("tail lines must be >= 1")
        if self.max_line_bytes < 1024:
            raise ConfigError("max line bytes must be >= 1024")
        object.__setattr__(self, "secrets", tuple(s for s in self.secrets if s))


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything one supervised server needs; the API key is never shown by `repr`."""

    launch: LaunchSpec
    port: int
    host: str = "127.0.0.1"
    health: HealthPolicy = field(default_factory=HealthPolicy)
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    stop: StopPolicy = field(default_factory=StopPolicy)
    logs: LogPolicy = field(default_factory=LogPolicy)
    api_key: str | None = field(default=None, repr=False)
    #: The engine's admin key, sent only on the supervisor's own admin calls (pause, continue,
    #: release, resume); never a client's. Warmups and probes use `api_key`, as clients do.
    admin_api_key: str | None = field(default=None, repr=False)
    ready_line: str | None = None
    phase_markers: tuple[tuple[str, str], ...] = ()
    #: Compiled-artifact caches to count before the spawn and once serving (`_caches`):
    #: name -> directory. `expect_warm_caches`: a miss in one of those is a warning.
    caches: Mapping[str, str] = field(default_factory=dict)
    expect_warm_caches: frozenset[str] = frozenset()
    #: Phase name -> a reader of the engine's numbers in that phase's line (`_timeline`).
    timing_readers: Mapping[str, TimingReader] = field(default_factory=dict)
    #: What the caller did before the supervisor started, (phase, seconds) in order (a volume
    #: reload, the preflight): first in the timeline and its `total`, gauged like the rest.
    lead_phases: tuple[tuple[str, float], ...] = ()
    name: str = "server"
    #: Hang detection by the engine's own progress counters (off: `ProgressPolicy(enabled=False)`).
    progress: ProgressPolicy = field(default_factory=ProgressPolicy)
    #: The tree's memory against a high mark: past it, a planned recycle (`_memory`).
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    #: This rank's place in a multi-node cluster; None for a server on one node.
    cluster: ClusterSpec | None = None
    #: How to sleep and wake the server around a memory snapshot; None where it cannot.
    snapshot: SnapshotPolicy | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be a whole number from 1 to 65535, got {self.port!r}")
        if not self.host:
            raise ConfigError("host must not be empty")
        object.__setattr__(self, "phase_markers", tuple(tuple(m) for m in self.phase_markers))
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty: set the variable or leave the key out")
        if self.admin_api_key is not None and not self.admin_api_key.strip():
            raise ConfigError("the admin API key is empty: set the variable or leave it out")
        if self.admin_api_key is not None and self.admin_api_key == self.api_key:
            raise ConfigError("the admin API key must differ from the client API key")

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every string that must never reach a log: the API key and any declared secret."""
        keys = (self.api_key, self.admin_api_key)
        found: Sequence[str] = (*self.logs.secrets, *(k for k in keys if k))
        return tuple(dict.fromkeys(found))
