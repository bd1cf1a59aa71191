"""Kernels kept between starts, on a real GPU: SGLang 0.5.23's own cache redirect, then Triton and
TorchInductor compiling into the keyed directory, counted by the supervisor's cache report.

What a deployment relies on (docs/RUNBOOK.md, "Kernels kept between cold starts"): the container
sets `SGLANG_CACHE_DIR` to a keyed directory on the cache volume; `import sglang` calls
`srt/environ.py:redirect_third_party_caches()` before torch is imported, which points Triton,
TorchInductor, CUDA's `nv` cache, TileLang and FlashInfer there; a second start with the same key
compiles nothing; a new key starts empty. This script checks the part a GPU can show without a
B200 or the GPU build of SGLang: three fresh processes ("starts"), each loading 0.5.23's
`environ.py` (stdlib only) and calling its redirect first, then compiling one Triton kernel and
one `torch.compile`d function on the GPU:

1. key A, empty: cold (the kernels compile, files appear under `<A>/triton`, `<A>/inductor`);
2. key A again: warm (no file added, the compile seconds drop);
3. key B: cold again (a new key never reads A's kernels).

Run on the GPU machine (python3 with torch and triton):

    python3 benchmarks/gpu/compile_cache_proof.py PATH/TO/sglang/srt/environ.py

Prints a table and one JSON document (the committed RESULTS-compile-cache-H200.*).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# The supervisor's own counter (anyio only), not a copy of it: the numbers the report would give.
caches = _load("supervisor_caches", HERE.parent.parent / "supervisor" / "_caches.py")

START = r"""
import importlib.util, json, os, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("sglang_environ", sys.argv[1])
environ = importlib.util.module_from_spec(spec)
spec.loader.exec_module(environ)
environ.redirect_third_party_caches()  # what sglang/__init__.py does, before torch is imported
redirected = {k: os.environ.get(k) for k in environ.third_party_cache_defaults()}

import torch
import triton
import triton.language as tl
t_import = time.perf_counter()


@triton.jit
def scaled_add(x_ptr, y_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x * alpha + y, mask=mask)


n = 1 << 20
x = torch.randn(n, device="cuda")
y = torch.randn(n, device="cuda")
out = torch.empty_like(x)
scaled_add[(triton.cdiv(n, 1024),)](x, y, out, n, 2.0, BLOCK=1024)
torch.cuda.synchronize()
assert torch.allclose(out, x * 2.0 + y)
t_triton = time.perf_counter()


@torch.compile
def block(h, w):
    return torch.nn.functional.gelu(h @ w) * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


h = torch.randn(64, 1024, device="cuda")
w = torch.randn(1024, 1024, device="cuda")
block(h, w)
torch.cuda.synchronize()
t_inductor = time.perf_counter()
print(json.dumps({
    "redirected": redirected,
    "import_s": round(t_import - t0, 3),
    "triton_s": round(t_triton - t_import, 3),
    "inductor_s": round(t_inductor - t_triton, 3),
    "torch": torch.__version__,
    "triton": triton.__version__,
    "gpu": torch.cuda.get_device_name(0),
}))
"""


def start(environ_py: str, cache_dir: Path, script: Path) -> dict[str, object]:
    """One start: a fresh process with SGLANG_CACHE_DIR at `cache_dir`, and nothing else set."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_CACHE_DIR", "CACHE_PATH"))}
    env.pop("FLASHINFER_WORKSPACE_BASE", None)
    env["SGLANG_CACHE_DIR"] = str(cache_dir)
    subdirs = {name: str(cache_dir / name) for name in ("triton", "inductor", "nv")}
    before = {name: caches.count_cache(path) for name, path in subdirs.items()}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), environ_py],  # Triton's @jit needs a file
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"a start failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    after = {name: caches.count_cache(path) for name, path in subdirs.items()}
    line, missed = caches.describe_caches(before, after)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        wall_s=round(wall, 3),
        report=line,
        missed=list(missed),
        files={name: (count.files if count else None) for name, count in after.items()},
    )
    return result


def main() -> int:
    environ_py = sys.argv[1]
    with tempfile.TemporaryDirectory() as base:
        key_a, key_b = Path(base) / "key-a", Path(base) / "key-b"
        script = Path(base) / "one_start.py"
        script.write_text(START)
        runs = [
            ("1 cold, key A", start(environ_py, key_a, script)),
            ("2 warm, key A", start(environ_py, key_a, script)),
            ("3 cold, key B", start(environ_py, key_b, script)),
        ]
    first = runs[0][1]
    print(f"GPU {first['gpu']}, torch {first['torch']}, triton {first['triton']}")
    print(f"redirect by 0.5.23's environ.py, with SGLANG_CACHE_DIR=<key>: {first['redirected']}")
    print()
    print("| start | Triton kernel, s | torch.compile, s | files after (triton/inductor/nv) |")
    print("|---|---|---|---|")
    for name, r in runs:
        files = r["files"]
        assert isinstance(files, dict)
        counts = "/".join(str(files[k]) for k in ("triton", "inductor", "nv"))
        print(f"| {name} | {r['triton_s']} | {r['inductor_s']} | {counts} |")
    for name, r in runs:
        print(f"{name}: {r['report']}")
    cold, warm, other = (r for _, r in runs)
    checks = {
        "cold start compiled into the key": bool(cold["missed"]),
        "warm start added nothing": warm["missed"] == [],
        "new key started empty and compiled": bool(other["missed"]),
        "warm Triton faster than cold": float(warm["triton_s"]) < float(cold["triton_s"]),  # type: ignore[arg-type]
        "warm compile faster than cold": float(warm["inductor_s"]) < float(cold["inductor_s"]),  # type: ignore[arg-type]
    }
    for what, ok in checks.items():
        print(f"[{'ok' if ok else 'FAIL'}] {what}")
    print(json.dumps({"runs": dict(runs), "checks": checks}, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
