"""Record the exact texts a real GPU fault prints, for the crash classifier (issue #19, item 4).

    python3 benchmarks/gpu/fault_texts.py OUT.txt     # on a GPU machine (torch, cupy)

Each fault runs in a child Python and its whole stderr is kept: a CUDA out-of-memory in torch,
and an illegal memory access (a CuPy kernel writing to address 0x10 on torch's stream, then
torch synchronising), as torch itself reports them.
"""

from __future__ import annotations

import subprocess
import sys

FAULTS = {
    "cuda-oom": "import torch\nx = torch.empty(1 << 50, dtype=torch.uint8, device='cuda')\n",
    "illegal-memory-access": (
        "import torch, cupy\n"
        "torch.zeros(1, device='cuda')\n"
        "k = cupy.RawKernel(r'extern \"C\" __global__ void bad() { *(volatile int*)0x10 = 1; }',"
        " 'bad')\n"
        "k((1,), (1,), ())\n"
        "torch.cuda.synchronize()\n"
    ),
}


def main(out: str) -> None:
    with open(out, "w") as f:
        f.write(f"python {sys.version.split()[0]}\n")
        version = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.__version__, torch.version.cuda)"],
            capture_output=True,
            text=True,
        )
        f.write(f"torch, CUDA: {version.stdout.strip()}\n")
        for name, code in FAULTS.items():
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
            )
            f.write(f"\n===== {name}: exit {done.returncode}\n{done.stderr}")


if __name__ == "__main__":
    main(sys.argv[1])
