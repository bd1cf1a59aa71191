"""The supervisor on the real SGLang 0.5.23 (CPU, tiny GPT-2), against bare SGLang in the same run.

    .venv/bin/python benchmarks/real_engine.py   # about 3 minutes; writes RESULTS-real-engine.md

Three rows, each with its baseline measured here, now, on this machine:

- idle cost: the supervisor's own processes (the CLI and its keeper) against the engine tree
  they watch: CPU seconds per second and RSS over an idle window, progress watch and liveness on;
- ready line -> serving: the supervised start (health probe nudged by the ready line, then the
  profile's four warmups, concurrently) against a bare script that, after the same ready line,
  checks `/health` once and sends the same four warmups one after another with urllib (what a
  hand-written entrypoint does). SGLang's `/health` itself takes a 1 s step (`health_generate`);
- death -> exit: a SIGKILLed scheduler; SGLang's own share (kill -> its main process gone: its
  watchdog, 5 s of crash diagnostics, its tree kill) measured bare, and under the supervisor that
  share again plus ours (main process gone -> the supervisor's exit, report written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.engines.sglang_check import find_sglang_python  # noqa: E402
from supervisor.engines.sglang_release import READY_LINE  # noqa: E402
from supervisor.profiles import get_profile  # noqa: E402
from supervisor.testing import free_port  # noqa: E402

IDLE_S = 20.0
CPU_FLAGS = [
    "--device", "cpu", "--attention-backend", "torch_native", "--sampling-backend", "pytorch",
    "--grammar-backend", "xgrammar", "--sleep-on-idle", "--max-total-tokens", "4096",
    "--enable-metrics",
]  # fmt: skip
TICK = os.sysconf("SC_CLK_TCK")


def children_of(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(name))
    out, stack = [], [root]
    while stack:
        for pid in kids.get(stack.pop(), []):
            out.append(pid)
            stack.append(pid)
    return out


def cpu_and_rss(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds so far, RSS MB now) summed over `pids`."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, IndexError):
            pass
    return cpu, rss


def idle_cost(pids: list[int]) -> tuple[float, float]:
    c0, _ = cpu_and_rss(pids)
    time.sleep(IDLE_S)
    c1, rss = cpu_and_rss(pids)
    return (c1 - c0) / IDLE_S, rss


class Lines(threading.Thread):
    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream, self.seen = stream, []

    def run(self) -> None:
        for line in self.stream:
            self.seen.append((time.monotonic(), line))

    def when(self, text: str, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.seen):
                if text in line:
                    return t
            time.sleep(0.02)
        raise SystemExit(f"{text!r} not seen; last lines: {[x for _, x in self.seen[-5:]]}")


def ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def schedulers(root: int) -> list[int]:
    found = []
    for pid in children_of(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sglang::scheduler"):
                found.append(pid)
        except OSError:
            pass
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    return time.monotonic()


def post(port: int, path: str, body: dict) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()
        return resp.status


def bare(python: str, model: Path) -> dict[str, float]:
    port = free_port()
    argv = [python, "-m", "sglang.launch_server", "--model-path", str(model), *CPU_FLAGS]
    argv += ["--served-model-name", "cpu-tiny", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    lines = Lines(proc.stdout)
    lines.start()
    try:
        ready = lines.when(READY_LINE)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as resp:
            resp.read()  # one health check, as any entrypoint makes (SGLang's takes a 1 s step)
        for w in get_profile("cpu-tiny").warmups:
            post(port, w.path, dict(w.body))
        warmed = time.monotonic()
        engine_cpu, engine_rss = idle_cost([proc.pid, *children_of(proc.pid)])
        kill = time.monotonic()
        os.kill(schedulers(proc.pid)[0], signal.SIGKILL)
        proc.wait(60)
        main_gone = time.monotonic()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    return {
        "ready_to_warm": warmed - ready,
        "engine_cpu": engine_cpu,
        "engine_rss": engine_rss,
        "sglang_share": main_gone - kill,
    }


def supervised(model: Path) -> dict[str, float]:
    port = free_port()
    argv = [sys.executable, "-m", "supervisor", "serve", "--profile", "cpu-tiny"]
    argv += ["--model-path", str(model), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    lines = Lines(proc.stdout)
    lines.start()
    try:
        ready = lines.when(READY_LINE)
        serving = lines.when("] state=serving from=warm")
        below = children_of(proc.pid)
        keeper = [p for p in below if b"_keeper" in Path(f"/proc/{p}/cmdline").read_bytes()]
        main = [p for p in below if keeper and ppid(p) == keeper[0]]
        engine = [p for p in below if p not in keeper]
        ours = [proc.pid, *keeper]
        c0, _ = cpu_and_rss(ours)
        e0, _ = cpu_and_rss(engine)
        time.sleep(IDLE_S)
        c1, rss = cpu_and_rss(ours)
        e1, erss = cpu_and_rss(engine)
        main_pid = main[0]  # the keeper's child: the server's main process
        kill = time.monotonic()
        os.kill(schedulers(main_pid)[0], signal.SIGKILL)
        main_gone = wait_gone(main_pid)
        proc.wait(60)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return {
        "ready_to_serving": serving - ready,
        "ours_cpu": (c1 - c0) / IDLE_S,
        "ours_rss": rss,
        "engine_cpu": (e1 - e0) / IDLE_S,
        "engine_rss": erss,
        "sglang_share": main_gone - kill,
        "our_share": exited - main_gone,
        "rc": float(proc.returncode),
    }


def main() -> None:
    python = find_sglang_python()
    if python is None:
        raise SystemExit("no SGLang environment: run .ci/run first (it builds .venv-sglang)")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny"
        builder = ROOT / "supervisor" / "testing" / "tiny_model.py"
        subprocess.run([python, str(builder), str(model)], check=True, capture_output=True)
        b = bare(python, model)
        s = supervised(model)
    rows = [
        ("idle CPU, share of a core", f"{s['ours_cpu']:.4f}", f"{s['engine_cpu']:.4f} (engine)",
         f"{s['ours_cpu'] / max(s['engine_cpu'], 1e-9):.2f}x"),
        ("idle RSS, MB", f"{s['ours_rss']:.0f}", f"{s['engine_rss']:.0f} (engine)",
         f"{s['ours_rss'] / s['engine_rss']:.3f}x"),
        ("ready line -> serving (4 warmups), s", f"{s['ready_to_serving']:.2f}",
         f"{b['ready_to_warm']:.2f} (bare: /health, then sequential)",
         f"{s['ready_to_serving'] / b['ready_to_warm']:.2f}x"),
        ("scheduler SIGKILL -> main process gone (SGLang's share), s", f"{s['sglang_share']:.2f}",
         f"{b['sglang_share']:.2f} (bare)", f"{s['sglang_share'] / b['sglang_share']:.2f}x"),
        ("main process gone -> supervisor exit (ours), s", f"{s['our_share']:.3f}", "-",
         f"{s['our_share'] / s['sglang_share']:.3f} of SGLang's share"),
    ]  # fmt: skip
    table = ["| measure | supervised | baseline | ratio |", "|---|---|---|---|"]
    table += [f"| {a} | {b_} | {c} | {d} |" for a, b_, c, d in rows]
    text = "\n".join(
        [
            "# The supervisor on the real SGLang 0.5.23 (CPU, tiny GPT-2)",
            "",
            f"`benchmarks/real_engine.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; "
            f"idle window {IDLE_S:g} s; exit code after the death: {int(s['rc'])}.",
            "",
            *table,
            "",
        ]
    )
    (ROOT / "benchmarks" / "RESULTS-real-engine.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
