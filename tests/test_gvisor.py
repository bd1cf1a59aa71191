"""What is different under gVisor, asserted where it is true: inside the sandbox (`.ci/gvisor`).

Debian's runsc (2022) refuses PR_SET_CHILD_SUBREAPER, so an orphan would go to the sandbox's
init; the keeper then holds the tree in a PID namespace of its own (`_keeper.py`), whose init it
is. These tests run only in the gVisor tier (`SUPERVISOR_GVISOR_TIER=1`, set by `.ci/gvisor`),
and there they first prove that they are inside gVisor, so the tier cannot pass on the host.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from supervisor import LaunchSpec
from supervisor._proctree import proc_info
from supervisor.lowlevel import LocalProcessManager

pytestmark = pytest.mark.skipif(
    not os.environ.get("SUPERVISOR_GVISOR_TIER"), reason="runs inside gVisor only: .ci/gvisor"
)


def test_this_is_gvisor() -> None:
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    assert "gVisor" in dmesg, "the gVisor tier is not running inside gVisor"


def test_the_subreaper_is_refused_here() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) != 0  # PR_SET_CHILD_SUBREAPER


@pytest.mark.anyio
async def test_the_keeper_holds_the_tree_in_a_pid_namespace_and_orphans_come_to_it() -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        print('orphan', os.readlink('/proc/self'), flush=True); time.sleep(600)\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    child = await LocalProcessManager().start(LaunchSpec(argv=(sys.executable, "-c", code)))
    try:
        assert child.inner_keeper is not None
        data = b""
        with anyio.fail_after(10):
            while b"\n" not in data:
                data += await child.stdout.receive()
        orphan = int(data.split()[1])
        with anyio.fail_after(5):
            while (info := proc_info(orphan)) is not None and info.ppid != child.inner_keeper:
                await anyio.sleep(0.05)
        assert info is not None and info.ppid == child.inner_keeper
        result = await child.kill_tree(5)
        assert result.survivors == ()
        assert proc_info(orphan) is None, "the orphan must be killed and reaped"
    finally:
        await child.aclose()
    assert not Path(f"/proc/{child.inner_keeper}").exists()
