"""The Modal entry, offline: no token, no network. It imports (both entries), its settings read
back through `Server.info()` (private reads only through tests/modal_private.py), every deploy-time
setting parses or fails in one line, and the real lifecycle bodies (enter -> [serve] -> exit) run
locally against the fake SGLang server through both entries."""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path

import httpx
import pytest

from supervisor import ChildExited, ConfigError, RankFailed, State, WarmupFailed
from supervisor._warmup import WarmupResult
from supervisor.deploy import lifecycle as lifecycle_module
from supervisor.deploy.defaults import validate_deployment
from supervisor.deploy.download import download_weights
from supervisor.deploy.drain import WEB_SERVER_EXIT_GRACE_S, DrainBudget
from supervisor.deploy.dummy_weights import DUMMY_WEIGHTS_BANNER, with_dummy_weights
from supervisor.deploy.env_vars import (
    ENTRY_SERVER,
    ENTRY_WEB_SERVER,
    PROFILE_FILE_MOUNT,
    SETTINGS_ENV,
)
from supervisor.deploy.lifecycle import NodePlace, ServerLifecycle
from supervisor.deploy.settings import DeploySettings
from supervisor.engines.sglang_check import check_argvs
from supervisor.lowlevel import FailureKind, PeerFailure
from supervisor.profiles import get_profile
from supervisor.profiles.files import dump_profile
from supervisor.testing import free_port
from tests.conftest import ROOT

modal = pytest.importorskip("modal")
from tests.modal_private import (  # noqa: E402  (needs modal)
    class_settings,
    image_files,
    server_settings,
    snapshot_settings,
)
from tests.test_engine import PARSER, needs_parser  # noqa: E402  (one definition of both)

ENTRIES = [ENTRY_SERVER, ENTRY_WEB_SERVER]


def clean_env(**env: str) -> dict[str, str]:
    """The process environment without any deploy-time setting, plus the given ones."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    return {**base, **env}


def load_entry(monkeypatch, **env: str):
    """modal_entry as `modal deploy` would import it with these variables (and no others)."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import modal_entry

    return importlib.reload(modal_entry)


@pytest.fixture
def default_entry(monkeypatch):
    m = load_entry(monkeypatch)
    yield m
    load_entry(monkeypatch)  # leave the default module behind


@pytest.fixture(params=ENTRIES)
def entry(request, monkeypatch):
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_MODAL_ENTRY=request.param)
    assert m.SETTINGS.entry == request.param
    yield m
    load_entry(monkeypatch)


# ------------------------------------------------------------------ import and read back
@pytest.mark.process
@pytest.mark.parametrize("which", ENTRIES)
def test_imports_with_no_token_and_no_network(which: str) -> None:
    # Sockets blocked for real: any network call during import would fail the import.
    code = textwrap.dedent(
        """
        import socket
        def refuse(*a, **k):
            raise OSError("network blocked in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import modal_entry
        print("ok", modal_entry.PROFILE.name, modal_entry.app.name, type(modal_entry.Server).__name__)
        """
    )
    env = {k: v for k, v in clean_env().items() if not k.startswith("MODAL_")}
    env["HOME"] = "/nonexistent"  # no ~/.modal.toml either
    if which == ENTRY_WEB_SERVER:
        env["SGLANG_SUPERVISOR_MODAL_ENTRY"] = which
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kind = "Server" if which == ENTRY_SERVER else "Cls"
    assert done.stdout.strip().splitlines()[-1] == f"ok glm-5.1-fp8 glm51-sglang {kind}"
    # the deploy log names every setting and where it came from
    assert "[settings] max containers=3 (default; SGLANG_SUPERVISOR_MAX_CONTAINERS)" in done.stderr


