"""Scraping for hang detection: fetch the engine's metrics, bounded, and feed the tracker.

`_progress` decides (pure, clock-injected); this module does the I/O: one scrape at a time on a
fixed schedule, each through `_http_client.request` (a deadline, a byte cap counted on the wire,
no compression), parsed only for the series the policy names. It returns only when
the tracker says `stalled`; where the metrics are absent from the start it says so once through
the hook and then stays out of the way for good.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from ._http_client import Failure, RequestFailed, request
from ._progress import Canary, ProgressPolicy, Verdict
from ._progress_tracker import ProgressStatus, ProgressTracker, SampleLike, StallReport

__all__ = ["Scrape", "ScrapeHook", "parse_samples", "watch_progress"]

# Plain text format; `request` asks for no compression (prometheus_client gzips whenever the
# client accepts gzip), so the byte cap counts what crosses the wire.
_SCRAPE_HEADERS = {"Accept": "text/plain; version=0.0.4"}
_CANARY_BYTES = 64 * 1024  # a canary's answer is read up to this, then it counts as answered


@dataclass(frozen=True)
class Scrape:
    """What one scrape found: the argument of the `on_scrape` hook.

    `status` is None when the scrape failed (`error` says why). `gave_up` is set on the one
    scrape after which the watch stops for good, the metrics having been absent from the start.
    `last_progress_unix` is the wall-clock time of the last counter move, for a Prometheus gauge.
    """

    at: float
    latency_s: float
    size: int
    status: ProgressStatus | None = None
    error: str | None = None
    gave_up: bool = False
    last_progress_unix: float | None = None

    @property
    def verdict(self) -> Verdict | None:
        return None if self.status is None else self.status.verdict


ScrapeHook = Callable[[Scrape], None]


@dataclass(frozen=True)
class _Fetched:
    samples: tuple[SampleLike, ...] = ()
    absent: bool = False
    error: str | None = None
    size: int = 0


def _wanted_lines(text: str, names: frozenset[str]) -> str:
    """Keep only the sample lines of the names we watch.

    SGLang's /metrics is mostly histograms we never read; dropping them (and every comment line:
    a sample parses on its own, as an untyped family) before the parser keeps a scrape cheap.
    """
    kept = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        end = len(line)
        for stop in ("{", " ", "\t"):
            at = line.find(stop)
            if 0 <= at < end:
                end = at
        if line[:end] in names:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def parse_samples(text: str, names: frozenset[str]) -> tuple[SampleLike, ...]:
    """The samples of `names` in a Prometheus text exposition; raises ValueError if malformed."""
    wanted = _wanted_lines(text, names)
    try:
        return tuple(
            sample
            for family in text_string_to_metric_families(wanted)
            for sample in family.samples
            if sample.name in names
        )
    except (IndexError, TypeError) as exc:  # the lax parser's other ways of saying "malformed"
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc


async def _fetch(client: httpx.AsyncClient, url: str, policy: ProgressPolicy) -> _Fetched:
    """One GET of the metrics, under a deadline for the whole exchange and a cap on the body."""
    try:
        answer = await request(
            client,
            "GET",
            url,
            headers=_SCRAPE_HEADERS,
            deadline=policy.timeout,
            max_body_bytes=policy.max_body_bytes,
        )
    except RequestFailed as exc:
        return _Fetched(error=str(exc), size=exc.received)
    if answer.status == 404:
        return _Fetched(absent=True)
    if answer.status != 200:
        return _Fetched(error=f"HTTP {answer.status}")
    try:
        samples = parse_samples(answer.text(), policy.names)
    except ValueError as exc:
        return _Fetched(error=f"unparseable metrics ({exc})".replace(" ()", ""), size=answer.size)
    return _Fetched(samples=samples, size=answer.size)


async def _stay_out_of_the_way() -> NoReturn:
    await anyio.sleep_forever()
    raise AssertionError("sleep_forever returned")  # pragma: no cover


def unanswered(status: ProgressStatus) -> bool:
    """Requests open at the front end while the engine has nothing running or waiting, its loop
    turns and no counter moved: a slow reader, or requests nobody will answer (the canary
    tells which)."""
    return (
        status.requests > 0
        and status.work <= 0
        and status.loop_moved is True
        and status.verdict is not Verdict.PROGRESSING
    )


async def send_canary(
    client: httpx.AsyncClient, url: str, canary: Canary, api_key: str | None
) -> str | None:
    """None if the server answered at all (any status: it is not hung), else why not."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    target = str(httpx.URL(url).copy_with(path=canary.path, query=None))
    try:
        await request(
            client,
            "POST",
            target,
            json=dict(canary.body),
            headers=headers,
            deadline=canary.timeout,
            max_body_bytes=_CANARY_BYTES,
            truncate=True,  # whatever it says, and however long: it answered
        )
    except RequestFailed as exc:
        if exc.kind is Failure.TIMEOUT:
            return str(exc)
        return None  # refused, reset, compressed: not silence; the exit watcher says the rest
    return None


