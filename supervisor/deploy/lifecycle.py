"""Deployment steps that any platform binds: download, verify, and the server's lifecycle.

`modal_entry.py` is only the binding: it decides GPUs, volumes and secrets, and calls these. So
every decision is testable without Modal, and another platform can reuse all of it.
Platform hooks come in as plain callables (a volume's reload, the exit that recycles the
container), never as platform objects.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from supervisor._config import LivenessPolicy, StopPolicy
from supervisor._errors import ConfigError, StartupError
from supervisor._report import CrashReport
from supervisor._supervisor import Supervisor
from supervisor.blocking import BlockingSupervisor
from supervisor.engines.preflight import (
    Check,
    PreflightReport,
    check_marker,
    check_weights,
    run_preflight,
)
from supervisor.engines.sglang import SGLangLaunch, classify_crash
from supervisor.profiles import Profile

__all__ = [
    "ENV_API_KEY",
    "ENV_ENGINE_COMMAND",
    "ENV_PORT",
    "ENV_PROFILE",
    "KNOWN_GPUS",
    "ServerLifecycle",
    "download_weights",
    "validate_deployment",
    "verify_setup",
]

ENV_PROFILE = "SGLANG_SUPERVISOR_PROFILE"  # which profile a deployment serves
ENV_ENGINE_COMMAND = "SGLANG_SUPERVISOR_ENGINE_COMMAND"  # run a fake instead of SGLang (tests)
ENV_PORT = "SGLANG_SUPERVISOR_PORT"  # override the serving port (tests)
ENV_API_KEY = "API_KEY"  # the variable the API-key secret provides

#: GPU type names Modal accepts (Modal itself accepts any string at definition time).
KNOWN_GPUS = frozenset(
    {
        "T4",
        "L4",
        "A10G",
        "A100",
        "A100-40GB",
        "A100-80GB",
        "L40S",
        "H100",
        "H100!",
        "H200",
        "B200",
        "B200+",
    }
)
MAX_TIMEOUT_S = 24 * 3600


def validate_deployment(
    *,
    gpu: str,
    gpu_count: int,
    timeout_s: int,
    max_inputs: int,
    startup_timeout_s: float,
    secrets_ok: bool,
) -> None:
    """What Modal does not check at definition time, checked before a deploy wastes an hour."""
    if gpu not in KNOWN_GPUS:
        raise ConfigError(f"unknown GPU type {gpu!r}; use one of {sorted(KNOWN_GPUS)}")
    if not 1 <= gpu_count <= 8:
        raise ConfigError(f"GPU count must be 1 to 8, got {gpu_count}")
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be 1 to {MAX_TIMEOUT_S} s, got {timeout_s}")
    if max_inputs < 1:
        raise ConfigError(f"concurrent max_inputs must be >= 1, got {max_inputs}")
    if not 0 < startup_timeout_s <= timeout_s:
        raise ConfigError(
            f"startup timeout must be > 0 and <= the timeout, got {startup_timeout_s}"
        )
    if not secrets_ok:
        raise ConfigError("secrets must be modal.Secret objects, not names")


def download_weights(
    profile: Profile,
    *,
    model_path: str | None = None,
    token: str | None = None,
    max_workers: int = 8,
    log: Callable[[str], None] = print,
    snapshot_download: Callable[..., object] | None = None,
) -> Check:
    """Idempotent and resumable: complete weights are left alone; partial ones are completed.

    Completeness is the engine's own check (config.json and every shard the index names,
    non-empty), not a sentinel file that a crashed download could have left behind.
    """
    target = model_path or profile.launch.model_path
    before = check_weights(target)
    if before.status == "ok":
        log(f"[download] already complete: {before.message}")
        return before
    log(f"[download] {profile.hf_repo} -> {target} ({before.message})")
    if snapshot_download is None:
        from huggingface_hub import snapshot_download as hf_snapshot_download

        snapshot_download = hf_snapshot_download
    start = time.monotonic()
    # huggingface_hub skips files already complete and resumes partial ones; its progress bars
    # go to the logs.
    snapshot_download(
        repo_id=profile.hf_repo, local_dir=target, max_workers=max_workers, token=token
    )
    after = check_weights(target)
    log(f"[download] {after.line()} after {time.monotonic() - start:.0f} s")
    if after.status != "ok":
        raise ConfigError(f"download finished but the weights are incomplete: {after.message}")
    return after


def verify_setup(profile: Profile, *, parser_python: str | None = None) -> PreflightReport:
    """Weights complete, argv parses with the installed SGLang, DeepGEMM marker present."""
    launch = profile.launch
    return run_preflight(
        launch,
        launch.serve_argv("<api-key>"),
        gpu_type=profile.gpu,
        gpus=False,  # verification may run without GPUs; serving checks them at enter
        port=False,
        dg_cache=profile.uses_deepgemm,
        marker=profile.uses_deepgemm,
        parser_python=parser_python,
    )


@dataclass
class ServerLifecycle:
    """The serving container's three hooks: enter (reload, preflight), serve, exit.

    `serve()` returns once SGLang is serving (Modal's web server then routes traffic) and raises
    with the crash report's reason if startup fails. A death after serving writes the crash
    report and calls `recycle`, which must end the process (Modal replaces the container).
    """

    profile: Profile
    recycle: Callable[[CrashReport], None]
    reloads: Sequence[Callable[[], None]] = ()
    stop_timeout_s: float = 20.0  # drain + SIGKILL + reap stay inside Modal's 30 s exit grace
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    supervisor: BlockingSupervisor | None = None
    preflight: PreflightReport | None = None

    @property
    def engine(self) -> list[str] | None:
        command = self.env.get(ENV_ENGINE_COMMAND)
        return shlex.split(command) if command else None

    @property
    def launch(self) -> SGLangLaunch:
        port = self.env.get(ENV_PORT)
        launch = self.profile.launch
        if self.engine:
            launch = launch.with_overrides(host="127.0.0.1")
        return launch.with_overrides(port=int(port)) if port else launch

    def enter(self) -> PreflightReport:
        for reload in self.reloads:
            reload()
        real = self.engine is None
        launch = self.launch
        report = run_preflight(
            launch,
            launch.serve_argv("<api-key>"),
            gpu_type=self.profile.gpu,
            weights=real,
            gpus=real,
            dg_cache=real and self.profile.uses_deepgemm,
        )
        print(report.render(), flush=True)
        if real and self.profile.uses_deepgemm and check_marker(launch).status != "ok":
            print(
                "[supervisor] warning: no DeepGEMM marker; kernels will JIT on this start",
                flush=True,
            )
        if not report.ok:
            raise ConfigError("preflight failed: " + "; ".join(c.line() for c in report.failures))
        self.preflight = report
        return report

    def serve(self) -> Supervisor:
        api_key = self.env.get(ENV_API_KEY) or None
        config = self.launch.supervisor_config(
            api_key=api_key,
            warmups=self.profile.warmups,
            startup_timeout=self.profile.startup_timeout_s,
            engine=self.engine,
            liveness=LivenessPolicy(),
            stop=StopPolicy(stop_timeout=self.stop_timeout_s),
        )
        self.supervisor = BlockingSupervisor(
            config, classify=classify_crash, on_death=lambda report: self.recycle(report)
        )
        try:
            return self.supervisor.start()
        except StartupError as exc:
            # The platform shows this exception as the reason the container failed to start:
            # make it carry the report, not just the first line.
            tail = "\n".join(f"  | {line}" for line in exc.tail[-30:])
            raise type(exc)(
                f"{exc}\nlast {min(len(exc.tail), 30)} log lines:\n{tail}",
                returncode=exc.returncode,
                tail=exc.tail,
                cause=exc.cause,
            ) from exc

    def exit(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
