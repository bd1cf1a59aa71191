"""The server's life as data: states, events and the one table that links them.

Everything that decides a transition lives in this file, and this file knows nothing of
processes, HTTP or clocks (h11's rule for `_state.py`). An event the table does not allow raises
`IllegalTransition` and changes nothing.

    starting --healthy--> warm --warmed--> serving <-----------------woken-----------------+
                                             |                                                |
                                             +--sleep--> sleeping --slept--> asleep --wake--> waking

    to dead:      starting, warm: failed/exited      serving: exited/unhealthy
                  sleeping, waking: failed/exited    asleep: exited
    to stopping:  stop, from every state drawn above; then stopping --stopped/exited--> dead

`stopping` earns its place: it tells a requested stop from a crash (exit code 0 versus 1), turns
the liveness watch off while SGLang drains, and shows in metrics while a drain takes its time.

The sleep/wake path exists for memory snapshots (docs/SNAPSHOTS.md). Each state says what is safe:

- `sleeping`: a release of GPU memory is in flight. Liveness is off: SGLang's /health runs a real
  generation, and a generation that meets released memory kills the scheduler. A failed release
  is `failed`: what the server still holds is unknown, so it is not served again.
- `asleep`: memory is released and the HTTP pool is closed. The only state in which a snapshot
  may be taken.
- `waking`: after a restore, memory is being resumed and a generation verified. A failure here is
  `failed`, the same event as a failed startup: the replica never served after its restore, so
  it ends as a startup failure (exit code 3), never as a silent bad replica.

The main process's exit is an event in every live state, so a death is seen at once whatever the
server was doing; a stop is accepted everywhere too, so an operator can always end it.
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
    SLEEPING = "sleeping"  # releasing GPU memory before a snapshot; liveness off
    ASLEEP = "asleep"  # released, pool closed: safe to snapshot
    WAKING = "waking"  # resuming memory and verifying a generation after a restore
    STOPPING = "stopping"
    DEAD = "dead"


class Event(enum.Enum):
    HEALTHY = "healthy"  # the health path answered 200
    WARMED = "warmed"  # every warmup payload was answered (or warmup failures are warnings)
    FAILED = "failed"  # gave up before serving: startup timeout, warmup, or a sleep/wake step
    EXITED = "exited"  # the main process exited
    UNHEALTHY = "unhealthy"  # the liveness budget was spent
    STOP = "stop"  # a stop was requested
    STOPPED = "stopped"  # the requested stop has finished
    SLEEP = "sleep"  # a sleep was requested: liveness paused, memory release sent
    SLEPT = "slept"  # memory released and connections closed
    WAKE = "wake"  # a wake was requested (after a restore): resume sent
    WOKEN = "woken"  # memory resumed, health and a generation verified


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
        Event.SLEEP: State.SLEEPING,
        Event.UNHEALTHY: State.DEAD,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.SLEEPING: {
        Event.SLEPT: State.ASLEEP,
        Event.FAILED: State.DEAD,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.ASLEEP: {
        Event.WAKE: State.WAKING,
        Event.EXITED: State.DEAD,
        Event.STOP: State.STOPPING,
    },
    State.WAKING: {
        Event.WOKEN: State.SERVING,
        Event.FAILED: State.DEAD,
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
