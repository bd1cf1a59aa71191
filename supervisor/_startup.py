"""The start of a server: wait for its health path, check whose socket answers, warm it up.

`starting --healthy--> warm --warmed--> serving`. Each phase runs in `_race`, so the main
process's exit, a stop request or (on a cluster) a peer's failure ends it at once. A cluster
worker (rank >= 1) shares the health wait: its `/health` is SGLang's dummy, which starts only
once its schedulers joined the rendezvous and loaded; it then waits for rank 0 instead of warming
up (`_worker`). Every phase takes the HTTP client from the slot when it starts, never one kept
from before a sleep.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.abc

from ._caches import CacheCount, describe_caches, snapshot_caches
from ._endings import Outcome
from ._errors import ForeignListener, WarmupFailed
from ._health import Nudge, ProbeResult, wait_healthy
from ._membership import Membership
from ._process import ChildProcess
from ._snapshot import ClientSlot
from ._states import Event
from ._tasks import Race
from ._timeline import Timeline
from ._warmup import WarmupResult, run_warmups

__all__ = ["Startup"]


class Startup(Membership):
    """The startup phases of `Supervisor`; `_start_up` returns None once serving."""

    _slot: ClientSlot
    _nudge: Nudge
    timeline: Timeline
    warmup_results: list[WarmupResult]
    _serving_announced: bool
    _caches_before: dict[str, CacheCount | None]
    #: The caches this start added to (the cache report's misses): worth persisting.
    caches_missed: tuple[str, ...]

    async def _start_up(
        self, child: ChildProcess, task_status: anyio.abc.TaskStatus[Any]
    ) -> Outcome | None:
        """starting, then warm: None once serving, else how it ended (or the error it raised)."""
        ended = await self._wait_healthy(child, "")
        if ended is not None:
            return ended
        cfg = self.config
        if cfg.warmup.payloads:
            kind, results = await self._race(
                lambda: run_warmups(
                    self._slot.client,
                    cfg.base_url,
                    cfg.warmup.payloads,
                    api_key=cfg.api_key,
                    on_result=self._on_warmup,
                )
            )
            if kind is not Race.DONE:
                return await self._lost_race(child, kind)
            self.warmup_results = list(results or [])
            failed = [r for r in self.warmup_results if not r.ok]
            if failed and cfg.warmup.fail_startup:
                self.machine.fire(Event.FAILED, f"{len(failed)} warmup(s) failed")
                await self._kill(child)
                raise WarmupFailed(
                    "warmup failed: " + "; ".join(f"{r.name}: {r.reason}" for r in failed),
                    results=self.warmup_results,
                    tail=self.tail.lines(),
                )
            for r in failed:
                self.say(f"warning: warmup {r.name!r} failed but warmup failures are warnings")
        await self._report_caches()
        self._reach_serving(task_status, "")
        return None

    async def _wait_healthy(self, child: ChildProcess, why: str) -> Outcome | None:
        """starting: wait for 200 on the health path; None once `warm`, else how it ended."""
        cfg = self.config
        kind, healthy = await self._race(
            lambda: wait_healthy(
                self._slot.client,
                cfg.base_url + cfg.health.path,
                cfg.health,
                nudge=self._nudge,
                on_probe=lambda r: self._on_probe("startup", r),
            )
        )
        if kind is not Race.DONE:
            return await self._lost_race(child, kind)
        if healthy is None:
            await self._health_timeout(child)
        await self._check_listener(child)
        self.timeline.mark("healthy")
        note = f"{cfg.health.path} answered in {healthy.latency_s:.3f} s{why}"
        self.machine.fire(Event.HEALTHY, note)
        return None

    async def _report_caches(self) -> None:
        """Each cache before the spawn and now: a hit, or what the start compiled into it."""
        caches = self.config.caches
        if not caches:
            return
        after = await snapshot_caches(caches)
        for moment, counts in (("before", self._caches_before), ("serving", after)):
            for name, found in counts.items():
                if found is not None:
                    self.metrics.on_cache(name, moment, found.files, found.bytes)
        line, missed = describe_caches(self._caches_before, after)
        self.caches_missed = tuple(missed)
        self.say(line)
        for name in sorted(set(missed) & self.config.expect_warm_caches):
            self.say(
                f"warning: cache {name} was expected warm but this start added to it: "
                "its key or contents do not match this deployment"
            )

    def _reach_serving(self, task_status: anyio.abc.TaskStatus[Any], note: str) -> None:
        self.timeline.mark("serving")
        self.metrics.on_phases(self.timeline.durations())
        self.say(self.timeline.summary())
        self.machine.fire(Event.WARMED, note)
        self._serving_since = time.monotonic()
        self._serving_announced = True
        task_status.started(self)

    async def _check_listener(self, child: ChildProcess) -> None:
        """A 200 proves that something answers, not that it is ours: check whose socket it is."""
        check = child.check_listener(self.config.host, self.config.port)
        if check.verdict == "foreign":
            self.machine.fire(Event.FAILED, check.detail)
            await self._kill(child)
            raise ForeignListener(
                f"{self.config.health.path} answered, but {check.detail} (a stale server?): "
                "stop it or choose another port",
                tail=self.tail.lines(),
            )
        if check.verdict == "unknown":
            self.say(f"note: cannot tell whose socket answers ({check.detail}); trusting it")

    # ----------------------------------------------------------------- hooks
    def _on_probe(self, kind: str, result: ProbeResult) -> None:
        previous, self._last_probe = self._last_probe, result
        self.metrics.on_probe(kind, result.ok, result.latency_s)
        if kind == "startup" and (previous is None or previous.describe() != result.describe()):
            # One line per change (refused -> 503 -> 200), not one per probe.
            self.say(f"health probe: {result.describe()}")
        if result.error != "connection refused":
            self.timeline.mark("port_open")
        if kind == "liveness" and not result.ok:
            self.say(f"liveness probe failed: {result.describe()}")

    def _on_warmup(self, result: WarmupResult) -> None:
        self.metrics.on_warmup(result.name, result.ok, result.latency_s)
        self.say(result.describe())
