"""Verifying a deployment before it serves: the engine's preflight, the image against the pin.

Split from the serving lifecycle because verification also runs on its own (`verify_setup`, a
step of `modal run` without GPUs), and the serving container's `prepare` runs the same
preflight: one function (`preflight_report`) decides what is checked, dummy weights included.
"""

from __future__ import annotations

from supervisor.deploy.dummy_weights import check_model_config, with_dummy_weights
from supervisor.engines.image import runtime_problems
from supervisor.engines.preflight import Check, PreflightReport, run_preflight
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_release import SGLANG_VERSION
from supervisor.profiles import Profile

__all__ = ["preflight_report", "runtime_check", "verify_setup"]


def preflight_report(
    profile: Profile,
    launch: SGLangLaunch,
    *,
    real: bool,
    dummy: bool,
    gpus: bool,
    port: bool,
    marker: bool,
    parser_python: str | None = None,
) -> PreflightReport:
    """The engine's preflight; with dummy weights a config check replaces the weights check."""
    report = run_preflight(
        launch,
        launch.serve_argv("<api-key>"),
        gpu_type=profile.gpu,
        weights=real and not dummy,
        gpus=real and gpus,
        port=port,
        dg_cache=real and profile.uses_deepgemm,
        marker=real and marker,
        shm_room=real,
        parser_python=parser_python,
    )
    if real and dummy:
        skipped = Check("weights", "skip", "DUMMY WEIGHTS: --load-format dummy, nothing read")
        return PreflightReport((*report.checks, skipped, check_model_config(launch.model_path)))
    return report


def verify_setup(
    profile: Profile, *, parser_python: str | None = None, dummy: bool = False
) -> PreflightReport:
    """Weights complete (or, with dummy weights, the config), argv parses with the installed
    SGLang, DeepGEMM marker present."""
    launch = with_dummy_weights(profile.launch) if dummy else profile.launch
    report = preflight_report(
        profile,
        launch,
        real=True,
        dummy=dummy,
        gpus=False,  # verification may run without GPUs; serving checks them at enter
        port=False,
        marker=profile.uses_deepgemm,
        parser_python=parser_python,
    )
    return PreflightReport((runtime_check(require_gpu=False), *report.checks))


def runtime_check(*, require_gpu: bool) -> Check:
    """The image against the pin (SGLang version, CUDA, driver) as one preflight line."""
    problems = runtime_problems(require_gpu=require_gpu)
    if problems:
        return Check("runtime", "fail", "; ".join(problems))
    return Check("runtime", "ok", f"SGLang {SGLANG_VERSION} as pinned")
