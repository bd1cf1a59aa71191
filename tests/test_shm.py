"""/dev/shm before a start (issue #19, item 5): a dead SGLang's segments refuse the start in one
line, exit 2, naming what to remove; too little room for the GPUs refuses it too; a live server's
segments and unattributable ones do not. The black-box case plays sglang #40723: a server that
leaked its segment is SIGKILLed, and the next start on that /dev/shm refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.engines.shm import ENV_SHM_DIR, creator_pid, inspect_shm, stale_segments
from tests._watch import Watched
from tests.conftest import cli


def dead_pid() -> int:
    """A pid that was ours a moment ago and is reaped now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_names_are_read_as_sglangs_sweep_reads_them() -> None:
    assert creator_pid("sgl_shm_mq_4242_deadbeef") == 4242
    assert creator_pid("multi_tokenizer_args_77") == 77
    for name in ("sgl_shm_mq_x_y", "sgl_shm_0", "sgl_shm_mq_-1_ab", "nccl-xyz", "sem.mp-1", ""):
        assert creator_pid(name) is None, name


@pytest.mark.process
def test_a_dead_creators_segment_fails_and_a_live_ones_does_not(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    (tmp_path / f"sgl_shm_mq_{dead}_0badf00d").write_bytes(b"x" * 4096)
    (tmp_path / f"sgl_shm_mq_{os.getppid()}_aaaaaaaa").write_bytes(b"")  # alive: not stale
    (tmp_path / "nccl-1234").write_bytes(b"")  # no pid: only counted
    (tmp_path / f"multi_tokenizer_args_{alive}").write_bytes(b"")
    stale, unattributed = stale_segments(tmp_path)
    assert stale == [(f"sgl_shm_mq_{dead}_0badf00d", 4096)] and unattributed == 1
    status, detail = inspect_shm(1, tmp_path)
    assert status == "fail" and f"sgl_shm_mq_{dead}_0badf00d" in detail
    assert f"rm {tmp_path}/sgl_shm_*" in detail and "\n" not in detail
    (tmp_path / f"sgl_shm_mq_{dead}_0badf00d").unlink()
    status, detail = inspect_shm(1, tmp_path)
    assert status == "ok" and "1 segment(s) of no known owner" in detail


def test_too_little_room_fails_only_where_gpus_need_it(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    gpus = free // (1 << 30) + 2  # more GPUs than this disk's free GiB can serve
    status, detail = inspect_shm(gpus, tmp_path)
    assert status == "fail" and f"{gpus} GPUs need" in detail and "--shm-size" in detail
    assert inspect_shm(gpus, tmp_path, room=False)[0] == "ok"  # a fake engine needs none
    assert inspect_shm(1, tmp_path / "missing")[0] == "skip"


@pytest.mark.process
def test_a_crashed_servers_leaked_segment_refuses_the_next_start(port: int, tmp_path: Path) -> None:
    env = {ENV_SHM_DIR: str(tmp_path)}
    fake = ["--fake-arg=--fake-load-time=0.2", "--fake-arg=--fake-warmup-time=0.2"]
    first = [
        "serve", "--profile", "qwen3-8b", "--fake", "--port", str(port), *fake,
        "--fake-arg=--fake-fault=leak-shm", "--fake-arg=--fake-fault=crash-after-serving",
        "--fake-arg=--fake-crash-after=0.3",
    ]  # fmt: skip
    with Watched(cli(*first, env=env)) as w:
        rc, _ = w.wait_exit(60)
        # died during its warmups or after (a loaded machine decides): its tree SIGKILLed
        assert rc in (1, 3) and "kill_process_tree called" in w.output(), w.output()
    leaked = [p.name for p in tmp_path.iterdir() if p.name.startswith("sgl_shm_mq_")]
    assert len(leaked) == 1, leaked
    with Watched(
        cli("serve", "--profile", "qwen3-8b", "--fake", "--port", str(port), *fake, env=env)
    ) as w:
        rc, _ = w.wait_exit(60)
        out = w.output()
        assert rc == 2, out
        assert f"[FAIL] shm: 1 segment(s) of a dead SGLang in {tmp_path}" in out
        assert leaked[0] in out and "state=" not in out  # refused before anything started
