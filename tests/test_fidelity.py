"""Fidelity to SGLang 0.5.23 (issue #9): the image and runtime check, the KV cache, the drain,
the compile step's watch, the running-phase crash texts. Each test names what it proves."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import httpx
import pytest

from supervisor import ConfigError
from supervisor._proctree import proc_info
from supervisor.engines.image import (
    IMAGE_ENV,
    RuntimeProbes,
    default_image,
    runtime_problems,
)
from supervisor.engines.sglang_causes import classify_crash
from supervisor.engines.sglang_release import SGLANG_VERSION
from supervisor.engines.sglang_stop import SCHEDULER_EXIT_S, SIGTERM_NOTICE_S, stop_budget
from tests.conftest import ROOT, fake_argv
from tests.test_fake_sglang import kids


# ----------------------------------------------------------------------------- image
def test_default_image_is_the_cuda13_release_tag_of_the_pin() -> None:
    assert default_image() == f"lmsysorg/sglang:v{SGLANG_VERSION}"
    assert default_image(runtime=True) == f"lmsysorg/sglang:v{SGLANG_VERSION}-runtime"
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "supervisor").rglob("*.py")
        if "cu129" in p.read_text()
    ]
    assert offenders == []


FITTING = RuntimeProbes(
    sglang_version=lambda: SGLANG_VERSION,
    torch_cuda=lambda: "13.0",
    visible_gpus=lambda: 8,
    driver_cuda=lambda: (13, 0),
)


def test_a_fitting_runtime_passes() -> None:
    assert runtime_problems(probes=FITTING) == ()


def test_a_version_mismatch_stops_with_one_clear_line() -> None:
    probes = RuntimeProbes(**{**FITTING.__dict__, "sglang_version": lambda: "0.5.22"})
    problems = runtime_problems(probes=probes)
    message = "; ".join(problems)
    assert len(problems) == 1 and "\n" not in message
    assert "SGLang 0.5.22 is installed but this supervisor is pinned to 0.5.23" in message
    assert f"{IMAGE_ENV}" in message


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"sglang_version": lambda: None}, "SGLang is not installed"),
        ({"visible_gpus": lambda: 0}, "no CUDA device is visible"),
        ({"torch_cuda": lambda: None}, "the installed torch has no CUDA build"),
        (
            {"driver_cuda": lambda: (12, 8)},
            "driver supports CUDA 12.8 but the image needs CUDA 13.0",
        ),
    ],
)
def test_each_mismatch_is_named(change: dict, text: str) -> None:
    problems = runtime_problems(probes=RuntimeProbes(**{**FITTING.__dict__, **change}))
    assert len(problems) == 1 and text in problems[0]


def test_without_gpus_only_the_version_and_known_cuda_are_checked() -> None:
    blind = RuntimeProbes(
        sglang_version=lambda: SGLANG_VERSION,
        torch_cuda=lambda: None,
        visible_gpus=lambda: 0,
        driver_cuda=lambda: None,
    )
    assert runtime_problems(require_gpu=False, probes=blind) == ()


def test_the_real_probes_read_metadata_text_and_nvml_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "sglang-0.5.22.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sglang\nVersion: 0.5.22\n")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise RuntimeError('imported torch')\n")
    (tmp_path / "torch" / "version.py").write_text("cuda: Optional[str] = '13.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 8,
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    problems = runtime_problems()
    message = "; ".join(problems)
    assert problems and all("\n" not in problem for problem in problems)
    assert "SGLang 0.5.22 is installed but this supervisor is pinned to 0.5.23" in message
    assert "driver supports CUDA 12.8 but the image needs CUDA 13.0" in message
    assert "torch" not in sys.modules and "sglang" not in sys.modules


# ----------------------------------------------------------------------------- the fake: drain
def start_fake(port: int, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fake_argv(port, "--fake-load-time", "0.2", "--fake-warmup-time", "0.2", *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    """The whole output; whatever is left of the fake's group is SIGKILLed first."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # schedulers outliving a clean exit would fail here
    return out


