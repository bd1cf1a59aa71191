"""The tree's memory against the container's limit, and a planned recycle before the OOM killer.

sglang #28902: a rank's host memory grew linearly until the OOM killer, six restarts in three
days; an OOM kill mid-stream drops every request in flight. The supervisor can end it better:
once the tree passes a high mark it drains the engine (SIGTERM: SGLang finishes what it holds)
and exits 1 with a report naming the memory, its trend and the largest process, so the platform
replaces the container before the kernel kills it.

What is counted, every `interval` seconds, off the event loop: where the container has a cgroup
v2 `memory.stat`, its `anon` plus `shmem` bytes, one file read: the memory the OOM killer cannot
reclaim (page cache is left out on purpose: reading 700 GB of weights fills it, and the kernel
gives it back). Elsewhere, each process of the tree by its proportional set size
(`/proc/PID/smaps_rollup` Pss: shared pages split between the sharers, so eight forked ranks are
not counted eight times; RSS where smaps_rollup is unreadable) plus what `/dev/shm` holds. That
walk costs tens of milliseconds for a real engine's tree, so with the cgroup it runs only once,
for the report, to name the largest process and count open fds. The mark:
`MemoryPolicy.high_bytes` when given (`--memory-high`), else `fraction` of the cgroup v2 limit
(`memory.max`), else off (said once).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from ._errors import ConfigError
from ._gpu_memory import GpuMemory, GpuProbe

__all__ = ["MemoryPolicy", "MemoryReport", "MemorySample", "parse_size", "watch_memory"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLOSE_S = 2.0  # NVML shutdown when the watch ends
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """`300M`, `40G`, `1.5g`, `123456` (bytes) -> bytes; ConfigError saying what to write."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise ConfigError(f"{text!r} is not a size: write bytes or a number with K, M, G or T")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < 1 << 20:
        raise ConfigError(f"{text!r} is below 1 MiB: no server fits in that")
    return int(value)


@dataclass(frozen=True)
class MemoryPolicy:
    enabled: bool = True
    high_bytes: int | None = None  # None: `fraction` of the cgroup limit, if there is one
    fraction: float = 0.9
    interval: float = 2.0
    cgroup_dir: str = "/sys/fs/cgroup"
    shm_dir: str = "/dev/shm"

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"memory fraction must be in (0, 1], got {self.fraction!r}")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ConfigError(f"memory interval must be > 0, got {self.interval!r}")

    def cgroup_limit(self) -> int | None:
        try:
            raw = Path(self.cgroup_dir, "memory.max").read_text().strip()
        except OSError:
            return None
        return None if raw == "max" or not raw.isdigit() else int(raw)

    def cgroup_usage(self) -> int | None:
        """anon + shmem of the container's cgroup (v2 `memory.stat`), or None."""
        try:
            text = Path(self.cgroup_dir, "memory.stat").read_text()
        except OSError:
            return None
        found = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in ("anon", "shmem") and value.strip().isdigit():
                found[key] = int(value)
        return sum(found.values()) if found else None

    def mark(self) -> tuple[int | None, str]:
        """The high mark in bytes (None: off) and where it came from, in words."""
        if not self.enabled:
            return None, "off"
        if self.high_bytes is not None:
            return self.high_bytes, f"--memory-high {_gib(self.high_bytes)}"
        limit = self.cgroup_limit()
        if limit is None:
            return None, "no container memory limit (cgroup memory.max) and no --memory-high"
        return int(limit * self.fraction), (
            f"{self.fraction:.0%} of the container's limit {_gib(limit)}"
        )


@dataclass(frozen=True)
class MemorySample:
    at: float
    total: int  # the tree's PSS plus /dev/shm
    shm: int
    largest: tuple[int, str, int]  # pid, its name, its bytes
    fds: int
    basis: str = "the tree"  # or "the container" (its cgroup's anon + shmem)
    gpu: GpuMemory | None = None  # where NVML is present


