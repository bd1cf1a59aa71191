"""Modal binding: GLM-5.1 FP8 (or any profile) on SGLang under the supervisor.

    export SGLANG_SUPERVISOR_PROFILE=glm-5.1-fp8  # the default; name it, never rely on it
    modal run modal_entry.py      # download -> compile -> verify, each step's verdict printed
    modal deploy modal_entry.py   # the autoscaled endpoint

This file only binds: GPUs, volumes, secrets, images, and the lifecycle hooks. Every decision
(argv, preflight, warmup, health, crash handling, drain) lives in `supervisor/`, and every
deploy-time setting (profile, entry, scaling, regions, timeouts, proxy auth, dummy weights) is
parsed by `supervisor.deploy.settings` from environment variables (docs/RUNBOOK.md lists them).
The settings given at deploy time are baked into the images, so a container importing this file
resolves the very same ones.

A profile on several nodes (`glm-5.1-fp8-2x8xh100`) is served by a cluster: `@modal.clustered
(size=N, rdma=True)` under `@app.server`, every container running one rank under its own
supervisor, its rank and the rendezvous address (rank 0's IP) taken from Modal's cluster info.
A snapshot-capable profile (`qwen3-8b`) turns on CPU+GPU memory snapshots and splits its enter:
`snap=True` starts, warms and releases GPU memory; `snap=False` resumes and verifies.

Two entries, one at a time, chosen by SGLANG_SUPERVISOR_MODAL_ENTRY:
- `server` (default): `@app.server`, Modal Servers. `@modal.enter` starts the supervisor and
  returns once serving (Modal routes only then); `exit_grace_period` is the drain budget;
  `target_concurrency` scales, `max_concurrency` answers 429 above SGLang's
  `--max-running-requests`; `Modal-Session-ID` biases a conversation to one replica.
- `web_server`: the seed's `@app.cls` + `@modal.web_server` + `@modal.concurrent`, with the same
  lifecycle: the cold start is bounded by the class's `startup_timeout` around `@modal.enter`,
  the drain by `@modal.exit`'s fixed 30 s.
"""

from __future__ import annotations

import os
import sys
from pathlib import PurePosixPath
from typing import Any

import modal

from supervisor import CrashReport, force_exit
from supervisor.deploy.defaults import (
    DG_MOUNT,
    MODEL_MOUNT,
    WEB_PORT_WAIT_S,
    WEB_SERVER_TIMEOUT_S,
    validate_deployment,
)
from supervisor.deploy.download import download_weights
from supervisor.deploy.dummy_weights import with_dummy_weights
from supervisor.deploy.env_vars import ENTRY_SERVER, PROFILE_FILE_MOUNT
from supervisor.deploy.lifecycle import ENV_ENGINE_COMMAND, NodePlace, ServerLifecycle
from supervisor.deploy.settings import DeploySettings
from supervisor.deploy.verify import verify_setup
from supervisor.engines.image import runtime_problems

SETTINGS = DeploySettings.from_env(os.environ)
PROFILE = SETTINGS.profile
MODAL_VERSION = "1.6.4"  # pinned in pyproject.toml's [modal] extra too
SGLANG_IMAGE = SETTINGS.image  # env SGLANG_IMAGE, default lmsysorg/sglang:v<SGLANG_VERSION>
PORT = SETTINGS.port
GPU = SETTINGS.gpu_spec
#: pyproject.toml's runtime dependencies for the images' Python (3.10+ markers dropped: both
#: images run 3.12). A copy because this file is imported inside the container too, where no
#: pyproject.toml exists; tests/test_modal_entry.py fails the moment the two differ.
SUPERVISOR_DEPS = [
    "anyio>=4.7",
    "httpx>=0.27",
    "h11>=0.14",
    "tenacity>=8.2",
    "prometheus-client>=0.20",
]

if modal.__version__ != MODAL_VERSION:
    print(
        f"warning: modal {modal.__version__} is installed; this entry is made for {MODAL_VERSION}"
    )
if modal.is_local():  # at `modal deploy` / `modal run`: say what is being deployed, and why
    print(SETTINGS.summary(), file=sys.stderr)
    print(f"[settings] {SETTINGS.drain.describe()}", file=sys.stderr)

app = modal.App(PROFILE.app_name)

model_volume = modal.Volume.from_name(SETTINGS.weights_volume, create_if_missing=True)
dg_volume = modal.Volume.from_name(SETTINGS.dg_cache_volume, create_if_missing=True)
VOLUMES: dict[str | PurePosixPath, modal.Volume | modal.CloudBucketMount] = {
    MODEL_MOUNT: model_volume,
    DG_MOUNT: dg_volume,
}
api_key_secret = modal.Secret.from_name(SETTINGS.api_key_secret)
hf_secret = modal.Secret.from_name(SETTINGS.hf_secret)
# The serving containers' secrets: the clients' key, and the admin key only when an operator
# names a secret for it (else each container makes a random one that no client holds).
SERVE_SECRETS = [api_key_secret] + (
    [modal.Secret.from_name(SETTINGS.admin_key_secret)] if SETTINGS.admin_key_secret else []
)

