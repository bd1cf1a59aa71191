"""/dev/shm before a start: enough room for NCCL and SGLang, and no dead server's segments.

sglang #40723: after one scheduler crash, leaked segments filled a persistent `/dev/shm` and every
restart died (SIGBUS, NCCL ENOSPC). SGLang tears its tree down with SIGKILL, which skips every
unlink, and names its segments so that a sweep can tell whose they were
(`srt/utils/stale_shm_cleanup.py` `make_shm_name`: `sgl_shm_<kind>_<pid>_<rand>`, and
`multi_tokenizer_args_<pid>`); its own sweep runs only in SGLang's CI (`SGLANG_IS_IN_CI`). So the
preflight does what that sweep would, but refuses instead of deleting: a segment whose creator is
dead is named, with the command that removes it. A recycled pid reads as alive, so a mistake errs
towards letting a leak through, never towards refusing a healthy start (SGLang's bias too).
Families without a pid (`nccl-`, `cuda.shm.`, `sglang_loads_`) cannot be attributed and are only
counted.

Room: NCCL's shared-memory transport and SGLang's broadcast queues live in `/dev/shm`; Docker's
default of 64 MB breaks multi-GPU NCCL, and SGLang's own docs run its image with `--shm-size 32g`.
The need used here is a judgement, not a measured minimum: 1 GiB of free space per GPU on a node
with several GPUs, 64 MiB for one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENV_SHM_DIR", "inspect_shm", "shm_need_bytes", "stale_segments"]

#: Where to look instead of /dev/shm (a test's private directory; a sandbox that mounts it
#: elsewhere). NCCL and SGLang always use /dev/shm itself.
ENV_SHM_DIR = "SGLANG_SUPERVISOR_SHM_DIR"

_PID_STAMPED = "sgl_shm_"
_PID_LAST = "multi_tokenizer_args_"
_UNATTRIBUTED = ("nccl-", "cuda.shm.", "sglang_loads_")
_GIB = 1 << 30
_MIB = 1 << 20


def creator_pid(name: str) -> int | None:
    """The pid in a segment's name, as 0.5.23's sweep reads it (`_creator_pid`), or None."""
    try:
        if name.startswith(_PID_STAMPED):
            parts = name.split("_")
            return int(parts[-2]) if len(parts) >= 4 and int(parts[-2]) > 0 else None
        if name.startswith(_PID_LAST):
            pid = int(name.rsplit("_", 1)[-1])
            return pid if pid > 0 else None
    except ValueError:
        return None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def stale_segments(
    root: Path, alive: Callable[[int], bool] = _alive
) -> tuple[list[tuple[str, int]], int]:
    """(name, bytes) of every segment whose creator is dead, and how many cannot be attributed."""
    stale: list[tuple[str, int]] = []
    unattributed = 0
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return [], 0
    for entry in entries[:100_000]:  # a hostile directory cannot make this endless
        pid = creator_pid(entry.name)
        if pid is None:
            unattributed += entry.name.startswith(_UNATTRIBUTED)
            continue
        if pid == os.getpid() or alive(pid):
            continue
        try:
            stale.append((entry.name, entry.stat().st_size))
        except OSError:
            pass  # gone meanwhile
    return stale, unattributed


def shm_need_bytes(gpus_per_node: int) -> int:
    return _GIB * gpus_per_node if gpus_per_node > 1 else 64 * _MIB


def inspect_shm(
    gpus_per_node: int,
    root: Path | None = None,
    *,
    room: bool = True,
    alive: Callable[[int], bool] = _alive,
) -> tuple[str, str]:
    """(status, detail) for the preflight's `shm` check: "ok", "fail" or "skip". `room`: also
    require the free space the GPUs need (off for a fake engine, which needs none)."""
    root = root or Path(os.environ.get(ENV_SHM_DIR) or "/dev/shm")
    if not root.is_dir():
        return "skip", f"{root} does not exist here"
    try:
        st = os.statvfs(root)
    except OSError as exc:
        return "skip", f"cannot read {root} ({exc.strerror or exc})"
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    need = shm_need_bytes(gpus_per_node)
    stale, unattributed = stale_segments(root, alive)
    if stale:
        total = sum(b for _, b in stale)
        return (
            "fail",
            f"{len(stale)} segment(s) of a dead SGLang in {root} ({total / _MIB:.1f} MiB, first: "
            f"{stale[0][0]}): remove them (rm {root}/sgl_shm_* {root}/multi_tokenizer_args_* "
            "once no SGLang runs here) or start on a fresh container",
        )
    gpus = f"{gpus_per_node} GPUs" if gpus_per_node > 1 else "one GPU"
    if room and free < need:
        return (
            "fail",
            f"{root} has {free / _MIB:.0f} MiB free of {size / _MIB:.0f} MiB; {gpus} need "
            f"{need / _MIB:.0f} MiB for NCCL and SGLang: give the container a larger /dev/shm "
            "(Docker: --shm-size 32g)",
        )
    extra = f"; {unattributed} segment(s) of no known owner" if unattributed else ""
    return "ok", f"{free / _GIB:.1f} GiB free of {size / _GIB:.1f} GiB{extra}"
