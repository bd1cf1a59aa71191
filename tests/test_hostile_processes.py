"""Hostile process trees against the real CLI: escapes, daemons, and a supervisor that is killed.

The promise under test is "no process outlives its supervisor": after every ending (a stop, a
crash, a failed start, a SIGKILL of the supervisor itself, a host process using the blocking
wrapper killed outright) every process the server started is gone, counted, not assumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from supervisor._keeper import PIDNS_ENV
from supervisor._proctree import proc_info
from tests._watch import Watched
from tests.conftest import ROOT, cli, descendants, fake_argv

HOSTILE = str(ROOT / "tests" / "hostile" / "server.py")
FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2"]


def alive(pid: int, starttime: int | None = None) -> bool:
    info = proc_info(pid)
    if info is None or info.zombie:
        return False
    return starttime is None or info.starttime == starttime


def snapshot(pids: set[int]) -> dict[int, int]:
    """pid -> start time, so that a later check never mistakes a reused pid for a survivor."""
    found = {}
    for pid in pids:
        info = proc_info(pid)
        if info is not None and not info.zombie:
            found[pid] = info.starttime
    return found


def survivors(tree: dict[int, int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    left = [p for p, t in tree.items() if alive(p, t)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p, t in tree.items() if alive(p, t)]
    return left


def read_pid(path: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return int(path.read_text())


def daemon_check(pidfile: Path) -> tuple[int, int | None]:
    """The daemon's pid and start time (None: already gone, which only a fast ending allows)."""
    pid = read_pid(pidfile)
    info = proc_info(pid)
    return pid, None if info is None or info.zombie else info.starttime


def kill_if_alive(pid: int, starttime: int | None) -> None:
    if starttime is not None and alive(pid, starttime):
        os.kill(pid, signal.SIGKILL)


