"""The SGLang launch config: a typed `SGLangLaunch`, checked, turned into 0.5.23's argv.

Everything here is data about one pinned SGLang release (`SGLANG_VERSION`), read from its source
(file and function named where each fact is used; docs/FIDELITY.md lists them). The core never
imports this module's knowledge, and this module never imports `sglang` itself: the parser check
runs the installed SGLang in `sglang_check`. The facts it builds on live in rooms of their own,
each with one job: `sglang_release` (the version and the lines SGLang prints), `sglang_choices`
(the parser's backend choices and what only Blackwell runs), `sglang_mitigations` (known bugs and
their workarounds), `sglang_keys` (the keys off the argv), `sglang_stop` (the drain budget) and
`sglang_causes` (how SGLang dies).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from supervisor import (
    ConfigError,
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    StopPolicy,
    SupervisorConfig,
    WarmupPayload,
    WarmupPolicy,
)
from supervisor.engines.sglang_choices import BLACKWELL_ONLY, FUSION_FIELD
from supervisor.engines.sglang_launch_checks import check_launch, dist_init_port
from supervisor.engines.sglang_mitigations import MITIGATIONS
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_release import HEALTH_PATH, PHASE_MARKERS, READY_LINE
from supervisor.engines.sglang_timings import TIMING_READERS

__all__ = ["SGLangLaunch", "Speculative"]


DP_ATTENTION = "--enable-dp-attention"
#: Every scheduler's metrics, labelled `dp_rank` under DP attention: what per-rank progress reads.
ALL_SCHEDULER_METRICS = "--enable-metrics-for-all-schedulers"


@dataclass(frozen=True)
class Speculative:
    algorithm: str = "EAGLE"
    num_steps: int = 3
    eagle_topk: int = 1
    num_draft_tokens: int = 4


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class SGLangLaunch:
    """SGLang server settings, turned into 0.5.23's canonical flags by `serve_argv`.

    Only what a deployment decides is typed here; anything else goes in `extra_args` and is
    checked by SGLang's own parser like the rest.

    Multi-node (docs/CLUSTER.md): every node runs the same argv but `--node-rank`. A launch with
    `nnodes > 1` and no `dist_init_addr` is a template (what a profile holds: rank 0's address is
    known only once the cluster is up); `for_rank` makes each node's launch, and building an argv
    from the template is a `ConfigError`.

    Snapshots (docs/SNAPSHOTS.md): `enable_memory_saver` makes SGLang's
    `/release_memory_occupation` actually free GPU memory, `enable_weights_cpu_backup` keeps a
    host copy of the weights across the release.
    """

    model_path: str
    served_model_name: str
    tp_size: int = 1  # the total across nodes: each node runs tp_size // nnodes ranks
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None  # rank 0's host:port ([v6]:port), nnodes > 1 only
    host: str = "0.0.0.0"
    port: int = 8000
    trust_remote_code: bool = False
    ep_size: int | None = None
    attention_backend: str | None = None
    kv_cache_dtype: str | None = None
    dsa_prefill_backend: str | None = None
    dsa_decode_backend: str | None = None
    moe_runner_backend: str | None = None
    flashinfer_allreduce_fusion_backend: str | None = None
    speculative: Speculative | None = None
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    mem_fraction_static: float | None = None
    max_running_requests: int | None = None
    max_prefill_tokens: int | None = None
    max_total_tokens: int | None = None
    context_length: int | None = None
    watchdog_timeout: float | None = None
    enable_metrics: bool = True
    enable_memory_saver: bool = False
    enable_weights_cpu_backup: bool = False
    mitigations: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    dg_cache_dir: str | None = None
    warmup_timeout_s: int = 1800
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = "python3"

    def __post_init__(self) -> None:
        check_launch(self)
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def gpus_per_node(self) -> int:
        """GPUs each node needs: its share of the total tensor parallelism."""
        return self.tp_size // self.nnodes

    def for_rank(self, rank: int, dist_init_addr: str) -> SGLangLaunch:
        """This launch as node `rank` runs it, rank 0 listening at `dist_init_addr` (host:port).

        Every node gets the same flags but `--node-rank`. A single-node launch has no rendezvous
        (SGLang uses local IPC), so for nnodes == 1 the address is checked and `self` returned:
        a deployment can call this for every profile alike.
        """
        if self.nnodes == 1:
            dist_init_port(dist_init_addr)
            if rank != 0:
                raise ConfigError(f"node rank {rank} is not in 0..0 (nnodes=1)")
            return self
        return replace(self, node_rank=rank, dist_init_addr=dist_init_addr)

    # ----------------------------------------------------------------- argv
    def model_args(self) -> list[str]:
        """The flags shared by serving and the DeepGEMM compile step (no API key).

        Both carry the multi-node flags: `sglang.compile_deep_gemm` starts the same server on
        every node, and its non-zero ranks wait for rank 0 (compile_deep_gemm.py:
        launch_server_process_and_send_one_request).
        """
        args = [
            "--model-path",
            self.model_path,
            "--served-model-name",
            self.served_model_name,
            "--tp-size",
            str(self.tp_size),
        ]
        if self.nnodes > 1:
            if self.dist_init_addr is None:
                raise ConfigError(
                    f"this is a {self.nnodes}-node launch template: build each node's argv from "
                    "for_rank(rank, dist_init_addr) (rank 0's host:port)"
                )
            args += [
                "--nnodes",
                str(self.nnodes),
                "--node-rank",
                str(self.node_rank),
                "--dist-init-addr",
                self.dist_init_addr,
            ]
        args += [
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.trust_remote_code:
            args.append("--trust-remote-code")
        optional: list[tuple[str, object]] = [
            ("ep_size", self.ep_size),
            ("attention_backend", self.attention_backend),
            ("kv_cache_dtype", self.kv_cache_dtype),
            ("dsa_prefill_backend", self.dsa_prefill_backend),
            ("dsa_decode_backend", self.dsa_decode_backend),
            ("moe_runner_backend", self.moe_runner_backend),
            ("flashinfer_allreduce_fusion_backend", self.flashinfer_allreduce_fusion_backend),
        ]
        if self.speculative is not None:
            s = self.speculative
            optional += [
                ("speculative_algorithm", s.algorithm),
                ("speculative_num_steps", s.num_steps),
                ("speculative_eagle_topk", s.eagle_topk),
                ("speculative_num_draft_tokens", s.num_draft_tokens),
            ]
        optional += [
            ("reasoning_parser", self.reasoning_parser),
            ("tool_call_parser", self.tool_call_parser),
            ("mem_fraction_static", self.mem_fraction_static),
            ("max_running_requests", self.max_running_requests),
            ("max_prefill_tokens", self.max_prefill_tokens),
            ("max_total_tokens", self.max_total_tokens),
            ("context_length", self.context_length),
            ("watchdog_timeout", self.watchdog_timeout),
        ]
        for name, value in optional:
            if value is not None:
                args += [_flag(name), _number(value)]
        if self.enable_metrics:
            args.append("--enable-metrics")
            if DP_ATTENTION in self.extra_args and ALL_SCHEDULER_METRICS not in self.extra_args:
                # Without it 0.5.23 reports from attention-TP rank 0 only (scheduler.py,
                # metrics_collector.py): one wedged DP rank would be invisible (sglang #32949).
                args.append(ALL_SCHEDULER_METRICS)
        if self.enable_memory_saver:
            args.append("--enable-memory-saver")
        if self.enable_weights_cpu_backup:
            args.append("--enable-weights-cpu-backup")
        for name in self.mitigations:
            args += MITIGATIONS[name].adds
        args += self.extra_args
        return args

    def serve_argv(
        self,
        api_key: str | None = None,
        *,
        engine: Sequence[str] | None = None,
        admin_api_key: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """The server's argv. `engine` replaces `python3 -m sglang.launch_server` (the fake, say).

        `python -m sglang.launch_server` rather than `sglang serve`: the latter first guesses a
        backend from the model (diffusion or language), which needs the model's files; the
        former goes straight to `prepare_server_args`, the parser that `check_argv` runs.
        With `key_file` (`sglang_keys.key_file`) the keys stay off the argv: `--config FILE`.
        """
        prefix = list(engine) if engine else [self.python, "-m", "sglang.launch_server"]
        argv = prefix + self.model_args()
        if key_file is not None:
            return [*argv, "--config", os.fspath(key_file)]
        if api_key:
            argv += ["--api-key", api_key]
        if admin_api_key:
            # Without it, SGLang's ADMIN_OPTIONAL routes take the client's key
            # (srt/utils/auth.py:decide_request_auth): pause, flush, load weights, release...
            argv += ["--admin-api-key", admin_api_key]
        return argv

    def compile_argv(
        self, timeout_s: int = 3600, *, engine: Sequence[str] | None = None
    ) -> list[str]:
        """`sglang.compile_deep_gemm` with the serving model flags, WITHOUT `--api-key`.

        Its readiness poll of `/v1/models` sends no key: with one set it would get 401 until its
        whole timeout ran out.
        """
        prefix = list(engine) if engine else [self.python, "-m", "sglang.compile_deep_gemm"]
        return prefix + self.model_args() + ["--timeout", str(int(timeout_s))]

    def blackwell_only(self) -> list[str]:
        """The settings of this launch that need a Blackwell GPU (`BLACKWELL_ONLY`), as flags."""
        found = [
            f"{_flag(name)} {getattr(self, name)}"
            for name, values in BLACKWELL_ONLY.items()
            if getattr(self, name) in values
        ]
        fusion = self.flashinfer_allreduce_fusion_backend
        if self.nnodes > 1 and fusion not in (None, *BLACKWELL_ONLY[FUSION_FIELD]):
            found.append(f"{_flag(FUSION_FIELD)} {fusion} on {self.nnodes} nodes")
        return found

    def environment(self) -> dict[str, str]:
        """What SGLang must find in its environment, whatever the platform."""
        env = {
            "HF_HUB_OFFLINE": "1",  # weights come from the volume; never reach for the hub
            "SGLANG_WARMUP_TIMEOUT": str(self.warmup_timeout_s),  # DeepGEMM JIT on first start
        }
        if self.dg_cache_dir:  # the default, DG_DEFAULT_CACHE_DIR, is not on the cache volume
            env["SGLANG_DG_CACHE_DIR"] = self.dg_cache_dir
        env.update(self.env)
        return env

    def caches(self) -> dict[str, str]:
        """Where this server keeps what it compiles, for the cache report (`_caches`).

        0.5.23 keeps it all under SGLANG_CACHE_DIR (`srt/environ.py`, default ~/.cache/sglang):
        DeepGEMM's `deep_gemm` unless SGLANG_DG_CACHE_DIR points elsewhere, `cute_aot`, and,
        through `redirect_third_party_caches`, Triton, TorchInductor, CUDA's `nv`, TileLang and
        FlashInfer's workspace. A DeepGEMM cache outside it is counted on its own.
        """
        env = {**os.environ, **self.environment()}
        root = env.get("SGLANG_CACHE_DIR") or os.path.expanduser("~/.cache/sglang")
        found = {"sglang": root}
        dg = env.get("SGLANG_DG_CACHE_DIR")
        inside = os.path.abspath(root)
        if dg and os.path.commonpath([os.path.abspath(dg), inside]) != inside:
            found["deepgemm"] = dg
        return found

    def with_overrides(self, **changes: Any) -> SGLangLaunch:
        """A copy with the given fields changed; a None leaves a field as it is."""
        kept: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **kept)

    def supervisor_config(
        self,
        *,
        api_key: str | None = None,
        warmups: Sequence[WarmupPayload] = (),
        startup_timeout: float = 3600.0,
        engine: Sequence[str] | None = None,
        liveness: LivenessPolicy | None = None,
        stop: StopPolicy | None = None,
        warmup_fail_startup: bool = True,
        admin_api_key: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> SupervisorConfig:
        """Everything the core needs to supervise this server: argv, env, probes, markers."""
        argv = self.serve_argv(
            api_key, engine=engine, admin_api_key=admin_api_key, key_file=key_file
        )
        return SupervisorConfig(
            launch=LaunchSpec(
                argv=tuple(argv),
                env=self.environment(),
            ),
            port=self.port,
            host="127.0.0.1",
            health=HealthPolicy(path=HEALTH_PATH, startup_timeout=startup_timeout),
            liveness=liveness or LivenessPolicy(),
            warmup=WarmupPolicy(payloads=tuple(warmups), fail_startup=warmup_fail_startup),
            stop=stop or StopPolicy(),
            api_key=api_key,
            admin_api_key=admin_api_key,
            ready_line=READY_LINE,
            phase_markers=PHASE_MARKERS,
            timing_readers=TIMING_READERS,
            progress=SGLANG_PROGRESS,
            caches=self.caches(),
            name=self.served_model_name,
        )


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
