"""Benchmark: false alarms. Servers that are fine must be left alone, by ours as by today's.

    .venv/bin/python benchmarks/false_alarms.py [--out benchmarks/RESULTS-false-alarms.md]

Two healthy shapes that a hang detector could mistake for a hang (issue #19), each on the fake
SGLang (`qwen3-8b` profile, default supervisor settings: stall window 40 s, canary after 15 s),
served for 100 s, for both designs side by side in one run:

- idle: no request at all (the engine's counters stand still the whole time; no canary may go);
- a slow stream: one streamed chat of 900 tokens at 0.1 s a token (90 s of steady, slow progress
  read by its client as it comes);

ours (progress watch, canary, liveness) against probe-only (`--no-progress`: `/health` every 30 s,
four failures), today's behaviour elsewhere. Counted: recycles (exit 1 or a crash report) and the
supervisor's own requests to the engine other than the scrape and the probe (canaries).
A long prefill is not here: the fake has no chunked prefill to imitate one (each chunk of a real
one moves `sglang:realtime_tokens_total`, which is what keeps it clear of the stall window).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import machine_line  # noqa: E402

from supervisor.testing import free_port  # noqa: E402

SERVE_S = 100.0


def start(port: int, progress: bool, *fake: str) -> tuple[subprocess.Popen[bytes], list[str]]:
    argv = [
        sys.executable, "-m", "supervisor", "serve", "--profile", "qwen3-8b", "--fake",
        "--port", str(port), "--fake-arg=--fake-load-time=0.5", "--fake-arg=--fake-warmup-time=0.3",
        *fake,
    ]  # fmt: skip
    if not progress:
        argv.append("--no-progress")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def stream(port: int, done: list[int]) -> None:
    body = {
        "model": "qwen3-8b",
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": 900,
        "ignore_eos": True,
        "stream": True,
    }
    chunks = 0
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=150) as r:
            for line in r.iter_lines():
                chunks += line.startswith("data: {")
    except httpx.HTTPError:
        pass
    done.append(chunks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-false-alarms.md")
    args = parser.parse_args()
    runs = {}
    for design, progress in (("ours", True), ("probe-only", False)):
        for shape in ("idle", "slow stream"):
            port = free_port()
            fake = ("--fake-arg=--fake-token-time=0.1",) if shape == "slow stream" else ()
            runs[(design, shape)] = (port, *start(port, progress, *fake))
    for _port, _, lines in runs.values():
        deadline = time.monotonic() + 120
        while not any("state=serving" in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    streams: dict[tuple[str, str], list[int]] = {}
    for key, (port, _, _) in runs.items():
        if key[1] == "slow stream":
            streams[key] = []
            threading.Thread(target=stream, args=(port, streams[key]), daemon=True).start()
    time.sleep(SERVE_S)
    rows = []
    for key, (_, proc, lines) in runs.items():
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        out = "".join(lines)
        recycled = (not alive) or "CRASH REPORT" in out
        canaries = out.count("sending one canary")
        chunks = streams.get(key, [None])[0] if streams.get(key) else None
        rows.append((key, recycled, code, canaries, chunks))
    table = [
        "| design | shape | recycled (false alarm) | exit code at our SIGTERM | canaries sent |"
        " stream chunks |",
        "|---|---|---|---|---|---|",
    ]
    for (design, shape), recycled, code, canaries, chunks in rows:
        table.append(
            f"| {design} | {shape} | {'YES' if recycled else 'no'} | {code} | {canaries} | "
            f"{'-' if chunks is None else chunks} |"
        )
    alarms = sum(1 for r in rows if r[1])
    text = [
        "# False alarms: healthy servers left alone (issue #19)",
        "",
        machine_line(),
        "",
        f"Each server served {SERVE_S:g} s with the supervisor's default settings, the four side "
        "by side in one run. `python benchmarks/false_alarms.py` reproduces it.",
        "",
        *table,
        "",
        f"False alarms: {alarms} of {len(rows)}. Ours sent its canary to neither (no request was "
        "left unanswered: idle has none open, the stream keeps producing)."
        if alarms == 0
        else f"False alarms: {alarms} of {len(rows)}: see the rows marked YES.",
    ]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
