"""Benchmarks: the supervisor against the seed's design, measured side by side in one run.

    .venv/bin/python benchmarks/run.py            # writes benchmarks/RESULTS.md (about 6 minutes)
    .venv/bin/python benchmarks/run.py --quick    # fewer trials, a 15 s idle window

Each row gives the median and p99 of our design and of the baseline (`seed_design.py`: Popen, a
readline log thread, a health loop sleeping 5 s, sequential warmups, a monitor thread polling
every 10 s), their ratio, and the goal from the issue.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import seed_design  # noqa: E402

from supervisor import (  # noqa: E402
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    StartupError,
    State,
    StopPolicy,
    StreamSink,
    Supervisor,
    SupervisorConfig,
    WarmupPayload,
)
from supervisor.lowlevel import run_warmups  # noqa: E402
from supervisor.testing import free_port  # noqa: E402

FAKE = [sys.executable, "-m", "supervisor.testing.fake_sglang"]
UP_AT = re.compile(r"status Up at epoch=([0-9.]+)")


# ----------------------------------------------------------------------------- stats
def pct(values: Sequence[float], q: float) -> float:
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class Row:
    name: str
    unit: str
    ours: list[float]
    base: list[float]
    goal: str
    met: bool
    note: str = ""

    def cells(self) -> list[str]:
        om, op = statistics.median(self.ours), pct(self.ours, 0.99)
        bm, bp = statistics.median(self.base), pct(self.base, 0.99)
        ratio = bm / om if om else float("inf")
        return [
            self.name,
            f"{om:.4g} / {op:.4g} {self.unit}",
            f"{bm:.4g} / {bp:.4g} {self.unit}",
            f"{ratio:.1f}x",
            f"{len(self.ours)} / {len(self.base)}",
            self.goal,
            "yes" if self.met else "NO",
        ]


class Quiet:
    def child(self, stream: str, text: str) -> None: ...

    def supervisor(self, line: str) -> None: ...


def fake_config(port: int, *flags: str, liveness: bool = False) -> SupervisorConfig:
    return SupervisorConfig(
        launch=LaunchSpec(argv=(*FAKE, "--port", str(port), *flags)),
        port=port,
        health=HealthPolicy(startup_timeout=60),
        liveness=LivenessPolicy(enabled=liveness),
        stop=StopPolicy(stop_timeout=5),
        ready_line="fired up",
    )


def start_fake(port: int, *flags: str) -> tuple[subprocess.Popen[bytes], list[str]]:
    """The fake under the seed's design: Popen, stdout piped, a readline log thread."""
    lines: list[str] = []
    proc = subprocess.Popen(
        [*FAKE, "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            lines.append(raw.decode(errors="replace"))

    threading.Thread(target=reader, daemon=True).start()
    return proc, lines


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_quick_health(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if seed_design.health_ok(port):
            return
        time.sleep(0.05)
    raise RuntimeError("fake never became healthy")


# ----------------------------------------------------------------------------- 1. death
def bench_death(trials: int, base_trials: int) -> Row:
    ours: list[float] = []
    for _ in range(trials):
        port = free_port()
        died_at: list[float] = []

        async def one() -> None:
            sup = Supervisor(
                fake_config(
                    port, "--fake-load-time", "0", "--fake-warmup-time", "0", "--tp-size", "2"
                ),
                sink=Quiet(),
                on_death=lambda r: died_at.append(time.perf_counter()),
            )
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                await anyio.sleep(0.2)
                t0 = time.perf_counter()
                os.kill(sup.child.pid, signal.SIGKILL)
            ours.append(died_at[0] - t0)

        anyio.run(one)
    base: list[float] = []
    for _ in range(base_trials):
        port = free_port()
        proc, _ = start_fake(port, "--fake-load-time", "0", "--fake-warmup-time", "0")
        wait_quick_health(port)
        detected = threading.Event()
        detected_at: list[float] = []

        def monitor() -> None:  # the seed's monitor, recording instead of os._exit(1)
            while True:
                time.sleep(seed_design.MONITOR_INTERVAL_S)
                if proc.poll() is not None:
                    detected_at.append(time.perf_counter())
                    detected.set()
                    return

        threading.Thread(target=monitor, daemon=True).start()
        time.sleep(0.2 + (len(base) * 1.7) % seed_design.MONITOR_INTERVAL_S)  # spread the phase
        t0 = time.perf_counter()
        kill_group(proc)
        detected.wait(30)
        base.append(detected_at[0] - t0)
    return Row("death -> forced exit", "s", ours, base, "p99 <= 0.05 s", pct(ours, 0.99) <= 0.05)


# ----------------------------------------------------------------------------- 2. healthy -> warm
def bench_healthy_to_warm(trials: int, base_trials: int) -> Row:
    flags = ("--fake-load-time", "0.3", "--fake-warmup-time", "0.4", "--fake-health-time", "0.005")
    ours: list[float] = []
    for _ in range(trials):
        port = free_port()
        warm_at: list[float] = []

        async def one() -> None:
            sup = Supervisor(fake_config(port, *flags), sink=Quiet())
            sup.observe(lambda t: warm_at.append(time.time()) if t.new is State.WARM else None)
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                sup.stop()
            up = float(UP_AT.search("\n".join(sup.tail.lines())).group(1))
            ours.append(warm_at[0] - up)

        anyio.run(one)
    base: list[float] = []
    for _ in range(base_trials):
        port = free_port()
        proc, lines = start_fake(port, *flags)
        healthy_at = seed_design.wait_for_health(port, timeout=30)
        time.sleep(0.1)
        up = float(UP_AT.search("".join(lines)).group(1))
        base.append(healthy_at - up)
        kill_group(proc)
    return Row("health OK -> warm", "s", ours, base, "p99 <= 0.05 s", pct(ours, 0.99) <= 0.05)


# ----------------------------------------------------------------------------- 3. warmups
def bench_warmup(trials: int, base_trials: int) -> Row:
    port = free_port()
    proc, _ = start_fake(
        port, "--fake-load-time", "0", "--fake-warmup-time", "0", "--fake-gen-time", "1.0"
    )
    try:
        wait_quick_health(port)
        bodies = [
            {"model": "m", "messages": [{"role": "user", "content": f"warm {i}"}]} for i in range(4)
        ]
        payloads = [
            WarmupPayload(f"w{i}", "/v1/chat/completions", b, expect=("content",))
            for i, b in enumerate(bodies)
        ]
        ours: list[float] = []
        for _ in range(trials):

            async def one() -> float:
                async with httpx.AsyncClient(trust_env=False) as client:
                    start = time.perf_counter()
                    results = await run_warmups(client, f"http://127.0.0.1:{port}", payloads)
                    assert all(r.ok for r in results)
                    return time.perf_counter() - start

            ours.append(anyio.run(one))
        base = [seed_design.warmup_sequential(port, bodies) for _ in range(base_trials)]
    finally:
        kill_group(proc)
    return Row("4 warmups of 1 s", "s", ours, base, "<= 1.1 s", max(ours) <= 1.1)


# ----------------------------------------------------------------------------- 4. log flood
def flood_result(path: Path) -> dict:
    return json.loads(path.read_text())


def bench_flood(
    trials: int, lines: int, mode: str, ready_line: str | None = None
) -> tuple[Row, ...]:
    """The child's own write time for `lines` lines, under our pump and into `cat > /dev/null`.

    `mode` is the child's buffering: `line` flushes every line (Python logging), `block` writes
    8 KiB at a time (C stdio, `print` to a pipe), so each read brings ~1,700 lines at once.
    `ready_line` adds the supervisor's ready-line observer, as the CLI's `--ready-line` and the
    profiles run it.
    """
    child = [sys.executable, str(ROOT / "benchmarks" / "flood_child.py"), str(lines)]
    cat_times, cat_worst, ours, ours_worst, seed, seed_worst = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(trials):
            # baseline: the child writes into `cat > /dev/null`
            res = Path(tmp) / f"cat{i}.json"
            cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            subprocess.run([*child, str(res), mode], stderr=cat.stdin, check=True)
            cat.stdin.close()
            cat.wait()
            cat_times.append(flood_result(res)["seconds"])
            cat_worst.append(flood_result(res)["max_write_s"])

            # ours: the supervisor's pump (decode, redact, tail, metrics, sink) into /dev/null
            res = Path(tmp) / f"ours{i}.json"
            with open(os.devnull, "w") as devnull:
                cfg = SupervisorConfig(
                    launch=LaunchSpec(argv=(*child, str(res), mode)),
                    port=free_port(),
                    health=HealthPolicy(startup_timeout=300),
                    liveness=LivenessPolicy(enabled=False),
                    api_key="not-in-the-log",
                    ready_line=ready_line,
                )

                async def one(cfg: SupervisorConfig = cfg, devnull=devnull) -> None:
                    try:
                        await Supervisor(cfg, sink=StreamSink(devnull)).run()
                    except StartupError:
                        pass  # the child exits once done: a "startup" exit, as expected

                anyio.run(one)
            ours.append(flood_result(res)["seconds"])
            ours_worst.append(flood_result(res)["max_write_s"])

            # the seed: Popen + readline thread
            res = Path(tmp) / f"seed{i}.json"
            proc = subprocess.Popen(
                [*child, str(res), mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            with open(os.devnull, "wb") as devnull:
                t = threading.Thread(target=seed_design.stream_logs, args=(proc.stdout, devnull))
                t.start()
                proc.wait()
                t.join()
            seed.append(flood_result(res)["seconds"])
            seed_worst.append(flood_result(res)["max_write_s"])
    ratio = statistics.median(ours) / statistics.median(cat_times)
    seed_ratio = statistics.median(seed) / statistics.median(cat_times)
    ready = f", --ready-line {ready_line!r}" if ready_line else ""
    write = Row(
        f"log flood, {lines:,} lines, {mode}-buffered child{ready}: its write time (baseline: cat)",
        "s",
        ours,
        cat_times,
        "<= 1.5x cat",
        ratio <= 1.5,
        note=f"ours/cat = {ratio:.2f}x; the seed's readline thread: median "
        f"{statistics.median(seed):.3f} s ({seed_ratio:.2f}x cat)",
    )
    if mode != "line" or ready_line:
        return (write,)
    worst = Row(
        "log flood, line-buffered: longest single blocked write (baseline: cat)",
        "s",
        ours_worst,
        cat_worst,
        "reported",
        True,
        note=f"seed readline thread: max {max(seed_worst) * 1000:.1f} ms",
    )
    return write, worst


# ----------------------------------------------------------------------------- 5. idle
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_idle(seconds: float) -> tuple[Row, Row]:
    p1, p2 = free_port(), free_port()
    flags = ["--fake-load-time", "0.2", "--fake-warmup-time", "0.2", "--fake-health-time", "1.0"]
    ours = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--port",
            str(p1),
            "--ready-line",
            "fired up",
            "--",
            *FAKE,
            "--port",
            str(p1),
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    seed = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "seed_design.py"),
            str(p2),
            "--",
            *FAKE,
            "--port",
            str(p2),
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_quick_health(p1)
        wait_quick_health(p2)
        time.sleep(6)  # both past their startup (the seed's health loop sleeps 5 s)
        c_ours, c_seed = cpu_seconds(ours.pid), cpu_seconds(seed.pid)
        rss_ours, rss_seed = [], []
        end = time.time() + seconds
        while time.time() < end:
            rss_ours.append(rss_mb(ours.pid))
            rss_seed.append(rss_mb(seed.pid))
            time.sleep(min(5, max(0.1, end - time.time())))
        cpu_ours = (cpu_seconds(ours.pid) - c_ours) / seconds * 100
        cpu_seed = (cpu_seconds(seed.pid) - c_seed) / seconds * 100
    finally:
        ours.send_signal(signal.SIGTERM)
        ours.wait(30)
        try:
            os.killpg(seed.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        seed.wait()
    cpu = Row(
        f"idle serving, default liveness: CPU over {seconds:.0f} s",
        "% of a core",
        [cpu_ours],
        [cpu_seed],
        "<= 0.5 %",
        cpu_ours <= 0.5,
    )
    rss = Row("idle serving: RSS", "MB", rss_ours, rss_seed, "<= 80 MB", max(rss_ours) <= 80)
    return cpu, rss


# ----------------------------------------------------------------------------- main
def markdown_table(rows: Sequence[Row]) -> list[str]:
    """The results table every benchmark file shares: one line per row, ours beside the baseline."""
    header = [
        "benchmark",
        "ours median / p99",
        "baseline median / p99",
        "ratio (baseline/ours)",
        "trials (ours / baseline)",
        "goal",
        "met",
    ]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return table + ["| " + " | ".join(r.cells()) + " |" for r in rows]


def machine_line() -> str:
    """When and on what a run was made: every results file opens with it."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    q = args.quick
    steps: list[tuple[str, Callable[[], object]]] = [
        ("death", lambda: bench_death(5 if q else 20, 3 if q else 8)),
        ("healthy->warm", lambda: bench_healthy_to_warm(5 if q else 20, 3 if q else 8)),
        ("warmup", lambda: bench_warmup(3 if q else 7, 2 if q else 5)),
        ("flood (line)", lambda: bench_flood(3 if q else 7, 1_000_000, "line")),
        ("flood (block)", lambda: bench_flood(3 if q else 7, 1_000_000, "block")),
        ("flood (block, ready line)", lambda: bench_flood(3, 1_000_000, "block", "fired up")),
        ("idle", lambda: bench_idle(15 if q else 60)),
    ]
    rows: list[Row] = []
    for name, step in steps:
        print(f"running {name} ...", flush=True)
        result = step()
        rows.extend(result if isinstance(result, tuple) else [result])
    table = markdown_table(rows)
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            f"{machine_line()}. "
            f"{'Quick run.' if q else 'Full run.'} Command: `.venv/bin/python benchmarks/run.py"
            f"{' --quick' if q else ''}`.",
            "",
            "Baseline: the seed's design (`benchmarks/seed_design.py`), measured in the same run.",
            "",
            *table,
            "",
            *notes,
            "",
        ]
    )
    args.out.write_text(
        text + "\nWhat the numbers mean, and why a goal is missed: benchmarks/README.md.\n"
    )
    print(text)


if __name__ == "__main__":
    main()
