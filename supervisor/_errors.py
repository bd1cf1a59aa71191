"""The supervisor's one exception tree.

Callers catch at the level they care about::

    SupervisorError
    ├── ConfigError              bad input: fix the config or the command line (CLI exit 2)
    │   └── PortInUse            the port was taken before the server was spawned
    ├── IllegalTransition        a bug: an event that the state machine does not allow
    ├── RequestFailed            one HTTP exchange got no usable answer (`_http_client`, the one
    │                            seam that translates httpx/anyio/OS errors; callers turn it into
    │                            their own verdict: a failed probe, a failed warmup, ...)
    ├── StartupError             the server never reached `serving` (CLI exit 3)
    │   ├── ChildExited          the child exited while starting
    │   ├── HealthTimeout        no healthy answer before the startup deadline
    │   ├── ForeignListener      what answered on the port is not the server's (a stale server)
    │   ├── WarmupFailed         a warmup payload got no valid answer
    │   ├── StoppedBeforeServing a stop was asked for before the server was serving
    │   ├── RankFailed           a cluster rank failed or never joined (`_membership`)
    │   └── SnapshotError        a sleep or wake step of a memory snapshot failed (`_snapshot`)
    └── ServerDied               the server died or stopped answering after serving (CLI exit 1)

Errors about the child carry what an operator needs to act: the exit status and the last lines of
its log, already redacted. Code that adds context to one adds a note (`add_note`) and re-raises:
rebuilding it would drop a subclass's own fields.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cluster_peers import PeerFailure

__all__ = [
    "ChildExited",
    "ConfigError",
    "ForeignListener",
    "HealthTimeout",
    "IllegalTransition",
    "PortInUse",
    "RankFailed",
    "ServerDied",
    "StartupError",
    "StoppedBeforeServing",
    "SupervisorError",
    "WarmupFailed",
    "describe_returncode",
]


def describe_returncode(returncode: int | None) -> str:
    """Say how a process ended the way an operator reads it: `exit code 1` or `signal SIGKILL`."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class SupervisorError(Exception):
    """Base of every error the supervisor raises on purpose."""


class ConfigError(SupervisorError, ValueError):
    """The configuration cannot work; the message is one line that says what to fix."""


class PortInUse(ConfigError):
    """Something already listens on the server's port (or the metrics port): nothing was started.

    A configuration error (exit 2) rather than a failed start: no server ran, and what must
    change is the machine or the flags (stop the stale server, or pick another port).
    """


class IllegalTransition(SupervisorError):
    """An event arrived that the state machine does not allow in its current state."""


class StartupError(SupervisorError):
    """The server did not reach `serving`; `tail` holds the last lines of its log."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        tail: Sequence[str] = (),
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.tail = tuple(tail)
        self.cause = cause


class ChildExited(StartupError):
    """The child exited before it was serving."""


class HealthTimeout(StartupError):
    """The health path never answered 200 before the startup deadline."""


class ForeignListener(StartupError):
    """The health path answered, but from a socket held outside the server's tree."""


class StoppedBeforeServing(StartupError):
    """`stop()` won before the server was serving; the tree is dead, `returncode` says how.

    Raised to callers that wait for `serving` (`tg.start(sup.run)`, `async with`,
    `BlockingSupervisor.start()`); `run()` awaited directly returns a stopped `Outcome` instead.
    """


class WarmupFailed(StartupError):
    """At least one warmup payload got no valid answer; `results` says which and why."""

    def __init__(self, message: str, *, results: Sequence[object] = (), **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.results = tuple(results)


class RankFailed(StartupError):
    """A rank of the cluster failed, or never joined, before this rank was serving (exit 3).

    `failed_rank` names it; `failure` is the `PeerFailure` that said so.
    """

    def __init__(self, message: str, *, failure: PeerFailure, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.failure = failure
        self.failed_rank = failure.failed_rank


class ServerDied(SupervisorError):
    """The server died, or stopped answering, after it was serving."""

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report