_image_env = {**SETTINGS.baked_env(), "SGLANG_DG_CACHE_DIR": DG_MOUNT}


def _with_profile_file(image: modal.Image) -> modal.Image:
    """A profile file (SGLANG_SUPERVISOR_PROFILE_FILE) rides in every image at the path the
    baked variable names, so a container loads the very file that was deployed."""
    if SETTINGS.profile_file is None:
        return image
    return image.add_local_file(SETTINGS.profile_file, PROFILE_FILE_MOUNT)


gpu_image = _with_profile_file(
    modal.Image.from_registry(SGLANG_IMAGE)
    .pip_install(*SUPERVISOR_DEPS, "nvidia-ml-py")
    .env(_image_env)
    .add_local_python_source("supervisor")
)
download_image = _with_profile_file(
    modal.Image.debian_slim(python_version="3.12")
    # huggingface_hub downloads through hf-xet (chunked, parallel, resumable) by default now.
    .pip_install(*SUPERVISOR_DEPS, "huggingface_hub>=1.0")
    .env(_image_env)
    .add_local_python_source("supervisor")
)

validate_deployment(
    gpu=SETTINGS.gpu,
    gpu_count=SETTINGS.gpu_count,
    timeout_s=WEB_SERVER_TIMEOUT_S,
    max_inputs=SETTINGS.web_max_inputs,
    startup_timeout_s=SETTINGS.startup_timeout_s,
    secrets_ok=all(isinstance(s, modal.Secret) for s in (api_key_secret, hf_secret)),
)


def recycle(report: CrashReport) -> None:
    """The server died after serving: the crash report is written; end the container now.

    Modal only replaces a container whose process exits (it does not probe the server), and this
    runs in the supervisor's loop thread inside Modal's process: os._exit(1). (A Modal Server has
    no inputs, so `modal.experimental.stop_fetching_inputs()` has nothing to stop.)
    """
    force_exit(1)


def runtime_check() -> list[str]:
    """Problems with the image we run in (SGLang version, CUDA, driver); empty means fine.

    Runs first at enter, before any weight loads: a wrong image must fail in one line, not after
    700 GB of weights. With a fake engine (tests) there is no SGLang to check."""
    if os.environ.get(ENV_ENGINE_COMMAND):
        return []
    return list(runtime_problems())


NODES = PROFILE.launch.nnodes
SNAPSHOTS = PROFILE.snapshot_capable and SETTINGS.entry == ENTRY_SERVER


def cluster_place() -> NodePlace:
    """This container's rank and every rank's IP, from Modal's cluster info (no RPC)."""
    import modal.experimental

    info = modal.experimental.get_cluster_info()
    return NodePlace(rank=info.rank, hosts=tuple(info.container_ips))


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
    check = download_weights(
        PROFILE, token=os.environ.get("HF_TOKEN"), dummy=SETTINGS.dummy_weights
    )
    _commit(model_volume)
    return check.line()


@app.function(image=gpu_image, gpu=GPU, volumes=VOLUMES, timeout=2 * 3600)
def compile_deepgemm() -> str:
    import anyio

    from supervisor.engines.deepgemm import compile_deepgemm as compile_step
    from supervisor.engines.sglang_cache import with_keyed_cache

    if not PROFILE.uses_deepgemm:
        return f"{PROFILE.name} does not use DeepGEMM: nothing to compile"
    _reload(model_volume)
    _reload(dg_volume)
    # Kernels depend on shapes, not on weight values: a dummy-weights compile serves real ones.
    launch = with_dummy_weights(PROFILE.launch) if SETTINGS.dummy_weights else PROFILE.launch
    # The compile server JITs more than DeepGEMM (Triton, FlashInfer): into the key's directory,
    # where the serving containers look, not into this container's home that dies with it.
    launch = with_keyed_cache(launch, PROFILE.gpu)[0]
    result = anyio.run(lambda: compile_step(launch, timeout_s=3600))
    _commit(dg_volume)
    if not result.ok:
        raise RuntimeError(f"DeepGEMM compile failed: {result.reason}")
    return "skipped: marker matches" if result.skipped else f"compiled in {result.seconds:.0f} s"


@app.function(image=gpu_image, volumes=VOLUMES, timeout=600, cpu=2)
def verify_setup_remote() -> dict[str, object]:
    _reload(model_volume)
    _reload(dg_volume)
    report = verify_setup(PROFILE, dummy=SETTINGS.dummy_weights)
    return {"ok": report.ok, "report": report.render()}


