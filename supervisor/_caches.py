"""The cache report: per compiled-artifact cache, files and bytes before the spawn and once serving.

A cold start of a large model is minutes of weights and then whatever the engine compiles; a
start that finds its kernels in the cache skips the second part. So every start counts each
cache directory it was told of (the engine names them: `SupervisorConfig.caches`) before the
child is spawned and again at `serving`, and says per cache "hit" (nothing new) or "miss" (how
many files and bytes were added), in one line, with a gauge per cache and moment. A miss where
the caller expected a warm cache (`expect_warm`) is a warning naming the cache.

Counting must not cost what it saves: it stats entries and never reads or hashes a file, stops
at `MAX_ENTRIES` per cache (and says so), never follows a symlink out of the directory, and runs
in a worker thread so a slow network volume never blocks the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import anyio.to_thread

__all__ = ["MAX_ENTRIES", "CacheCount", "count_cache", "describe_caches", "snapshot_caches"]

MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class CacheCount:
    files: int
    bytes: int
    truncated: bool = False  # stopped at MAX_ENTRIES: the numbers are a floor


def count_cache(
    path: str, limit: int = MAX_ENTRIES, *, skip: frozenset[str] = frozenset()
) -> CacheCount | None:
    """Files and bytes under `path` (None where it does not exist), not under `skip`."""
    if not os.path.isdir(path):
        return None
    files = size = seen = 0
    stack = [path]
    while stack:
        top = stack.pop()
        try:
            entries = os.scandir(top)
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > limit:
                    return CacheCount(files, size, truncated=True)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if os.path.abspath(entry.path) not in skip:
                            stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # gone meanwhile
    return CacheCount(files, size)


async def snapshot_caches(caches: Mapping[str, str]) -> dict[str, CacheCount | None]:
    """Every cache counted, off the event loop."""
    if not caches:
        return {}

    def count_all() -> dict[str, CacheCount | None]:
        # a cache inside another (SGLang's keyed directory on DeepGEMM's volume) counts once
        paths = {name: os.path.abspath(path) for name, path in caches.items()}
        return {
            name: count_cache(path, skip=frozenset(p for n, p in paths.items() if n != name))
            for name, path in caches.items()
        }

    return await anyio.to_thread.run_sync(count_all)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def describe_caches(
    before: Mapping[str, CacheCount | None], after: Mapping[str, CacheCount | None]
) -> tuple[str, list[str]]:
    """One summary line, and the caches that missed (files were added while starting)."""
    parts, missed = [], []
    for name in after:
        old, new = before.get(name), after[name]
        if new is None:
            parts.append(f"{name}=absent")
            continue
        floor = "+" if new.truncated else ""
        added_files = new.files - (old.files if old else 0)
        added_bytes = new.bytes - (old.bytes if old else 0)
        if added_files > 0 or added_bytes > 0:
            missed.append(name)
            parts.append(
                f"{name}=miss (+{added_files} files, +{_size(added_bytes)}; "
                f"now {new.files}{floor} files, {_size(new.bytes)})"
            )
        else:
            parts.append(f"{name}=hit ({new.files}{floor} files, {_size(new.bytes)})")
    return "cache report: " + " ".join(parts), missed
