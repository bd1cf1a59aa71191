"""Sleep and wake around a memory snapshot: release GPU memory before it, resume and verify after.

A memory snapshot (Modal's, or the `--snapshot-rehearsal` stand-in) freezes the server's whole
process tree and restores it later, maybe on another machine. SGLang can hand its GPU memory back
first (`/release_memory_occupation`, with `--enable-memory-saver`) and take it again after
(`/resume_memory_occupation`); docs/SNAPSHOTS.md has the facts with their sources. This module is
the HTTP side of that, bounded like everything else here:

- `release_memory` is the last thing before a snapshot: pause generation (so no request can meet
  released memory, which kills SGLang's scheduler), then release.
- `resume_and_verify` is the first thing after a restore: resume, un-pause, wait for the health
  path, then one short generation that must succeed. Any failure raises `SnapshotError`, a
  `StartupError` (exit code 3) naming the step, with the HTTP status and a body snippet or the
  deadline that ran out: a replica that cannot prove it generates never serves.
- `ClientSlot` holds the supervisor's HTTP client so it can be closed before a snapshot and built
  anew after: a pooled keep-alive socket from before the snapshot is stale after it (SGLang's
  uvicorn drops idle connections after 5 s, and a restore on another host keeps no socket).
- `freeze_tree` stands in for the snapshot in a rehearsal: SIGSTOP the whole tree, wait, SIGCONT,
  so the server's timers and sockets see the gap the way they would across a real one.

Clocks: every deadline is computed when its call starts (`anyio.fail_after` inside the call),
never carried across a snapshot. After a restore `anyio.current_time()` (the event loop's
monotonic clock) may have jumped by however long the container slept, so a deadline taken before
would already be spent. `SnapshotTiming` times each step inside one call and measures the time
asleep with the wall clock, the only clock that means something across a restore.

Resume is sent at most once: SGLang's resume removes each released tag from a set, so a second
resume raises in the scheduler and kills the server. A call is retried only when the connection
could not be opened, which proves the request never arrived.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio
import httpx

from ._errors import ConfigError, StartupError

__all__ = [
    "DEFAULT_VERIFY_BODY",
    "KNOWN_TAGS",
    "ClientSlot",
    "SnapshotError",
    "SnapshotPolicy",
    "SnapshotTiming",
    "freeze_tree",
    "fresh_client",
]

#: SGLang's memory regions (`sglang/srt/constants.py`, GPU_MEMORY_ALL_TYPES); no tags means all.
KNOWN_TAGS = frozenset({"kv_cache", "weights", "cuda_graph"})

#: A short greedy generation on SGLang's native API: it needs no chat template and no model name.
DEFAULT_VERIFY_BODY: Mapping[str, Any] = MappingProxyType(
    {
        "text": "The capital of France is",
        "sampling_params": {"max_new_tokens": 8, "temperature": 0.0},
    }
)

_MIN_BODY_CAP = 1024
_MAX_BODY_CAP = 16 * 1024 * 1024


# ----------------------------------------------------------------------------- policy
def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"snapshot {name} must be a finite number > 0, got {value!r}")


def _path(name: str, value: str | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"snapshot {name} must start with '/', got {value!r}")


def _json_body(name: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check that `body` is a JSON object, and keep a read-only copy nobody else can change."""
    if not isinstance(body, Mapping) or not all(isinstance(k, str) for k in body):
        raise ConfigError(f"snapshot {name} must be a JSON object with string keys")
    try:
        copy = json.loads(json.dumps(dict(body), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"snapshot {name} is not JSON: {exc}") from None
    return MappingProxyType(copy)


def _tags(name: str, body: Mapping[str, Any]) -> frozenset[str]:
    """The memory regions a release or resume body names; no `tags` (or none) means all of them."""
    tags = body.get("tags")
    if tags is None or tags == []:
        return KNOWN_TAGS
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"snapshot {name} tags must be a list of strings, got {tags!r}")
    unknown = sorted(set(tags) - KNOWN_TAGS)
    if unknown:
        raise ConfigError(
            f"snapshot {name} has unknown tags {unknown}: SGLang knows {sorted(KNOWN_TAGS)} "
            "and silently releases nothing for any other"
        )
    return frozenset(tags)