def test_server_entry_settings_read_back(default_entry) -> None:
    m = default_entry
    assert isinstance(m.Server, modal.Server)
    info = m.Server.info()  # public, offline
    assert info.port == 8000
    assert info.gpus == [("B200", 8)]
    assert {path: v.name for path, v in info.volumes.items()} == {
        "/model-cache": "glm51-model-weights",
        "/dg-cache": "glm51-deepgemm-cache",
    }
    assert info.secrets == ["modal.Secret.from_name('glm51-api-key')"]
    # a ~700 GB cold start: the supervisor's own deadline, the longest warmup, and enter's margin
    assert info.startup_timeout == 3600 + 600 + 300 >= 30 * 60
    assert m.SETTINGS.supervisor_startup_timeout_s == 3600
    assert info.exit_grace_period == 330 >= 60  # 5 + 300 in flight + 15 + 10
    assert m.SETTINGS.drain.stop_timeout_s == 320
    assert info.routing_region == "us-east" and info.compute_regions is None
    assert info.cluster_info is None  # one host of 8 GPUs, not a @modal.clustered cluster
    assert info.unauthenticated is True and info.sessioned is False
    private = server_settings(m.Server)
    assert (private.min_containers, private.max_containers, private.scaledown_window) == (0, 3, 900)
    assert private.target_concurrency == 20
    assert private.max_concurrency == 48 == m.PROFILE.launch.max_running_requests
    assert m.PROFILE.launch.environment()["SGLANG_DG_CACHE_DIR"] == "/dg-cache"
    assert m.SGLANG_IMAGE == "lmsysorg/sglang:v0.5.23" and "cu129" not in m.SGLANG_IMAGE
    assert m._image_env["SGLANG_SUPERVISOR_PROFILE"] == "glm-5.1-fp8"
    download = m.download_model.info()
    assert download.gpus in (None, []) and list(download.volumes) == ["/model-cache"]
    assert download.secrets == ["modal.Secret.from_name('huggingface-secret')"]
    compile_info = m.compile_deepgemm.info()
    assert compile_info.gpus == [("B200", 8)] and set(compile_info.volumes) == {
        "/model-cache",
        "/dg-cache",
    }
    assert set(vars(m.Server._get_user_cls())) >= {"start", "stop"}
    assert "serve" not in vars(m.Server._get_user_cls())  # no @modal.web_server on a Server


def test_a_profile_file_deploys_and_rides_in_every_image(monkeypatch, tmp_path) -> None:
    text = dump_profile(get_profile("qwen3-8b")).replace(
        'app_name = "qwen3-8b-sglang"', 'app_name = "my-model-sglang"'
    )
    path = tmp_path / "my-model.toml"
    path.write_text(text)
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_PROFILE_FILE=str(path))
    try:
        assert m.app.name == "my-model-sglang" and m.PROFILE.name == "qwen3-8b"
        for image in (m.gpu_image, m.download_image):
            assert (str(path), PROFILE_FILE_MOUNT) in image_files(image)
        assert m.SETTINGS.baked_env()["SGLANG_SUPERVISOR_PROFILE_FILE"] == PROFILE_FILE_MOUNT
    finally:
        load_entry(monkeypatch)
    assert image_files(load_entry(monkeypatch).gpu_image) == []  # a built-in profile: no file


def test_web_server_entry_settings_read_back(monkeypatch) -> None:
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_MODAL_ENTRY="web_server")
    try:
        assert isinstance(m.Server, modal.Cls)
        info = m.Server._get_class_service_function().info()
        assert info.gpus == [("B200", 8)]
        assert info.timeout == 86400
        # the cold start lives in @modal.enter, bounded by the class's startup timeout on purpose
        assert info.startup_timeout == m.SETTINGS.startup_timeout_s == 4500
        assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (48, 20)
        assert info.method_details["serve"].unauthenticated is True
        assert set(info.volumes) == {"/model-cache", "/dg-cache"}
        private = class_settings(m.Server, "serve")
        assert (private.min_containers, private.max_containers) == (0, 3)
        assert private.scaledown_window == 900
        assert private.web_port == 8000
        assert private.web_startup_timeout == 60 < info.startup_timeout  # only the port wait
        # its drain fits @modal.exit's fixed 30 s: nothing left for in-flight requests
        assert m.SETTINGS.drain == DrainBudget(0, WEB_SERVER_EXIT_GRACE_S, 20)
    finally:
        load_entry(monkeypatch)


def test_scaling_region_and_drain_need_only_environment_variables(monkeypatch) -> None:
    env = {
        "SGLANG_SUPERVISOR_TARGET_CONCURRENCY": "12.5",
        "SGLANG_SUPERVISOR_MAX_CONCURRENCY": "32",
        "SGLANG_SUPERVISOR_MIN_CONTAINERS": "1",
        "SGLANG_SUPERVISOR_MAX_CONTAINERS": "6",
        "SGLANG_SUPERVISOR_SCALEDOWN_WINDOW": "600",
        "SGLANG_SUPERVISOR_ROUTING_REGION": "us-west",
        "SGLANG_SUPERVISOR_COMPUTE_REGION": "us-west-1,us-west-2",
        "SGLANG_SUPERVISOR_DRAIN_IN_FLIGHT": "900",
        "SGLANG_SUPERVISOR_STARTUP_TIMEOUT": "7200",
        "SGLANG_SUPERVISOR_PROXY_AUTH": "1",
        "SGLANG_IMAGE": "registry.example/sglang:v0.5.23-custom",
    }
    m = load_entry(monkeypatch, **env)
    try:
        info = m.Server.info()
        assert info.routing_region == "us-west"
        assert info.compute_regions == ["us-west-1", "us-west-2"]
        assert info.exit_grace_period == 5 + 900 + 15 + 10
        assert info.startup_timeout == 7200 and m.SETTINGS.supervisor_startup_timeout_s == 6300
        assert info.unauthenticated is False  # proxy auth on: Modal-Key/Modal-Secret required
        private = server_settings(m.Server)
        assert (private.min_containers, private.max_containers, private.scaledown_window) == (
            1,
            6,
            600,
        )
        assert (private.target_concurrency, private.max_concurrency) == (12.5, 32)
        assert m.SGLANG_IMAGE == env["SGLANG_IMAGE"]
        # every override travels into the image: a container resolves the very same settings
        baked = m._image_env
        assert all(baked[k] == v for k, v in env.items())
        again = DeploySettings.from_env(baked)
        assert dataclasses.replace(again, overrides={}) == dataclasses.replace(
            m.SETTINGS, overrides={}
        )
    finally:
        load_entry(monkeypatch)


