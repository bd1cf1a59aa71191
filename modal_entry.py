"""Modal binding: GLM-5.1 FP8 (or any profile) on SGLang under the supervisor.

    modal run modal_entry.py          # download -> compile -> verify, each step's verdict printed
    modal deploy modal_entry.py       # the autoscaled web endpoint

This file only binds: GPUs, volumes, secrets and images, and the three lifecycle hooks. Every
decision (argv, preflight, warmup, health, crash handling) lives in `supervisor/`. The profile is
chosen here, once, from SGLANG_SUPERVISOR_PROFILE at deploy time (default glm-5.1-fp8), and baked
into the image so that containers resolve the same one:

    SGLANG_SUPERVISOR_PROFILE=qwen3-8b modal deploy modal_entry.py
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import modal

from supervisor import CrashReport, force_exit
from supervisor.deploy.lifecycle import (
    ENV_PROFILE,
    ServerLifecycle,
    download_weights,
    validate_deployment,
    verify_setup,
)
from supervisor.engines.sglang import SGLANG_VERSION
from supervisor.profiles import get_profile

PROFILE = get_profile(os.environ.get(ENV_PROFILE, "glm-5.1-fp8"))
MODAL_VERSION = "1.6.4"  # pinned in pyproject.toml's [modal] extra too
SGLANG_IMAGE = os.environ.get("SGLANG_IMAGE", f"lmsysorg/sglang:v{SGLANG_VERSION}-cu129")

MODEL_MOUNT, DG_MOUNT = "/model-cache", "/dg-cache"
PORT = PROFILE.launch.port
GPU = f"{PROFILE.gpu}:{PROFILE.gpu_count}"
SERVER_TIMEOUT_S = 86400  # a container serves for at most a day, then Modal replaces it
MAX_INPUTS = 20
# Modal waits this long for the port: a cold start loads ~700 GB, runs SGLang's own warmup and
# ours. The supervisor's own startup deadline is the profile's; Modal's must not cut it short.
WEB_STARTUP_TIMEOUT_S = int(PROFILE.startup_timeout_s) + 600
SUPERVISOR_DEPS = ["anyio>=4.7", "httpx>=0.27", "tenacity>=8.2", "prometheus-client>=0.20"]

if modal.__version__ != MODAL_VERSION:
    print(
        f"warning: modal {modal.__version__} is installed; this entry is made for {MODAL_VERSION}"
    )

app = modal.App(PROFILE.app_name)

model_volume = modal.Volume.from_name(PROFILE.weights_volume, create_if_missing=True)
dg_volume = modal.Volume.from_name(PROFILE.dg_cache_volume, create_if_missing=True)
VOLUMES: dict[str | PurePosixPath, modal.Volume | modal.CloudBucketMount] = {
    MODEL_MOUNT: model_volume,
    DG_MOUNT: dg_volume,
}
api_key_secret = modal.Secret.from_name(PROFILE.api_key_secret)
hf_secret = modal.Secret.from_name(PROFILE.hf_secret)

_profile_env = {ENV_PROFILE: PROFILE.name, "SGLANG_DG_CACHE_DIR": DG_MOUNT}
gpu_image = (
    modal.Image.from_registry(SGLANG_IMAGE)
    .pip_install(*SUPERVISOR_DEPS, "nvidia-ml-py")
    .env(_profile_env)
    .add_local_python_source("supervisor")
)
download_image = (
    modal.Image.debian_slim(python_version="3.12")
    # huggingface_hub downloads through hf-xet (chunked, parallel, resumable) by default now.
    .pip_install(*SUPERVISOR_DEPS, "huggingface_hub>=1.0")
    .env(_profile_env)
    .add_local_python_source("supervisor")
)

validate_deployment(
    gpu=PROFILE.gpu,
    gpu_count=PROFILE.gpu_count,
    timeout_s=SERVER_TIMEOUT_S,
    max_inputs=MAX_INPUTS,
    startup_timeout_s=WEB_STARTUP_TIMEOUT_S,
    secrets_ok=all(isinstance(s, modal.Secret) for s in (api_key_secret, hf_secret)),
)


def recycle(report: CrashReport) -> None:
    """The server died after serving: the crash report is written; end the container now.

    Modal only recycles a container whose process exits (its own check is that the port accepts
    TCP), and this runs in the supervisor's loop thread inside Modal's process: os._exit(1).
    """
    force_exit(1)


def _reload(volume: modal.Volume) -> None:
    if not modal.is_local():  # outside a container, reload() needs a token
        volume.reload()


def _commit(volume: modal.Volume) -> None:
    if not modal.is_local():
        volume.commit()


@app.function(
    image=download_image,
    volumes={MODEL_MOUNT: model_volume},
    secrets=[hf_secret],
    timeout=4 * 3600,
    cpu=8,
    memory=32768,
)
def download_model() -> str:
    check = download_weights(PROFILE, token=os.environ.get("HF_TOKEN"))
    _commit(model_volume)
    return check.line()


@app.function(image=gpu_image, gpu=GPU, volumes=VOLUMES, timeout=2 * 3600)
def compile_deepgemm() -> str:
    import anyio

    from supervisor.engines.deepgemm import compile_deepgemm as compile_step

    if not PROFILE.uses_deepgemm:
        return f"{PROFILE.name} does not use DeepGEMM: nothing to compile"
    _reload(model_volume)
    _reload(dg_volume)
    result = anyio.run(lambda: compile_step(PROFILE.launch, timeout_s=3600))
    _commit(dg_volume)
    if not result.ok:
        raise RuntimeError(f"DeepGEMM compile failed: {result.reason}")
    return "skipped: marker matches" if result.skipped else f"compiled in {result.seconds:.0f} s"


@app.function(image=gpu_image, volumes=VOLUMES, timeout=600, cpu=2)
def verify_setup_remote() -> dict[str, object]:
    _reload(model_volume)
    _reload(dg_volume)
    report = verify_setup(PROFILE)
    return {"ok": report.ok, "report": report.render()}


@app.cls(
    image=gpu_image,
    gpu=GPU,
    volumes=VOLUMES,
    secrets=[api_key_secret],
    timeout=SERVER_TIMEOUT_S,
    min_containers=0,
    max_containers=3,
    scaledown_window=900,
)
@modal.concurrent(max_inputs=MAX_INPUTS)
class Server:
    @modal.enter()
    def setup(self) -> None:
        self.lifecycle = ServerLifecycle(
            PROFILE,
            recycle=lambda report: recycle(report),  # looked up at call time (tests patch it)
            reloads=(lambda: _reload(model_volume), lambda: _reload(dg_volume)),
        )
        self.lifecycle.enter()

    @modal.web_server(port=PORT, startup_timeout=WEB_STARTUP_TIMEOUT_S)
    def serve(self) -> None:
        self.lifecycle.serve()

    @modal.exit()
    def shutdown(self) -> None:
        self.lifecycle.exit()


@app.local_entrypoint()
def main() -> None:
    print(f"[main] profile {PROFILE.name}: {PROFILE.description}")
    print(f"[main] download: {download_model.remote()}")
    print(f"[main] compile: {compile_deepgemm.remote()}")
    verdict = verify_setup_remote.remote()
    print(f"[main] verify:\n{verdict['report']}")
    if not verdict["ok"]:
        raise SystemExit(1)
