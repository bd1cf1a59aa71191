"""Benchmark: a server's death to the supervisor's process exit, through the CLI.

    .venv/bin/python benchmarks/death_to_exit.py            # writes RESULTS-death-to-exit.md
    .venv/bin/python benchmarks/death_to_exit.py --quick

The child (`three_children.py`) serves, then is SIGKILLed while three children of its own live
on. Ours: `python -m supervisor run` must see the death, kill the three, write the report and
exit; the clock stops when the benchmark reaps the CLI process, which is what a platform waits
for before it recycles the container. Baseline, in the same run: the seed's design run as a
script (`seed_design.py`: a monitor thread polling every 10 s, then `os._exit(1)`, the three
children left behind; the benchmark kills them). `run.py`'s "death -> forced exit" row measures
the library's death handler in-process; this one adds the CLI's own exit.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import Row, machine_line, markdown_table  # noqa: E402

from supervisor.testing import free_port  # noqa: E402

CHILD = ROOT / "benchmarks" / "three_children.py"
READY = "bench child: listening"


def child_pid(port: int, timeout: float = 30) -> int:
    """The pid of the benchmark child serving `port`, found in /proc (it is a grandchild)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(entry, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[1:3] == [str(CHILD).encode(), str(port).encode()]:  # not who runs it
                return int(entry.split("/")[2])
        time.sleep(0.05)
    raise RuntimeError(f"no benchmark child on port {port}")


def one(command: list[str], port: int, ready: str) -> float:
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{command[:3]} ended before {ready!r}")
        pid = child_pid(port)
        time.sleep(0.3)
        start = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        proc.wait(60)
        return time.perf_counter() - start
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the seed leaves the three behind
        except ProcessLookupError:
            pass
        proc.wait()


def ours(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "supervisor",
        "run",
        "--port",
        str(port),
        "--ready-line",
        READY,
        "--",
        sys.executable,
        str(CHILD),
        str(port),
    ]


def seed(port: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "benchmarks" / "seed_design.py"),
        str(port),
        "--",
        sys.executable,
        str(CHILD),
        str(port),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-death-to-exit.md"
    )
    args = parser.parse_args()
    trials, base_trials = (5, 2) if args.quick else (20, 4)
    mine = [one(ours(p), p, "state=serving") for p in (free_port() for _ in range(trials))]
    base = [one(seed(p), p, "[seed] serving") for p in (free_port() for _ in range(base_trials))]
    row = Row(
        "death -> CLI process exit",
        "s",
        mine,
        base,
        "median in tens of ms",
        statistics.median(mine) < 0.1,
    )
    lines = [
        "# Death to exit, through the CLI",
        "",
        f"{machine_line()}; `{' '.join(sys.argv)}`.",
        "",
        *markdown_table([row]),
        "",
        "Ours, each trial, s: " + ", ".join(f"{x:.3f}" for x in mine),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
