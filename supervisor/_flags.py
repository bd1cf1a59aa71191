"""Argument types for the command line that refuse what would silently mean something else.

`--startup-timeout 0` once meant 3600 s and `--health-path ''` meant `/health`: a value that is
zero, negative, NaN, infinite, empty or out of range is refused where argparse parses it, as
one line naming the flag (exit 2). Shared by `run` and the deployment commands. A cluster's
status addresses are parsed here too (`addresses`), with the same rules as `ClusterSpec`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ._cluster import parse_address

__all__ = ["addresses", "count", "env_name", "index", "port", "seconds", "text", "url_path"]


def seconds(*, zero: bool = False) -> Callable[[str], float]:
    """A finite number of seconds, > 0 (or >= 0 where zero means "at once")."""
    bound = ">= 0" if zero else "> 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    return parse


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
    return value


def count(text: str) -> int:
    """A whole number >= 1."""
    return _whole(text, 1)


def index(text: str) -> int:
    """A whole number >= 0 (a rank)."""
    return _whole(text, 0)


def addresses(text: str) -> tuple[str, ...]:
    """Comma-separated `HOST:PORT` addresses (IPv6 in brackets), at least two, in rank order."""
    items = tuple(item.strip() for item in text.split(","))
    if len(items) < 2:
        raise argparse.ArgumentTypeError(
            f"give one HOST:PORT per rank, comma-separated, at least two; got {text!r}"
        )
    for item in items:
        try:
            parse_address(item)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{item!r}: {exc}") from None
    return items


def port(*, zero: bool = False) -> Callable[[str], int]:
    """A TCP port, 1-65535 (or 0 where it means "any free port")."""
    low = 0 if zero else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"must be a port from {low} to 65535, got {text!r}")
        return value

    return parse


def text(text: str) -> str:
    """A non-empty string (an empty one would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def url_path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/', got {text!r}")
    return text


def env_name(text: str) -> str:
    if not text or "=" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"not an environment variable name: {text!r}")
    return text
