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
