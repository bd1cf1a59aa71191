"""The pinned SGLang release and the words it prints: version, ready line, phases, paths.

A module of its own because almost every engine module needs one of these facts (the image tag
and the runtime check need the version, the compile step its success line, the core the ready
line and the startup phases) and none of them needs the launch config. Each text is 0.5.23's
own, with its source next to it; docs/FIDELITY.md lists them.
"""

from __future__ import annotations

__all__ = [
    "COMPILE_SUCCESS_LINE",
    "DG_DEFAULT_CACHE_DIR",
    "HEALTH_PATH",
    "PHASE_MARKERS",
    "READY_LINE",
    "SGLANG_VERSION",
]

#: The one SGLang release this project's argv, image and checks are built for.
SGLANG_VERSION = "0.5.23"

READY_LINE = "The server is fired up and ready to roll!"
HEALTH_PATH = "/health"
COMPILE_SUCCESS_LINE = "DeepGEMM Kernels compilation finished successfully."
#: Where DeepGEMM's JIT cache goes without SGLANG_DG_CACHE_DIR: SGLANG_CACHE_DIR (default
#: ~/.cache/sglang) + "deep_gemm" (srt/environ.py: SGLANG_DG_CACHE_DIR, _default_cache_subdir).
DG_DEFAULT_CACHE_DIR = "~/.cache/sglang/deep_gemm"

#: Log lines that start a cold-start phase (srt/model_executor/model_runner.py, engine.py).
PHASE_MARKERS: tuple[tuple[str, str], ...] = (
    ("load_weight", "Load weight begin"),
    ("weights_loaded", "Load weight end"),
    ("engine_ready", "Engine startup timings (s):"),
    ("http_up", "Uvicorn running on"),
    ("ready_line", READY_LINE),
)
