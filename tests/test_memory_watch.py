"""A slow leak ends in a planned recycle, not the OOM killer (issue #19, item 3): past the high
mark the supervisor drains the engine and exits 1 with a report naming the memory, its trend
and the largest process; sizes are parsed strictly; no limit known means the watch is off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor import ConfigError
from supervisor._memory import MemoryPolicy, parse_size, sample_cheap, sample_tree
from tests._watch import Watched
from tests.conftest import cli


@pytest.mark.parametrize(
    ("text", "size"),
    [("300M", 300 << 20), ("40G", 40 << 30), ("1.5g", int(1.5 * (1 << 30))), ("2GiB", 2 << 30)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-3G", "1e9", "10K", "5 M B"])
def test_a_bad_size_says_what_to_write(text: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a size|below 1 MiB"):
        parse_size(text)


def test_the_mark_comes_from_the_flag_else_the_cgroup_else_off(tmp_path: Path) -> None:
    assert MemoryPolicy(high_bytes=1 << 30).mark()[0] == 1 << 30
    (tmp_path / "memory.max").write_text("1073741824\n")
    mark, source = MemoryPolicy(cgroup_dir=str(tmp_path)).mark()
    assert mark == int(0.9 * (1 << 30)) and "90% of the container's limit" in source
    (tmp_path / "memory.max").write_text("max\n")
    assert MemoryPolicy(cgroup_dir=str(tmp_path)).mark()[0] is None
    assert MemoryPolicy(enabled=False, high_bytes=1 << 30).mark()[0] is None


def test_the_containers_cgroup_is_read_in_one_file_page_cache_left_out(tmp_path: Path) -> None:
    (tmp_path / "memory.stat").write_text("anon 1000000\nfile 900000000\nshmem 2000\n")
    policy = MemoryPolicy(cgroup_dir=str(tmp_path))
    sample = sample_cheap(policy, [os.getpid()])
    assert sample.total == 1_002_000 and sample.basis == "the container"
    assert sample.largest == (0, "-", 0)  # the walk is left for the report


def test_a_sample_counts_this_process_and_names_the_largest() -> None:
    sample = sample_tree([os.getpid()], "/dev/shm")
    assert sample.largest[0] == os.getpid() and sample.largest[2] > 1 << 20
    assert sample.total >= sample.largest[2] and sample.fds > 0


@pytest.mark.process
def test_run_with_a_bad_size_is_one_line_and_exit_2() -> None:
    w = Watched(cli("run", "--port", "1", "--memory-high", "lots", "--", "true"))
    rc, _ = w.wait_exit(30)
    assert rc == 2 and "--memory-high: 'lots' is not a size" in w.output()


@pytest.mark.process
def test_a_leak_past_the_mark_is_drained_then_recycled_with_exit_1(port: int) -> None:
    serve = [
        "serve", "--profile", "qwen3-8b", "--fake", "--port", str(port), "--memory-high", "400M",
        "--fake-arg=--fake-load-time=0.2", "--fake-arg=--fake-warmup-time=0.2",
        "--fake-arg=--fake-time-scale=0.1", "--fake-arg=--fake-fault=memory-leak",
        "--fake-arg=--fake-leak-mb-per-s=60",
    ]  # fmt: skip
    with Watched(cli(*serve)) as w:
        w.wait_for("memory watch: a planned recycle past 400 MiB (--memory-high 400 MiB)", 60)
        rc, _ = w.wait_exit(90)
        out = w.output()
        assert rc == 1, out[-3000:]
        planned = out.index("planned recycle: the ")
        # drained first (SIGTERM, SGLang's own drain), then the report, once
        assert planned < out.index("state=stopping") < out.index("sending SIGTERM")
        assert out.count("CRASH REPORT") == 1 and "cause=memory-high" in out
        report = out.split("CRASH REPORT", 1)[1]
        assert "recycled for memory" in report and "growing" in report
        assert "largest pid=" in report and "past the high mark 400 MiB" in report


# ----------------------------------------------------------------------------- GPU memory (NVML)
class FakeNvml:
    """pynvml's calls the probe makes, over a scripted set of GPUs (a unit test's double; the
    real NVML is checked on the GPU machine: benchmarks/gpu/)."""

    class Proc:
        def __init__(self, pid: int, used: int | None) -> None:
            self.pid, self.usedGpuMemory = pid, used

    class Info:
        def __init__(self, used: int) -> None:
            self.used = used

    def __init__(
        self, gpus: list[tuple[int, list[tuple[int, int | None]]]], fail: str = ""
    ) -> None:
        self.gpus, self.fail, self.shut = gpus, fail, False

    def nvmlInit(self) -> None:
        if self.fail == "init":
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        if self.fail == "count":
            raise RuntimeError("GPU is lost")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> FakeNvml.Info:
        return FakeNvml.Info(self.gpus[handle][0])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[FakeNvml.Proc]:
        return [FakeNvml.Proc(pid, used) for pid, used in self.gpus[handle][1]]


def test_the_gpu_probe_counts_the_trees_processes_per_gpu() -> None:
    from supervisor._gpu_memory import GpuProbe

    nvml = FakeNvml([(80 << 30, [(11, 70 << 30), (999, 5 << 30)]), (2 << 30, [(12, None)])])
    probe = GpuProbe(nvml)
    found = probe.look([11, 12])
    assert found is not None and probe.take_notes() == []
    assert found.per_gpu == ((0, 70 << 30, 80 << 30), (1, 0, 2 << 30))  # None used: 0
    assert found.held == 70 << 30
    text = found.describe(lambda pid: f"proc{pid}")
    assert "GPU0 70.00 GiB of the tree (80.00 GiB used, largest pid=11 (proc11) 70.00 GiB)" in text
    probe.close()
    assert nvml.shut


def test_no_nvml_is_said_once_and_a_lost_gpu_turns_the_probe_off() -> None:
    from supervisor._gpu_memory import GpuProbe

    absent = GpuProbe(FakeNvml([], fail="init"))
    assert absent.look([1]) is None and absent.look([1]) is None
    notes = absent.take_notes()
    assert len(notes) == 1 and "NVML unavailable" in notes[0]
    lost = GpuProbe(FakeNvml([(1, [])], fail="count"))
    assert lost.look([1]) is None
    assert "not watched any more" in lost.take_notes()[0]
    foreign = GpuProbe(FakeNvml([(1 << 30, [(5, 1 << 30)])]))
    for _ in range(3):
        assert foreign.look([7]) is not None
    assert len(foreign.take_notes()) == 1  # "none of this tree's pids", once


@pytest.mark.anyio
async def test_the_recycle_report_and_the_metrics_carry_the_gpu_memory() -> None:
    from supervisor._gpu_memory import GpuProbe
    from supervisor._memory import watch_memory
    from supervisor._metrics import SupervisorMetrics

    me = os.getpid()
    nvml = FakeNvml([(40 << 30, [(me, 30 << 30)])])
    metrics, said = SupervisorMetrics(), []
    report = await watch_memory(
        lambda: [me],
        MemoryPolicy(high_bytes=1 << 20, interval=0.05),
        say=said.append,
        on_sample=metrics.on_memory,
        gpu=GpuProbe(nvml),
    )
    assert "GPU memory: GPU0 30.00 GiB of the tree (40.00 GiB used, largest pid=" in (
        report.describe()
    )
    value = metrics.registry.get_sample_value("supervisor_gpu_memory_bytes", {"gpu": "0"})
    assert value == 30 << 30
    assert nvml.shut  # NVML closed with the watch
