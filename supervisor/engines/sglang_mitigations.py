"""Known SGLang 0.5.23 problems and what a launch does about each: one table, each with its reason.

A module of its own because the table is the project's memory of SGLang's bugs (README's
"mitigations"), read and re-checked against each new pin on its own, while the launch config
(`sglang`) only applies the ones a profile names: their flags to add, flags to forbid in
`extra_args`, and fields that must be set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["MITIGATIONS", "Mitigation"]


@dataclass(frozen=True)
class Mitigation:
    """A known SGLang problem and what the launch does about it.

    `adds` flags to the argv, `forbids` flags in `extra_args`, and `requires` launch fields that
    must be set (the value is the profile's choice; the reason says how to choose it). Each reason
    cites the 0.5.23 source line or the issue that justifies it.
    """

    name: str
    reason: str
    adds: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


#: Every workaround in one place, each with its reason. Profiles name the ones they need.
#: Dropped on re-checking 0.5.23 (they changed nothing): `trtllm-dsa-attention` (--dsa-decode/
#: prefill-backend trtllm, #21291) is what `_dsa_split_backend_resolution` picks by itself for an
#: fp8_e4m3 KV cache on SM>=10 (srt/arg_groups/overrides.py); `bf16-kv-cache` (#22359, #17526:
#: never pass --kv-cache-dtype) was no mitigation at all, since `auto` resolves to fp8_e4m3 for
#: GLM's DSA on B200 (see `explicit-kv-cache-dtype`).
MITIGATIONS: Mapping[str, Mitigation] = MappingProxyType(
    {
        m.name: m
        for m in (
            Mitigation(
                "explicit-kv-cache-dtype",
                "0.5.23 resolves --kv-cache-dtype auto per model and GPU: fp8_e4m3 for DSA models "
                "(GLM-5.x) on SM>=10 (srt/arg_groups/overrides.py:_dsa_kv_cache_dtype_default), "
                "the checkpoint's dtype for MLA models whose quant config names no KV algorithm "
                "(srt/mem_cache/kv_cache_dtype.py:configure_kv_cache_dtype), and it warns to set "
                "the dtype whenever a --dsa-*-backend is given; so the launch states it "
                "(kv_cache_dtype), and the argv says what runs",
                forbids=("--kv-cache-dtype",),
                requires=("kv_cache_dtype",),
            ),
        )
    }
)