@dataclass(frozen=True)
class MemoryReport:
    """Why the watch asked for a planned recycle."""

    sample: MemorySample
    high: int
    source: str
    trend_per_min: float | None  # bytes a minute over the watch's window, None with one sample

    def describe(self) -> str:
        pid, name, size = self.sample.largest
        trend = (
            "no trend yet"
            if self.trend_per_min is None
            else f"growing {_gib(self.trend_per_min)}/min"
            if self.trend_per_min > 0
            else "not growing"
        )
        return (
            f"{self.sample.basis} holds {_gib(self.sample.total)} (of which /dev/shm "
            f"{_gib(self.sample.shm)}), past the high mark {_gib(self.high)} ({self.source}); "
            f"{trend}; largest pid={pid} ({name}) {_gib(size)}; {self.sample.fds} open fds"
            + (f"; {self.sample.gpu.describe(_name)}" if self.sample.gpu is not None else "")
        )


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if abs(n) >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _process_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()[:40] or "?"
    except OSError:
        return "?"


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _shm_used(root: str) -> int:
    try:
        st = os.statvfs(root)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def sample_cheap(policy: MemoryPolicy, pids: Iterable[int]) -> MemorySample:
    """The cgroup's numbers where there are any (one read), else the walk of the tree."""
    usage = policy.cgroup_usage()
    if usage is None:
        return sample_tree(pids, policy.shm_dir)
    return MemorySample(
        at=time.monotonic(),
        total=usage,
        shm=_shm_used(policy.shm_dir),
        largest=(0, "-", 0),
        fds=0,
        basis="the container",
    )


def sample_tree(pids: Iterable[int], shm_dir: str) -> MemorySample:
    sizes = [(pid, _process_bytes(pid)) for pid in pids]
    largest_pid, largest = max(sizes, key=lambda x: x[1], default=(0, 0))
    shm = _shm_used(shm_dir)
    return MemorySample(
        at=time.monotonic(),
        total=sum(b for _, b in sizes) + shm,
        shm=shm,
        largest=(largest_pid, _name(largest_pid) if largest_pid else "-", largest),
        fds=sum(_fds(pid) for pid, _ in sizes),
    )


def _trend(window: deque[MemorySample]) -> float | None:
    if len(window) < 2 or window[-1].at <= window[0].at:
        return None
    return (window[-1].total - window[0].total) / (window[-1].at - window[0].at) * 60


async def watch_memory(
    tree: Callable[[], Iterable[int]],
    policy: MemoryPolicy,
    *,
    say: Callable[[str], None],
    on_sample: Callable[[MemorySample], None] | None = None,
    gpu: GpuProbe | None = None,
) -> MemoryReport:
    """Sample the tree every `policy.interval` s; return once it is past the high mark.

    GPU memory (NVML, `gpu`, by default a probe of its own) rides along with every sample.
    With no mark (no limit known, or disabled) it says so once and only samples, for the
    metrics, while there is a GPU to look at; else it sleeps for good.
    """
    high, source = policy.mark()
    probe = gpu if gpu is not None else GpuProbe()

    async def look(pids: list[int]) -> GpuMemory | None:
        # NVML can hang on a sick GPU: a cancelled watch leaves the thread, never waits on it
        found = await anyio.to_thread.run_sync(probe.look, pids, abandon_on_cancel=True)
        for note in probe.take_notes():
            say(note)
        return found

    if high is None:
        if policy.enabled:
            say(f"memory watch: off ({source})")
    else:
        say(f"memory watch: a planned recycle past {_gib(high)} ({source})")
    window: deque[MemorySample] = deque(maxlen=30)  # a minute at the default interval
    try:
        while True:
            pids = list(tree())
            if high is None:
                if not policy.enabled:
                    break
                looked = await look(pids)
                if looked is None:
                    break  # no GPU either: nothing to watch
                if on_sample is not None:
                    on_sample(MemorySample(time.monotonic(), 0, 0, (0, "-", 0), 0, gpu=looked))
                await anyio.sleep(policy.interval)
                continue
            sample = await anyio.to_thread.run_sync(sample_cheap, policy, pids)
            sample = dataclasses.replace(sample, gpu=await look(pids))
            window.append(sample)
            if on_sample is not None:
                on_sample(sample)
            if sample.total >= high:
                if sample.largest[0] == 0:  # the cgroup said it: walk once, for the report
                    walked = await anyio.to_thread.run_sync(sample_tree, pids, policy.shm_dir)
                    sample = dataclasses.replace(sample, largest=walked.largest, fds=walked.fds)
                return MemoryReport(sample, high, source, _trend(window))
            await anyio.sleep(policy.interval)
    finally:
        with anyio.move_on_after(_CLOSE_S, shield=True):  # bounded, as every wait here
            await anyio.to_thread.run_sync(probe.close, abandon_on_cancel=True)
    await anyio.sleep_forever()
    raise AssertionError("sleep_forever returned")  # pragma: no cover
