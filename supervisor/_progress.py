"""Hang detection by progress: work waiting while the engine's progress counters stand still.

A hung SGLang keeps its port open and its HTTP process answering, so the sparse liveness probe
(one `/health` every 30 s, four failures) takes two to four minutes to notice it. The engine's own
`/metrics` says much sooner: the scheduler advances `sglang:realtime_tokens_total` on every prefill
batch and every decode batch, and publishes how many requests run and wait. Work waiting while no
progress counter moves for a whole stall window is a hang; an idle server (nothing waiting) and a
slow generation (counters moving, however slowly) are not. docs/PROGRESS.md gives the source of
every name and the reasoning behind every default.

The scheduler's own gauges lag: a lone request at an idle server reads 0 running, 0 queued until
its 40th decode step, and a forward that hangs never reports at all. So requests in flight at the
HTTP front end count as waiting work too, but only while the scheduler's loop has stopped turning
(its heartbeat counters, written about once a second by a live loop, idle or busy, stand still).
That keeps a client that reads its stream slowly, a grammar compiling or a request being
tokenized (all with a live, turning scheduler) from ever looking like a stall.

Three layers, each testable alone:

- `Selector` and `ProgressPolicy` (here): what to scrape and which series mean work, progress,
  HTTP requests and loop heartbeat, as data, so another engine can name its own metrics;
- `ProgressTracker` (`_progress_tracker`): pure and clock-injected (no I/O): fed the samples of
  one scrape and a time, it answers a `Verdict`;
- `watch_progress` (`_progress_watch`): scrapes forever, one scrape at a time, each under a
  deadline and a byte cap, and returns a `StallReport` only when the tracker says `stalled`.

A failed scrape (refused, timed out, over the cap, unparseable, any status but 200 and 404) tells
nothing: it neither moves the stall clock nor stops it. The clock keeps measuring from the last
change the tracker saw, because a counter that reads the same after a gap did not move during it;
but only a successful scrape can give the `stalled` verdict. Blindness is the liveness probe's and
the exit watcher's business: a server whose `/metrics` stops answering is caught by them.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._errors import ConfigError

__all__ = ["Canary", "ProgressPolicy", "Selector", "Verdict"]

_ROUNDING = 1e-9  # grid times are origin + k * interval: differences may miss by an ulp
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Verdict(str, enum.Enum):
    """What one successful scrape says about the engine."""

    OK = "ok"  # work waiting, counters still, but for less than the stall window
    IDLE = "idle"  # nothing waiting (counters still or not)
    PROGRESSING = "progressing"  # a progress counter moved since the previous scrape
    STALLED = "stalled"  # work waiting and no counter moved for the whole stall window
    NO_METRICS = "no-metrics"  # the endpoint is missing (404) or lacks the configured names


@dataclass(frozen=True)
class Selector:
    """The series of one exposed sample name, optionally narrowed to some label values.

    `name` is the sample's name as exposed (`sglang:realtime_tokens_total`, with the `_total`).
    `labels` maps a label to the values it may take; a label that a sample lacks reads as `""`,
    Prometheus's own rule, so `{"priority": ("",)}` keeps SGLang's totals and skips the
    per-priority breakdowns it adds under `--enable-priority-scheduling`.
    """

    name: str
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _METRIC_NAME.fullmatch(self.name):
            raise ConfigError(f"metric name {self.name!r} is not a Prometheus metric name")
        labels: dict[str, tuple[str, ...]] = {}
        for key, values in dict(self.labels).items():
            if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key):
                raise ConfigError(f"{self.name}: label {key!r} is not a Prometheus label name")
            allowed = (values,) if isinstance(values, str) else tuple(values)
            if not allowed or not all(isinstance(v, str) for v in allowed):
                raise ConfigError(f"{self.name}: label {key!r} needs one or more string values")
            labels[key] = allowed
        object.__setattr__(self, "labels", MappingProxyType(labels))

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if name != self.name:
            return False
        return all(labels.get(key, "") in allowed for key, allowed in self.labels.items())

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}=~"{"|".join(v)}"' for k, v in self.labels.items())
        return f"{self.name}{{{inner}}}"


@dataclass(frozen=True)
class Canary:
    """One tiny request on the clients' own path, sent only when requests are open at the HTTP
    front end while the engine says nothing runs or waits, its loop turns and no counter moved,
    for `after` seconds: the shape of a request that will never be answered (sglang #33858: a
    stopped detokenizer; every gauge looks idle). No answer within `timeout` is a hang. An
    answer means a client is only reading slowly: the watch looks again `after` seconds later.
    At most one is in flight (the watch waits for it), and an idle server never gets one.
    """

    path: str
    body: Mapping[str, Any]
    after: float = 15.0
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"canary path must start with '/', got {self.path!r}")
        _finite("canary wait", self.after)
        _finite("canary timeout", self.timeout)
        object.__setattr__(self, "body", MappingProxyType(dict(self.body)))


def _finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class ProgressPolicy:
    """How often to scrape, how much to read, and how long work may wait without progress.

    The defaults suit SGLang 0.5.23 on the profiles' hardware (docs/PROGRESS.md): a server that
    stalls with a request in flight is declared stalled 40 to 48 s (plus two scrape latencies)
    after its last counter update, so the container is gone within 60 s; no legitimate gap
    between counter updates comes near 40 s (one forward pass: a decode step or one chunk of
    chunked prefill), and the longest stale "work" reading SGLang publishes while idle lasts 30 s
    (its idle gauge refresh). `request_gauges` count only while no `heartbeat_counters` moved
    since the previous scrape; either may be empty for an engine without them, but request
    gauges need a heartbeat (without one a client reading a stream slowly would look like a hang).
    """

    enabled: bool = True
    path: str = "/metrics"
    interval: float = 4.0  # between scrape starts; one scrape at a time
    timeout: float = 3.0  # one whole scrape, body included (a trickle cannot outlive it)
    max_body_bytes: int = 8 << 20  # SGLang's body is well under 1 MiB; past this, abort
    stall_window: float = 40.0
    absent_scrapes: int = 3  # the first N scrapes without the metrics turn the watch off
    # What to read: the engine's own metrics, which come through the engine seam
    # (`EngineTraits.progress`, SGLang's in `engines/sglang_progress.py`). None named: nothing
    # to watch, and the watch stays off (`watches`); the liveness probe still runs.
    work_gauges: tuple[Selector, ...] = ()
    progress_counters: tuple[Selector, ...] = ()
    request_gauges: tuple[Selector, ...] = ()
    heartbeat_counters: tuple[Selector, ...] = ()
    #: The request that tells a slow reader from requests nobody answers (needs request gauges
    #: and heartbeat counters: without them that shape cannot be seen). None: no canary.
    canary: Canary | None = None
    #: The label that names a rank (SGLang's `dp_rank` under DP attention). When the work gauges
    #: carry it, each rank is judged on its own labelled series too: one rank whose work waits
    #: while its own counters stand still is a stall, however busy the others are (sglang
    #: #32949). None: the engine as one.
    rank_label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"metrics path must start with '/', got {self.path!r}")
        _finite("progress scrape interval", self.interval)
        _finite("progress scrape timeout", self.timeout)
        _finite("stall window", self.stall_window)
        if self.stall_window < 2 * self.interval:
            raise ConfigError(
                f"stall window ({self.stall_window:g} s) must be at least twice the scrape "
                f"interval ({self.interval:g} s)"
            )
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ConfigError(
                f"metrics body cap must be >= 1024 bytes, got {self.max_body_bytes!r}"
            )
        if not isinstance(self.absent_scrapes, int) or self.absent_scrapes < 1:
            raise ConfigError(
                f"absent scrapes must be a whole number >= 1, got {self.absent_scrapes!r}"
            )
        groups = {
            "work_gauges": tuple(self.work_gauges),
            "progress_counters": tuple(self.progress_counters),
            "request_gauges": tuple(self.request_gauges),
            "heartbeat_counters": tuple(self.heartbeat_counters),
        }
        owner: dict[str, str] = {}
        for group, selectors in groups.items():
            kind = group[:-1].replace("_", " ")
            if not all(isinstance(s, Selector) for s in selectors):
                raise ConfigError(f"each {kind} must be a Selector")
            for s in selectors:
                first = owner.setdefault(s.name, kind)
                if first != kind:
                    raise ConfigError(f"{s.name} cannot be both a {first} and a {kind}")
            object.__setattr__(self, group, selectors)
        if bool(groups["work_gauges"]) != bool(groups["progress_counters"]):
            raise ConfigError(
                "name work gauges and progress counters together (Selectors): a stall is work "
                "waiting while no counter moves, so one is no use without the other"
            )
        if self.rank_label is not None and not (
            isinstance(self.rank_label, str) and _LABEL_NAME.fullmatch(self.rank_label)
        ):
            raise ConfigError(
                f"rank label must be a Prometheus label name, got {self.rank_label!r}"
            )
        if self.canary is not None and not self.request_gauges:
            raise ConfigError("a canary needs request gauges: it is sent for open requests")
        if self.request_gauges and not self.heartbeat_counters:
            raise ConfigError(
                "request gauges need heartbeat counters: without them a client reading a "
                "stream slowly would look like a stalled server"
            )

    @property
    def watches(self) -> bool:
        """On, and told what to read: the engine named its work gauges and counters."""
        return self.enabled and bool(self.work_gauges)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(
            s.name
            for s in (
                *self.work_gauges,
                *self.progress_counters,
                *self.request_gauges,
                *self.heartbeat_counters,
            )
        )
