"""SGLang's whole compile cache on the cache volume, keyed so that no start loads stale kernels.

0.5.23 keeps what it compiles under `SGLANG_CACHE_DIR` (`srt/environ.py`: CuTe DSL AOT, its JIT
kernels, and through `redirect_third_party_caches` Triton, TorchInductor, CUDA's `nv`, TileLang,
FlashInfer's workspace). A deployment points it at a directory of the cache volume named by a
key: a change of SGLang, torch, CUDA, GPU type, tensor parallelism or the model's config gives a
new, empty directory instead of kernels built for something else. The model enters through its
`config.json` (a few KB, hashed; the weights are never read): kernels depend on the shapes it
declares, not on the weights' values. Each keyed directory holds a `manifest.json` saying what it
was built for, and `served` once a start served from it: only then should a start find every
kernel there (`expect_warm`), so only then is a miss a warning in the cache report. The compile
step fills the same directory (its server JITs Triton and FlashInfer kernels too), but it runs
without CUDA graphs or the warmups' shapes, so the first serving start after it may still add
kernels, and that is not a warning.

DeepGEMM keeps its own directory and marker (`SGLANG_DG_CACHE_DIR`, `engines/preflight.py`): its
compile step runs before any server, so it is not moved.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_release import SGLANG_VERSION

__all__ = [
    "MANIFEST",
    "SERVED",
    "cache_identity",
    "cache_key",
    "keyed_cache_dir",
    "mark_served",
    "with_keyed_cache",
]

MANIFEST = "manifest.json"
SERVED = "served"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _config_digest(model_path: str) -> str:
    try:
        data = (Path(model_path) / "config.json").read_bytes()
    except OSError:
        return "no-config"
    return hashlib.sha256(data).hexdigest()[:16]


def cache_identity(launch: SGLangLaunch, gpu: str) -> dict[str, Any]:
    """What compiled kernels depend on, as this container sees it."""
    return {
        "sglang": SGLANG_VERSION,
        "torch": _version("torch"),
        "cuda": os.environ.get("CUDA_VERSION", "unknown"),  # set by NVIDIA's CUDA images
        "gpu": gpu,
        "tp_size": launch.tp_size,
        "model_config": _config_digest(launch.model_path),
    }


def cache_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def keyed_cache_dir(root: str | os.PathLike[str], identity: dict[str, Any]) -> tuple[Path, bool]:
    """The keyed directory under `root` (made, with its manifest, when new) and whether a start
    served from it already, i.e. whether this start should find all its kernels there."""
    path = Path(root) / "sglang" / cache_key(identity)
    if not (path / MANIFEST).is_file():
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return path, (path / SERVED).is_file()


def mark_served(path: Path) -> bool:
    """Say that a start served from `path`; True when that is news (the volume needs a commit)."""
    marker = path / SERVED
    if marker.is_file():
        return False
    marker.write_text("a start served with these kernels\n")
    return True


def with_keyed_cache(launch: SGLangLaunch, gpu: str) -> tuple[SGLangLaunch, Path | None, bool]:
    """`launch` with SGLANG_CACHE_DIR in this deployment's keyed directory of the cache volume
    (where DeepGEMM's cache is), that directory, and whether it is warm; `launch` unchanged, no
    directory, where there is no writable cache volume."""
    root = launch.dg_cache_dir
    if not root or not os.access(root, os.W_OK):
        return launch, None, False
    keyed, warm = keyed_cache_dir(root, cache_identity(launch, gpu))
    return launch.with_overrides(env={**launch.env, "SGLANG_CACHE_DIR": str(keyed)}), keyed, warm
