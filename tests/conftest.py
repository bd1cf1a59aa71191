"""Shared fixtures. The autouse `no_leftovers` fails any test that leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor._local import TREE_TOKEN_ENV
from supervisor._proctree import proc_info
from supervisor.testing import fake_command, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _ours() -> list[int]:
    """Processes that a test started: tagged by a supervisor, children of pytest, or the fake."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        info = proc_info(pid)
        if info is None:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        tagged = f"{TREE_TOKEN_ENV}=".encode() in env
        if info.zombie and info.ppid != me:
            continue
        if tagged or info.ppid == me or b"supervisor.testing.fake_sglang" in cmd:
            found.append(pid)
    return found


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    before = set(_ours())
    yield
    deadline = time.monotonic() + 3.0
    left = [p for p in _ours() if p not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in _ours() if p not in before]
    if left:
        desc = []
        for pid in left:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")[:120].decode()
                desc.append(f"{pid}: {cmd}")
            except OSError:
                desc.append(str(pid))
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, os.WNOHANG)
            except (ProcessLookupError, ChildProcessError, PermissionError):
                pass
        pytest.fail("test left processes behind:\n" + "\n".join(desc))


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def python() -> str:
    return sys.executable


def fake_argv(port: int, *flags: str) -> list[str]:
    return fake_command(port, *flags)


def cli(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    """Start the supervisor CLI as a real process with line-buffered text output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )
