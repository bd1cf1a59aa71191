"""Qwen3-8B (BF16, ~16 GB) on one H100: a small dense model, a fast cold start, no DeepGEMM.

The opposite shape to the MoE profiles: tensor parallelism 1, no speculative decoding, the qwen3
reasoning parser (thinking switchable by `enable_thinking`) and the qwen tool-call parser.

Snapshot-capable (docs/SNAPSHOTS.md §5), the shape of Modal's own SGLang snapshot example: one
GPU, so no custom all-reduce and no CUDA IPC memory to checkpoint, and ~16 GB of weights. So it
launches with `--enable-memory-saver` (SGLang's `/release_memory_occupation` then frees the
weights, KV cache and CUDA graphs; without it the release frees nothing) and
`--enable-weights-cpu-backup` (the release copies the weights to ~16 GB of host memory and the
resume copies them back; without it released weights come back with no contents). The saver
needs `torch_memory_saver`, a dependency of sglang 0.5.23, so the image has it.
"""

from __future__ import annotations

from supervisor.engines.sglang import SGLangLaunch

from . import Profile
from ._warmups import warmup_set

MODEL = "qwen3-8b"
MAX_PREFILL_TOKENS = 16384

LAUNCH = SGLangLaunch(
    model_path="/model-cache/Qwen3-8B",
    served_model_name=MODEL,
    tp_size=1,
    port=8000,
    reasoning_parser="qwen3",
    tool_call_parser="qwen",
    mem_fraction_static=0.85,
    max_prefill_tokens=MAX_PREFILL_TOKENS,
    context_length=32768,
    enable_metrics=True,
    enable_memory_saver=True,
    enable_weights_cpu_backup=True,
    warmup_timeout_s=600,
)

PROFILE = Profile(
    name="qwen3-8b",
    description="Qwen3-8B BF16 on 1x H100, thinking switchable, tools",
    hf_repo="Qwen/Qwen3-8B",
    launch=LAUNCH,
    warmups=warmup_set(MODEL, max_prefill_tokens=MAX_PREFILL_TOKENS, thinking_switch=True),
    gpu="H100",
    gpu_count=1,
    app_name="qwen3-8b-sglang",
    weights_volume="qwen3-8b-model-weights",
    dg_cache_volume="qwen3-8b-deepgemm-cache",
    api_key_secret="qwen3-8b-api-key",
    startup_timeout_s=1200.0,
    uses_deepgemm=False,
    weights_gb=16,
    snapshot_capable=True,
)
