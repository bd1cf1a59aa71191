"""The local process manager against real process trees: sessions, escapes, orphans, reaping."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest

from supervisor import LaunchSpec
from supervisor._proctree import proc_info
from supervisor.lowlevel import LocalProcessManager

pytestmark = pytest.mark.anyio

# A parent with one ordinary child, one child that escapes into its own session and one
# grandchild; all ignore SIGTERM. The parent prints the pids, then waits.
TREE = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = "import os,signal,subprocess,sys,time\\n" \\
           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" \\
           "if sys.argv[1] == 'escape': os.setsid()\\n" \\
           "if sys.argv[1] == 'parent': subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\\n" \\
           "time.sleep(600)"
    kids = [subprocess.Popen([sys.executable, "-c", code, kind]) for kind in ("parent", "escape")]
    time.sleep(0.5)
    # pids as /proc names them: inside the keeper's PID namespace (gVisor) getpid() differs
    me = os.readlink("/proc/self")
    def seen_as(kind):
        for name in os.listdir("/proc"):
            try:
                stat = open(f"/proc/{name}/stat").read()
                cmd = open(f"/proc/{name}/cmdline", "rb").read().split(b"\\0")
            except (OSError, NotADirectoryError):
                continue
            if stat[stat.rfind(")") + 2:].split()[1] == me and kind.encode() in cmd:
                return name
    print("pids", me, *[seen_as(kind) for kind in ("parent", "escape")], flush=True)
    time.sleep(600)
    """
)


async def read_until(source, needle: bytes, timeout: float = 10) -> bytes:
    data = b""
    with anyio.fail_after(timeout):
        while needle not in data or not data.endswith(b"\n"):
            data += await source.receive()
    return data


def alive(pid: int) -> bool:
    info = proc_info(pid)
    return info is not None and not info.zombie


async def test_session_and_tree_kill_reach_escaped_children_and_grandchildren() -> None:
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", TREE)))
    try:
        line = await read_until(child.stdout, b"pids")
        pids = [int(p) for p in line.split()[1:]]
        assert proc_info(child.pid).sid == child.pid  # its own session
        tree = child.tree()
        assert set(pids) <= set(tree) and len(tree) == 4  # main, two children, one grandchild
        escaped = pids[2]
        assert proc_info(escaped).sid == escaped  # it really left the session
        result = await child.kill_tree(5)
        assert result.survivors == () and result.killed == 4
        assert child.returncode == -signal.SIGKILL
        for pid in tree:
            assert not alive(pid)
    finally:
        await child.aclose()


async def test_orphan_holding_the_pipe_neither_hides_the_exit_nor_survives() -> None:
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", TREE)))
    try:
        line = await read_until(child.stdout, b"pids")
        escaped = int(line.split()[3])
        os.kill(child.pid, signal.SIGKILL)  # the main process dies; the escaped child holds stdout
        with anyio.fail_after(2):
            assert await child.wait() == -signal.SIGKILL
        assert alive(escaped)
        # the keeper, the tree's subreaper, or its inner keeper, init of its PID namespace
        assert proc_info(escaped).ppid in (child.keeper_pid, child.inner_keeper)
        assert escaped in child.tree()
        result = await child.kill_tree(5)
        assert result.survivors == ()
        info = proc_info(escaped)
        assert info is None, "the orphan must be killed and reaped, not left a zombie"
    finally:
        await child.aclose()


async def test_tree_kill_never_reaps_someone_elses_child() -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(7)"]
    )
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", TREE)))
    try:
        await read_until(child.stdout, b"pids")
        time.sleep(0.5)  # `other` is now a zombie child of this process
        await child.kill_tree(5)
        assert other.wait(5) == 7, "the exit status of a process that is not ours was stolen"
    finally:
        await child.aclose()


async def test_wait_from_two_tasks() -> None:
    child = await LocalProcessManager().start(
        LaunchSpec(argv=(sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(5)"))
    )
    results = []

    async def waiter() -> None:
        results.append(await child.wait())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
    assert results == [5, 5, 5]
    await child.aclose()


async def test_environment_is_added_and_tagged() -> None:
    child = await LocalProcessManager().start(
        LaunchSpec(
            argv=(
                sys.executable,
                "-c",
                "import os; print(os.environ['X_ONE'], os.environ['SGLANG_SUPERVISOR_TREE'][:4])",
            ),
            env={"X_ONE": "1"},
        )
    )
    out = await read_until(child.stdout, b"1 ")
    assert out.startswith(b"1 ")
    assert await child.wait() == 0
    await child.aclose()


async def test_exit_is_seen_without_pidfds(monkeypatch) -> None:
    # Sandboxes without pidfd_open: signals go by pid, and the exit still comes from the keeper.
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    child = await LocalProcessManager().start(
        LaunchSpec(argv=(sys.executable, "-c", "import time; time.sleep(30)"))
    )
    child.send_signal(signal.SIGTERM)
    with anyio.fail_after(5):
        assert await child.wait() == -signal.SIGTERM
    await child.aclose()


def subreaper_flag() -> int | None:
    """PR_GET_CHILD_SUBREAPER, or None where the kernel has no subreapers (gVisor's older ones)."""
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(-1)
    if libc.prctl(37, ctypes.byref(value), 0, 0, 0) != 0:
        return None
    return value.value


async def test_this_process_is_not_made_a_subreaper_the_keeper_is() -> None:
    # Orphans of other code in a host process must never come to the library.
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", TREE)))
    try:
        await read_until(child.stdout, b"pids")
        assert subreaper_flag() in (0, None)
        keeper = proc_info(child.keeper_pid)
        assert keeper is not None and keeper.ppid == os.getpid()
        assert proc_info(child.pid).ppid == (child.inner_keeper or child.keeper_pid)
        assert child.keeper_pid not in child.tree()  # the keeper is ours, not the server's
    finally:
        await child.aclose()
    assert proc_info(child.keeper_pid) is None, "the keeper must leave and be reaped"


async def test_command_not_found_and_bad_cwd_are_one_line_config_errors(tmp_path) -> None:
    from supervisor import ConfigError

    with pytest.raises(ConfigError, match="command not found: '/no/such/binary'"):
        await LocalProcessManager().start(LaunchSpec(argv=("/no/such/binary",)))
    with pytest.raises(ConfigError, match="working directory does not exist"):
        await LocalProcessManager().start(
            LaunchSpec(argv=(sys.executable, "-c", "pass"), cwd=str(tmp_path / "nope"))
        )


async def test_a_killed_keeper_is_noticed_and_the_tree_is_still_found_and_killed() -> None:
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", TREE)))
    try:
        line = await read_until(child.stdout, b"pids")
        pids = [int(p) for p in line.split()[1:]]
        os.kill(child.keeper_pid, signal.SIGKILL)  # the OOM killer's mistake, say
        with anyio.fail_after(10):
            assert await child.wait() == -signal.SIGKILL  # the main is killed: status unknowable
        assert child.keeper_lost
        result = await child.kill_tree(5)
        assert result.survivors == ()
        for pid in pids:
            assert not alive(pid), f"{pid} outlived the lost keeper"
    finally:
        await child.aclose()
