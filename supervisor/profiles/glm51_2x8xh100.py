"""GLM-5.1 FP8 on two nodes of 8x H100 (tensor parallelism 16): the model where B200s are not.

~700 GB of FP8 weights do not fit 8x 80 GB, so the server spans two nodes (docs/CLUSTER.md):
`tp_size=16` is the total, each node runs 8 ranks (srt/entrypoints/engine.py:
_calculate_rank_ranges), and this launch is rank 0's template: each node's argv comes from
`LAUNCH.for_rank(rank, "<rank 0 host>:<port>")`. SGLang's H100 recipe for GLM-5.1 FP8 is the
same shape (tp 16, sgl-cookbook GLM-5.1). Every backend is one 0.5.23 runs on Hopper (SM90),
read in srt/ of the pinned source, and stated so that the argv says what runs:

- `--kv-cache-dtype bfloat16` with `--dsa-prefill-backend flashmla_sparse` and
  `--dsa-decode-backend fa3`: exactly what 0.5.23 resolves by itself on SM90
  (arg_groups/overrides.py:_dsa_kv_cache_dtype_default, l. 534: `auto` is fp8_e4m3 only for
  major >= 10, else bfloat16; _dsa_split_backend_resolution, l. 724-726: flashmla_sparse prefill,
  decode `trtllm if major >= 10 else fa3`), and what the H100/H200 recipes run. The other Hopper
  pairing, fp8_e4m3 with flashmla_kv (l. 716), halves the KV cache, but 16 GPUs leave room for a
  bigger BF16 pool than this profile caps it at (below), so there is no reason to quantize the
  cache. fa3 reads a BF16 cache (layers/attention/dsa_backend.py, l. 488). GLM has no learnable
  attention sinks, so nothing forces flashmla_sparse for decode.
- `--moe-runner-backend triton`: what `auto` becomes on Hopper without an all-to-all backend,
  for either FP8 checkpoint format (layers/quantization/fp8.py:Fp8MoEMethod.create_moe_runner,
  l. 2972; compressed_tensors_w8a8_fp8_moe.py:create_moe_runner, l. 354). The B200 profile's
  flashinfer_trtllm runs trtllm-gen kernels that are SM100-only (overrides.py l. 1521; `auto`
  picks it only under is_sm100, l. 771-823).
- no `--flashinfer-allreduce-fusion-backend`: on more than one node it exists only on Blackwell
  (layers/flashinfer_comm_fusion.py:_resolve_backend: `auto` raises "does not support multi-node
  on non-Blackwell systems", trtllm is single-node), and SGLang's own auto-enable skips it here
  (overrides.py:_flashinfer_allreduce_fusion_auto_enable, l. 994: `nnodes == 1 or is_sm100`).
- EAGLE through the model's MTP layer, the glm45/glm47 parsers, `--attention-backend dsa`: as
  the B200 profile.

Memory, per GPU (H100: 79.6 GiB): the weights are ~700 GB / 16 = ~41 GiB, plus the MTP layer's
shard. `--mem-fraction-static 0.85` (SGLang's H100 recipe value) gives weights and KV pool
~67.7 GiB, so ~26 GiB of pool: the MLA latent is not split by TP, ~100 KB a token per rank in
BF16 (78 layers x (576 x 2 B + the DSA indexer's 132 B)), room for ~270k tokens. The pool is
capped with `--max-total-tokens 131072`, about half of that: the cap, not a per-node memory
profile (NCCL and InfiniBand buffers differ between nodes), sets the pool on every rank, and the
rest stays free for activations, CUDA graphs and communication buffers on these 80 GB cards.
`--max-running-requests 48` and `--max-prefill-tokens 32768` are the B200 profile's, so both
GLM profiles serve the same load with the same warmups.

Volumes: the weights volume is the B200 profile's (the same files), the DeepGEMM cache is its
own: kernels JIT-compiled for B200 (SM100) are not valid on H100 (SM90).
"""

from __future__ import annotations

import dataclasses

from . import Profile, glm51
from ._blockers import multi_gpu_blocker
from ._warmups import warmup_set
from .glm51 import MODEL

NNODES = 2
GPUS_PER_NODE = 8
WEIGHTS_GB = 700

# The B200 profile's launch, with only what the hardware changes: the same model, parsers,
# speculative decoding, batch and prefill bounds, so the two can never drift apart by accident.
LAUNCH = dataclasses.replace(
    glm51.LAUNCH,
    tp_size=GPUS_PER_NODE * NNODES,
    nnodes=NNODES,
    kv_cache_dtype="bfloat16",
    dsa_prefill_backend="flashmla_sparse",
    dsa_decode_backend="fa3",
    moe_runner_backend="triton",
    flashinfer_allreduce_fusion_backend=None,
    mem_fraction_static=0.85,
    max_total_tokens=131072,
)

PROFILE = Profile(
    name="glm-5.1-fp8-2x8xh100",
    description="GLM-5.1 FP8 (~700 GB) on 2 nodes of 8x H100 (TP 16), EAGLE, thinking and tools",
    hf_repo="zai-org/GLM-5.1-FP8",
    launch=LAUNCH,
    warmups=warmup_set(MODEL, max_prefill_tokens=glm51.MAX_PREFILL_TOKENS, thinking_switch=True),
    gpu="H100",
    gpu_count=GPUS_PER_NODE,
    nnodes=NNODES,
    app_name="glm51-2x8xh100-sglang",
    weights_volume="glm51-model-weights",
    dg_cache_volume="glm51-h100-deepgemm-cache",
    api_key_secret="glm51-api-key",
    startup_timeout_s=3600.0,
    weights_gb=WEIGHTS_GB,
    notes=(
        "one server on a 2-container Modal cluster (@modal.clustered(size=2, rdma=True)); "
        "rank 0 serves HTTP, rank 1 runs schedulers only (docs/CLUSTER.md)",
    ),
    snapshot_capable=False,
    snapshot_blocker=multi_gpu_blocker(GPUS_PER_NODE * NNODES, WEIGHTS_GB, nnodes=NNODES),
)
