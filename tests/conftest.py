"""Shared fixtures and the test tiers. The autouse `no_leftovers` fails any test that leaves a
process behind, and any test of the fast tier that starts one at all.

Tiers: a test that starts a process is marked `process` (every test of the modules in
`PROCESS_MODULES`, and single tests elsewhere by `@pytest.mark.process`); the real engine's are
`real_engine` too. The rest is the fast tier (`-m "not process"`), the inner loop: in-process,
real sockets on 127.0.0.1 allowed, no process. It is enforced, not trusted: in a fast test,
`subprocess.Popen`, `os.fork` and `os.posix_spawn` raise.

Several test sessions may share one machine, so "ours" means this session's: a descendant of this
pytest process, or a process whose environment carries this session's mark (set here, inherited by
everything the tests start). A process of another session is never counted, let alone killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor._proctree import proc_info
from supervisor.testing import fake_command, free_port

ROOT = Path(__file__).resolve().parent.parent

#: Inherited by every process the tests start: how `no_leftovers` tells this session's from others'.
SESSION_MARK_ENV = "SUPERVISOR_TEST_SESSION"
os.environ[SESSION_MARK_ENV] = uuid.uuid4().hex
_MARK = f"{SESSION_MARK_ENV}={os.environ[SESSION_MARK_ENV]}".encode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def descendants(root: int) -> set[int]:
    """Pids below `root` by parent links, zombies included."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = proc_info(int(name))
            if info is not None:
                children.setdefault(info.ppid, []).append(info.pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), ()):
            if pid not in found:
                found.add(pid)
                stack.append(pid)
    return found


def _ours() -> list[int]:
    """Live processes this session started: below this pytest, or carrying the session's mark."""
    me = os.getpid()
    below = descendants(me)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        info = proc_info(pid)
        if info is None or (info.zombie and info.ppid != me):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                marked = _MARK in f.read().split(b"\0")
        except OSError:
            continue
        if marked or pid in below:
            found.append(pid)
    return found


#: Modules whose every test starts processes (the fake, the CLI, the keeper, SGLang itself).
PROCESS_MODULES = frozenset(
    {
        "test_cli_blackbox",
        "test_deploy_commands",
        "test_differential",
        "test_engine",
        "test_examples",
        "test_fake_extensions",
        "test_fake_sglang",
        "test_gpu_faults",
        "test_gvisor",
        "test_hostile_io",
        "test_hostile_processes",
        "test_local_process",
        "test_real_engine",
        "test_real_engine_edges",
        "test_serve_scenarios",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rpartition(".")[2] if module is not None else ""
        if name in PROCESS_MODULES or item.get_closest_marker("real_engine"):
            item.add_marker(pytest.mark.process)


def _no_process(*args: object, **kwargs: object) -> None:
    raise AssertionError(
        "a fast-tier test started a process: mark it @pytest.mark.process "
        "(or list its module in tests/conftest.py:PROCESS_MODULES)"
    )


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("process") is None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(subprocess.Popen, "__init__", _no_process)
            for name in ("fork", "posix_spawn", "posix_spawnp", "forkpty"):
                if hasattr(os, name):
                    mp.setattr(os, name, _no_process)
            yield
        return
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
