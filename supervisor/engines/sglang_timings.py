"""SGLang 0.5.23's startup lines, read into numbers for the cold-start timeline.

Two lines carry the numbers an operator needs to see where a cold start went:

- `srt/entrypoints/engine.py` `Engine._set_startup_time` logs `Engine startup timings (s):
  load_weight=%.2f, kv_cache_allocation=%.2f, scheduler_e2e=%.2f, cuda_graph={%s},
  tokenizer_e2e=%.2f`, the CUDA-graph group being `phase=%.2f` pairs joined by ", " (its keys:
  `srt/model_executor/graph_memory_usage.py` `GRAPH_MEMORY_USAGE_KEYS`, prefill, decode,
  target_verify, draft_prefill, draft_decode, draft_extend). A flat `name=seconds` reading turned
  that group into top-level `prefill`, `decode`, ...; here it is `cuda_graph.prefill`, ...
- `srt/model_executor/model_runner.py` `ModelRunner.load_model` logs `Load weight end.
  elapsed=%.2f s, type=..., [quantization, ]avail mem=%.2f GB, mem usage=%.2f GB.`: the seconds
  and the GPU memory the weights took, so their GB/s (`weights.gb_per_s`) too.

Each reader gets the rest of the line after its marker and returns what it found; the core
bounds and filters the answer (`supervisor._timeline`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from supervisor.lowlevel import TimingReader

__all__ = ["TIMING_READERS", "read_startup_timings", "read_weight_load"]

_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_PAIR = re.compile(rf"([a-z_][a-z0-9_]*)=({_NUMBER})")
_GROUP = re.compile(r"([a-z_][a-z0-9_]*)=\{([^{}]*)\}")
_ELAPSED = re.compile(rf"\belapsed=({_NUMBER}) s\b")
_MEM_USAGE = re.compile(rf"\bmem usage=({_NUMBER}) GB\b")


def read_startup_timings(rest: str) -> dict[str, float]:
    """`load_weight=0.02, ..., cuda_graph={prefill=0.00, decode=0.00, ...}, tokenizer_e2e=18.73`
    -> {"load_weight": 0.02, ..., "cuda_graph.prefill": 0.0, ..., "tokenizer_e2e": 18.73}."""
    out: dict[str, float] = {}
    for group, inner in _GROUP.findall(rest):
        for key, value in _PAIR.findall(inner):
            out.setdefault(f"{group}.{key}", float(value))
    for key, value in _PAIR.findall(_GROUP.sub("", rest)):
        out.setdefault(key, float(value))
    return out


def read_weight_load(rest: str) -> dict[str, float]:
    """`. elapsed=12.34 s, type=..., mem usage=45.67 GB.` -> seconds, GB and GB/s."""
    out: dict[str, float] = {}
    elapsed, usage = _ELAPSED.search(rest), _MEM_USAGE.search(rest)
    if elapsed:
        out["weights.load_s"] = float(elapsed.group(1))
    if usage:
        out["weights.gb"] = float(usage.group(1))
    if elapsed and usage and float(elapsed.group(1)) > 0:
        out["weights.gb_per_s"] = round(float(usage.group(1)) / float(elapsed.group(1)), 3)
    return out


#: Phase name (of `PHASE_MARKERS`) -> the reader of that phase's line.
TIMING_READERS: Mapping[str, TimingReader] = {
    "weights_loaded": read_weight_load,
    "engine_ready": read_startup_timings,
}
