"""GPU memory of the tree's processes, from NVML, where there is a GPU and `nvidia-ml-py`.

The memory watch (`_memory`) asks for it with every sample, so the planned-recycle report and the
metrics say which process holds how much of which GPU. NVML is optional (the core does not
depend on it; SGLang's image ships `nvidia-ml-py`): no module, no driver or no GPU is said once,
and the watch goes on with host memory alone. Each NVML call is a few milliseconds, run off the
event loop with the rest of the sample, and any NVML error turns the probe off rather than
failing the watch: an add-on never takes a serving replica down.

Process ids: NVML names processes by the pids its driver sees. On the H200 machine (a Firecracker
VM) they were this namespace's (benchmarks/gpu/RESULTS-nvml-H200.txt); in a container without
the host's PID namespace they may not be (a known NVIDIA container behaviour; Modal's gVisor is a
guess not yet checked): when no NVML pid belongs to the tree, the per-GPU totals are still
reported, and that is said once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuMemory", "GpuProbe"]


@dataclass(frozen=True)
class GpuMemory:
    """One look at the GPUs: per GPU, what the tree holds and what is used in all; per process."""

    per_gpu: tuple[tuple[int, int, int], ...]  # (index, held by the tree, used in all)
    per_process: tuple[tuple[int, int, int], ...]  # (pid, GPU index, bytes)

    @property
    def held(self) -> int:
        return sum(tree for _, tree, _ in self.per_gpu)

    def describe(self, name: Callable[[int], str] = str) -> str:
        """One clause for the report: the GPUs, and the largest holder on each."""
        if not self.per_gpu:
            return "GPU memory: no GPU"
        parts = []
        for index, tree, used in self.per_gpu:
            holders = [(b, pid) for pid, gpu, b in self.per_process if gpu == index]
            top = max(holders, default=None)
            who = f", largest pid={top[1]} ({name(top[1])}) {_gib(top[0])}" if top else ""
            parts.append(f"GPU{index} {_gib(tree)} of the tree ({_gib(used)} used{who})")
        return "GPU memory: " + "; ".join(parts)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if abs(n) >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


class GpuProbe:
    """NVML, opened on first use; `look` returns None once it is known to be unavailable.

    `nvml` replaces the `pynvml` module (tests). `look` runs in a worker thread, so what it has
    to say (why there is no GPU memory, or that NVML's pids are not this namespace's) waits in
    `take_notes` for the event loop's thread to say it.
    """

    def __init__(self, nvml: Any = None) -> None:
        self._notes: list[str] = []
        self._nvml = nvml
        self._opened = False
        self._off = False
        self._foreign_said = False

    def _open(self) -> bool:
        if self._opened:
            return True
        if self._off:
            return False
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module("pynvml")
            self._nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self._off = True
            self._notes.append(
                f"GPU memory: not watched (NVML unavailable: {type(exc).__name__}: {exc})"
            )
            return False
        self._opened = True
        return True

    def look(self, pids: Iterable[int]) -> GpuMemory | None:
        """The GPUs now (blocking: call it off the event loop), or None without NVML."""
        if not self._open():
            return None
        nvml, tree = self._nvml, set(pids)
        try:
            per_gpu, per_process, seen = [], [], 0
            for index in range(int(nvml.nvmlDeviceGetCount())):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
                held = 0
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    seen += 1
                    size = int(getattr(proc, "usedGpuMemory", None) or 0)
                    if proc.pid in tree:
                        held += size
                        per_process.append((int(proc.pid), index, size))
                per_gpu.append((index, held, used))
        except Exception as exc:  # a driver error mid-run: stop asking, keep serving
            self._off, self._opened = True, False
            self._notes.append(
                f"GPU memory: not watched any more (NVML: {type(exc).__name__}: {exc})"
            )
            return None
        if seen and not per_process and not self._foreign_said:
            self._foreign_said = True
            self._notes.append(
                "GPU memory: NVML lists GPU processes, none of them this tree's (not on the GPU "
                "yet, or NVML sees another PID namespace): per-GPU totals until one is"
            )
        return GpuMemory(tuple(per_gpu), tuple(per_process))

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def close(self) -> None:
        if self._opened:
            self._opened = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
