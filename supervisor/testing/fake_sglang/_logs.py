"""SGLang's log format: `[%Y-%m-%d %H:%M:%S] message` on stderr, ` TPn` inside the brackets.

Every line the fake writes goes through `log`, under one lock, flushed at once, so that lines of
concurrent threads (HTTP handlers, the drain, the main thread) never interleave mid-line.
"""

from __future__ import annotations

import sys
import threading
import time

READY_LINE = "The server is fired up and ready to roll!"

_log_lock = threading.Lock()


def log(message: str, rank: int | None = None) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    tag = f" TP{rank}" if rank is not None else ""
    with _log_lock:
        sys.stderr.write(f"[{stamp}{tag}] {message}\n")
        sys.stderr.flush()