def _bind(user_cls: type) -> Any:
    """Register the serving class with Modal as the chosen entry; one server object at a time."""
    if SETTINGS.entry == ENTRY_SERVER:
        target = SETTINGS.target_concurrency
        if NODES > 1:
            # Requests reach rank 0 only; every container runs one rank (docs/CLUSTER.md).
            user_cls = modal.clustered(size=NODES, rdma=True)(user_cls)
        snapshot: dict[str, Any] = {}
        if SNAPSHOTS:
            snapshot = {
                "enable_memory_snapshot": True,
                "experimental_options": {"enable_gpu_snapshot": True},
            }
        return app.server(
            image=gpu_image,
            gpu=GPU,
            volumes=VOLUMES,
            secrets=SERVE_SECRETS,
            port=PORT,
            # Bounds the whole cold start, @modal.enter included: it returns only once serving.
            startup_timeout=SETTINGS.startup_timeout_s,
            # Modal stops routing to the container, then runs @modal.exit within this grace.
            exit_grace_period=SETTINGS.drain.exit_grace_s,
            target_concurrency=int(target) if target.is_integer() else target,
            max_concurrency=SETTINGS.max_concurrency,
            min_containers=SETTINGS.min_containers,
            max_containers=SETTINGS.max_containers,
            scaledown_window=SETTINGS.scaledown_window_s,
            routing_region=SETTINGS.routing_region,
            compute_region=list(SETTINGS.compute_region) if SETTINGS.compute_region else None,
            unauthenticated=not SETTINGS.proxy_auth,
            **snapshot,
        )(user_cls)
    concurrent = modal.concurrent(
        max_inputs=SETTINGS.web_max_inputs, target_inputs=int(SETTINGS.target_concurrency)
    )
    return app.cls(
        image=gpu_image,
        gpu=GPU,
        volumes=VOLUMES,
        secrets=SERVE_SECRETS,
        timeout=WEB_SERVER_TIMEOUT_S,
        # Bounds @modal.enter, which holds the whole cold start on purpose: the web_server's own
        # startup_timeout only covers the port wait after serve() returns.
        startup_timeout=SETTINGS.startup_timeout_s,
        min_containers=SETTINGS.min_containers,
        max_containers=SETTINGS.max_containers,
        scaledown_window=SETTINGS.scaledown_window_s,
        region=list(SETTINGS.compute_region) if SETTINGS.compute_region else None,
    )(concurrent(user_cls))


@_bind
class Server:
    """The serving container: SGLang under the supervisor, for either entry."""

    @modal.enter(snap=SNAPSHOTS)
    def start(self) -> None:
        self.lifecycle = ServerLifecycle(
            PROFILE,
            recycle=lambda report: recycle(report),  # looked up at call time (tests patch it)
            reloads=(lambda: _reload(model_volume), lambda: _reload(dg_volume)),
            commit=lambda: _commit(dg_volume),  # what a cold start compiled, for the next one
            stop_timeout_s=SETTINGS.drain.stop_timeout_s,
            startup_timeout_s=SETTINGS.supervisor_startup_timeout_s,
            memory_high_bytes=SETTINGS.memory_high_bytes,
            runtime_check=lambda: runtime_check(),
            node=(lambda: cluster_place()) if NODES > 1 else None,
        )
        self.lifecycle.enter()
        if SNAPSHOTS:
            # The last thing before Modal snapshots the container: free the GPU memory.
            self.lifecycle.sleep()

    if SNAPSHOTS:

        @modal.enter(snap=False)
        def wake(self) -> None:
            """First thing after a restore (or right after start, when no snapshot was taken):
            resume GPU memory, verify health and a generation; a failure fails the start."""
            self.lifecycle.wake()

    if SETTINGS.entry != ENTRY_SERVER:

        @modal.web_server(
            port=PORT, startup_timeout=WEB_PORT_WAIT_S, requires_proxy_auth=SETTINGS.proxy_auth
        )
        def serve(self) -> None:
            """Nothing to start: @modal.enter returned only once SGLang was serving."""

    @modal.exit()
    def stop(self) -> None:
        self.lifecycle.exit()


@app.local_entrypoint()
def main() -> None:
    print(f"[main] profile {PROFILE.name}: {PROFILE.description}")
    if SETTINGS.dummy_weights:
        print("[main] DUMMY WEIGHTS: downloading the config and tokenizer only")
    print(f"[main] download: {download_model.remote()}")
    print(f"[main] compile: {compile_deepgemm.remote()}")
    verdict = verify_setup_remote.remote()
    print(f"[main] verify:\n{verdict['report']}")
    if not verdict["ok"]:
        raise SystemExit(1)