@dataclass(frozen=True)
class SnapshotPolicy:
    """What to send around a snapshot, and the bound on every wait.

    The defaults are SGLang 0.5.23's endpoints and bodies. `pause_path`/`continue_path` quiesce
    generation around the release (set both to None for Modal's example, which sends none): while
    paused, SGLang holds new requests at the tokenizer instead of letting one reach released
    memory. `call_timeout` bounds each control call (a release with `--enable-weights-cpu-backup`
    copies every weight to host memory); `health_timeout` bounds the wait for the health path
    after resume, one probe at a time of at most `health_probe_timeout` (above SGLang's own 20 s);
    `verify_timeout` bounds the generation. `verify_expect`, when set, is text the generation must
    contain: with a greedy prompt it catches weights that came back as garbage, which still answer
    200. Every answer is read up to `max_body_bytes`, never more.
    """

    release_path: str = "/release_memory_occupation"
    release_body: Mapping[str, Any] = field(default_factory=dict)
    resume_path: str = "/resume_memory_occupation"
    resume_body: Mapping[str, Any] = field(default_factory=dict)
    pause_path: str | None = "/pause_generation"
    pause_body: Mapping[str, Any] = field(default_factory=lambda: {"mode": "abort"})
    continue_path: str | None = "/continue_generation"
    continue_body: Mapping[str, Any] = field(default_factory=dict)
    call_timeout: float = 300.0
    health_path: str = "/health"
    health_timeout: float = 120.0
    health_probe_timeout: float = 30.0
    health_interval: float = 1.0
    verify_path: str = "/generate"
    verify_body: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_VERIFY_BODY))
    verify_timeout: float = 120.0
    verify_expect: str | None = None
    max_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        _path("release path", self.release_path)
        _path("resume path", self.resume_path)
        _path("pause path", self.pause_path, optional=True)
        _path("continue path", self.continue_path, optional=True)
        _path("health path", self.health_path)
        _path("verify path", self.verify_path)
        if (self.pause_path is None) != (self.continue_path is None):
            raise ConfigError(
                "snapshot pause and continue paths go together: a paused server left paused "
                "holds every request forever"
            )
        for name in ("release_body", "resume_body", "pause_body", "continue_body", "verify_body"):
            object.__setattr__(self, name, _json_body(name.replace("_", " "), getattr(self, name)))
        if not self.verify_body:
            raise ConfigError("snapshot verify body is empty: give the generation to verify")
        released = _tags("release body", self.release_body)
        resumed = _tags("resume body", self.resume_body)
        if released != resumed:
            raise ConfigError(
                f"snapshot resume tags {sorted(resumed)} must equal the release tags "
                f"{sorted(released)}: SGLang's resume of a region never released kills the "
                "scheduler, and a region never resumed stays unusable"
            )
        for name in (
            "call_timeout",
            "health_timeout",
            "health_probe_timeout",
            "health_interval",
            "verify_timeout",
        ):
            _positive(name.replace("_", " "), getattr(self, name))
        if self.health_interval > self.health_timeout:
            raise ConfigError("snapshot health interval must not exceed the health timeout")
        if self.verify_expect is not None and not (
            isinstance(self.verify_expect, str) and self.verify_expect.strip()
        ):
            raise ConfigError("snapshot verify_expect must be non-empty text, or None")
        cap = self.max_body_bytes
        if not isinstance(cap, int) or not _MIN_BODY_CAP <= cap <= _MAX_BODY_CAP:
            raise ConfigError(
                f"snapshot max body bytes must be a whole number from {_MIN_BODY_CAP} to "
                f"{_MAX_BODY_CAP}, got {cap!r}"
            )

    @property
    def tags(self) -> frozenset[str]:
        """The memory regions released (and resumed); all of SGLang's when the body names none."""
        return _tags("release body", self.release_body)


# ----------------------------------------------------------------------------- errors
class SnapshotError(StartupError):
    """A sleep or wake step failed; `step` names it (pause, release, resume, continue, health,
    verify), `status` and `snippet` say what the server answered, if it answered.

    It is a `StartupError` on purpose: the CLI maps it to exit code 3, and a replica that failed
    to wake is a failed start, not a death after serving.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str,
        status: int | None = None,
        snippet: str = "",
        returncode: int | None = None,
        tail: Sequence[str] = (),
        cause: str | None = None,
    ) -> None:
        super().__init__(message, returncode=returncode, tail=tail, cause=cause)
        self.step = step
        self.status = status
        self.snippet = snippet

    def with_tail(self, tail: Sequence[str], cause: str | None = None) -> SnapshotError:
        """The same error carrying the server's last log lines, for the report and the CLI."""
        return SnapshotError(
            str(self),
            step=self.step,
            status=self.status,
            snippet=self.snippet,
            returncode=self.returncode,
            tail=tail,
            cause=cause if cause is not None else self.cause,
        )


