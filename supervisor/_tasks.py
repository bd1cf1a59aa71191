"""Two task-group habits the supervisor needs: race a phase, and keep its groups to itself.

`race` runs one phase (health wait, warmup, liveness) against the main process's exit and a stop
request; whichever comes first wins, and a crash outranks a stop, because an operator must learn
that the server died. `single_error` turns a group raised by the library's own task group back
into the one error it carries, so callers `except ValueError`, not `except* ValueError`.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Race", "race", "single_error"]

T = TypeVar("T")


class Race(enum.Enum):
    DONE = "done"
    EXITED = "exited"
    STOP = "stop"


async def race(
    fn: Callable[[], Awaitable[T]], *, exited: anyio.Event, stop: anyio.Event
) -> tuple[Race, T | None]:
    """Run `fn` until it returns, `exited` is set, or `stop` is set; say which came first."""
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
        tg.start_soon(body)
    kinds = {k for k, _ in winner}
    for kind in (Race.EXITED, Race.STOP):
        if kind in kinds:
            return kind, None
    return winner[0]


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
