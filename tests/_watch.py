"""Watch a real process's output line by line, with the time each line arrived, and count its tree.

`tree()` snapshots every process below the watched one (pid and start time); `gone()` then
says which of them are still alive, so a test asserts "no process outlived it" by counting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


class Watched:
    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._done = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, text: str, timeout: float) -> float:
        """Return the time the first line containing `text` arrived; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, line in self.lines:
                    if text in line:
                        return t
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    break
                self._cond.wait(remaining)
        raise AssertionError(f"{text!r} not seen within {timeout} s; output:\n{self.output()}")

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout} s; output:\n{self.output()}"
            ) from None
        exited = time.monotonic()
        self._reader.join(5)
        return rc, exited

    def tree(self) -> dict[int, int]:
        """pid -> start time of every live process below the watched one, right now."""
        from supervisor._proctree import proc_info
        from tests.conftest import descendants

        found = {}
        for pid in descendants(self.popen.pid):
            info = proc_info(pid)
            if info is not None and not info.zombie:
                found[pid] = info.starttime
        return found

    @staticmethod
    def keepers(tree: dict[int, int]) -> int:
        """How many of `tree` are keepers (ours): one, or two where a PID namespace holds it."""
        count = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    count += b"_keeper.py" in f.read()
            except OSError:
                pass
        return count

    @staticmethod
    def alive(tree: dict[int, int], within: float = 2.0) -> list[int]:
        """Those of `tree` still alive (same pid, same start time) after up to `within` s."""
        from supervisor._proctree import proc_info

        def left() -> list[int]:
            out = []
            for pid, start in tree.items():
                info = proc_info(pid)
                if info is not None and not info.zombie and info.starttime == start:
                    out.append(pid)
            return out

        deadline = time.monotonic() + within
        still = left()
        while still and time.monotonic() < deadline:
            time.sleep(0.05)
            still = left()
        return still

    def signal(self, signum: int = signal.SIGTERM) -> None:
        os.kill(self.popen.pid, signum)

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Last resort for a failed test: kill the CLI (its own handlers then clean the tree)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(5)
