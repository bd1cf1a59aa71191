"""Benchmark: a stalled engine with a request in flight, from the stall to the forced exit.

    .venv/bin/python benchmarks/stall.py [--trials N] [--out benchmarks/RESULTS-stall.md]
    .venv/bin/python benchmarks/stall.py --fault detokenizer-stall   # RESULTS-request-hang.md

`--fault detokenizer-stall` is the other hang (sglang #33858): after the warmups and one chat
the fake's detokenizer stops, the scheduler still finishes every request, nothing runs or
waits, and no client gets an answer. Progress counters cannot see it (no work waits); ours
finds it with one canary request, the probe-only design by `/health` (503 after 20 s).

Two designs, measured side by side in one run, each with its DEFAULT settings:

- ours: hang detection by progress (the engine's `/metrics` counters frozen while work waits)
  beside the sparse liveness probe;
- probe-only: the same supervisor with `--no-progress`, which is how every peer detects a hang
  (Kubernetes probes, TGI, Modal's examples): `/health` every 30 s, four failures in a row.

The engine is the fake SGLang (`qwen3-8b` profile, `--fake-fault stall`): it serves, then its
scheduler stops for good 10 s after its ready line with the port open; `/health` then times out
after SGLang's 20 s and `/metrics` keeps answering with frozen counters. A chat request is sent
once the stall has struck, so there is work in flight. The clock runs from the fake's own
"stalled" log line to the supervisor's exit (exit code 1 expected).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.testing import free_port  # noqa: E402

#: fault -> (the fake's flags, the line it logs when the hang strikes)
FAULTS = {
    "stall": (["--fake-arg=--fake-fault=stall"], "fake: scheduler stalled"),
    "detokenizer-stall": (
        ["--fake-arg=--fake-fault=detokenizer-stall", "--fake-arg=--fake-stall-after-requests=5"],
        "fake: detokenizer stopped",
    ),
}
FAULT = "stall"


def one_trial(progress: bool, timeout: float) -> tuple[float, int, str]:
    """Seconds from the stall to the supervisor's exit, its exit code, and the report's cause."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "supervisor",
        "serve",
        "--profile",
        "qwen3-8b",
        "--fake",
        "--port",
        str(port),
        *FAULTS[FAULT][0],
        "--fake-arg=--fake-load-time=0.5",
        "--fake-arg=--fake-warmup-time=0.3",
    ]
    if not progress:
        argv.append("--no-progress")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    stalled_at: list[float] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if FAULTS[FAULT][1] in line and not stalled_at:
                stalled_at.append(time.monotonic())
            if "state=serving" in line and FAULT == "detokenizer-stall":
                serving.set()

    serving = threading.Event()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if FAULT == "detokenizer-stall":  # the 5th client generation (4 warmups) stops it
        serving.wait(60)
        body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hi"}]}
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
    deadline = time.monotonic() + 60
    while not stalled_at and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not stalled_at:
        proc.kill()
        raise RuntimeError("the fake never stalled:\n" + "".join(lines[-30:]))

    def in_flight() -> None:  # a request the stalled engine takes and never finishes
        body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hi"}]}
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=timeout)
        except httpx.HTTPError:
            pass

    threading.Thread(target=in_flight, daemon=True).start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"no exit within {timeout:g} s of the stall") from None
    took = time.monotonic() - stalled_at[0]
    reader.join(timeout=5)
    cause = next((ln.strip() for ln in lines if "server died after serving" in ln), "?")
    return took, code, cause


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--fault", choices=sorted(FAULTS), default="stall")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    global FAULT
    FAULT = args.fault
    name = "stall" if FAULT == "stall" else "request-hang"
    args.out = args.out or ROOT / "benchmarks" / f"RESULTS-{name}.md"
    rows = []
    for name, progress, timeout in (("ours", True, 120.0), ("probe-only", False, 400.0)):
        results = [one_trial(progress, timeout) for _ in range(args.trials)]
        times = [r[0] for r in results]
        rows.append((name, times, [r[1] for r in results], results[-1][2]))
        print(f"{name}: {times} exit codes {[r[1] for r in results]}", flush=True)
    ours, base = statistics.median(rows[0][1]), statistics.median(rows[1][1])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        f"# {FAULT} -> forced exit, with a request in flight",
        "",
        f"Run {stamp} on {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Command: `.venv/bin/python benchmarks/stall.py --fault {FAULT}`. Both designs with default settings, "
        "measured in the same run (see the script's docstring).",
        "",
        "| design | median | each trial | exit codes | ratio (probe-only / ours) |",
        "|---|---|---|---|---|",
    ]
    for name, times, codes, _ in rows:
        ratio = f"{base / ours:.1f}x" if name == "ours" else "1.0x"
        each = ", ".join(f"{t:.1f} s" for t in times)
        out.append(f"| {name} | {statistics.median(times):.1f} s | {each} | {codes} | {ratio} |")
    out += ["", "Crash report summaries:", ""]
    out += [f"- {name}: `{cause}`" for name, _, _, cause in rows]
    args.out.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
