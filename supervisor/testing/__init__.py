"""Test helpers for code that deploys SGLang: a fake server process and a processless manager.

`fake_sglang` is a real process that behaves like SGLang 0.5.23 (see its package docstring and
docs/FIDELITY.md), so a deployment can be tested end to end without a GPU. It keeps SGLang's own
timings by default (a drain takes up to 5 s to start, `/health` about 1 s); pass
`--fake-time-scale 0.1` to shrink them for fast tests. `InMemoryProcessManager` drives the
supervisor's logic without any process, for fast unit tests.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._memory import InMemoryChild, InMemoryProcessManager

__all__ = ["InMemoryChild", "InMemoryProcessManager", "fake_command", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_command(port: int, *flags: str, python: str | None = None) -> list[str]:
    """The argv that starts the fake SGLang server on `port` with extra `flags`."""
    return [
        python or sys.executable,
        "-m",
        "supervisor.testing.fake_sglang",
        "--port",
        str(port),
        *flags,
    ]


def __getattr__(name: str) -> Any:
    """The in-memory manager loads on first use: the fake server, started under this package
    hundreds of times by the tests, needs none of the core it is built on."""
    if name in ("InMemoryChild", "InMemoryProcessManager"):
        from . import _memory

        return getattr(_memory, name)
    raise AttributeError(f"module 'supervisor.testing' has no attribute {name!r}")
