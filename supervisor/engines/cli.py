"""Subcommands of the SGLang edge: filled in by the engine module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def add_commands(sub: Any, add_flags: Callable[..., None]) -> None:
    return None
