"""Cold start against warm start, phase by phase, on the real SGLang 0.5.23 (CPU) and the fake.

    .venv/bin/python benchmarks/cold_start.py              # 3 trials each; RESULTS-cold-start.md
    .venv/bin/python benchmarks/cold_start.py --trials 1   # a quick look

Issue #20 ("Measure"). Each trial, for each engine, runs `serve --profile cpu-tiny` twice
through the CLI (`--fake` for the fake, the tiny GPT-2 for the real engine):

- cold: a fresh, empty `SGLANG_CACHE_DIR` and a fresh `XDG_CACHE_HOME`. SGLang 0.5.23 points
  Triton, TorchInductor, CUDA's `nv`, TileLang and FlashInfer's workspace under
  `SGLANG_CACHE_DIR` itself (`srt/environ.py` `third_party_cache_defaults`, applied with
  `setdefault` by `sglang/__init__.py` before torch is imported), so those variables are removed
  from the child's environment, and the redirect gives each its fresh directory; a fresh
  `XDG_CACHE_HOME` catches whatever else writes a user cache (it is counted as `other`);
- warm: the same two directories, kept from the cold start just before.

From each start: the supervisor's own startup timeline (its `startup timeline:` summary line,
cross-checked against the `supervisor_startup_phase_seconds` gauges of `--metrics-port`), the wall time
from launching the CLI to `state=serving` (that adds the CLI's imports and preflight), the cache
report's line, and the files the start added to each directory (counted here, independently).
The cache report's overhead is `snapshot_caches` timed on the directories those starts filled
(twice per start: before the spawn and at serving), against the start's total; plus one count of
a large tree (the SGLang environment's `lib/`, ~55,000 files) to show how it scales.

Only one real engine runs on the machine at a time: before each real start the script waits
until `pgrep -f sglang.launch_server` finds nothing (another job's real-engine tests), polling
every 20 s for up to 25 minutes. Everything started is stopped (SIGTERM, then SIGKILL to its
session) and reaped, and the script checks that nothing with its port is left.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import Row, machine_line, markdown_table  # noqa: E402

from supervisor._caches import count_cache, snapshot_caches  # noqa: E402  (not exported)
from supervisor.engines.sglang_check import find_sglang_python  # noqa: E402
from supervisor.testing import free_port  # noqa: E402

#: Variables that would pin a third-party cache outside SGLANG_CACHE_DIR (the redirect is a
#: setdefault): removed from the child's environment so that "fresh" means fresh.
PINNED = (
    "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH", "TILELANG_CACHE_DIR",
    "FLASHINFER_WORKSPACE_BASE", "SGLANG_JIT_CACHE_DIR", "SGLANG_DG_CACHE_DIR",
    "SGLANG_CUTE_AOT_CACHE_DIR",
)  # fmt: skip
SUMMARY = re.compile(r"startup timeline: (.*)$")
PAIR = re.compile(r"([a-z][a-z0-9_.]*)=(-?[0-9.]+)s")
GAUGE = re.compile(r'^supervisor_startup_phase_seconds\{phase="([^"]+)"\} (\S+)$', re.M)
METRICS_AT = re.compile(r"supervisor metrics on (http://\S+/metrics)")
#: The supervisor's own phases, in the order a start reaches them (the timeline sorts by time).
OURS = ("spawn", "load_weight", "weights_loaded", "engine_ready", "http_up", "ready_line",
        "port_open", "healthy", "total")  # fmt: skip
#: SGLang's own numbers (its `Engine startup timings` and `Load weight end` lines).
ENGINE = ("engine.load_weight", "engine.kv_cache_allocation", "engine.scheduler_e2e",
          "engine.cuda_graph.decode", "engine.tokenizer_e2e")  # fmt: skip
#: The hand-written reading of the results file starts here; a re-run keeps it.
READING = "## Reading"
PHASE_MEANING = {
    "spawn": "spawn -> `Load weight begin` (imports, process start)",
    "load_weight": "`Load weight begin` -> `end`",
    "weights_loaded": "weights loaded -> `Engine startup timings`",
    "engine_ready": "startup timings -> Uvicorn up",
    "http_up": "Uvicorn up -> ready line (SGLang's own warmup)",
    "ready_line": "ready line -> port open",
    "port_open": "port open -> /health 200",
    "healthy": "healthy -> serving (4 warmups, cache report)",
    "total": "timeline total (spawn -> serving)",
}


@dataclass
class Start:
    engine: str
    kind: str  # cold | warm
    wall: float  # CLI launched -> state=serving seen
    before_spawn: float  # CLI launched -> `spawned pid=` seen (imports, preflight)
    phases: dict[str, float]
    gauges: dict[str, float]
    report: str
    added: dict[str, int]  # files this start added, per directory (counted here)
    entries: str  # what SGLANG_CACHE_DIR holds after the start (top level)
    load: float  # 1-minute load average when it began
    others_running: bool  # another job's process tree seen (pytest) when it began
    lines: list[str] = field(default_factory=list)


class CountRow(Row):
    """A row of counts: cold / warm is no ratio when the warm start added nothing."""

    def cells(self) -> list[str]:
        cells = super().cells()
        if not statistics.median(self.ours):
            cells[3] = "- (warm: 0)"
        return cells


def real_engine_running() -> bool:
    done = subprocess.run(["pgrep", "-f", "sglang.launch_server"], capture_output=True, text=True)
    return bool(done.stdout.strip())


def wait_for_machine(limit_s: float = 25 * 60, poll_s: float = 20) -> None:
    """Only one real engine at a time: wait until no other one runs."""
    deadline = time.monotonic() + limit_s
    while real_engine_running():
        if time.monotonic() > deadline:
            raise SystemExit("another real SGLang engine ran for 25 minutes: giving up")
        print("  another real engine is running; waiting 20 s", flush=True)
        time.sleep(poll_s)


def ci_running() -> bool:
    done = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
    return bool(done.stdout.strip())


def leftovers(port: int) -> list[int]:
    """Pids whose command line names `port` (ours: nothing else uses these free ports)."""
    found = []
    needle = str(port).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in argv and any(b"supervisor" in a or b"sglang" in a for a in argv):
            found.append(int(entry))
    return found


def files_in(path: Path) -> int:
    got = count_cache(str(path))
    return got.files if got else 0


def one_start(engine: str, kind: str, dirs: dict[str, Path], model: Path | None) -> Start:
    if engine == "real":
        wait_for_machine()
    port = free_port()
    argv = [sys.executable, "-m", "supervisor", "serve", "--profile", "cpu-tiny"]
    argv += ["--port", str(port), "--metrics-port", "0"]
    argv += ["--fake"] if engine == "fake" else ["--model-path", str(model)]
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    env.update(
        SGLANG_CACHE_DIR=str(dirs["sglang"]),
        XDG_CACHE_HOME=str(dirs["other"]),
        PYTHONUNBUFFERED="1",
    )
    before = {name: files_in(p) for name, p in dirs.items()}
    load, others = os.getloadavg()[0], ci_running()
    lines: list[str] = []
    serving = threading.Event()
    t0 = time.monotonic()
    wall = [0.0, 0.0]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
        start_new_session=True,
    )  # fmt: skip

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "] spawned pid=" in line and not wall[1]:
                wall[1] = time.monotonic() - t0
            if "] state=serving from=" in line and not serving.is_set():
                wall[0] = time.monotonic() - t0
                serving.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    gauges: dict[str, float] = {}
    try:
        if not serving.wait(600):
            raise SystemExit(f"{engine} {kind}: no serving in 600 s; last lines: {lines[-8:]}")
        at = next((m.group(1) for x in lines if (m := METRICS_AT.search(x))), None)
        if at:
            with urllib.request.urlopen(at, timeout=30) as resp:
                text = resp.read().decode()
            gauges = {k: float(v) for k, v in GAUGE.findall(text)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its session still there
        except ProcessLookupError:
            pass
        proc.wait()
        reader.join(10)
        for pid in leftovers(port):  # the tree dies with the supervisor; check, never trust
            print(f"  left behind: pid {pid}; killing it", flush=True)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    summary = next((m.group(1) for x in lines if (m := SUMMARY.search(x))), "")
    report = next((x.split("] ", 1)[1] for x in lines if "] cache report:" in x), "")
    phases = {k: float(v) for k, v in PAIR.findall(summary)}
    added = {name: files_in(p) - before[name] for name, p in dirs.items()}
    entries = ", ".join(
        f"{e.name}/ ({files_in(e)} files)" if e.is_dir() else e.name
        for e in sorted(dirs["sglang"].iterdir())
    )
    return Start(
        engine, kind, wall[0], wall[1], phases, gauges, report, added, entries or "empty", load,
        others, lines,
    )  # fmt: skip


def snapshot_seconds(caches: dict[str, str], repeats: int = 5) -> float:
    """The median time of one `snapshot_caches` call (what the cache report runs twice)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        anyio.run(snapshot_caches, caches)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def phase_rows(engine: str, starts: list[Start]) -> list[Row]:
    cold = [s for s in starts if s.engine == engine and s.kind == "cold"]
    warm = [s for s in starts if s.engine == engine and s.kind == "warm"]
    rows = [
        Row(
            f"{engine}: CLI launch -> serving (wall)",
            "s",
            [s.wall for s in warm],
            [s.wall for s in cold],
            "reported",
            True,
        ),
        Row(
            f"{engine}: CLI launch -> spawn (CLI imports, preflight: not in the timeline)",
            "s",
            [s.before_spawn for s in warm],
            [s.before_spawn for s in cold],
            "reported",
            True,
        ),
    ]
    for name in (*OURS, *ENGINE):
        w = [s.phases[name] for s in warm if name in s.phases]
        c = [s.phases[name] for s in cold if name in s.phases]
        if w and c:
            label = PHASE_MEANING.get(name, f"SGLang's `{name.removeprefix('engine.')}`")
            rows.append(Row(f"{engine}: {name}: {label}", "s", w, c, "reported", True))
    rows.append(
        CountRow(
            f"{engine}: files the start added to SGLANG_CACHE_DIR",
            "files",
            [float(s.added["sglang"]) for s in warm],
            [float(s.added["sglang"]) for s in cold],
            "warm adds 0",
            all(s.added["sglang"] == 0 for s in warm),
        )
    )
    rows.append(
        CountRow(
            f"{engine}: files added elsewhere (fresh XDG_CACHE_HOME)",
            "files",
            [float(s.added["other"]) for s in warm],
            [float(s.added["other"]) for s in cold],
            "warm adds 0",
            all(s.added["other"] == 0 for s in warm),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--engines", default="real,fake", help="a quick look: --engines fake")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-cold-start.md")
    args = parser.parse_args()
    engines = [e for e in ("real", "fake") if e in args.engines.split(",")]
    python = find_sglang_python()
    if python is None:
        raise SystemExit("no SGLang environment: run .ci/run first (it builds .venv-sglang)")
    started = time.monotonic()
    starts: list[Start] = []
    overhead: dict[str, list[tuple[float, float]]] = {"real": [], "fake": []}
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        model = Path(tmp) / "tiny"
        builder = ROOT / "supervisor" / "testing" / "tiny_model.py"
        subprocess.run([python, str(builder), str(model)], check=True, capture_output=True)
        for trial in range(args.trials):
            for engine in engines:
                dirs = {name: Path(tmp) / f"{engine}{trial}" / name for name in ("sglang", "other")}
                for d in dirs.values():
                    d.mkdir(parents=True)
                for kind in ("cold", "warm"):
                    print(f"trial {trial + 1}: {engine} {kind} ...", flush=True)
                    s = one_start(engine, kind, dirs, model)
                    starts.append(s)
                    print(f"  wall {s.wall:.2f} s; {s.report}", flush=True)
                    if not s.phases:
                        print("\n".join(s.lines[-30:]))
                        raise SystemExit("no startup timeline line")
                # the cache report's own cost, on the directory these two starts filled
                once = snapshot_seconds({"sglang": str(dirs["sglang"])})
                overhead[engine].append((2 * once, s.phases["total"]))
        lib = next((ROOT / ".venv-sglang").glob("lib"), None) or Path(python).parent.parent
        big = count_cache(str(lib))
        big_s = snapshot_seconds({"big": str(lib)}, repeats=3)
    took = time.monotonic() - started

    rows: list[Row] = []
    for engine in engines:
        rows += phase_rows(engine, starts)
    for engine in engines:
        pairs = overhead[engine]
        rows.append(
            Row(
                f"{engine}: cache report's two counts (ours) against the start's total (baseline)",
                "s",
                [o for o, _ in pairs],
                [t for _, t in pairs],
                "<= 1 % of the start",
                all(o <= 0.01 * t for o, t in pairs),
            )
        )
    assert big is not None
    big_line = (
        f"- one `snapshot_caches` of a large tree (`.venv-sglang/lib`: {big.files:,} files, "
        f"{big.bytes / 1e9:.1f} GB, dentries in the page cache): {big_s:.3f} s, "
        f"{big.files / big_s:,.0f} files/s; it stats, never reads a file, so the bytes cost nothing"
    )

    agree = all(
        abs(s.gauges.get(k, v) - v) < 0.02 for s in starts for k, v in s.phases.items() if s.gauges
    )
    gauges_seen = sum(1 for s in starts if s.gauges)
    contended = [s for s in starts if s.others_running]
    per_start = [
        f"| {s.engine} | {s.kind} | {s.wall:.2f} | {s.phases.get('total', 0):.2f} | "
        f"{s.added['sglang']} | {s.added['other']} | {s.entries} | {s.load:.2f} | "
        f"{'yes' if s.others_running else 'no'} | {s.report.removeprefix('cache report: ')} |"
        for s in starts
    ]
    text = "\n".join(
        [
            "# Cold start against warm start (real SGLang 0.5.23 on the CPU, and the fake)",
            "",
            f"{machine_line()}; `{' '.join(['.venv/bin/python', *sys.argv])}`; "
            f"{args.trials} trials per engine, {took / 60:.1f} min in all.",
            "",
            "Ours = the warm start (caches kept from the cold start just before), baseline = the "
            "cold start (fresh `SGLANG_CACHE_DIR` and `XDG_CACHE_HOME`), same run; the ratio is "
            "cold / warm. Phases are the supervisor's `startup timeline:` line (each phase until "
            "the next one starts; `engine.*` are SGLang's own numbers).",
            "",
            *markdown_table(rows),
            "",
            big_line,
            f"- phase gauges (`supervisor_startup_phase_seconds`) read on {gauges_seen} of {len(starts)} "
            f"starts; they agree with the summary line: {'yes' if agree else 'NO'}",
            f"- starts begun while another job's pytest ran on the machine: {len(contended)} "
            f"of {len(starts)} (load averages per start below)",
            "",
            "Each start:",
            "",
            "| engine | start | wall s | timeline total s | files added (SGLANG_CACHE_DIR) | "
            "files added (other) | SGLANG_CACHE_DIR after | load avg | other job running | "
            "cache report |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *per_start,
            "",
        ]
    )
    # the reading is written by hand below the numbers: a re-run keeps it (and should check it)
    kept = args.out.read_text().partition(READING)[2] if args.out.exists() else ""
    args.out.write_text(text + (f"\n{READING}{kept}" if kept else ""))
    print(text)


if __name__ == "__main__":
    main()