@pytest.mark.process
def test_profile_is_chosen_in_one_place() -> None:
    code = (
        "import modal_entry as m; "
        "print(m.app.name, m.GPU, m.SETTINGS.weights_volume, m.Server.info().startup_timeout, "
        "m._image_env['SGLANG_SUPERVISOR_PROFILE'])"
    )
    env = clean_env(SGLANG_SUPERVISOR_PROFILE="qwen3-8b")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "qwen3-8b-sglang",
        "H100:1",
        "qwen3-8b-model-weights",
        str(1200 + 600 + 300),
        "qwen3-8b",
    ]


@pytest.mark.process
def test_a_bad_setting_stops_the_deploy_with_one_line() -> None:
    env = clean_env(SGLANG_SUPERVISOR_MAX_CONTAINERS="0")
    done = subprocess.run(
        [sys.executable, "-c", "import modal_entry"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "supervisor.ConfigError: SGLANG_SUPERVISOR_MAX_CONTAINERS='0': "
        "must be a whole number from 1 to 1000"
    )


# ------------------------------------------------------------------ settings, offline
def test_settings_defaults_come_from_the_profile() -> None:
    s = DeploySettings.from_env({})
    rows = {row.name: (row.value, row.env, row.source) for row in s.table()}
    assert rows["gpu"] == ("B200:8", "SGLANG_SUPERVISOR_GPU", "profile")
    assert rows["max concurrency"] == (48, "SGLANG_SUPERVISOR_MAX_CONCURRENCY", "profile")
    assert rows["target concurrency"] == (20.0, "SGLANG_SUPERVISOR_TARGET_CONCURRENCY", "default")
    assert rows["startup timeout s"][0] == 4500 and rows["exit grace s"][0] == 330
    assert rows["API-key secret"][0] == "glm51-api-key" and rows["proxy auth"][0] is False
    given = DeploySettings.from_env({"SGLANG_SUPERVISOR_MAX_CONTAINERS": "5"})
    assert {r.name: r.source for r in given.table()}["max containers"] == "env"
    qwen = DeploySettings.from_env({"SGLANG_SUPERVISOR_PROFILE": "qwen3-8b"})
    assert (qwen.gpu_spec, qwen.max_concurrency, qwen.port) == ("H100:1", None, 8000)
    assert qwen.web_max_inputs == 20  # @modal.concurrent needs a number: the target


def test_drain_budget_derivation() -> None:
    assert DrainBudget.derive(300) == DrainBudget(300, 330, 320)
    assert DrainBudget.derive(0) == DrainBudget(0, 30, 20)  # an @app.cls container's fixed 30 s
    longest = DeploySettings.from_env({"SGLANG_SUPERVISOR_DRAIN_IN_FLIGHT": "3570"})
    assert longest.drain.exit_grace_s == 3600  # Modal's ceiling for exit_grace_period
    assert "exit grace 330 s = SIGTERM notice 5 + in-flight 300 + scheduler release 15" in (
        DrainBudget.derive(300).describe()
    )


W = "SGLANG_SUPERVISOR_"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({W + "MAX_CONTAINERS": "three"}, W + "MAX_CONTAINERS='three': must be a whole number"),
        ({W + "MIN_CONTAINERS": "4"}, W + "MIN_CONTAINERS=4 exceeds " + W + "MAX_CONTAINERS=3"),
        ({W + "SCALEDOWN_WINDOW": "1"}, "from 2 to 3600"),
        ({W + "TARGET_CONCURRENCY": "0"}, W + "TARGET_CONCURRENCY='0': must be a number > 0"),
        ({W + "TARGET_CONCURRENCY": "lots"}, "must be a number > 0"),
        ({W + "TARGET_CONCURRENCY": "60"}, "exceeds " + W + "MAX_CONCURRENCY=48"),
        ({W + "DRAIN_IN_FLIGHT": "4000"}, "from 0 to 3570"),
        (
            {W + "STARTUP_TIMEOUT": "600"},
            W + "STARTUP_TIMEOUT='600': must be a whole number from 901",
        ),
        ({W + "MODAL_ENTRY": "lambda"}, "must be one of ['server', 'web_server']"),
        ({W + "PROFILE": "glm-6"}, W + "PROFILE='glm-6': unknown profile"),
        ({W + "GPU": "B300x"}, "unknown GPU type"),
        ({W + "PROXY_AUTH": "maybe"}, "must be 1 or 0"),
        ({W + "DUMMY_WEIGHTS": "please"}, W + "DUMMY_WEIGHTS='please': must be 1 or 0"),
        ({W + "WEIGHTS_VOLUME": "my weights"}, "must be a Modal object name"),
        ({W + "ROUTING_REGION": "US East"}, "must be a region name"),
        ({W + "COMPUTE_REGION": "us-east-1,,"}, "comma-separated region names"),
        ({W + "PORT": "70000"}, "from 1 to 65535"),
        ({W + "MEMORY_HIGH": "lots"}, W + "MEMORY_HIGH='lots': a size like 40G or 300M"),
        ({W + "MEMORY_HIGH": "10K"}, "below 1 MiB"),
        ({"SGLANG_IMAGE": "lmsysorg/sglang: v1"}, "no whitespace"),
        ({W + "MODAL_ENTRY": "web_server", W + "TARGET_CONCURRENCY": "2.5"}, "whole number"),
        ({W + "MODAL_ENTRY": "web_server", W + "DRAIN_IN_FLIGHT": "60"}, "fixed 30 s"),
        ({W + "MODAL_ENTRY": "web_server", W + "ROUTING_REGION": "us-east"}, "Modal Servers"),
    ],
)
def test_each_bad_value_is_one_config_error_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DeploySettings.from_env(env)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert any(name in text for name in env)  # it names the variable to fix