async def watch_progress(
    client: httpx.AsyncClient,
    url: str,
    policy: ProgressPolicy,
    *,
    on_scrape: ScrapeHook | None = None,
    api_key: str | None = None,
    on_canary: Callable[[str], None] | None = None,
) -> StallReport:
    """Scrape `url` every `policy.interval` s and return only when the server is stalled.

    Scrapes never overlap and each one is bounded (`policy.timeout` for the whole exchange,
    `policy.max_body_bytes` for the body). If the first `policy.absent_scrapes` answers all lack
    the metrics (404, or none of the configured names), the hook hears it once (`gave_up`) and
    the watch sleeps forever: it never returns for an engine it cannot read. A disabled policy
    sleeps forever at once. The caller races this against the exit watcher and liveness.
    """
    if not policy.watches:
        await _stay_out_of_the_way()
    tracker = ProgressTracker(policy)
    absent_from_start = 0
    seen_metrics = False
    # Scrapes start on a grid (origin + k * interval) and each is judged at its grid time, the
    # moment it asked: the stall window then ends exactly on a scrape instead of slipping a
    # whole interval whenever one answer came a little faster than the one that started the
    # clock. A scrape reports what happened before it answered, so a move it shows happened
    # at most one latency (milliseconds) after its grid time.
    origin = anyio.current_time()
    tick = 0
    open_since: float | None = None  # requests unanswered, nothing waiting: since when
    while True:
        at = origin + tick * policy.interval
        start = anyio.current_time()
        fetched = await _fetch(client, url, policy)
        done = anyio.current_time()
        status: ProgressStatus | None = None
        if fetched.error is None:
            if fetched.absent:
                status = tracker.observe_absent(at)
            else:
                status = tracker.observe(fetched.samples, at)
        gave_up = False
        if status is not None and not seen_metrics:
            if status.verdict is Verdict.NO_METRICS:
                absent_from_start += 1
                gave_up = absent_from_start >= policy.absent_scrapes
            else:
                seen_metrics = True
        if on_scrape is not None:
            last = tracker.last_progress_at
            on_scrape(
                Scrape(
                    at=at,
                    latency_s=done - start,
                    size=fetched.size,
                    status=status,
                    error=fetched.error,
                    gave_up=gave_up,
                    last_progress_unix=None if last is None else time.time() - (done - last),
                )
            )
        if gave_up:
            await _stay_out_of_the_way()
        if status is not None and status.verdict is Verdict.STALLED:
            return StallReport.from_status(status, policy.stall_window)
        canary = policy.canary
        if canary is not None and status is not None:
            open_since = (
                (open_since if open_since is not None else at) if unanswered(status) else None
            )
            if open_since is not None and at - open_since >= canary.after:
                if on_canary is not None:
                    on_canary(
                        f"{status.requests:g} request(s) open, nothing running or waiting "
                        f"for {at - open_since:.0f} s: sending one canary {canary.path}"
                    )
                why = await send_canary(client, url, canary, api_key)
                if why is not None:
                    return StallReport(
                        stalled_for_s=anyio.current_time() - open_since,
                        since_progress_s=status.since_progress_s or 0.0,
                        window_s=canary.after,
                        work=MappingProxyType({}),
                        counters=status.counters,
                        unanswered=(
                            f"requests hang with nothing running or waiting: "
                            f"{status.requests:g} open at the front end, and a canary "
                            f"{canary.path} got {why}"
                        ),
                    )
                open_since = None  # answered: a slow reader; look again `after` from now
        # The next grid time; one that a slow scrape overran is skipped, never crowded in.
        tick = max(tick + 1, math.ceil((anyio.current_time() - origin) / policy.interval))
        await anyio.sleep(max(0.0, origin + tick * policy.interval - anyio.current_time()))
