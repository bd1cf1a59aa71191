"""The SGLang edge: a typed launch config, what SGLang prints and how it dies.

Everything here is data about one pinned SGLang release (`SGLANG_VERSION`), read from its source
(see `shared/reference/`). The core never imports this module's knowledge, and this module never
imports `sglang` itself: the parser check runs the installed SGLang in `sglang_check`.

Drain semantics the core relies on: SIGTERM to the main pid only (its children have no SIGTERM
handler, and signalling the group kills schedulers mid-drain); SGLang then drains with no time
limit, so the supervisor's stop timeout is the bound, then SIGKILL to the whole tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

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

__all__ = [
    "COMPILE_SUCCESS_LINE",
    "HEALTH_PATH",
    "MITIGATIONS",
    "PHASE_MARKERS",
    "READY_LINE",
    "SGLANG_VERSION",
    "Mitigation",
    "SGLangLaunch",
    "Speculative",
    "classify_crash",
]

#: The one SGLang release this project's argv, image and checks are built for.
SGLANG_VERSION = "0.5.23"

READY_LINE = "The server is fired up and ready to roll!"
HEALTH_PATH = "/health"
COMPILE_SUCCESS_LINE = "DeepGEMM Kernels compilation finished successfully."

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
    """A known SGLang problem and what the launch does about it: flags added or forbidden."""

    name: str
    reason: str
    adds: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()


#: Every workaround in one place, each with its reason. Profiles name the ones they need.
MITIGATIONS: Mapping[str, Mitigation] = MappingProxyType(
    {
        m.name: m
        for m in (
            Mitigation(
                "trtllm-dsa-attention",
                "sglang #21291: unstable DSA decode on B200 with the default sparse-attention "
                "kernels; the TRT-LLM decode and prefill backends are stable",
                adds=("--dsa-decode-backend", "trtllm", "--dsa-prefill-backend", "trtllm"),
            ),
            Mitigation(
                "bf16-kv-cache",
                "sglang #22359, #17526: an FP8 KV cache corrupts output on GLM/DSA models; the KV "
                "cache stays BF16 by never passing --kv-cache-dtype fp8",
                forbids=("--kv-cache-dtype",),
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
    """

    model_path: str
    served_model_name: str
    tp_size: int = 1
    host: str = "0.0.0.0"
    port: int = 8000
    trust_remote_code: bool = False
    ep_size: int | None = None
    attention_backend: str | None = None
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
        unknown = [m for m in self.mitigations if m not in MITIGATIONS]
        if unknown:
            raise ConfigError(f"unknown mitigations {unknown}; known: {sorted(MITIGATIONS)}")
        tokens = set(self.extra_args)
        for name in self.mitigations:
            bad = tokens & set(MITIGATIONS[name].forbids)
            if bad:
                reason = MITIGATIONS[name].reason
                raise ConfigError(f"{sorted(bad)[0]} is forbidden by mitigation {name!r}: {reason}")
        if "--api-key" in tokens:
            raise ConfigError(
                "--api-key must not be in extra args: the key comes from the environment"
            )
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    # ----------------------------------------------------------------- argv
    def model_args(self) -> list[str]:
        """The flags shared by serving and the DeepGEMM compile step (no API key)."""
        args = [
            "--model-path",
            self.model_path,
            "--served-model-name",
            self.served_model_name,
            "--tp-size",
            str(self.tp_size),
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
        for name in self.mitigations:
            args += MITIGATIONS[name].adds
        args += self.extra_args
        return args

    def serve_argv(
        self, api_key: str | None = None, *, engine: Sequence[str] | None = None
    ) -> list[str]:
        """The server's argv. `engine` replaces `python3 -m sglang.launch_server` (the fake, say).

        `python -m sglang.launch_server` rather than `sglang serve`: the latter first guesses a
        backend from the model (diffusion or language), which needs the model's files; the
        former goes straight to `prepare_server_args`, the parser that `check_argv` runs.
        """
        prefix = list(engine) if engine else [self.python, "-m", "sglang.launch_server"]
        argv = prefix + self.model_args()
        if api_key:
            argv += ["--api-key", api_key]
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

    def environment(self) -> dict[str, str]:
        """What SGLang must find in its environment, whatever the platform."""
        env = {
            "HF_HUB_OFFLINE": "1",  # weights come from the volume; never reach for the hub
            "SGLANG_WARMUP_TIMEOUT": str(self.warmup_timeout_s),  # DeepGEMM JIT on first start
        }
        if self.dg_cache_dir:
            env["SGLANG_DG_CACHE_DIR"] = (
                self.dg_cache_dir
            )  # default ~/.cache/deep_gemm misses the volume
        env.update(self.env)
        return env

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
    ) -> SupervisorConfig:
        """Everything the core needs to supervise this server: argv, env, probes, markers."""
        return SupervisorConfig(
            launch=LaunchSpec(
                argv=tuple(self.serve_argv(api_key, engine=engine)), env=self.environment()
            ),
            port=self.port,
            host="127.0.0.1",
            health=HealthPolicy(path=HEALTH_PATH, startup_timeout=startup_timeout),
            liveness=liveness or LivenessPolicy(),
            warmup=WarmupPolicy(payloads=tuple(warmups), fail_startup=warmup_fail_startup),
            stop=stop or StopPolicy(),
            api_key=api_key,
            ready_line=READY_LINE,
            phase_markers=PHASE_MARKERS,
            name=self.served_model_name,
        )


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- crash causes
#: (cause, patterns) in priority order: the first cause with a pattern in the tail wins. The
#: texts are SGLang's and PyTorch's own (srt/entrypoints/engine.py, http_server.py, watchdog.py).
CRASH_CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "cuda-out-of-memory",
        ("CUDA out of memory", "torch.OutOfMemoryError", "CUDA error: out of memory"),
    ),
    (
        "nccl-error",
        (
            "NCCL error",
            "ncclInternalError",
            "ncclUnhandledCudaError",
            "ncclSystemError",
            "ProcessGroupNCCL",
        ),
    ),
    ("address-in-use", ("Address already in use", "[Errno 98]")),
    (
        "missing-weights",
        (
            "does not appear to have a file named",
            "No such file or directory: '",
            "Can't load the configuration",
            "safetensors_rust.SafetensorError",
            "is not a local folder and is not a valid model identifier",
        ),
    ),
    ("scheduler-killed-during-init", ("scheduler died during initialization (exit code: -9)",)),
    ("watchdog-timeout", ("watchdog timeout (",)),
    ("warmup-failed", ("Initialization failed. warmup error",)),
    (
        "scheduler-exception",
        ("Scheduler hit an exception", "Received sigquit from a child process"),
    ),
)

#: What an operator does about each cause (used by the crash report and the runbook).
CAUSE_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "cuda-out-of-memory": "lower --mem-fraction-static or --max-running-requests",
        "nccl-error": "a GPU or NVLink fault: let the platform recycle the container",
        "address-in-use": "a stale server holds the port; the preflight port check finds it",
        "missing-weights": "the weights volume is incomplete: run download_model again",
        "scheduler-killed-during-init": "the OS OOM killer: the container needs more host memory",
        "watchdog-timeout": "a batch hung longer than --watchdog-timeout: GPU or kernel hang",
        "warmup-failed": "SGLang's own warmup failed; raise SGLANG_WARMUP_TIMEOUT for DeepGEMM",
        "scheduler-exception": "read the traceback in the tail above",
        "unknown": "read the tail above",
    }
)


def classify_crash(lines: Sequence[str]) -> str:
    """Name the cause of a crash from the last lines of SGLang's log, or "unknown"."""
    text = "\n".join(lines)
    for cause, patterns in CRASH_CAUSES:
        if any(p in text for p in patterns):
            return cause
    return "unknown"
