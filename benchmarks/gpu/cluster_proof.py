"""Proof on real GPUs that a lost rank ends every rank of a supervised multi-node job (issue #11).

Two NCCL ranks, one GPU each, on one host, each under its own supervisor (`python -m supervisor run
--cluster-rank R --cluster-peers ...`), stand in for two nodes of a multi-node SGLang: rank 0 serves
a health check that needs the collective to progress, rank 1 only SGLang's dummy health (always
200), and both sit in an all-reduce loop holding GPU memory (`nccl_rank.py`).

  A. control, no supervisor: SIGKILL rank 1; rank 0 stays blocked in its all-reduce, alive and
     holding its GPU memory, for the whole observation window (then it is killed by hand);
  B. supervised: both supervisors reach `serving`; SIGKILL rank 1's engine; rank 1's supervisor
     exits 1 at once, rank 0's supervisor sees the peer's death through the status endpoint,
     kills its blocked engine and exits 1; both crash reports name rank 1; every GPU's memory is
     back to baseline.

Run with one command through the device tool (see run_on_gpu.sh); results go to $OUT when set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pynvml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from supervisor.testing import free_port  # noqa: E402

RANK = ROOT / "benchmarks" / "gpu" / "nccl_rank.py"
HOLD_GIB = float(os.environ.get("HOLD_GIB", "4"))
TOLERANCE_MIB = 600
CONTROL_WINDOW_S = 30.0
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    # NVLink multicast stays off on shared hosts (the device tool's rule).
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
report: list[str] = []
results: dict[str, object] = {}


def say(line: str = "") -> None:
    print(line, flush=True)
    report.append(line)


def used_mib() -> list[int]:
    return [
        pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used // (1 << 20)
        for i in range(2)
    ]


def rank_argv(rank: int, master: str, port: int) -> list[str]:
    return [
        sys.executable,
        str(RANK),
        "--rank",
        str(rank),
        "--world",
        "2",
        "--master",
        master,
        "--port",
        str(port),
        "--hold-gib",
        str(HOLD_GIB),
    ]


def pids_of(pattern: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in cmd and "supervisor" not in cmd.split()[1:3]:
            found.append(int(name))
    return found


class Watched:
    """A child process whose output is collected by a thread, with timestamps."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT
        )
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append((time.monotonic(), line))
            print(f"  [{self.name}] {line}", flush=True)

    def wait_for(self, text: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            if self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def control() -> None:
    say("A. control, no supervisor: two NCCL ranks; SIGKILL rank 1; watch rank 0")
    master = f"127.0.0.1:{free_port()}"
    ranks = [Watched(f"rank{r}", rank_argv(r, master, free_port())) for r in range(2)]
    for r in ranks:
        if r.wait_for("all-reduce loop running", 180) is None:
            raise RuntimeError(f"{r.name} never started:\n{r.text()}")
    time.sleep(2)
    during = used_mib()
    ranks[1].proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(CONTROL_WINDOW_S)
    alive = ranks[0].proc.poll() is None
    held = used_mib()
    say(f"   memory during (MiB per GPU): {during}; {CONTROL_WINDOW_S:g} s after: {held}")
    say(f"   rank 0 alive {time.monotonic() - killed:.0f} s after rank 1 died: {alive}")
    results["control"] = {"rank0_alive_after_s": CONTROL_WINDOW_S if alive else 0, "held": held}
    ranks[0].proc.kill()
    ranks[0].proc.wait()
    time.sleep(2)


def supervised(baseline: list[int]) -> bool:
    say("B. supervised: two supervisors, one per rank; SIGKILL rank 1's engine")
    master = f"127.0.0.1:{free_port()}"
    ports = [free_port(), free_port()]
    status = [free_port(), free_port()]
    peers = ",".join(f"127.0.0.1:{p}" for p in status)
    sups = []
    for r in range(2):
        argv = [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--port",
            str(ports[r]),
            "--cluster-rank",
            str(r),
            "--cluster-peers",
            peers,
            "--no-progress",
            "--startup-timeout",
            "300",
            "--stop-timeout",
            "10",
            "--",
            *rank_argv(r, master, ports[r]),
        ]
        sups.append(Watched(f"sup{r}", argv))
    for s in sups:
        if s.wait_for("state=serving", 300) is None:
            raise RuntimeError(f"{s.name} never reached serving:\n{s.text()[-3000:]}")
    time.sleep(2)
    during = used_mib()
    say(f"   both serving; memory during (MiB per GPU): {during}")
    victims = pids_of(f"{RANK} --rank 1")
    if not victims:
        raise RuntimeError("rank 1's engine not found")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    codes, took = [], []
    for s in sups:
        try:
            codes.append(s.proc.wait(timeout=90))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            codes.append(None)
        took.append(time.monotonic() - killed)
    time.sleep(1)
    after = used_mib()
    names = [bool(re.search(r"rank 1\b", s.text().split("CRASH REPORT", 1)[-1])) for s in sups]
    back = all(abs(a - b) <= TOLERANCE_MIB for a, b in zip(after, baseline, strict=True))
    say(
        f"   exit codes (rank 0, rank 1): {codes}; seconds after the kill: "
        f"{[round(t, 2) for t in took]}"
    )
    say(f"   crash reports name rank 1: {names}")
    say(f"   memory after (MiB per GPU): {after}; baseline {baseline}; back to baseline: {back}")
    leftover = pids_of(str(RANK))
    say(f"   rank processes left: {leftover}")
    results["supervised"] = {
        "exit_codes": codes,
        "seconds_after_kill": took,
        "reports_name_rank_1": names,
        "memory_during": during,
        "memory_after": after,
        "baseline": baseline,
        "back_to_baseline": back,
        "leftover": leftover,
    }
    return codes == [1, 1] and all(names) and back and not leftover


def main() -> int:
    pynvml.nvmlInit()
    if pynvml.nvmlDeviceGetCount() < 2:
        say("needs two GPUs")
        return 2
    baseline = used_mib()
    say(
        f"GPUs: {[pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]}"
    )
    say(f"baseline memory (MiB per GPU): {baseline}")
    control()
    ok = supervised(baseline)
    say(f"verdict: {'PASS' if ok else 'FAIL'}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "cluster_proof.txt").write_text("\n".join(report) + "\n")
        Path(out, "cluster_proof.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
