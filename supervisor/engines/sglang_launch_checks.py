"""The rules an SGLang launch obeys before any argv is built, each with its reason from SGLang.

Split from the launch config (`sglang`) so the config reads as its fields and what it renders,
and the rules read as a list: the model path and tensor parallelism, the multi-node fields, the
parser's choices (`sglang_choices`), the mitigations' forbidden flags and required fields
(`sglang_mitigations`), and the keys that never ride in `extra_args`. `SGLangLaunch` runs them
on construction, so a launch that exists is one SGLang would accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor import ConfigError
from supervisor.engines.sglang_choices import check_choices
from supervisor.engines.sglang_mitigations import MITIGATIONS
from supervisor.lowlevel import parse_address

if TYPE_CHECKING:
    from supervisor.engines.sglang import SGLangLaunch

__all__ = ["check_launch", "dist_init_port"]


def check_launch(launch: SGLangLaunch) -> None:
    """A ConfigError naming the first rule the launch breaks; each rule says why it holds."""
    if not launch.model_path:
        raise ConfigError("model path is empty: pass --model-path")
    if launch.tp_size < 1:
        raise ConfigError(f"tensor parallelism must be >= 1, got {launch.tp_size}")
    _check_nodes(launch)
    unknown = [m for m in launch.mitigations if m not in MITIGATIONS]
    if unknown:
        raise ConfigError(f"unknown mitigations {unknown}; known: {sorted(MITIGATIONS)}")
    tokens = {t.split("=", 1)[0] for t in launch.extra_args}
    check_choices(
        kv_cache_dtype=launch.kv_cache_dtype,
        dsa_prefill_backend=launch.dsa_prefill_backend,
        dsa_decode_backend=launch.dsa_decode_backend,
    )
    if (launch.dsa_prefill_backend or launch.dsa_decode_backend) and launch.kv_cache_dtype is None:
        # SGLang warns and guesses (overrides.py:_dsa_kv_cache_dtype_default): a DSA backend
        # reads one KV layout, so the launch names the dtype it was chosen for.
        raise ConfigError("a DSA backend needs kv_cache_dtype set: each reads one KV layout")
    if launch.enable_weights_cpu_backup and not launch.enable_memory_saver:
        # The backup is made by the memory saver's weights region; without the saver SGLang's
        # no-op adapter ignores it (srt/utils/torch_memory_saver_adapter.py: Noop.region).
        raise ConfigError("enable_weights_cpu_backup needs enable_memory_saver")
    for name in launch.mitigations:
        mitigation = MITIGATIONS[name]
        bad = tokens & set(mitigation.forbids)
        if bad:
            raise ConfigError(
                f"{sorted(bad)[0]} is forbidden by mitigation {name!r}: {mitigation.reason}"
            )
        unset = [f for f in mitigation.requires if getattr(launch, f) is None]
        if unset:
            raise ConfigError(f"mitigation {name!r} needs {unset[0]} set: {mitigation.reason}")
    if tokens & {"--api-key", "--admin-api-key"}:
        raise ConfigError(
            "--api-key and --admin-api-key must not be in extra args: the keys come from "
            "the environment"
        )


def _check_nodes(launch: SGLangLaunch) -> None:
    """The multi-node fields agree with each other (the address is checked, not required)."""
    if launch.nnodes < 1:
        raise ConfigError(f"nnodes must be >= 1, got {launch.nnodes}")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise ConfigError(
            f"node rank {launch.node_rank} is not in 0..{launch.nnodes - 1} "
            f"(nnodes={launch.nnodes})"
        )
    if launch.tp_size % launch.nnodes:
        # engine.py:_calculate_rank_ranges gives each node tp_size // nnodes ranks
        raise ConfigError(
            f"tensor parallelism {launch.tp_size} (the total) is not divisible by "
            f"nnodes {launch.nnodes}"
        )
    if launch.dist_init_addr is None:
        return
    if launch.nnodes == 1:
        raise ConfigError("dist_init_addr is for nnodes > 1: a single node rendezvouses locally")
    port = dist_init_port(launch.dist_init_addr)
    if port == launch.port:
        raise ConfigError(
            f"dist_init_addr port {port} is the HTTP port too: rank 0 listens on both"
        )


def dist_init_port(address: str) -> int:
    """The port of a `--dist-init-addr`, or a one-line ConfigError.

    0.5.23 parses the flag with `NetworkAddress.parse` (srt/utils/network.py): `host:port`, an
    IPv6 literal in brackets (`[fd00::1]:5000`; a bare one is refused as ambiguous); it is only
    a string to the argparse parser, so the check has to happen here.
    """
    try:
        return parse_address(address)[1]
    except ValueError as exc:
        raise ConfigError(f"dist_init_addr {address!r}: {exc}") from None
