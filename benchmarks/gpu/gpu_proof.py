"""Proof on a real GPU that the supervisor's shutdown frees the GPU memory of the whole tree.

The fake SGLang server's schedulers each hold GPU memory (torch); the last one escapes into its
own session without PDEATHSIG, as reparented SGLang schedulers do in the field (sglang #23627).
NVML readings before, during and after show, for every GPU:

  A. a graceful stop (SIGTERM, drain, SIGKILL of the tree)     -> memory back to baseline
  B. a crash of the main process (SIGKILL to SGLang's main pid) -> memory back to baseline
  C. control, no supervisor: the same crash leaves the escaped scheduler holding its memory

It also checks the preflight's GPU check on this machine: count, type, and memory held by a
stale process. Run with one command (see run_on_gpu.sh); results go to $OUT when set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pynvml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from supervisor import (  # noqa: E402
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
)
from supervisor.engines.preflight import check_gpus  # noqa: E402
from supervisor.lowlevel import TREE_TOKEN_ENV  # noqa: E402
from supervisor.testing import free_port  # noqa: E402

GIB = 1 << 30
HOLD_GIB = float(os.environ.get("HOLD_GIB", "6"))
TOLERANCE_MIB = 600
report: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    report.append(line)


def used_mib() -> list[int]:
    return [
        pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used // (1 << 20)
        for i in range(pynvml.nvmlDeviceGetCount())
    ]


def tree_pids() -> list[int]:
    """Every live process tagged as a supervised tree (or the fake), wherever it went."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (
            TREE_TOKEN_ENV.encode() in env
            or b"fake_sglang" in cmd
            or b"sglang::scheduler" in cmd
            or b"SCHEDULER" in cmd
        ):
            found.append(int(name))
    return found


def wait_until(predicate, timeout: float, step: float = 0.1) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def fake_argv(port: int, ranks: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "supervisor.testing.fake_sglang",
        "--port",
        str(port),
        "--tp-size",
        str(ranks),
        "--fake-gpu-mem-gib",
        str(HOLD_GIB),
        "--fake-fault",
        "escape",
        "--fake-load-time",
        "1",
        "--fake-warmup-time",
        "0.5",
    ]


class Quiet:
    def child(self, stream: str, text: str) -> None: ...

    def supervisor(self, line: str) -> None:
        if "state=" in line or "CRASH" in line or "SIGKILL" in line or "SIGTERM" in line:
            say(f"    [supervisor] {line}")


def held_enough(baseline: list[int], ranks: int) -> bool:
    extra = sum(u - b for u, b in zip(used_mib(), baseline, strict=True))
    return extra >= ranks * HOLD_GIB * 1024 * 0.9


def back_to_baseline(baseline: list[int]) -> bool:
    return all(u - b <= TOLERANCE_MIB for u, b in zip(used_mib(), baseline, strict=True))


def scenario(name: str, ranks: int, baseline: list[int], crash: bool) -> dict:
    say(f"== {name}")
    port = free_port()
    cfg = SupervisorConfig(
        launch=LaunchSpec(argv=tuple(fake_argv(port, ranks)), cwd=str(ROOT)),
        port=port,
        health=HealthPolicy(startup_timeout=120),
        liveness=LivenessPolicy(enabled=False),
        stop=StopPolicy(stop_timeout=10),
        ready_line="fired up",
    )
    result: dict = {"scenario": name}

    async def run() -> None:
        sup = Supervisor(
            cfg, sink=Quiet(), on_death=lambda r: say(f"    death handler: {r.summary()}")
        )
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            took = await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: held_enough(baseline, ranks), 180)
            )
            during = used_mib()
            pids = tree_pids()
            sids = sorted(
                {
                    int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[3])
                    for p in pids
                }
            )
            say(
                f"    during: used MiB per GPU {during} (held after {took:.1f} s); {len(pids)} processes "
                f"in {len(sids)} sessions"
            )
            stale = check_gpus(pynvml.nvmlDeviceGetCount(), None)
            say(f"    preflight while held: {stale.line()}")
            result.update(
                during=during, processes=len(pids), sessions=len(sids), stale_check=stale.status
            )
            t0 = time.monotonic()
            if crash:
                os.kill(sup.child.pid, signal.SIGKILL)
            else:
                sup.stop()
        freed = await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: back_to_baseline(baseline), 30)
        )
        gone = await anyio.to_thread.run_sync(lambda: wait_until(lambda: not tree_pids(), 30))
        after = used_mib()
        total = time.monotonic() - t0
        say(
            f"    after:  used MiB per GPU {after}; memory back to baseline "
            f"{'in %.2f s' % (total if freed is not None else -1) if freed is not None else 'NEVER'}; "
            f"processes left: {tree_pids()}"
        )
        result.update(
            after=after,
            freed=freed is not None,
            seconds=total,
            left=tree_pids(),
            gone=gone is not None,
        )

    anyio.run(run)
    return result


def control(ranks: int, baseline: list[int]) -> dict:
    say("== C. control: the same crash with no supervisor")
    port = free_port()
    proc = subprocess.Popen(
        fake_argv(port, ranks),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: held_enough(baseline, ranks), 180)
    say(f"    during: used MiB per GPU {used_mib()}")
    os.killpg(proc.pid, signal.SIGKILL)  # even a whole-group kill misses the escaped scheduler
    proc.wait()
    time.sleep(5)
    left, after = tree_pids(), used_mib()
    say(f"    5 s after killing the process group: used MiB {after}; survivors {left}")
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: back_to_baseline(baseline), 30)
    say(f"    cleaned by hand: used MiB {used_mib()}")
    return {"scenario": "control", "after": after, "survivors": len(left)}


def main() -> None:
    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    ranks = max(2, count)  # one scheduler per GPU, at least two so one can escape
    say(
        f"GPUs: {count}x {names[0]}; driver {pynvml.nvmlSystemGetDriverVersion()}; "
        f"{ranks} schedulers x {HOLD_GIB:g} GiB, the last escapes its session"
    )
    baseline = used_mib()
    say(f"baseline used MiB per GPU: {baseline}")
    gpu_type = (
        "H200" if "H200" in names[0] else "H100" if "H100" in names[0] else names[0].split()[-1]
    )
    checks = {
        "count and type match": check_gpus(count, gpu_type),
        "more GPUs than present": check_gpus(count + 1, gpu_type),
        "wrong type (B200)": check_gpus(count, "B200"),
    }
    for label, check in checks.items():
        say(f"preflight, {label}: {check.line()}")
    results = [
        scenario("A. graceful stop", ranks, baseline, crash=False),
        scenario("B. crash of the main process (SIGKILL)", ranks, baseline, crash=True),
        control(ranks, baseline),
    ]
    ok = (
        checks["count and type match"].status == "ok"
        and checks["more GPUs than present"].status == "fail"
        and checks["wrong type (B200)"].status == "fail"
        and all(r["freed"] and r["gone"] and not r["left"] for r in results[:2])
        and all(r["stale_check"] == "fail" and r["sessions"] >= 2 for r in results[:2])
        and results[2]["survivors"] >= 1
    )
    say(f"VERDICT: {'PASS' if ok else 'FAIL'}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_proof.txt").write_text("\n".join(report) + "\n")
        Path(out, "gpu_proof.json").write_text(json.dumps(results, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
