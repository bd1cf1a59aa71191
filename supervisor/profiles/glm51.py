"""GLM-5.1 FP8 on 8x B200: the seed's settings, written in SGLang 0.5.23's names.

Changes from the seed's command line, each forced by the pinned parser or a known bug:
- `--tp 8` -> `--tp-size 8` (`--tp` only worked as an argparse abbreviation);
- `--ep 1` -> `--ep-size 1` (same flag, canonical name);
- `--attention-backend nsa` -> `dsa` (nsa is a deprecated alias);
- `--nsa-decode-backend/--nsa-prefill-backend trtllm` -> dropped: with an fp8_e4m3 KV cache on
  SM>=10, 0.5.23 picks trtllm for both by itself (srt/arg_groups/overrides.py:
  _dsa_split_backend_resolution), so the flags changed nothing (#21291's fix is the default);
- `--enable-flashinfer-allreduce-fusion` -> `--flashinfer-allreduce-fusion-backend auto`
  (what the deprecated flag resolved to);
- `--kv-cache-dtype fp8_e4m3`, stated (`explicit-kv-cache-dtype`): what `auto` resolves to for
  GLM's DSA on B200 anyway (overrides.py:_dsa_kv_cache_dtype_default), and what the published
  GLM-5.x B200 recipes pass. The seed's belief that leaving the flag out kept a BF16 KV cache
  (#22359, #17526) was wrong for 0.5.23; override with `kv_cache_dtype="bfloat16"` for BF16
  (0.5.23 then defaults the DSA prefill backend to flashmla_sparse, decode to trtllm);
- `SGLANG_DG_CACHE_DIR=/dg-cache`, so the DeepGEMM cache volume is actually used;
- `--weight-loader-prefetch-checkpoints` (issue #20): the ~700 GB come from a Modal Volume, a
  network filesystem, and the eight ranks share one container's page cache. With it each rank
  prefetches its share of the shards into that cache (`weight_loader_prefetch_num_threads`, 4
  threads a rank), so the volume is read once instead of once per rank (0.5.23
  `srt/arg_groups/fields/model.py`, "reducing total network I/O on shared filesystems from
  N*checkpoint to 1*checkpoint"); 0.5.23 then turns its multi-threaded safetensors loading off
  by itself (`srt/model_loader/loader.py: DefaultModelLoader`, to avoid I/O oversubscription),
  which is right on a network volume. mmap stays on (its default): the shards are mapped from
  the page cache the prefetch filled, not copied through host memory a second time.

Not snapshot-capable (docs/SNAPSHOTS.md §5): TP=8 maps CUDA IPC memory, Modal documents no
multi-GPU GPU snapshots, and a restore would move ~700 GB.
"""

from __future__ import annotations

from supervisor.engines.sglang import SGLangLaunch, Speculative

from . import Profile
from ._blockers import multi_gpu_blocker
from ._warmups import warmup_set

MODEL = "glm-5.1"
MAX_PREFILL_TOKENS = 32768

LAUNCH = SGLangLaunch(
    model_path="/model-cache/GLM-5.1-FP8",
    served_model_name=MODEL,
    tp_size=8,
    port=8000,
    trust_remote_code=True,
    ep_size=1,
    attention_backend="dsa",
    kv_cache_dtype="fp8_e4m3",
    moe_runner_backend="flashinfer_trtllm",
    flashinfer_allreduce_fusion_backend="auto",
    speculative=Speculative(algorithm="EAGLE", num_steps=3, eagle_topk=1, num_draft_tokens=4),
    reasoning_parser="glm45",
    tool_call_parser="glm47",
    mem_fraction_static=0.88,
    max_running_requests=48,
    max_prefill_tokens=MAX_PREFILL_TOKENS,
    max_total_tokens=65536,
    watchdog_timeout=1200,
    enable_metrics=True,
    mitigations=("explicit-kv-cache-dtype",),
    dg_cache_dir="/dg-cache",
    warmup_timeout_s=1800,
    extra_args=("--weight-loader-prefetch-checkpoints",),
)

PROFILE = Profile(
    name="glm-5.1-fp8",
    description="GLM-5.1 FP8 (~700 GB) on 8x B200, EAGLE speculative decoding, thinking and tools",
    hf_repo="zai-org/GLM-5.1-FP8",
    launch=LAUNCH,
    warmups=warmup_set(MODEL, max_prefill_tokens=MAX_PREFILL_TOKENS, thinking_switch=True),
    gpu="B200",
    gpu_count=8,
    app_name="glm51-sglang",
    weights_volume="glm51-model-weights",
    dg_cache_volume="glm51-deepgemm-cache",
    api_key_secret="glm51-api-key",
    startup_timeout_s=3600.0,
    weights_gb=700,
    snapshot_capable=False,
    snapshot_blocker=multi_gpu_blocker(8, 700),
)