def test_what_modal_does_not_check_is_checked() -> None:
    good = dict(
        gpu="B200",
        gpu_count=8,
        timeout_s=86400,
        max_inputs=20,
        startup_timeout_s=4200,
        secrets_ok=True,
    )
    validate_deployment(**good)
    for change, message in [
        ({"gpu": "B300x"}, "unknown GPU type 'B300x'"),
        ({"timeout_s": 10**7}, "timeout must be 1 to 86400"),
        ({"timeout_s": 0}, "timeout must be 1 to 86400"),
        ({"max_inputs": 0}, "max_inputs must be >= 1"),
        ({"secrets_ok": False}, "must be modal.Secret"),
        ({"startup_timeout_s": 90000}, "startup timeout must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate_deployment(**{**good, **change})


# ------------------------------------------------------------------ dummy weights
def test_with_dummy_weights_adds_load_format_dummy_once() -> None:
    launch = get_profile("glm-5.1-fp8").launch
    dummy = with_dummy_weights(launch)
    assert dummy.extra_args[-2:] == ("--load-format", "dummy")
    assert with_dummy_weights(dummy) == dummy
    assert "--load-format dummy" in " ".join(dummy.serve_argv("k"))
    assert "--load-format" not in launch.serve_argv("k")  # the profile itself is untouched
    other = launch.with_overrides(extra_args=("--load-format", "safetensors"))
    with pytest.raises(ConfigError, match="already sets --load-format safetensors"):
        with_dummy_weights(other)


@pytest.mark.process
@needs_parser
@pytest.mark.parametrize("name", ["glm-5.1-fp8", "qwen3-8b"])
def test_dummy_weights_argv_parses_with_sglang(name: str) -> None:
    launch = with_dummy_weights(get_profile(name).launch)
    bad = launch.with_overrides(extra_args=("--load-format", "dumy")).serve_argv("k")
    *good, wrong = check_argvs(
        [launch.serve_argv("some-key"), launch.compile_argv(1800), bad], python=PARSER
    )
    for verdict in good:
        assert verdict.version == "0.5.23"
        assert verdict.problems == () and verdict.warnings == ()
    assert "invalid choice: 'dumy'" in wrong.problems[0]


@pytest.mark.process
def test_dummy_weights_preflight_skips_weights_but_needs_the_config(tmp_path) -> None:
    profile = get_profile("qwen3-8b")  # no DeepGEMM: fewer unrelated checks
    profile = dataclasses.replace(
        profile, launch=profile.launch.with_overrides(model_path=str(tmp_path / "Qwen3-8B"))
    )
    lines: list[str] = []
    env = {"SGLANG_SUPERVISOR_DUMMY_WEIGHTS": "1", "SGLANG_SUPERVISOR_PORT": str(free_port())}
    life = ServerLifecycle(profile, recycle=lambda r: None, env=env, log=lines.append)
    with pytest.raises(ConfigError) as info:
        life.prepare()  # the real-engine preflight (no GPU here, no config.json)
    assert lines[0] == DUMMY_WEIGHTS_BANNER
    assert "[skip] weights: DUMMY WEIGHTS" in "\n".join(lines)
    assert "[FAIL] model-config" in str(info.value) and "[FAIL] weights" not in str(info.value)
    real = ServerLifecycle(profile, recycle=lambda r: None, env={}, log=lines.append)
    with pytest.raises(ConfigError, match=r"\[FAIL\] weights"):
        real.prepare()


def test_dummy_download_fetches_only_config_and_tokenizer(tmp_path) -> None:
    profile = get_profile("qwen3-8b")
    calls = []

    def fake_snapshot(repo_id, local_dir, max_workers, token, allow_patterns=None):
        calls.append(allow_patterns)
        os.makedirs(local_dir, exist_ok=True)
        with open(os.path.join(local_dir, "config.json"), "w") as f:
            f.write("{}")

    target = str(tmp_path / "Qwen3-8B")
    kw = dict(model_path=target, snapshot_download=fake_snapshot, log=lambda s: None)
    assert download_weights(profile, dummy=True, **kw).status == "ok"
    assert download_weights(profile, dummy=True, **kw).status == "ok"  # already there
    assert (
        len(calls) == 1 and "*.json" in calls[0] and not any("safetensors" in p for p in calls[0])
    )
    with pytest.raises(ConfigError, match="incomplete"):  # the real weights are not there
        download_weights(profile, **kw)
    assert calls[1] is None  # a real download asks for everything


# ------------------------------------------------------------------ the lifecycle, locally
FAKE = f"{sys.executable} -m supervisor.testing.fake_sglang --fake-load-time 0.3 --fake-warmup-time 0.2 --fake-time-scale 0.1"
KEY = "modal-test-key"


def local_server(m, monkeypatch, *fake_flags: str, **env: str):
    """The real Server class's lifecycle bodies on a plain instance, bound to the fake engine."""
    port = free_port()
    monkeypatch.setenv("SGLANG_SUPERVISOR_ENGINE_COMMAND", " ".join([FAKE, *fake_flags]))
    monkeypatch.setenv("SGLANG_SUPERVISOR_PORT", str(port))
    monkeypatch.setenv("API_KEY", KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recycled = []
    monkeypatch.setattr(m, "recycle", recycled.append)
    server = m.Server._get_user_cls()()
    return server, port, recycled


def enter(server) -> None:
    """What Modal runs at container start for either entry: @modal.enter, then the web_server."""
    server.start()
    if hasattr(server, "serve"):
        server.serve()


@pytest.mark.process
def test_lifecycle_serves_and_exits_leaving_nothing(entry, monkeypatch) -> None:
    server, port, recycled = local_server(entry, monkeypatch)
    # SGLANG_SUPERVISOR_MEMORY_HIGH as resolved at deploy time reaches the serving supervisor
    monkeypatch.setattr(
        entry, "SETTINGS", dataclasses.replace(entry.SETTINGS, memory_high_bytes=64 << 30)
    )
    try:
        enter(server)  # returns only once serving: Modal routes from here on
        assert server.lifecycle.supervisor.state is State.SERVING
        assert server.lifecycle.supervisor.config.memory.high_bytes == 64 << 30
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/models",
            timeout=5,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "glm-5.1"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 401
        # exempt from SGLang's key: readable by anyone who has the URL unless proxy auth is on
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        argv = list(server.lifecycle.supervisor.config.launch.argv)
        keys = Path(argv[argv.index("--config") + 1])  # the keys: a 0600 file, not the argv
        assert KEY not in " ".join(argv) and KEY in keys.read_text()
        assert keys.stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
    assert server.lifecycle.supervisor.state is State.DEAD and recycled == []
    assert not keys.exists()  # gone with the server
    # the autouse fixture proves no process of the tree is left


@pytest.mark.process
def test_lifecycle_crash_after_serving_recycles_with_the_report(entry, monkeypatch) -> None:
    server, _, recycled = local_server(
        entry, monkeypatch, "--fake-fault", "crash-after-serving", "--fake-crash-after", "0.3"
    )
    try:
        enter(server)
        outcome = server.lifecycle.supervisor.wait(timeout=20)
        assert outcome.kind.value == "died"
        assert len(recycled) == 1
        report = recycled[0]
        assert report.cause == "cuda-out-of-memory" and report.returncode == -9
        assert "It usually means one child failed." in "\n".join(report.tail)
    finally:
        server.stop()


@pytest.mark.process
def test_lifecycle_startup_failure_carries_the_log_tail(entry, monkeypatch) -> None:
    server, _, recycled = local_server(entry, monkeypatch, "--fake-fault", "crash-loading")
    try:
        with pytest.raises(
            ChildExited, match=r"exit code 1.*cause: scheduler-killed-during-init"
        ) as info:
            enter(server)  # Modal prints this exception, notes too, as the startup failure
        shown = "".join(traceback.format_exception(info.value))  # what Modal's traceback holds
        assert "log lines:" in shown and "OOM killer" in shown  # the report, whole
        assert info.value.tail and info.value.returncode == 1  # the fields, intact
        assert recycled == []
    finally:
        server.stop()


FAILED_RANK = PeerFailure(FailureKind.REPORTED, failed_rank=1, path=(1, 0), reason="rank 1 died")
FAILED_WARMUP = WarmupResult("chat", ok=False, status=500, latency_s=0.1, reason="status 500")


@pytest.mark.parametrize(
    "error",
    [
        RankFailed("rank 1 failed", failure=FAILED_RANK, returncode=1, tail=("boom",)),
        WarmupFailed("warmup chat failed", results=(FAILED_WARMUP,), tail=("boom",)),
    ],
    ids=["rank-failed", "warmup-failed"],
)
def test_a_failed_start_reaches_the_platform_as_itself(monkeypatch, error) -> None:
    """The log tail goes on as a note. Rebuilding the exception raised a TypeError for a
    RankFailed (its `failure` is required) and lost a WarmupFailed's results."""

    class FailingStart:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def start(self) -> None:
            raise error

    monkeypatch.setattr(lifecycle_module, "BlockingSupervisor", FailingStart)
    life = ServerLifecycle(get_profile("qwen3-8b"), recycle=lambda r: None, env={}, log=print)
    with pytest.raises(type(error)) as info:
        life.start()
    assert info.value is error and info.value.tail == ("boom",)
    assert getattr(error, "failure", FAILED_RANK) is FAILED_RANK
    assert getattr(error, "results", (FAILED_WARMUP,)) == (FAILED_WARMUP,)
    assert info.value.__notes__ == ["last 1 log lines:\n  | boom"]


def running_requests(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("sglang:num_running_reqs"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def fake_flags_for_real_drain_timings() -> list[str]:
    """Where the fake imitates SGLang's real drain timings (5 s notice, 5 s polls, 15 s release),
    scale them down so that the web_server entry's 20 s stop budget is not the thing tested."""
    done = subprocess.run(
        [sys.executable, "-m", "supervisor.testing.fake_sglang", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return ["--fake-time-scale", "0.2"] if "--fake-time-scale" in done.stdout else []


@pytest.mark.process
def test_exit_drains_an_in_flight_streaming_request(entry, monkeypatch) -> None:
    flags = ["--fake-gen-time", "3", *fake_flags_for_real_drain_timings()]
    server, port, recycled = local_server(entry, monkeypatch, *flags)
    enter(server)
    got: dict[str, object] = {}

    def stream() -> None:
        body = {
            "model": "glm-5.1",
            "stream": True,
            "messages": [{"role": "user", "content": "Prove that sqrt(2) is irrational."}],
        }
        headers = {"Authorization": f"Bearer {KEY}"}
        try:
            with httpx.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=body,
                headers=headers,
                timeout=120,
            ) as r:
                got["status"] = r.status_code
                got["lines"] = [line for line in r.iter_lines() if line]
        except httpx.HTTPError as exc:
            got["error"] = repr(exc)

    client = threading.Thread(target=stream)
    client.start()
    try:
        deadline = time.monotonic() + 30
        while running_requests(port) < 1:  # the request is inside the engine
            assert time.monotonic() < deadline, "the request never reached the engine"
            time.sleep(0.05)
    finally:
        server.stop()  # @modal.exit: SIGTERM, drain, and only then the tree goes
        client.join(timeout=60)
    assert "error" not in got, got.get("error")
    assert got["status"] == 200
    lines = got["lines"]
    assert lines[-1] == "data: [DONE]" and len(lines) > 3
    outcome = server.lifecycle.supervisor.wait(timeout=5)
    assert outcome.kind.value == "stopped" and outcome.returncode == 0  # drained, not killed
    assert recycled == []


def test_runtime_check_runs_first_and_fails_in_one_line(entry, monkeypatch) -> None:
    server, _, recycled = local_server(entry, monkeypatch)
    reloaded = []
    monkeypatch.setattr(entry, "_reload", reloaded.append)
    monkeypatch.setattr(
        entry,
        "runtime_check",
        lambda: ["sglang 0.5.22 is installed, 0.5.23 is pinned", "CUDA 12.9\nbelow 13.0"],
    )
    with pytest.raises(ConfigError) as info:
        enter(server)
    assert str(info.value) == (
        "runtime check failed: sglang 0.5.22 is installed, 0.5.23 is pinned; CUDA 12.9 below 13.0"
    )
    assert reloaded == [] and server.lifecycle.supervisor is None and recycled == []
    server.stop()  # @modal.exit after a failed enter: nothing to stop


def test_server_lifecycle_runs_an_injected_runtime_check_before_anything_else() -> None:
    reloaded: list[str] = []
    life = ServerLifecycle(
        get_profile("glm-5.1-fp8"),
        recycle=lambda report: None,
        reloads=(lambda: reloaded.append("weights"),),
        runtime_check=lambda: ("CUDA 12.9 found, the image is built for CUDA 13",),
        env={},
    )
    with pytest.raises(ConfigError, match=r"^runtime check failed: CUDA 12\.9 found, the image"):
        life.enter()
    assert reloaded == [] and life.preflight is None and life.supervisor is None
    default = ServerLifecycle(get_profile("glm-5.1-fp8"), recycle=lambda report: None)
    assert tuple(default.runtime_check()) == ()  # no check until the image module provides one
    assert default.stop_timeout_s == 20.0  # fits a fixed 30 s exit grace by default


@pytest.mark.process
def test_dummy_weights_reach_the_engine_and_say_so(entry, monkeypatch, capsys) -> None:
    server, _, _ = local_server(entry, monkeypatch, SGLANG_SUPERVISOR_DUMMY_WEIGHTS="1")
    try:
        enter(server)
        argv = server.lifecycle.supervisor.config.launch.argv
        assert argv[argv.index("--load-format") + 1] == "dummy"
        assert server.lifecycle.supervisor.config.warmup.fail_startup is False
    finally:
        server.stop()
    assert DUMMY_WEIGHTS_BANNER in capsys.readouterr().out


# ------------------------------------------------------------------ download
def test_download_is_idempotent_and_verified(tmp_path) -> None:
    profile = get_profile("qwen3-8b")
    calls = []

    def fake_snapshot(repo_id, local_dir, max_workers, token, allow_patterns=None):
        calls.append(repo_id)
        os.makedirs(local_dir, exist_ok=True)
        with open(os.path.join(local_dir, "config.json"), "w") as f:
            f.write("{}")
        with open(os.path.join(local_dir, "model.safetensors"), "wb") as f:
            f.write(b"\0" * 64)

    target = str(tmp_path / "Qwen3-8B")
    kw = dict(model_path=target, snapshot_download=fake_snapshot, log=lambda s: None)
    assert download_weights(profile, **kw).status == "ok"
    assert download_weights(profile, **kw).status == "ok"
    assert calls == ["Qwen/Qwen3-8B"]  # the second run found the weights complete

    def broken_snapshot(repo_id, local_dir, max_workers, token, allow_patterns=None):
        os.makedirs(local_dir, exist_ok=True)

    with pytest.raises(ConfigError, match="incomplete"):
        download_weights(
            profile,
            model_path=str(tmp_path / "other"),
            snapshot_download=broken_snapshot,
            log=lambda s: None,
        )


def test_download_calls_the_real_snapshot_download_signature() -> None:
    import inspect

    from huggingface_hub import snapshot_download

    for patterns in (None, ["*.json"]):
        inspect.signature(snapshot_download).bind(
            repo_id="zai-org/GLM-5.1-FP8",
            local_dir="/model-cache/x",
            max_workers=8,
            token=None,
            allow_patterns=patterns,
        )


# ------------------------------------------------------------------ clusters and snapshots
def test_the_two_node_profile_is_a_clustered_server_with_rdma_on_h100s(monkeypatch) -> None:
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_PROFILE="glm-5.1-fp8-2x8xh100")
    try:
        info = m.Server.info()
        assert info.cluster_info is not None
        assert (info.cluster_info.size, info.cluster_info.rdma) == (2, True)
        assert info.gpus == [("H100", 8)]
        private = server_settings(m.Server)
        # Modal counts a cluster's containers one by one: whole clusters only
        assert private.max_containers == 6 and private.min_containers == 0
        assert not snapshot_settings(m.Server).memory_snapshot
    finally:
        load_entry(monkeypatch)


def test_a_cluster_cannot_be_a_web_server_and_counts_whole_clusters() -> None:
    env = {"SGLANG_SUPERVISOR_PROFILE": "glm-5.1-fp8-2x8xh100"}
    with pytest.raises(ConfigError, match=r"cluster serves only through @app\.server"):
        DeploySettings.from_env({**env, "SGLANG_SUPERVISOR_MODAL_ENTRY": "web_server"})
    with pytest.raises(ConfigError, match="multiple of the cluster size 2"):
        DeploySettings.from_env({**env, "SGLANG_SUPERVISOR_MAX_CONTAINERS": "3"})


@pytest.mark.parametrize(("profile", "on"), [("qwen3-8b", True), ("glm-5.1-fp8", False)])
def test_memory_snapshots_only_for_a_snapshot_capable_profile(monkeypatch, profile, on) -> None:
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_PROFILE=profile)
    try:
        settings = snapshot_settings(m.Server)
        assert settings.memory_snapshot is on and settings.gpu_snapshot is on
        assert hasattr(m.Server._get_user_cls(), "wake") is on  # the snap=False half of enter
    finally:
        load_entry(monkeypatch)


@pytest.mark.process
def test_each_rank_of_the_clustered_server_runs_its_lifecycle_body(monkeypatch) -> None:
    """Both ranks' real @modal.enter bodies on the fake engine, their places as Modal's cluster
    info would give them (one host here, so distinct ports): both serve; a lost worker engine
    recycles both containers, each report naming rank 1."""
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_PROFILE="glm-5.1-fp8-2x8xh100")
    status = (free_port(), free_port())
    places = [
        NodePlace(
            rank=r,
            hosts=("127.0.0.1", "127.0.0.1"),
            dist_port=free_port() if r == 0 else 0,
            peers=tuple(f"127.0.0.1:{p}" for p in status),
        )
        for r in range(2)
    ]
    places[1] = dataclasses.replace(places[1], dist_port=places[0].dist_port)
    pending = list(places)
    monkeypatch.setattr(m, "cluster_place", lambda: pending.pop(0))
    servers, threads, errors = [], [], []
    try:
        for rank in range(2):
            server, _, recycled = local_server(m, monkeypatch)
            servers.append((server, recycled))

            def enter_rank(server=server) -> None:
                try:
                    server.start()
                except Exception as exc:  # surfaced by the assertion below
                    errors.append(exc)

            thread = threading.Thread(target=enter_rank, daemon=True)
            thread.start()
            threads.append(thread)
            deadline = time.monotonic() + 30
            while len(pending) > 1 - rank and time.monotonic() < deadline:
                time.sleep(0.02)  # this rank took its place (and its port) before the next
        for thread in threads:
            thread.join(timeout=90)
        assert not errors, errors
        supervisors = [s.lifecycle.supervisor for s, _ in servers]
        assert [sup.state for sup in supervisors] == [State.SERVING, State.SERVING]
        worker = supervisors[1].supervisor
        assert worker is not None and worker.child is not None
        os.kill(worker.child.pid, signal.SIGKILL)
        outcomes = [sup.wait(timeout=60) for sup in supervisors]
        assert [o.kind.value for o in outcomes] == ["died", "died"]
        reports = servers[-1][1]  # `recycle` is looked up at call time: the last patch gets both
        assert len(reports) == 2 and all("rank 1 failed" in r.summary() for r in reports)
    finally:
        for server, _ in servers:
            if getattr(server, "lifecycle", None) is not None:
                server.stop()
        load_entry(monkeypatch)


def test_the_images_install_the_projects_runtime_dependencies(default_entry) -> None:
    """modal_entry keeps a copy of pyproject.toml's dependencies (it is imported inside the
    container, where no pyproject.toml is); the copy must never drift from the source."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [d for d in project["dependencies"] if "python_version < '3.11'" not in d]
    assert default_entry.SUPERVISOR_DEPS == runtime
    modal_pin = [d for d in project["optional-dependencies"]["test"] if d.startswith("modal")]
    assert modal_pin == [f"modal=={default_entry.MODAL_VERSION}"]


def test_the_memory_mark_is_a_deploy_variable_that_reaches_the_supervisor(monkeypatch) -> None:
    """`SGLANG_SUPERVISOR_MEMORY_HIGH` is `--memory-high` for a deployment: parsed at deploy
    time, baked into the image's environment, and the serving supervisor's memory mark."""
    m = load_entry(monkeypatch, SGLANG_SUPERVISOR_MEMORY_HIGH="1500G")
    try:
        assert m.SETTINGS.memory_high_bytes == 1500 << 30
        assert m.SETTINGS.baked_env()["SGLANG_SUPERVISOR_MEMORY_HIGH"] == "1500G"
        rows = {row.name: row for row in m.SETTINGS.table()}
        assert rows["memory high bytes"].value == 1500 << 30
        assert load_entry(monkeypatch).SETTINGS.memory_high_bytes is None
    finally:
        load_entry(monkeypatch)
