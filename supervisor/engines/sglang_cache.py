"""SGLang's whole compile cache on the cache volume, keyed so that no start loads stale kernels.

0.5.23 keeps what it compiles under `SGLANG_CACHE_DIR` (`srt/environ.py`: CuTe DSL AOT, its JIT
kernels, and through `redirect_third_party_caches` Triton, TorchInductor, CUDA's `nv`, TileLang,
FlashInfer's workspace). A deployment points it at a directory of the cache volume named by a
key: a change of SGLang, torch, CUDA, GPU type, tensor parallelism or the model's config gives a
new, empty directory instead of kernels built for something else. The model enters through its
`config.json` (a few KB, hashed; the weights are never read): kernels depend on the shapes it
declares, not on the weights' values. Each keyed directory holds a `manifest.json` saying what it
was built for; one that exists means the start should find its kernels (`expect_warm`), so a miss
there is a warning in the cache report.

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

__all__ = ["MANIFEST", "cache_identity", "cache_key", "keyed_cache_dir"]

MANIFEST = "manifest.json"


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
    """The keyed directory under `root` (made, with its manifest, when new) and whether it
    existed already, i.e. whether this start should find its kernels there."""
    path = Path(root) / "sglang" / cache_key(identity)
    warm = (path / MANIFEST).is_file()
    if not warm:
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return path, warm
