"""The server's life as data: states, events and the one table that links them.

Everything that decides a transition lives in this file, and this file knows nothing of
processes, HTTP or clocks (h11's rule for `_state.py`). An event the table does not allow raises
`IllegalTransition` and changes nothing.

    starting --healthy--> warm --warmed--> serving
        |                   |                  |
        +--- failed/exited -+--- failed/exited-+--- exited/unhealthy ---> dead
        |                   |                  |
        +------ stop -------+------ stop ------+--> stopping --stopped/exited--> dead

`stopping` earns its place: it tells a requested stop from a crash (exit code 0 versus 1), turns
the liveness watch off while SGLang drains, and shows in metrics while a drain takes its time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ._errors import IllegalTransition

__all__ = ["TRANSITIONS", "Event", "State", "StateMachine", "Transition"]


class State(enum.Enum):
    STARTING = "starting"
    WARM = "warm"
    SERVING = "serving"
    STOPPING = "stopping"
    DEAD = "dead"


class Event(enum.Enum):
    HEALTHY = "healthy"  # the health path answered 200
    WARMED = "warmed"  # every warmup payload was answered (or warmup failures are warnings)
    FAILED = "failed"  # startup gave up: timeout or warmup failure
    EXITED = "exited"  # the main process exited
    UNHEALTHY = "unhealthy"  # the liveness budget was spent
    STOP = "stop"  # a stop was requested
    STOPPED = "stopped"  # the requested stop has finished


TRANSITIONS: dict[State, dict[Event, State]] = {
    State.STARTING: {
        Event.HEALTHY: State.WARM,
        Event.FAILED: State.DEAD,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.WARM: {
        Event.WARMED: State.SERVING,
        Event.FAILED: State.DEAD,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.SERVING: {
        Event.UNHEALTHY: State.DEAD,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.STOPPING: {
        Event.STOPPED: State.DEAD,
        Event.EXITED: State.DEAD,
    },
    State.DEAD: {},
}


class Transition:
    """One recorded change: what it was, why, and the caller's note (e.g. an exit status)."""

    __slots__ = ("event", "new", "note", "old")

    def __init__(self, old: State, event: Event, new: State, note: str = "") -> None:
        self.old, self.event, self.new, self.note = old, event, new, note

    def __repr__(self) -> str:
        return f"Transition({self.old.value} -{self.event.value}-> {self.new.value})"


Observer = Callable[[Transition], None]


class StateMachine:
    """Holds the current state, applies the table and tells observers of every change."""

    def __init__(self) -> None:
        self._state = State.STARTING
        self._history: list[Transition] = []
        self._observers: list[Observer] = []

    @property
    def state(self) -> State:
        return self._state

    @property
    def history(self) -> tuple[Transition, ...]:
        return tuple(self._history)

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Register `observer`; the returned function unregisters it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def allows(self, event: Event) -> bool:
        return event in TRANSITIONS[self._state]

    def fire(self, event: Event, note: str = "") -> Transition:
        try:
            new = TRANSITIONS[self._state][event]
        except KeyError:
            raise IllegalTransition(
                f"can't handle event {event.value!r} in state {self._state.value!r}"
            ) from None
        transition = Transition(self._state, event, new, note)
        self._state = new
        self._history.append(transition)
        for observer in list(self._observers):
            observer(transition)
        return transition
