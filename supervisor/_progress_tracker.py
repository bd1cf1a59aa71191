"""The progress tracker: fed one scrape's samples and a time, it says whether the engine is stuck.

Pure and clock-injected, no I/O (`_progress_watch` does the scraping), so every verdict is a
unit test: work waiting (the policy's gauges, plus HTTP requests in flight once the scheduler's
loop has stopped turning) while no progress counter moves for the stall window is `stalled`.
The policy it reads, and the reasons behind each rule, are in `_progress`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from ._progress import ProgressPolicy, Selector, Verdict

__all__ = ["ProgressStatus", "ProgressTracker", "SampleLike", "StallReport"]

_ROUNDING = 1e-9  # grid times are origin + k * interval: differences may miss by an ulp


class SampleLike(Protocol):
    """What the tracker reads from a sample; `prometheus_client.samples.Sample` fits."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...


def _series_key(name: str, labels: Mapping[str, str]) -> str:
    """One series as text, labels sorted: `name{a="1",b="2"}`."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))  # a NaN that stays NaN did not move


def _compare(old: Mapping[str, float], new: Mapping[str, float]) -> tuple[bool, bool]:
    """(moved, went down): a series that came, went or changed value moved."""
    moved = old.keys() != new.keys()
    down = False
    for key, value in new.items():
        before = old.get(key)
        if before is not None and not _same(before, value):
            moved = True
            down = down or value < before
    return moved, down


def _positive_sum(values: Iterable[float]) -> float:
    return sum(v for v in values if math.isfinite(v) and v > 0)


@dataclass(frozen=True)
class ProgressStatus:
    """The tracker's answer for one observation; times are on the caller's clock."""

    verdict: Verdict
    at: float
    work: float = 0.0  # waiting work: scheduler gauges, plus HTTP requests if the loop stopped
    work_series: Mapping[str, float] = field(default_factory=dict)  # the non-zero ones counted
    counters: Mapping[str, float] = field(default_factory=dict)  # every progress series
    last_progress_at: float | None = None  # when a counter was last seen to move
    waiting_since: float | None = None  # first observation of the current run of waiting work
    reset: bool = False  # a counter went down (an engine restart): counted as a move
    requests: float = 0.0  # in flight at the HTTP front end, counted in `work` or not
    loop_moved: bool | None = None  # a heartbeat moved since the last scrape; None: unknown
    rank: str = ""  # `dp_rank=2` when one rank's own series gave the verdict, else empty

    @property
    def since_progress_s(self) -> float | None:
        return None if self.last_progress_at is None else self.at - self.last_progress_at

    @property
    def frozen_for_s(self) -> float:
        """How long work has waited with no counter moving: what the stall window bounds."""
        if self.waiting_since is None or self.last_progress_at is None:
            return 0.0
        return self.at - max(self.last_progress_at, self.waiting_since)


class ProgressTracker:
    """Turns successive scrapes into verdicts. Pure: the caller passes the samples and the time.

    The stall clock runs from the later of two moments: the last time a progress counter was
    seen to move (any change, a decrease included: a reset is not a hang), and the first
    observation of the current run of waiting work (so work that just arrived at an idle server
    gets the whole window). An observation that lacks the metrics changes nothing.
    """

    def __init__(self, policy: ProgressPolicy, *, one_rank: bool = False) -> None:
        self.policy = policy
        #: Judging one rank of a whole: a rank that never made a token has no counter series
        #: yet (a labelled series exists once something set it), which is "nothing moved",
        #: not "no metrics".
        self._one_rank = one_rank
        #: One tracker per rank value, fed only that rank's labelled series.
        self._ranks: dict[str, ProgressTracker] = {}
        self._counters: dict[str, float] | None = None
        self._heartbeat: dict[str, float] | None = None
        self._last_progress: float | None = None
        self._waiting_since: float | None = None
        self.last: ProgressStatus | None = None

    @property
    def last_progress_at(self) -> float | None:
        """When a progress counter was last seen to move (the first good scrape counts)."""
        return self._last_progress

    def observe(self, samples: Iterable[SampleLike], now: float) -> ProgressStatus:
        """Judge one scrape's samples, taken at `now`: the engine as one, then (with a rank
        label) each rank on its own series; the first stall found is the verdict."""
        samples = list(samples)
        status = self._observe_whole(samples, now)
        label = self.policy.rank_label
        if label is None or status.verdict in (Verdict.STALLED, Verdict.NO_METRICS):
            return status
        by_rank: dict[str, list[SampleLike]] = {}
        for sample in samples:
            value = sample.labels.get(label)
            if value is not None:
                by_rank.setdefault(value, []).append(sample)
        if len(by_rank) < 2:
            return status  # one rank is the whole engine: judged above
        for value in sorted(by_rank):
            tracker = self._ranks.get(value)
            if tracker is None:
                tracker = ProgressTracker(
                    dataclasses.replace(self.policy, rank_label=None), one_rank=True
                )
                self._ranks[value] = tracker
            own = tracker.observe(by_rank[value], now)
            if own.verdict is Verdict.STALLED:
                return self._remember(dataclasses.replace(own, rank=f"{label}={value}"))
        return status

    def _observe_whole(self, samples: list[SampleLike], now: float) -> ProgressStatus:
        policy = self.policy
        work_series: dict[str, float] = {}
        counters: dict[str, float] = {}
        requests: dict[str, float] = {}
        heartbeat: dict[str, float] = {}
        groups: tuple[tuple[Sequence[Selector], dict[str, float]], ...] = (
            (policy.work_gauges, work_series),
            (policy.progress_counters, counters),
            (policy.request_gauges, requests),
            (policy.heartbeat_counters, heartbeat),
        )
        for sample in samples:
            for selectors, found in groups:
                if any(s.matches(sample.name, sample.labels) for s in selectors):
                    found[_series_key(sample.name, sample.labels)] = float(sample.value)
                    break
        if not work_series or (not counters and not self._one_rank):
            return self._remember(ProgressStatus(Verdict.NO_METRICS, now))

        previous = self._counters
        baseline = previous is None
        moved, reset = (True, False) if previous is None else _compare(previous, counters)
        self._counters = counters
        if moved:
            self._last_progress = now
        loop_moved: bool | None = None  # unknown: first sight, or no heartbeat in this scrape
        if heartbeat:
            if self._heartbeat is not None:
                loop_moved = _compare(self._heartbeat, heartbeat)[0]
            self._heartbeat = heartbeat
        in_flight = _positive_sum(requests.values())
        work = _positive_sum(work_series.values())
        counted = dict(work_series)
        if loop_moved is False and in_flight > 0:
            # The loop stopped with requests in flight: they wait on it, whatever its gauges say.
            work += in_flight
            counted.update(requests)
        if work > 0:
            if self._waiting_since is None:
                self._waiting_since = now
        else:
            self._waiting_since = None

        status = ProgressStatus(
            Verdict.OK,
            now,
            work=work,
            work_series=MappingProxyType({k: v for k, v in counted.items() if v}),
            counters=MappingProxyType(counters),
            last_progress_at=self._last_progress,
            waiting_since=self._waiting_since,
            reset=reset,
            requests=in_flight,
            loop_moved=loop_moved,
        )
        if moved and not baseline:
            verdict = Verdict.PROGRESSING
        elif work <= 0:
            verdict = Verdict.IDLE
        elif status.frozen_for_s >= policy.stall_window - _ROUNDING:
            verdict = Verdict.STALLED
        else:
            verdict = Verdict.OK
        return self._remember(dataclasses.replace(status, verdict=verdict))

    def observe_absent(self, now: float) -> ProgressStatus:
        """The metrics endpoint itself is missing (404): say so, change nothing."""
        return self._remember(ProgressStatus(Verdict.NO_METRICS, now))

    def _remember(self, status: ProgressStatus) -> ProgressStatus:
        self.last = status
        return status


def _by_name(series: Mapping[str, float]) -> str:
    totals: dict[str, tuple[float, int]] = {}
    for key, value in series.items():
        name = key.split("{", 1)[0]
        total, count = totals.get(name, (0.0, 0))
        totals[name] = (total + value, count + 1)
    return ", ".join(
        f"{name}={total:g}" + (f" ({count} series)" if count > 1 else "")
        for name, (total, count) in sorted(totals.items())
    )


@dataclass(frozen=True)
class StallReport:
    """Why the watch gave up on the server: what was waiting and what stood still, for how long."""

    stalled_for_s: float  # work waiting and no counter moving, the whole time
    since_progress_s: float  # since a counter last moved (longer when the server idled first)
    window_s: float
    work: Mapping[str, float]  # the waiting-work series that were non-zero
    counters: Mapping[str, float]  # every progress series, frozen at these values
    #: Set when the canary found the hang: requests open, nothing waiting, no answer.
    unanswered: str = ""
    #: Set when one rank stalled while the engine as a whole moved (`dp_rank=2`).
    rank: str = ""

    @classmethod
    def from_status(cls, status: ProgressStatus, window_s: float) -> StallReport:
        return cls(
            stalled_for_s=status.frozen_for_s,
            since_progress_s=status.since_progress_s or 0.0,
            window_s=window_s,
            work=status.work_series,
            counters=status.counters,
            rank=status.rank,
        )

    def describe(self) -> str:
        """One line for the crash report and the log."""
        if self.unanswered:
            return self.unanswered
        who = f"rank {self.rank} (the other ranks serve): " if self.rank else ""
        return (
            f"{who}no forward progress for {self.stalled_for_s:.1f} s with work waiting "
            f"(stall window {self.window_s:g} s): waiting {_by_name(self.work)}; "
            f"counters frozen at {_by_name(self.counters)}"
        )
