"""The SGLang edge: a typed launch config, what SGLang prints and how it dies.

Everything here is data about one pinned SGLang release (`SGLANG_VERSION`), read from its source
(file and function named where each fact is used; docs/FIDELITY.md lists them). The core never
imports this module's knowledge, and this module never imports `sglang` itself: the parser check
runs the installed SGLang in `sglang_check`.

Drain semantics the core relies on: SIGTERM to the main pid only (its children have no SIGTERM
handler, and signalling the group kills schedulers mid-drain). SGLang then notices within 5 s,
waits for in-flight requests with no time limit, gives its schedulers 15 s to release GPU memory
and exits by itself; `stop_budget` turns those timings into the supervisor's stop timeout and
the platform's exit grace.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from supervisor._cluster import parse_address
from supervisor._config import (
    HealthPolicy,
    LaunchSpec,
    LivenessPolicy,
    StopPolicy,
    SupervisorConfig,
    WarmupPayload,
    WarmupPolicy,
)
from supervisor._errors import ConfigError
from supervisor.engines.sglang_causes import (
    CAUSE_HINTS,
    CRASH_CAUSES,
    classify_crash,
    is_error_line,
)
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_timings import TIMING_READERS

__all__ = [
    "BLACKWELL_ONLY",
    "CAUSE_HINTS",
    "COMPILE_SUCCESS_LINE",
    "CRASH_CAUSES",
    "DG_DEFAULT_CACHE_DIR",
    "DSA_DECODE_BACKENDS",
    "DSA_PREFILL_BACKENDS",
    "HEALTH_PATH",
    "KV_CACHE_DTYPES",
    "MITIGATIONS",
    "PHASE_MARKERS",
    "READY_LINE",
    "SCHEDULER_EXIT_S",
    "SGLANG_VERSION",
    "SIGTERM_NOTICE_S",
    "Mitigation",
    "SGLangLaunch",
    "Speculative",
    "StopBudget",
    "classify_crash",
    "dist_init_port",
    "fresh_admin_key",
    "is_error_line",
    "stop_budget",
]

#: The one SGLang release this project's argv, image and checks are built for.
SGLANG_VERSION = "0.5.23"

READY_LINE = "The server is fired up and ready to roll!"
HEALTH_PATH = "/health"
COMPILE_SUCCESS_LINE = "DeepGEMM Kernels compilation finished successfully."
#: Where DeepGEMM's JIT cache goes without SGLANG_DG_CACHE_DIR: SGLANG_CACHE_DIR (default
#: ~/.cache/sglang) + "deep_gemm" (srt/environ.py: SGLANG_DG_CACHE_DIR, _default_cache_subdir).
DG_DEFAULT_CACHE_DIR = "~/.cache/sglang/deep_gemm"
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
_FUSION = "flashinfer_allreduce_fusion_backend"
BLACKWELL_ONLY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "moe_runner_backend": frozenset(
            {"flashinfer_trtllm", "flashinfer_trtllm_routed", "flashinfer_megamoe"}
        ),
        "attention_backend": frozenset({"trtllm_mla"}),
        "dsa_prefill_backend": frozenset({"trtllm"}),
        "dsa_decode_backend": frozenset({"trtllm"}),
        _FUSION: frozenset({"cutedsl"}),
        "kv_cache_dtype": frozenset({"mxfp8", "nvfp4"}),
    }
)

#: Log lines that start a cold-start phase (srt/model_executor/model_runner.py, engine.py).
PHASE_MARKERS: tuple[tuple[str, str], ...] = (
    ("load_weight", "Load weight begin"),
    ("weights_loaded", "Load weight end"),
    ("engine_ready", "Engine startup timings (s):"),
    ("http_up", "Uvicorn running on"),
    ("ready_line", READY_LINE),
)


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
        if not self.model_path:
            raise ConfigError("model path is empty: pass --model-path")
        if self.tp_size < 1:
            raise ConfigError(f"tensor parallelism must be >= 1, got {self.tp_size}")
        self._check_nodes()
        unknown = [m for m in self.mitigations if m not in MITIGATIONS]
        if unknown:
            raise ConfigError(f"unknown mitigations {unknown}; known: {sorted(MITIGATIONS)}")
        tokens = {t.split("=", 1)[0] for t in self.extra_args}
        if self.kv_cache_dtype is not None and self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ConfigError(
                f"kv cache dtype {self.kv_cache_dtype!r} is not one of SGLang "
                f"{SGLANG_VERSION}'s: {', '.join(KV_CACHE_DTYPES)}"
            )
        for name, value, choices in (
            ("prefill", self.dsa_prefill_backend, DSA_PREFILL_BACKENDS),
            ("decode", self.dsa_decode_backend, DSA_DECODE_BACKENDS),
        ):
            if value is not None and value not in choices:
                raise ConfigError(
                    f"dsa {name} backend {value!r} is not one of SGLang {SGLANG_VERSION}'s: "
                    f"{', '.join(choices)}"
                )
        if (self.dsa_prefill_backend or self.dsa_decode_backend) and self.kv_cache_dtype is None:
            # SGLang warns and guesses (overrides.py:_dsa_kv_cache_dtype_default): a DSA backend
            # reads one KV layout, so the launch names the dtype it was chosen for.
            raise ConfigError("a DSA backend needs kv_cache_dtype set: each reads one KV layout")
        if self.enable_weights_cpu_backup and not self.enable_memory_saver:
            # The backup is made by the memory saver's weights region; without the saver SGLang's
            # no-op adapter ignores it (srt/utils/torch_memory_saver_adapter.py: Noop.region).
            raise ConfigError("enable_weights_cpu_backup needs enable_memory_saver")
        for name in self.mitigations:
            mitigation = MITIGATIONS[name]
            bad = tokens & set(mitigation.forbids)
            if bad:
                raise ConfigError(
                    f"{sorted(bad)[0]} is forbidden by mitigation {name!r}: {mitigation.reason}"
                )
            unset = [f for f in mitigation.requires if getattr(self, f) is None]
            if unset:
                raise ConfigError(f"mitigation {name!r} needs {unset[0]} set: {mitigation.reason}")
        if tokens & {"--api-key", "--admin-api-key"}:
            raise ConfigError(
                "--api-key and --admin-api-key must not be in extra args: the keys come from "
                "the environment"
            )
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    def _check_nodes(self) -> None:
        """The multi-node fields agree with each other (the address is checked, not required)."""
        if self.nnodes < 1:
            raise ConfigError(f"nnodes must be >= 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(
                f"node rank {self.node_rank} is not in 0..{self.nnodes - 1} (nnodes={self.nnodes})"
            )
        if self.tp_size % self.nnodes:
            # engine.py:_calculate_rank_ranges gives each node tp_size // nnodes ranks
            raise ConfigError(
                f"tensor parallelism {self.tp_size} (the total) is not divisible by "
                f"nnodes {self.nnodes}"
            )
        if self.dist_init_addr is None:
            return
        if self.nnodes == 1:
            raise ConfigError(
                "dist_init_addr is for nnodes > 1: a single node rendezvouses locally"
            )
        port = dist_init_port(self.dist_init_addr)
        if port == self.port:
            raise ConfigError(
                f"dist_init_addr port {port} is the HTTP port too: rank 0 listens on both"
            )

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
        if self.nnodes > 1 and fusion not in (None, *BLACKWELL_ONLY[_FUSION]):
            found.append(f"{_flag(_FUSION)} {fusion} on {self.nnodes} nodes")
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


def fresh_admin_key() -> str:
    """A random admin key for one start: known to the supervisor only, never to a client.

    SGLang marks 43 routes ADMIN_OPTIONAL (srt/entrypoints/http_server.py): with no
    `--admin-api-key` the client's key opens them (srt/utils/auth.py:decide_request_auth), so
    a client could pause, flush, load other weights or release a serving replica's memory.
    """
    return f"admin-{secrets.token_urlsafe(32)}"


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


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- stopping
#: SGLang 0.5.23's drain, srt/managers/tokenizer_manager.py (TokenizerManager.sigterm_watchdog,
#: installed with the first generate request, which SGLang's own warmup sends before the ready
#: line): it looks at the SIGTERM flag every 5 s, then counts in-flight requests every 5 s until
#: none is left (no time limit), then sends ShutdownReq and gives the schedulers
#: `_SCHEDULER_EXIT_TIMEOUT_SECS` (15 s) to release GPU memory before SIGKILLing stragglers.
SIGTERM_NOTICE_S = 5.0
DRAIN_POLL_S = 5.0
SCHEDULER_EXIT_S = 15.0
#: After the schedulers: kill_process_tree of what is left (reaped, 60 s bound but near instant
#: once the schedulers are gone), uvicorn's own shutdown, the interpreter's exit.
EXIT_MARGIN_S = 5.0
#: After the supervisor's SIGKILL: the kill bound (`StopPolicy.kill_timeout`) is spent only when a
#: process resists SIGKILL; then reaping, the crash report's write and our own exit.
REAP_MARGIN_S = 2.0


@dataclass(frozen=True)
class StopBudget:
    """How long a graceful stop may take: the supervisor's stop timeout and the platform's grace."""

    stop_timeout_s: float  # SIGTERM to the main pid .. SIGKILL to the tree
    kill_timeout_s: float  # SIGKILL .. giving up on survivors
    platform_grace_s: float  # the least exit grace a platform must give the container

    def stop_policy(self) -> StopPolicy:
        return StopPolicy(stop_timeout=self.stop_timeout_s, kill_timeout=self.kill_timeout_s)


def stop_budget(
    longest_request_s: float = 0.0,
    *,
    kill_timeout_s: float = 5.0,
    margin_s: float = EXIT_MARGIN_S,
) -> StopBudget:
    """The stop timeout that lets SGLang finish its own drain, from its own timings.

    `longest_request_s` is the longest in-flight request the deployment is willing to finish
    (0: finish only what ends by the first count). The derivation, worst case:

    - SIGTERM is noticed at most `SIGTERM_NOTICE_S` (5 s) after it arrives;
    - in-flight requests are counted then and every `DRAIN_POLL_S` (5 s), so the count that finds
      none comes at most 5 s after the last request ends, and never later than
      `longest_request_s + 5` s after SIGTERM (the first count is within 5 s);
    - the schedulers get `SCHEDULER_EXIT_S` (15 s) to release GPU memory;
    - `margin_s` covers the reap of the rest, uvicorn's shutdown and the exit.

    stop timeout = 5 + longest_request_s + 15 + margin_s (25 s with the defaults, which is also
    `StopPolicy`'s default); platform grace = stop timeout + kill_timeout_s + `REAP_MARGIN_S`
    (32 s with the defaults: more than a 30 s platform grace, so a deployment either asks its
    platform for that grace or accepts that the scheduler release may be cut short by SIGKILL).
    """
    if longest_request_s < 0 or kill_timeout_s <= 0 or margin_s < 0:
        raise ConfigError("stop budget: durations must be >= 0 (the kill timeout > 0)")
    stop = SIGTERM_NOTICE_S + longest_request_s + SCHEDULER_EXIT_S + margin_s
    return StopBudget(
        stop_timeout_s=stop,
        kill_timeout_s=kill_timeout_s,
        platform_grace_s=stop + kill_timeout_s + REAP_MARGIN_S,
    )
