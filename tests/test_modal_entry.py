"""The Modal entry, offline: no token, no network. It imports, its settings read back, and its real
lifecycle bodies (enter -> serve -> exit) run locally against the fake SGLang server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import httpx
import pytest

from supervisor import ChildExited, ConfigError, State
from supervisor.deploy.lifecycle import download_weights, validate_deployment
from supervisor.profiles import get_profile
from tests.conftest import ROOT
from tests.modal_private import class_settings

modal = pytest.importorskip("modal")


def test_imports_with_no_token_and_no_network() -> None:
    # Sockets blocked for real: any network call during import would fail the import.
    code = textwrap.dedent(
        """
        import socket
        def refuse(*a, **k):
            raise OSError("network blocked in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import modal_entry
        print("ok", modal_entry.PROFILE.name, modal_entry.app.name)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = "/nonexistent"  # no ~/.modal.toml either
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok glm-5.1-fp8 glm51-sglang"


def test_settings_read_back() -> None:
    import modal_entry as m

    info = m.Server._get_class_service_function().info()
    assert info.gpus == [("B200", 8)]
    assert info.timeout == 86400
    assert {path: v.name for path, v in info.volumes.items()} == {
        "/model-cache": "glm51-model-weights",
        "/dg-cache": "glm51-deepgemm-cache",
    }
    assert info.secrets == ["modal.Secret.from_name('glm51-api-key')"]
    assert info.concurrency_info.max_inputs == 20
    private = class_settings(m.Server, "serve")
    assert (private.min_containers, private.max_containers, private.scaledown_window) == (0, 3, 900)
    assert private.web_port == 8000
    # covers a ~700 GB cold start: the supervisor's own deadline plus margin
    assert private.web_startup_timeout >= m.PROFILE.startup_timeout_s >= 3600
    assert m.PROFILE.launch.environment()["SGLANG_DG_CACHE_DIR"] == "/dg-cache" == m.DG_MOUNT
    download = m.download_model.info()
    assert download.gpus in (None, []) and list(download.volumes) == ["/model-cache"]
    assert download.secrets == ["modal.Secret.from_name('huggingface-secret')"]
    compile_info = m.compile_deepgemm.info()
    assert compile_info.gpus == [("B200", 8)] and set(compile_info.volumes) == {
        "/model-cache",
        "/dg-cache",
    }


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


def test_profile_is_chosen_in_one_place() -> None:
    code = "import modal_entry as m; print(m.app.name, m.GPU, m.PROFILE.weights_volume)"
    env = {**os.environ, "SGLANG_SUPERVISOR_PROFILE": "qwen3-8b"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["qwen3-8b-sglang", "H100:1", "qwen3-8b-model-weights"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE = f"{sys.executable} -m supervisor.testing.fake_sglang --fake-load-time 0.3 --fake-warmup-time 0.2"


def local_server(monkeypatch, *fake_flags: str):
    """The real Server class's lifecycle bodies on a plain instance, bound to the fake engine."""
    import modal_entry as m

    port = free_port()
    monkeypatch.setenv("SGLANG_SUPERVISOR_ENGINE_COMMAND", " ".join([FAKE, *fake_flags]))
    monkeypatch.setenv("SGLANG_SUPERVISOR_PORT", str(port))
    monkeypatch.setenv("API_KEY", "modal-test-key")
    recycled = []
    monkeypatch.setattr(m, "recycle", recycled.append)
    server = m.Server._get_user_cls()()
    return server, port, recycled


def test_lifecycle_serves_and_exits_leaving_nothing(monkeypatch) -> None:
    server, port, recycled = local_server(monkeypatch)
    server.setup()
    try:
        server.serve()
        assert server.lifecycle.supervisor.state is State.SERVING
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/models",
            timeout=5,
            headers={"Authorization": "Bearer modal-test-key"},
        )
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "glm-5.1"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 401
    finally:
        server.shutdown()
    assert server.lifecycle.supervisor.state is State.DEAD and recycled == []
    # the autouse fixture proves no process of the tree is left


def test_lifecycle_crash_after_serving_recycles_with_the_report(monkeypatch) -> None:
    server, _, recycled = local_server(
        monkeypatch, "--fake-fault", "crash-after-serving", "--fake-crash-after", "0.3"
    )
    server.setup()
    try:
        server.serve()
        outcome = server.lifecycle.supervisor.wait(timeout=20)
        assert outcome.kind.value == "died"
        assert len(recycled) == 1
        report = recycled[0]
        assert report.cause == "cuda-out-of-memory" and report.returncode == -9
        assert "Received sigquit" in "\n".join(report.tail)
    finally:
        server.shutdown()


def test_lifecycle_startup_failure_raises_with_the_cause(monkeypatch) -> None:
    server, _, recycled = local_server(monkeypatch, "--fake-fault", "crash-loading")
    server.setup()
    try:
        with pytest.raises(
            ChildExited, match=r"exit code 1.*cause: scheduler-killed-during-init"
        ) as info:
            server.serve()
        assert "last " in str(info.value) and "OOM killer" in str(info.value)  # the report, whole
        assert recycled == []
    finally:
        server.shutdown()


def test_download_is_idempotent_and_verified(tmp_path) -> None:
    profile = get_profile("qwen3-8b")
    calls = []

    def fake_snapshot(repo_id, local_dir, max_workers, token):
        calls.append(repo_id)
        os.makedirs(local_dir, exist_ok=True)
        with open(os.path.join(local_dir, "config.json"), "w") as f:
            f.write("{}")
        with open(os.path.join(local_dir, "model.safetensors"), "wb") as f:
            f.write(b"\0" * 64)

    target = str(tmp_path / "Qwen3-8B")
    assert (
        download_weights(
            profile, model_path=target, snapshot_download=fake_snapshot, log=lambda s: None
        ).status
        == "ok"
    )
    assert (
        download_weights(
            profile, model_path=target, snapshot_download=fake_snapshot, log=lambda s: None
        ).status
        == "ok"
    )
    assert calls == ["Qwen/Qwen3-8B"]  # the second run found the weights complete

    def broken_snapshot(repo_id, local_dir, max_workers, token):
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

    inspect.signature(snapshot_download).bind(
        repo_id="zai-org/GLM-5.1-FP8", local_dir="/model-cache/x", max_workers=8, token=None
    )