def wait_ok(url: str, timeout: float = 30, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
            if r.status_code == 200:
                return r
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered 200")


@pytest.mark.process
def test_with_default_timings_a_ready_fake_drains_finishes_a_stream_and_exits_by_itself(
    port: int,
) -> None:
    """SGLang's own bounds (tokenizer_manager.py:sigterm_watchdog): notice <= 5 s, then counts
    every 5 s until no request is left, then <= 15 s for the schedulers, then exit 0."""
    # a stream of 6 s: longer than the 5 s notice, so some count must see it in flight
    proc = start_fake(port, "--tp-size", "2", "--fake-gen-time", "6")
    try:
        wait_ok(f"http://127.0.0.1:{port}/health")
        events: list[str] = []
        body = {"stream": True, "messages": [{"role": "user", "content": "tell me more"}]}
        with httpx.stream(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60
        ) as stream:
            lines = stream.iter_lines()
            events.append(next(line for line in lines if line.startswith("data: ")))
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # mid-stream
            time.sleep(0.3)
            assert proc.poll() is None  # it survives the signal: SGLang drains
            events += [line for line in lines if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 3
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 503
        rc = proc.wait(5 + 6 + 15 + 10)
        took = time.monotonic() - sent
    finally:
        out = finish(proc)
    assert rc == 0, out  # by itself, not by the signal
    assert took < 5 + 6 + 5 + 15 + 5  # notice, stream, last poll, schedulers, margin
    for line in (
        "SIGTERM received. signum=None frame=None. Draining requests and shutting down...",
        "Gracefully exiting... Remaining number of requests 1. Remaining requests remaining_rids=['",
        "Gracefully exiting... Remaining number of requests 0. Remaining requests remaining_rids=[].",
        "Health check request received during shutdown. Returning 503.",
        "include_parent=False",
        "INFO:     Finished server process",
    ):
        assert line in out, line
    assert "Schedulers still alive" not in out  # they released in time


@pytest.mark.process
def test_the_time_scale_shrinks_sglangs_timings(port: int) -> None:
    proc = start_fake(port, "--fake-time-scale", "0.1", "--fake-health-time", "0.01")
    try:
        wait_ok(f"http://127.0.0.1:{port}/health")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        took = time.monotonic() - sent
    finally:
        out = finish(proc)
    assert rc == 0 and "Remaining number of requests 0" in out
    assert took < 5  # 0.5 s notice + 1.5 s bound, against 5 s + 15 s unscaled


@pytest.mark.process
def test_schedulers_that_do_not_release_in_time_are_killed_as_stragglers(port: int) -> None:
    proc = start_fake(
        port, "--tp-size", "2", "--fake-time-scale", "0.1", "--fake-release-time", "60"
    )
    try:
        wait_ok(f"http://127.0.0.1:{port}/ready")
        schedulers = kids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    finally:
        out = finish(proc)
    assert rc == 0
    assert (
        "Schedulers still alive 1.5s after ShutdownReq, killing them before they released:" in out
    )
    time.sleep(0.2)
    assert all(proc_info(p) is None or proc_info(p).zombie for p in schedulers)


@pytest.mark.process
def test_health_runs_a_generation_of_about_sglangs_second(port: int) -> None:
    proc = start_fake(port)
    try:
        wait_ok(f"http://127.0.0.1:{port}/health")
        t = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        took = time.monotonic() - t
    finally:
        finish(proc)
    assert 0.9 <= took < 5  # the fake sleeps SGLang's 1 s step; never less


# ----------------------------------------------------------------------------- the fake: crashes
@pytest.mark.process
def test_a_crash_after_serving_prints_the_running_phase_texts(port: int) -> None:
    proc = start_fake(port, "--tp-size", "2", "--fake-fault", "crash-after-serving")
    try:
        rc = proc.wait(30)
    finally:
        out = finish(proc)
    assert rc == -signal.SIGKILL  # kill_process_tree(os.getpid()) kills itself too
    assert re.search(r"^\[[\d: -]+ TP0\] Scheduler hit an exception: Traceback", out, re.M)
    assert "SIGQUIT received. signum=None, frame=None. It usually means one child failed." in out
    assert "Received sigquit from a child process" not in out  # that is the launch phase's
    assert "include_parent=True" in out
    assert classify_crash(out.splitlines()) == "cuda-out-of-memory"


@pytest.mark.process
def test_a_child_failure_before_any_generation_prints_the_launch_phase_text(port: int) -> None:
    """With --skip-server-warmup nothing has generated yet: engine.py's handler still rules."""
    flags = ("--skip-server-warmup", "--fake-fault", "crash-after-serving")
    proc = start_fake(port, *flags, "--fake-crash-after", "0.2")
    try:
        rc = proc.wait(30)
    finally:
        out = finish(proc)
    assert rc == -signal.SIGKILL
    assert "Received sigquit from a child process. It usually means the child failed." in out
    assert "It usually means one child failed." not in out


@pytest.mark.process
def test_a_scheduler_dying_silently_is_caught_by_the_subprocess_watchdog(port: int) -> None:
    proc = start_fake(port, "--tp-size", "2", "--fake-time-scale", "0.2")
    try:
        wait_ok(f"http://127.0.0.1:{port}/ready")
        victim = kids(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)  # the OOM killer: not a word from the scheduler
        rc = proc.wait(20)
    finally:
        out = finish(proc)
    assert rc == -signal.SIGKILL
    assert (
        f"Subprocess scheduler_0 (pid={victim}) crashed with exit code -9. "
        "Triggering SIGQUIT for cleanup..." in out
    )
    assert "It usually means one child failed." in out
    assert classify_crash(out.splitlines()) == "subprocess-crashed"


# ----------------------------------------------------------------------------- the fake: smaller
@pytest.mark.process
def test_server_args_is_a_dict_whose_repr_escapes_the_key(port: int) -> None:
    key = "k'1\"\\x"
    proc = start_fake(port, "--api-key", key, "--tp-size", "2")
    try:
        wait_ok(f"http://127.0.0.1:{port}/health")
    finally:
        out = finish(proc)
    line = next(line for line in out.splitlines() if "server_args=" in line)
    resolved = ast.literal_eval(line.split("server_args=", 1)[1])
    assert resolved["api_key"] == key and resolved["tp_size"] == 2
    assert f"'api_key': {key!r}" in line and key not in line  # escaped, as repr escapes it
    assert "UserWarning: 'python -m sglang.launch_server' is still supported" in out


@pytest.mark.process
@pytest.mark.parametrize(
    ("flags", "root", "arch"),
    [
        (
            ("--model-path", "/model-cache/GLM-5.1-FP8", "--served-model-name", "glm-5.1"),
            "glm-5.1",
            "GlmMoeDsaForCausalLM",
        ),
        (("--model-path", "/model-cache/Qwen3-8B"), "/model-cache/Qwen3-8B", "Qwen3ForCausalLM"),
        (("--fake-architecture", "MyForCausalLM"), "fake/model", "MyForCausalLM"),
    ],
)
def test_models_and_model_info_describe_the_model_served(
    port: int, flags: tuple[str, ...], root: str, arch: str
) -> None:
    proc = start_fake(port, *flags, "--fake-health-time", "0.01")
    try:
        models = wait_ok(f"http://127.0.0.1:{port}/v1/models").json()
        info = httpx.get(f"http://127.0.0.1:{port}/model_info", timeout=10).json()
    finally:
        out = finish(proc)
    assert models["data"][0]["root"] == root == models["data"][0]["id"]
    assert info["architectures"] == [arch] and info["served_model_name"] == root
    assert f"type={arch}," in out


# ----------------------------------------------------------------------------- the source itself
def sglang_source() -> Path | None:
    python = os.environ.get("SGLANG_PARSER_PYTHON") or str(ROOT / ".venv-sglang/bin/python")
    if not Path(python).exists():
        return None
    code = "import importlib.util as u; print(u.find_spec('sglang').submodule_search_locations[0])"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


# (file, text as written in the source): what the fake prints and the classifier matches.
SOURCE_TEXTS = [
    (
        "srt/managers/tokenizer_manager.py",
        'f"SIGTERM received. {signum=} {frame=}. Draining requests and shutting down..."',
    ),
    (
        "srt/managers/tokenizer_manager.py",
        'f"SIGQUIT received. {signum=}, {frame=}. It usually means one child failed."',
    ),
    (
        "srt/managers/tokenizer_manager.py",
        'f"Gracefully exiting... Remaining number of requests {remain_num_req}. Remaining requests {remaining_rids=}."',
    ),
    ("srt/managers/tokenizer_manager.py", "_SCHEDULER_EXIT_TIMEOUT_SECS = 15"),
    ("srt/managers/tokenizer_manager.py", "await asyncio.sleep(5)"),
    ("srt/utils/watchdog.py", 'f"Subprocess {name} (pid={proc.pid}) crashed "'),
    ("srt/utils/watchdog.py", 'f"Triggering SIGQUIT for cleanup..."'),
    (
        "srt/entrypoints/engine.py",
        '"Received sigquit from a child process. It usually means the child failed."',
    ),
    (
        "srt/entrypoints/engine.py",
        'logger.info(f"server_args={_server_args_for_logging(server_args)}")',
    ),
    (
        "srt/entrypoints/http_server.py",
        '"Health check request received during shutdown. Returning 503."',
    ),
    ("srt/entrypoints/http_server.py", "root=served_model_name,"),
    ("srt/utils/auth.py", 'parts[0].lower() != "bearer"'),
    ("srt/environ.py", 'SGLANG_DG_CACHE_DIR = EnvStr(lambda: _default_cache_subdir("deep_gemm"))'),
    ("srt/environ.py", 'SGLANG_CACHE_DIR = EnvStr(os.path.expanduser("~/.cache/sglang"))'),
    ("srt/arg_groups/overrides.py", "def _dsa_kv_cache_dtype_default(view: Any) -> dict:"),
    (
        "srt/arg_groups/overrides.py",
        '"fp8_e4m3" if major >= 10 and not has_attention_sinks else "bfloat16"',
    ),
    ("compile_deep_gemm.py", 'multiprocessing.set_start_method("spawn", force=True)'),
    ("compile_deep_gemm.py", "proc = multiprocessing.Process(target=launch_server_internal"),
]


@pytest.mark.process
@pytest.mark.parametrize(("path", "text"), SOURCE_TEXTS)
def test_the_imitated_texts_are_in_the_installed_sglang_source(path: str, text: str) -> None:
    source = sglang_source()
    if source is None:
        pytest.skip("no SGLang source here: run .ci/run, or set SGLANG_PARSER_PYTHON")
    assert text in (source / path).read_text(), f"{path} no longer says {text}"


# ----------------------------------------------------------------------------- stop budget
def test_the_stop_budget_is_derived_from_sglangs_drain_timings() -> None:
    budget = stop_budget()
    assert budget.stop_timeout_s == SIGTERM_NOTICE_S + SCHEDULER_EXIT_S + 5 == 25
    assert budget.platform_grace_s == 25 + 5 + 2
    assert stop_budget(60).stop_timeout_s == 85
    assert budget.stop_policy().stop_timeout == 25
    with pytest.raises(ConfigError):
        stop_budget(-1)
