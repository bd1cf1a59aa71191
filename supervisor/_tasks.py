"""Two task-group habits the supervisor needs: race a phase, and keep its groups to itself.

`race` runs one phase (health wait, warmup, serving watch) against the main process's exit, a
stop request and any other events the phase names (a peer's failure in a cluster, a sleep
request while serving); whichever comes first wins. When several come at once, a crash outranks
everything (an operator must learn that the server died), a peer's failure outranks a stop (the
cluster is broken either way, and the report must name the rank), and the phase's own result
outranks a sleep request (a server found dead is not put to sleep).

`single_error` turns a group raised by the library's own task group back into the one error it
carries, so callers `except ValueError`, not `except* ValueError`.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Race", "race", "single_error"]

T = TypeVar("T")


class Race(enum.Enum):
    DONE = "done"  # the phase's own function returned
    EXITED = "exited"  # the main process exited
    STOP = "stop"  # a stop was requested
    PEER = "peer"  # a peer of the cluster failed, or is stopping
    SLEEP = "sleep"  # a sleep was requested (serving only)


#: Who wins when several contenders finished in the same turn of the loop.
_PRIORITY = (Race.EXITED, Race.PEER, Race.STOP, Race.DONE, Race.SLEEP)


async def race(
    fn: Callable[[], Awaitable[T]],
    *,
    exited: anyio.Event,
    stop: anyio.Event,
    others: Sequence[tuple[anyio.Event, Race]] = (),
) -> tuple[Race, T | None]:
    """Run `fn` until it returns or one of the events is set; say which came first.

    `others` adds events of the phase's choosing, each with the `Race` kind it stands for. The
    value is `fn`'s result when it won (`Race.DONE`), None otherwise.
    """
    winner: list[tuple[Race, Any]] = []

    async with anyio.create_task_group() as tg:

        async def body() -> None:
            value = await fn()
            winner.append((Race.DONE, value))
            tg.cancel_scope.cancel()

        async def on_event(event: anyio.Event, kind: Race) -> None:
            await event.wait()
            winner.append((kind, None))
            tg.cancel_scope.cancel()

        tg.start_soon(on_event, exited, Race.EXITED)
        tg.start_soon(on_event, stop, Race.STOP)
        for event, kind in others:
            tg.start_soon(on_event, event, kind)
        tg.start_soon(body)
    found = dict(winner)
    for kind in _PRIORITY:
        if kind in found:
            return kind, found[kind]
    raise AssertionError("a race ended with no winner")  # pragma: no cover


def single_error(
    group: BaseExceptionGroup[BaseException], *, prefer: type[BaseException] | None = None
) -> BaseException | None:
    """The one error a (nested) group carries, `prefer` first; None if it carries several."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if prefer is not None:
        preferred = [e for e in leaves if isinstance(e, prefer)]
        if preferred:
            return preferred[0]
    return leaves[0] if len(leaves) == 1 else None