def hostile_run(
    port: int, *flags: str, cli_flags: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Watched:
    return Watched(
        cli(
            "run",
            "--port",
            str(port),
            "--startup-timeout",
            "20",
            "--stop-timeout",
            "2",
            "--ready-line",
            "hostile: listening",
            *cli_flags,
            "--",
            sys.executable,
            HOSTILE,
            "--port",
            str(port),
            *flags,
            env=env,
        )
    )


#: How the keeper holds the tree: a subreaper (Linux), or a PID namespace of its own (where the
#: kernel refuses subreapers: gVisor); forced here by the keeper's variable.
KEEPERS = {"subreaper": {}, "pid-namespace": {PIDNS_ENV: "1"}}


@pytest.mark.parametrize("keeper", sorted(KEEPERS))
@pytest.mark.parametrize("pipes", ["held", "closed"])
@pytest.mark.parametrize("ending", ["stop", "crash", "failed-start"])
def test_a_double_forked_setsid_daemon_with_no_environment_dies_with_the_server(
    port: int, tmp_path: Path, ending: str, pipes: str, keeper: str
) -> None:
    pidfile = tmp_path / "daemon.pid"
    flags = ["--daemon", str(pidfile)]
    if pipes == "closed":
        flags.append("--daemon-closes-pipes")
    if ending == "crash":
        flags += ["--crash-after", "3.0"]  # time enough to be serving on a loaded machine
    if ending == "failed-start":
        flags.append("--crash-before")
    daemon = None
    with hostile_run(port, *flags, env=KEEPERS[keeper]) as w:
        try:
            daemon = daemon_check(pidfile)
            if daemon[1] is None:
                assert ending == "failed-start", "the daemon died before the server did"
            else:
                info = proc_info(daemon[0])
                try:
                    assert info is not None and info.sid == info.pgrp != w.popen.pid  # it left
                    with open(f"/proc/{daemon[0]}/environ", "rb") as f:
                        assert f.read() == b""  # and took no token with it
                except (ProcessLookupError, AssertionError):
                    # a failed start may end the tree (the daemon too) while we look at it; a
                    # process on its way out can refuse /proc reads before it shows as a zombie
                    if ending != "failed-start" or survivors({daemon[0]: daemon[1]}, within=2.0):
                        raise
            if ending == "stop":
                w.wait_for("state=serving", 20)
                w.signal(signal.SIGTERM)
            rc, _ = w.wait_exit(20)
            assert rc == {"stop": 0, "crash": 1, "failed-start": 3}[ending], w.output()
            if daemon[1] is not None:
                assert survivors({daemon[0]: daemon[1]}, within=2.0) == [], (
                    "the daemon outlived its supervisor"
                )
        finally:
            if daemon is not None:
                kill_if_alive(*daemon)


def test_a_crash_is_seen_at_once_while_a_daemon_holds_the_pipes(port: int, tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    with hostile_run(port, "--daemon", str(pidfile), "--crash-after", "3.0") as w:
        daemon = daemon_check(pidfile)
        try:
            w.wait_for("state=serving", 20)
            crashed = w.wait_for("hostile: crashing after serving", 20)
            rc, exited = w.wait_exit(20)
            assert rc == 1, w.output()
            assert exited - crashed < 2.0, f"the exit took {exited - crashed:.2f} s to be seen"
        finally:
            kill_if_alive(*daemon)


@pytest.mark.parametrize("extra", ["escape", "daemon"])
def test_sigkill_of_the_supervisor_kills_the_whole_server(
    port: int, tmp_path: Path, extra: str
) -> None:
    if extra == "escape":  # the fake's scheduler that calls setsid() and has no PDEATHSIG
        argv = fake_argv(port, *FAST, "--tp-size", "2", "--fake-fault", "escape")
    else:
        argv = [sys.executable, HOSTILE, "--port", str(port), "--daemon", str(tmp_path / "d")]
    w = Watched(cli("run", "--port", str(port), "--ready-line", "fired up", "--", *argv))
    with w:
        w.wait_for("state=serving", 30)
        tree = snapshot(descendants(w.popen.pid))
        # main + two schedulers (one escaped), or main + the daemon (+ the keeper, if any)
        assert len(tree) >= (3 if extra == "escape" else 2), tree
        w.signal(signal.SIGKILL)
        rc, _ = w.wait_exit(10)
        assert rc == -signal.SIGKILL
        try:
            assert survivors(tree, within=5.0) == [], "processes outlived a SIGKILLed supervisor"
        finally:
            for pid, start in tree.items():
                kill_if_alive(pid, start)


HOST = textwrap.dedent(
    """
    import sys, time
    from supervisor import HealthPolicy, LaunchSpec, LivenessPolicy, SupervisorConfig
    from supervisor.blocking import BlockingSupervisor
    from supervisor.testing import fake_command
    port = int(sys.argv[1])
    cfg = SupervisorConfig(
        launch=LaunchSpec(argv=tuple(fake_command(port, "--fake-load-time", "0.3",
            "--fake-warmup-time", "0.2", "--tp-size", "2", "--fake-fault", "escape"))),
        port=port, health=HealthPolicy(startup_timeout=30, initial_backoff=0.05, max_backoff=0.2),
        liveness=LivenessPolicy(enabled=False), ready_line="fired up")
    sup = BlockingSupervisor(cfg)
    sup.start()
    print("host: serving", flush=True)
    time.sleep(600)
    """
)


def test_sigkill_of_a_host_using_the_blocking_wrapper_kills_the_server(port: int) -> None:
    # The loop runs in a portal thread: the tree must not depend on which thread spawned it.
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    with Watched(host) as w:
        w.wait_for("host: serving", 30)
        tree = snapshot(descendants(host.pid))
        assert len(tree) >= 3, tree  # main and two schedulers (one escaped), + the keeper
        w.signal(signal.SIGKILL)
        w.wait_exit(10)
        try:
            assert survivors(tree, within=5.0) == [], "processes outlived the SIGKILLed host"
        finally:
            for pid, start in tree.items():
                kill_if_alive(pid, start)


def zombies() -> int:
    """Zombies anywhere on the machine (in a gVisor sandbox: ours, since all is ours)."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = proc_info(int(name))
            count += info is not None and info.zombie
    return count


def test_a_storm_of_crashing_servers_leaves_no_zombie(port: int) -> None:
    """Ten servers that crash after serving, one after another: every process reaped."""
    before = zombies()
    for _ in range(10):
        with hostile_run(port, "--crash-after", "0.2") as w:
            rc, _ = w.wait_exit(20)
            assert rc in (1, 3), w.output()
    deadline = time.monotonic() + 5
    while zombies() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert zombies() <= before
