"""DeepSeek-R1-0528 (FP8, ~690 GB) on 8x H200: a DeepSeek-family MoE with MLA and MTP.

A different shape from GLM-5.1: MLA attention (SGLang picks the backend), NEXTN speculative
decoding through the model's own MTP head, the deepseek-r1 reasoning parser and the deepseekv3
tool-call parser. Thinking cannot be switched off by a template flag, so its warmup set asks for
reasoning and tools only.

The KV cache is stated as bfloat16 (`explicit-kv-cache-dtype`): R1-0528 is MLA without DSA (no
`index_topk`), and its FP8 quant config names no KV algorithm, so 0.5.23's `auto` resolves to
the checkpoint's BF16 (srt/mem_cache/kv_cache_dtype.py:configure_kv_cache_dtype); saying so keeps
the argv honest if a later release changes that default.

Not snapshot-capable, for GLM-5.1's reasons (docs/SNAPSHOTS.md §5): TP=8's CUDA IPC memory and
no documented multi-GPU GPU snapshots.
"""

from __future__ import annotations

from supervisor.engines.sglang import SGLangLaunch, Speculative

from . import Profile
from ._blockers import multi_gpu_blocker
from ._warmups import warmup_set

MODEL = "deepseek-r1"
MAX_PREFILL_TOKENS = 16384

LAUNCH = SGLangLaunch(
    model_path="/model-cache/DeepSeek-R1-0528",
    served_model_name=MODEL,
    tp_size=8,
    port=8000,
    trust_remote_code=True,
    kv_cache_dtype="bfloat16",
    speculative=Speculative(algorithm="NEXTN", num_steps=3, eagle_topk=1, num_draft_tokens=4),
    reasoning_parser="deepseek-r1",
    tool_call_parser="deepseekv3",
    mem_fraction_static=0.85,
    max_running_requests=64,
    max_prefill_tokens=MAX_PREFILL_TOKENS,
    watchdog_timeout=1200,
    enable_metrics=True,
    mitigations=("explicit-kv-cache-dtype",),
    dg_cache_dir="/dg-cache",
    warmup_timeout_s=1800,
)

PROFILE = Profile(
    name="deepseek-r1-fp8",
    description="DeepSeek-R1-0528 FP8 on 8x H200, MTP speculative decoding, reasoning and tools",
    hf_repo="deepseek-ai/DeepSeek-R1-0528",
    launch=LAUNCH,
    warmups=warmup_set(MODEL, max_prefill_tokens=MAX_PREFILL_TOKENS, thinking_switch=False),
    gpu="H200",
    gpu_count=8,
    app_name="deepseek-r1-sglang",
    weights_volume="deepseek-r1-model-weights",
    dg_cache_volume="deepseek-r1-deepgemm-cache",
    api_key_secret="deepseek-r1-api-key",
    startup_timeout_s=3600.0,
    weights_gb=690,
    snapshot_capable=False,
    snapshot_blocker=multi_gpu_blocker(8, 690),
)
