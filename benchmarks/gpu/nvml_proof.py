"""NVML's per-process GPU memory as the supervisor reads it (`supervisor/_gpu_memory.py`), on a
real GPU: does the probe find a CUDA process of the tree by its pid, and how much it holds?

Run on the GPU machine (`benchmarks/gpu/run_on_gpu.sh` style: python3 with torch and
nvidia-ml-py): a child process allocates a known amount with torch and holds it; the probe looks
by the child's pid (as /proc here names it) and by a pid that is not in the tree. Prints one JSON
document: what NVML listed, what the probe made of it, and whether the pids matched (the open
question under gVisor, where NVML's pids may not be this PID namespace's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = importlib.util.spec_from_file_location(
    "gpu_memory", HERE.parent.parent / "supervisor" / "_gpu_memory.py"
)
assert SPEC is not None and SPEC.loader is not None
gpu_memory = importlib.util.module_from_spec(SPEC)
sys.modules["gpu_memory"] = gpu_memory  # dataclasses look their module up there
SPEC.loader.exec_module(gpu_memory)  # stdlib only: no need for the rest of the supervisor

HOLD = r"""
import sys, time, torch
x = torch.empty(int(sys.argv[1]), dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print(torch.cuda.memory_reserved(), flush=True)
time.sleep(120)
"""


def main() -> int:
    size = 2 << 30
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(size)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        reserved = int(child.stdout.readline())
        time.sleep(1.0)
        import pynvml

        pynvml.nvmlInit()
        listed = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                listed.append({"gpu": i, "pid": p.pid, "used": p.usedGpuMemory})
        pynvml.nvmlShutdown()
        probe = gpu_memory.GpuProbe()
        t0 = time.perf_counter()
        found = probe.look([child.pid])
        look_s = time.perf_counter() - t0
        other = probe.look([os.getpid()])
        notes = probe.take_notes()
        probe.close()
        result = {
            "child_pid": child.pid,
            "torch_reserved": reserved,
            "nvml_listed": listed,
            "probe_found": None
            if found is None
            else {
                "per_gpu": found.per_gpu,
                "per_process": found.per_process,
                "describe": found.describe(),
            },
            "probe_other_pid": None if other is None else other.per_process,
            "notes": notes,
            "look_seconds": round(look_s, 4),
            "pid_matched": bool(found and found.per_process),
        }
        print(json.dumps(result, indent=2))
        out = os.environ.get("OUT")
        if out:
            Path(out, "nvml_proof.json").write_text(json.dumps(result, indent=2))
        return 0
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    sys.exit(main())