# ----------------------------------------------------------------------------- timing
@dataclass
class SnapshotTiming:
    """How long each step took, and how long the server slept, for the log and the runbook.

    Each step is timed with `time.perf_counter` inside one call, so a restore never falls inside
    a measurement. The sleep itself spans the snapshot, so it is measured twice: with the wall
    clock (`asleep_s`, the real time) and with the monotonic clock; `monotonic_jump_s` is how far
    the second strayed from the first (0 in a rehearsal, anything after a real restore), the
    number that says why deadlines are never carried across.
    """

    steps: dict[str, float] = field(default_factory=dict)
    asleep_s: float | None = None
    monotonic_jump_s: float | None = None
    _slept_at: tuple[float, float] | None = field(default=None, repr=False)

    def record(self, step: str, seconds: float) -> None:
        self.steps[step] = seconds

    def mark_asleep(self) -> None:
        """Call when the server is asleep (after `release_memory` and closing the client)."""
        self._slept_at = (time.time(), time.monotonic())

    def mark_awake(self) -> None:
        """Call first thing after the restore, before `resume_and_verify`."""
        if self._slept_at is None:
            return
        wall, mono = self._slept_at
        self.asleep_s = time.time() - wall
        self.monotonic_jump_s = (time.monotonic() - mono) - self.asleep_s
        self._slept_at = None

    def summary(self) -> str:
        parts = [f"{name}={seconds:.3f}s" for name, seconds in self.steps.items()]
        if self.asleep_s is not None:
            parts.append(f"asleep={self.asleep_s:.3f}s")
            parts.append(f"monotonic_jump={self.monotonic_jump_s or 0.0:+.3f}s")
        return "snapshot timing: " + (" ".join(parts) if parts else "nothing measured")


# ----------------------------------------------------------------------------- HTTP
# ----------------------------------------------------------------------------- the client
ClientFactory = Callable[[], httpx.AsyncClient]


def fresh_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client with a pool of its own, configured like the supervisor's (no proxies from the
    environment: the server is local). With no `transport`, httpx builds a new pool each call."""
    return httpx.AsyncClient(transport=transport, trust_env=False)


class ClientSlot:
    """The supervisor's one HTTP client, closed before a snapshot and built anew after it.

    Phases take `slot.client` when they start, never keep it across a sleep: `retire()` closes
    the pool (no socket goes into the snapshot) and `renew()` opens a new one after the restore.
    Closing is shielded and bounded by `close_timeout`, so a wedged socket cannot hold a wake.
    The factory must return a client with a new pool each call (`fresh_client` does; an injected
    transport that cannot be reused after `aclose` needs a factory that builds a new one).
    """

    def __init__(
        self, factory: ClientFactory = fresh_client, *, close_timeout: float = 5.0
    ) -> None:
        if not (math.isfinite(close_timeout) and close_timeout > 0):
            raise ConfigError(f"client close timeout must be > 0, got {close_timeout!r}")
        self._factory = factory
        self._close_timeout = close_timeout
        self._client: httpx.AsyncClient | None = None
        self._generation = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(
                "the HTTP client is closed (retired for a snapshot, or never opened); "
                "call renew() first"
            )
        return self._client

    @property
    def generation(self) -> int:
        """How many clients this slot has opened: 1 before any snapshot, +1 per wake."""
        return self._generation

    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def retire(self) -> None:
        """Close the current client and its pooled connections; the slot is empty until renew."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(self._close_timeout, shield=True):
                await client.aclose()

    async def renew(self) -> httpx.AsyncClient:
        """Close whatever client is left and open a new one; returns it."""
        await self.retire()
        self._client = self._factory()
        self._generation += 1
        return self._client

    async def aclose(self) -> None:
        await self.retire()

    async def __aenter__(self) -> ClientSlot:
        await self.renew()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# ----------------------------------------------------------------------------- the rehearsal
async def freeze_tree(tree: Callable[[], Iterable[int]], pause: float) -> tuple[int, ...]:
    """Stand in for a snapshot: SIGSTOP every process of `tree()`, wait `pause` s, SIGCONT them.

    Stopped processes keep their memory, sockets and GPU contexts, and their clocks run on: on
    SIGCONT SGLang's timers fire late and its uvicorn drops the keep-alive connections that went
    idle, as after a restore. The tree is listed twice, so a child forked while its parent was
    being stopped is stopped too. SIGCONT is sent whatever ends the wait (a cancellation, a stop
    request): a tree left stopped would hold a SIGTERM forever and drain nothing. The caller's
    exit watcher keeps running meanwhile, so a process killed during the pause is still seen at
    once. Returns the pids that were stopped.
    """
    _positive("rehearsal pause", pause)
    stopped: list[int] = []
    try:
        for _ in range(2):
            for pid in tree():
                if pid in stopped or pid == os.getpid():
                    continue
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    continue
                stopped.append(pid)
        await anyio.sleep(pause)
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    return tuple(stopped)
