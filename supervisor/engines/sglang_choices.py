"""What 0.5.23's parser accepts for the launch's typed backends, and what only Blackwell runs.

Split from the launch config (`sglang`) because these are tables read from SGLang's source, each
with its file and function, that change with the pin while the launch's shape does not; the
check that a launch's values are among them lives here too, next to the tables it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from supervisor import ConfigError
from supervisor.engines.sglang_release import SGLANG_VERSION

__all__ = [
    "BLACKWELL_ONLY",
    "DSA_DECODE_BACKENDS",
    "DSA_PREFILL_BACKENDS",
    "FUSION_FIELD",
    "KV_CACHE_DTYPES",
    "check_choices",
]

#: `--kv-cache-dtype` choices of 0.5.23's parser (srt/arg_groups/fields: kv_cache_dtype).
KV_CACHE_DTYPES = (
    "auto",
    "fp8_e5m2",
    "fp8_e4m3",
    "mxfp8",
    "bf16",
    "bfloat16",
    "nvfp4",
    "fp4_mx_block16",
)

#: `--dsa-prefill-backend` / `--dsa-decode-backend` choices of 0.5.23's parser
#: (srt/arg_groups/fields/exec_.py: dsa_prefill_backend, dsa_decode_backend; only prefill has
#: triton_sparse_mla).
DSA_PREFILL_BACKENDS = (
    "flashmla_sparse",
    "flashmla_sparse_q8",
    "flashmla_kv",
    "flashmla_auto",
    "flashinfer_sparse_mla",
    "triton_sparse_mla",
    "fa3",
    "tilelang",
    "triton",
    "aiter",
    "trtllm",
    "intel_xpu",
)
DSA_DECODE_BACKENDS = tuple(b for b in DSA_PREFILL_BACKENDS if b != "triton_sparse_mla")

#: The launch field of the all-reduce fusion backend, Blackwell-only on several nodes whatever
#: its value (see below).
FUSION_FIELD = "flashinfer_allreduce_fusion_backend"

#: Launch settings whose kernels exist only on Blackwell (SM100) in 0.5.23, so a Hopper profile
#: must not name them; `SGLangLaunch.blackwell_only` lists the ones a launch uses.
#: - moe_runner_backend flashinfer_trtllm(_routed): trtllm-gen MoE kernels are SM100-only
#:   (srt/arg_groups/overrides.py: _moe_runner_backend_quant_constraints; `auto` picks them only
#:   under get_platform().is_sm100, _deepseek_moe_quant_resolution); flashinfer_megamoe needs an
#:   SM100-family device (srt/arg_groups/moe_hook.py: _handle_a2a_moe).
#: - dsa backends trtllm: flashinfer's trtllm-gen sparse MLA, the SM>=10 default of
#:   overrides.py: _dsa_split_backend_resolution ("flashmla_kv on Hopper, trtllm on Blackwell":
#:   _check_dsa_backend_constraints); attention backend trtllm_mla: "only supported on Blackwell
#:   GPUs" (overrides.py: _mla_kv_cache_dtype_checks).
#: - flashinfer_allreduce_fusion_backend cutedsl: "Blackwell-only"
#:   (srt/layers/flashinfer_comm_fusion.py: _resolve_backend). On several nodes every fusion
#:   backend is Blackwell-only there (auto and mnnvl need MNNVL, trtllm is single-node), which
#:   `blackwell_only` adds for a launch with nnodes > 1.
#: - kv_cache_dtype mxfp8 / nvfp4: srt/arg_groups/kv_cache_hook.py (SM100+).
BLACKWELL_ONLY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "moe_runner_backend": frozenset(
            {"flashinfer_trtllm", "flashinfer_trtllm_routed", "flashinfer_megamoe"}
        ),
        "attention_backend": frozenset({"trtllm_mla"}),
        "dsa_prefill_backend": frozenset({"trtllm"}),
        "dsa_decode_backend": frozenset({"trtllm"}),
        FUSION_FIELD: frozenset({"cutedsl"}),
        "kv_cache_dtype": frozenset({"mxfp8", "nvfp4"}),
    }
)


def check_choices(
    *, kv_cache_dtype: str | None, dsa_prefill_backend: str | None, dsa_decode_backend: str | None
) -> None:
    """A ConfigError naming the first value that 0.5.23's parser would refuse (None: not set)."""
    if kv_cache_dtype is not None and kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ConfigError(
            f"kv cache dtype {kv_cache_dtype!r} is not one of SGLang "
            f"{SGLANG_VERSION}'s: {', '.join(KV_CACHE_DTYPES)}"
        )
    for name, value, choices in (
        ("prefill", dsa_prefill_backend, DSA_PREFILL_BACKENDS),
        ("decode", dsa_decode_backend, DSA_DECODE_BACKENDS),
    ):
        if value is not None and value not in choices:
            raise ConfigError(
                f"dsa {name} backend {value!r} is not one of SGLang {SGLANG_VERSION}'s: "
                f"{', '.join(choices)}"
            )
