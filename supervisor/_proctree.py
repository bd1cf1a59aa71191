"""Find a server's whole process tree on Linux, wherever its members went.

SGLang's schedulers can be reparented away from their parent and survive it, holding ~100 GB of
GPU memory each (sglang #23627). A process group or a session alone misses a child that called
`setsid()`, and a parent-pid walk misses an orphan once its parent is gone. So a process belongs
to the tree when any of these holds:

- it is a known member: the keeper, the main process, or one seen in the tree before (pid and
  start time, so a reused pid is not mistaken for it);
- it is in the session the supervisor created for the server;
- its environment carries the tree's token (every descendant inherits it unless it clears its
  environment on purpose);
- its parent belongs to the tree. The keeper is the tree's subreaper, so every orphan of the tree,
  however it escaped, has the keeper as its parent and is found by this rule alone.

Only `/proc` is read; nothing here signals or waits.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["ProcInfo", "children_of", "find_tree", "proc_info", "supports_proc"]


def supports_proc() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    sid: int
    starttime: int
    state: str

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name sits in parentheses and may itself contain spaces and parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcInfo(
            pid=pid,
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            sid=int(fields[3]),
            starttime=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def _all_procs() -> Iterator[ProcInfo]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            info = proc_info(int(name))
            if info is not None:
                yield info


def children_of(pid: int) -> list[ProcInfo]:
    """The direct children of `pid`, zombies included.

    A zombie is a child that died and was not reaped yet: the one trace a process that lived
    shorter than a poll leaves behind, which a watch of live processes alone would never see.
    """
    return [p for p in _all_procs() if p.ppid == pid]


def _has_token(pid: int, token: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return token in f.read().split(b"\0")
    except OSError:  # gone, or another user's process: not ours either way
        return False


def find_tree(
    *,
    sid: int,
    token: bytes,
    known: Iterable[tuple[int, int]] = (),
    exclude: Iterable[int] = (),
) -> dict[int, ProcInfo]:
    """Every process of the tree, zombies included, keyed by pid (see the module docstring)."""
    excluded = {os.getpid(), *exclude}
    known_set = set(known)
    procs = [p for p in _all_procs() if p.pid not in excluded]
    members: dict[int, ProcInfo] = {}
    for p in procs:
        if (
            (sid > 0 and p.sid == sid)
            or (p.pid, p.starttime) in known_set
            or (not p.zombie and _has_token(p.pid, token))
        ):
            members[p.pid] = p
    # Close over parent links: a child of a member is a member, whatever it did to its session.
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child.pid not in members:
                members[child.pid] = child
                stack.append(child.pid)
    return members
