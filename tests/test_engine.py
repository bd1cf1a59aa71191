"""The SGLang edge: argv against SGLang 0.5.23's own parser, profiles, preflight, crash causes,
the cold-start timeline and the supervised DeepGEMM compile step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import ConfigError
from supervisor.engines.deepgemm import compile_deepgemm, server_processes
from supervisor.engines.preflight import (
    check_dg_cache,
    check_gpus,
    check_marker,
    check_port_free,
    check_weights,
    marker_matches,
)
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_causes import classify_crash, is_error_line
from supervisor.engines.sglang_check import check_argv, parser_available, sglang_args
from supervisor.engines.sglang_choices import (
    BLACKWELL_ONLY,
    DSA_DECODE_BACKENDS,
    DSA_PREFILL_BACKENDS,
    KV_CACHE_DTYPES,
)
from supervisor.engines.sglang_mitigations import MITIGATIONS
from supervisor.engines.sglang_release import PHASE_MARKERS, SGLANG_VERSION
from supervisor.profiles import get_profile, profile_names
from supervisor.profiles._warmups import TOKENS_PER_SENTENCE, long_prompt
from tests._watch import Watched
from tests.conftest import ROOT, cli

PARSER = os.environ.get("SGLANG_PARSER_PYTHON") or (
    str(ROOT / ".venv-sglang/bin/python") if (ROOT / ".venv-sglang/bin/python").exists() else None
)
needs_parser = pytest.mark.skipif(
    not parser_available(PARSER) and not os.environ.get("SGLANG_PARSER_REQUIRED"),
    reason="no SGLang parser here: run .ci/run, or set SGLANG_PARSER_PYTHON",
)


# ----------------------------------------------------------------------------- parser
# Every profile's serve and compile argv, for every node rank, is parsed in tests/test_profiles.py.


@needs_parser
def test_parser_check_reports_every_problem_at_once_in_one_line_each() -> None:
    seed_style = [
        "python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/m",
        "--tp",
        "8",
        "--nsa-decode-backend",
        "trtllm",
        "--dsa-prefill-backend",
        "bogus",
        "--moe-runner-backend",
        "nope",
        "--attention-backend",
        "nsa",
    ]
    verdict = check_argv(seed_style, python=PARSER)
    problems = "\n".join(verdict.problems)
    assert "unrecognized argument: --tp; write --tp-size" in problems
    assert "unrecognized argument: --nsa-decode-backend; write --dsa-decode-backend" in problems
    assert "argument --dsa-prefill-backend: invalid choice: 'bogus'" in problems
    assert "argument --moe-runner-backend: invalid choice: 'nope'" in problems
    assert len(verdict.problems) == 4 and all("\n" not in p for p in verdict.problems)
    assert verdict.warnings == ("--attention-backend nsa is a deprecated alias; use dsa",)


def test_parse_check_never_sees_the_api_key() -> None:
    flags, compile_step = sglang_args(["python3", "-m", "sglang.launch_server", "--api-key", "k1"])
    assert flags == ["--api-key", "<api-key>"] and not compile_step
    flags, compile_step = sglang_args(
        ["python3", "-m", "sglang.compile_deep_gemm", "--timeout", "5"]
    )
    assert compile_step and flags == ["--timeout", "5"]


# ----------------------------------------------------------------------------- launch config
def test_glm_argv_uses_0_5_23_names_and_every_mitigation() -> None:
    launch = get_profile("glm-5.1-fp8").launch
    argv = launch.serve_argv("k")
    joined = " ".join(argv)
    assert "--tp-size 8" in joined and " --tp " not in joined
    assert "--kv-cache-dtype fp8_e4m3" in joined and joined.count("--kv-cache-dtype") == 1
    assert "--nsa" not in joined and "--dsa-" not in joined  # 0.5.23 picks trtllm by itself
    assert "--enable-flashinfer-allreduce-fusion" not in joined
    assert "--reasoning-parser glm45" in joined and "--tool-call-parser glm47" in joined
    assert "--watchdog-timeout 1200" in joined and "--enable-metrics" in joined
    assert argv[-2:] == ["--api-key", "k"]
    env = launch.environment()
    assert env["SGLANG_DG_CACHE_DIR"] == "/dg-cache" and env["HF_HUB_OFFLINE"] == "1"
    assert int(env["SGLANG_WARMUP_TIMEOUT"]) >= 1800


def test_compile_argv_has_no_api_key_and_a_timeout() -> None:
    argv = get_profile("glm-5.1-fp8").launch.compile_argv(1234)
    assert argv[:3] == ["python3", "-m", "sglang.compile_deep_gemm"]
    assert "--api-key" not in argv and argv[-2:] == ["--timeout", "1234"]


def test_mitigations_cite_their_source_and_forbid_what_they_must() -> None:
    assert all(m.reason and (".py" in m.reason or "#" in m.reason) for m in MITIGATIONS.values())
    kv = "explicit-kv-cache-dtype"
    for extra in (("--kv-cache-dtype", "fp8_e4m3"), ("--kv-cache-dtype=fp8_e4m3",)):
        with pytest.raises(
            ConfigError, match=f"--kv-cache-dtype is forbidden by mitigation '{kv}'"
        ):
            SGLangLaunch("/m", "m", kv_cache_dtype="bfloat16", mitigations=(kv,), extra_args=extra)
    with pytest.raises(ConfigError, match=f"mitigation '{kv}' needs kv_cache_dtype set"):
        SGLangLaunch("/m", "m", mitigations=(kv,))
    with pytest.raises(ConfigError, match=r"kv cache dtype 'fp8' is not one of SGLang 0\.5\.23's"):
        SGLangLaunch("/m", "m", kv_cache_dtype="fp8")
    with pytest.raises(ConfigError, match="the keys come from the environment"):
        SGLangLaunch("/m", "m", extra_args=("--api-key", "x"))


# ----------------------------------------------------------------------------- multi-node
def _cluster(**kw: Any) -> SGLangLaunch:
    """A 2-node, TP-16 launch: the template unless a rank and address are given."""
    return SGLangLaunch("/m", "m", **{"tp_size": 16, "nnodes": 2, **kw})


def test_multi_node_flags_come_after_the_tp_size_and_only_on_several_nodes() -> None:
    argv = _cluster(node_rank=1, dist_init_addr="10.0.0.1:5000").serve_argv()
    i = argv.index("--tp-size")
    assert argv[i : i + 8] == [
        *("--tp-size", "16", "--nnodes", "2"),
        *("--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000"),
    ]
    single = SGLangLaunch("/m", "m", tp_size=8).serve_argv()
    assert not {"--nnodes", "--node-rank", "--dist-init-addr"} & set(single)


def test_for_rank_changes_only_the_rank_and_the_address() -> None:
    template = _cluster(kv_cache_dtype="bfloat16", enable_metrics=False)
    ranks = [template.for_rank(r, "[fd00::1]:5000") for r in range(2)]
    assert [(x.node_rank, x.dist_init_addr) for x in ranks] == [
        (0, "[fd00::1]:5000"),
        (1, "[fd00::1]:5000"),
    ]
    assert template.node_rank == 0 and template.dist_init_addr is None  # a copy, not a change
    argvs = [x.serve_argv("k") for x in ranks]
    diff = [i for i, (a, b) in enumerate(zip(*argvs, strict=True)) if a != b]
    assert diff == [argvs[0].index("--node-rank") + 1]  # the same argv on every node but the rank
    assert template.for_rank(1, "10.0.0.1:5000").compile_argv(60).count("--node-rank") == 1
    single = SGLangLaunch("/m", "m", tp_size=8)
    assert single.for_rank(0, "10.0.0.1:5000") is single  # no rendezvous on one node
    assert ranks[1].gpus_per_node == 8 and single.gpus_per_node == 8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _cluster(node_rank=2), r"^node rank 2 is not in 0\.\.1 \(nnodes=2\)$"),
        (lambda: _cluster(node_rank=-1), r"^node rank -1 is not in 0\.\.1"),
        (lambda: _cluster().for_rank(2, "10.0.0.1:5000"), r"^node rank 2 is not in 0\.\.1"),
        (
            lambda: SGLangLaunch("/m", "m", tp_size=8).for_rank(1, "10.0.0.1:5000"),
            r"^node rank 1 is not in 0\.\.0",
        ),
        (
            lambda: _cluster(tp_size=15),
            r"^tensor parallelism 15 \(the total\) is not divisible by nnodes 2$",
        ),
        (lambda: _cluster(nnodes=0, tp_size=1), r"^nnodes must be >= 1, got 0$"),
        (
            lambda: SGLangLaunch("/m", "m", dist_init_addr="10.0.0.1:5000"),
            r"^dist_init_addr is for nnodes > 1",
        ),
        (lambda: _cluster().serve_argv(), r"^this is a 2-node launch template: build each"),
        (lambda: _cluster().compile_argv(), r"^this is a 2-node launch template"),
        (lambda: _cluster(dist_init_addr="fd00::1:5000"), r"^dist_init_addr 'fd00::1:5000': "),
        (lambda: _cluster(dist_init_addr="10.0.0.1"), r"^dist_init_addr '10\.0\.0\.1': "),
        (lambda: _cluster(dist_init_addr="[10.0.0.1]:5000"), r"^dist_init_addr '\[10"),
        (lambda: _cluster(dist_init_addr="[fd00::1]5000"), r"^dist_init_addr '\[fd00::1\]5000'"),
        (lambda: _cluster(dist_init_addr="h:0"), r"^dist_init_addr 'h:0': port '0' is not in"),
        (lambda: _cluster(dist_init_addr="h:70000"), r"port '70000' is not in 1-65535"),
        (lambda: _cluster().for_rank(0, "h:x"), r"^dist_init_addr 'h:x': port 'x'"),
        (
            lambda: _cluster(dist_init_addr="10.0.0.1:8000"),
            r"^dist_init_addr port 8000 is the HTTP port too",
        ),
    ],
)
def test_multi_node_mistakes_are_one_line_config_errors(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_ipv6_and_hostname_addresses_are_accepted_as_sglang_parses_them() -> None:
    for addr in ("[fd00::1]:5000", "[::1]:65535", "rank0.cluster:5000", "10.0.0.1:1"):
        argv = _cluster().for_rank(1, addr).serve_argv()
        assert argv[argv.index("--dist-init-addr") + 1] == addr


# ----------------------------------------------------------------------------- typed flags
def test_snapshot_flags_are_emitted_and_the_backup_needs_the_saver() -> None:
    on = SGLangLaunch("/m", "m", enable_memory_saver=True, enable_weights_cpu_backup=True)
    argv = on.serve_argv()
    assert "--enable-memory-saver" in argv and "--enable-weights-cpu-backup" in argv
    assert "--enable-weights-cpu-backup" in on.compile_argv()
    assert "--enable-memory-saver" not in SGLangLaunch("/m", "m").serve_argv()
    with pytest.raises(ConfigError, match=r"^enable_weights_cpu_backup needs enable_memory_saver$"):
        SGLangLaunch("/m", "m", enable_weights_cpu_backup=True)


def test_dsa_backends_are_typed_checked_and_need_a_kv_cache_dtype() -> None:
    ok = SGLangLaunch(
        "/m",
        "m",
        kv_cache_dtype="bfloat16",
        dsa_prefill_backend="flashmla_sparse",
        dsa_decode_backend="fa3",
    ).serve_argv()
    assert ok[ok.index("--dsa-prefill-backend") + 1] == "flashmla_sparse"
    assert ok[ok.index("--dsa-decode-backend") + 1] == "fa3"
    SGLangLaunch("/m", "m", kv_cache_dtype="bfloat16", dsa_prefill_backend="triton_sparse_mla")
    with pytest.raises(ConfigError, match=r"^dsa decode backend 'triton_sparse_mla' is not one"):
        SGLangLaunch("/m", "m", kv_cache_dtype="bfloat16", dsa_decode_backend="triton_sparse_mla")
    with pytest.raises(ConfigError, match=r"^dsa prefill backend 'nsa' is not one of SGLang"):
        SGLangLaunch("/m", "m", kv_cache_dtype="bfloat16", dsa_prefill_backend="nsa")
    with pytest.raises(ConfigError, match=r"^a DSA backend needs kv_cache_dtype set"):
        SGLangLaunch("/m", "m", dsa_decode_backend="fa3")


_CHOICES = """
import argparse, json, sys, types
try:
    import triton  # noqa: F401
except ImportError:
    sys.modules["triton"] = types.ModuleType("triton")
from sglang.srt.server_args import ServerArgs
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)
print(json.dumps({a.option_strings[0]: list(a.choices or []) for a in parser._actions
                  if a.option_strings}))
"""


@needs_parser
def test_typed_choices_are_the_pinned_parsers() -> None:
    done = subprocess.run(
        [PARSER or sys.executable, "-c", _CHOICES], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    choices = json.loads(done.stdout)
    assert tuple(choices["--dsa-prefill-backend"]) == DSA_PREFILL_BACKENDS
    assert tuple(choices["--dsa-decode-backend"]) == DSA_DECODE_BACKENDS
    assert tuple(choices["--kv-cache-dtype"]) == KV_CACHE_DTYPES
    for flag in ("--nnodes", "--node-rank", "--dist-init-addr", "--enable-memory-saver"):
        assert flag in choices
    assert "--enable-weights-cpu-backup" in choices
    for name, values in BLACKWELL_ONLY.items():
        assert set(values) <= set(choices["--" + name.replace("_", "-")]), name


def test_blackwell_only_settings_are_named() -> None:
    assert get_profile("glm-5.1-fp8").launch.blackwell_only() == [
        "--moe-runner-backend flashinfer_trtllm"
    ]
    hopper = SGLangLaunch("/m", "m", moe_runner_backend="triton", kv_cache_dtype="bfloat16")
    assert hopper.blackwell_only() == []
    fused = _cluster(flashinfer_allreduce_fusion_backend="auto")
    assert fused.blackwell_only() == ["--flashinfer-allreduce-fusion-backend auto on 2 nodes"]
    assert (
        SGLangLaunch(
            "/m", "m", tp_size=8, flashinfer_allreduce_fusion_backend="auto"
        ).blackwell_only()
        == []
    )
    trt = SGLangLaunch("/m", "m", kv_cache_dtype="fp8_e4m3", dsa_decode_backend="trtllm")
    assert trt.blackwell_only() == ["--dsa-decode-backend trtllm"]


def test_dsa_and_mla_profiles_state_their_kv_cache_dtype_and_can_override_it() -> None:
    expected = {"glm-5.1-fp8": "fp8_e4m3", "deepseek-r1-fp8": "bfloat16"}
    for name, dtype in expected.items():
        launch = get_profile(name).launch
        assert launch.kv_cache_dtype == dtype
        assert "explicit-kv-cache-dtype" in launch.mitigations
        argv = launch.serve_argv()
        assert argv[argv.index("--kv-cache-dtype") + 1] == dtype
        assert launch.compile_argv()[launch.compile_argv().index("--kv-cache-dtype") + 1] == dtype
    bf16 = get_profile("glm-5.1-fp8").launch.with_overrides(kv_cache_dtype="bfloat16")
    argv = bf16.serve_argv()
    assert argv[argv.index("--kv-cache-dtype") + 1] == "bfloat16"


def test_profiles_have_different_shapes_and_the_glm_warmup_set() -> None:
    names = profile_names()
    assert {"glm-5.1-fp8", "deepseek-r1-fp8", "qwen3-8b"} <= set(names)
    assert {get_profile(n).gpu_count for n in names} >= {1, 8}
    glm = get_profile("glm-5.1-fp8")
    expects = {w.name: w.expect for w in glm.warmups}
    assert expects["chat-thinking"] == ("reasoning_content",)
    assert expects["chat-no-thinking"] == ("content", "no_reasoning")
    assert expects["tools"] == ("tool_calls",)
    long = next(w for w in glm.warmups if w.name == "long-context")
    estimate = len(long.body["messages"][0]["content"].split()) * 1.3
    assert 8192 < estimate < glm.launch.max_prefill_tokens  # chunked, yet within the limit


def test_long_prompt_is_about_the_size_asked() -> None:
    sentences = 1000
    words = len(long_prompt(sentences * TOKENS_PER_SENTENCE).split())
    assert sentences * 12 <= words <= sentences * 12 + 10


# ----------------------------------------------------------------------------- CLI
def test_dry_run_shows_the_command_env_and_verdict_with_the_key_hidden() -> None:
    env = {"GLM_KEY": "supersecret-key-1", **({"SGLANG_PARSER_PYTHON": PARSER} if PARSER else {})}
    w = Watched(
        cli("serve", "--profile", "glm-5.1-fp8", "--dry-run", "--api-key-env", "GLM_KEY", env=env)
    )
    rc, _ = w.wait_exit(120)
    out = w.output()
    assert "--kv-cache-dtype fp8_e4m3" in out and "SGLANG_DG_CACHE_DIR=/dg-cache" in out
    argv = next(line for line in out.splitlines() if line.startswith("argv:"))
    # the keys (the operator's and a fresh admin key) are in a 0600 file, not on the argv
    assert "supersecret-key-1" not in out and "--api-key" not in argv and "--config /" in argv
    assert "(mode 0600, removed on exit), not on the command line" in out
    assert "weights: /model-cache/GLM-5.1-FP8 does not exist" in out
    assert rc == 0 and "preflight FAILED" in out  # shown, not an error: the dry run worked
    assert "dry run: serve would stop here with exit 2" in out
    if PARSER:
        assert "[ok  ] argv: parses with SGLang 0.5.23" in out


def test_serve_glm_on_the_fake_engine_validates_its_whole_warmup_set(port: int) -> None:
    with Watched(
        cli(
            "serve",
            "--profile",
            "glm-5.1-fp8",
            "--fake",
            "--port",
            str(port),
            "--fake-arg=--fake-load-time=0.3",
            "--fake-arg=--fake-warmup-time=0.2",
            "--fake-arg=--fake-time-scale=0.1",
        )
    ) as w:
        w.wait_for("state=serving", 60)
        out = w.output()
        for name in ("chat-thinking", "chat-no-thinking", "long-context", "tools"):
            assert f"warmup={name} verdict=ok" in out
        assert (
            "startup timeline:" in out
            and "load_weight=" in out
            and "engine.load_weight=0.30s" in out
        )
        timeline = next(x for x in out.splitlines() if "startup timeline:" in x)
        # ours before the spawn and each warmup, beside the engine's numbers
        keys = [pair.split("=")[0] for pair in timeline.split("startup timeline: ")[1].split()]
        assert keys[:2] == ["preflight", "spawn"], keys
        for name in ("chat_thinking", "chat_no_thinking", "long_context", "tools"):
            assert f"warmup.{name}" in keys
        assert "engine.mem" not in out
        w.signal()
        assert w.wait_exit(30)[0] == 0


def test_serve_refuses_a_busy_port_before_launching(port: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        w = Watched(cli("serve", "--profile", "qwen3-8b", "--fake", "--port", str(port)))
        rc, _ = w.wait_exit(60)
    assert rc == 2
    assert f"something already answers on port {port}" in w.output()
    assert "starting" not in w.output()


# ----------------------------------------------------------------------------- preflight
def make_weights(root: Path, shards: int = 3) -> Path:
    root.mkdir()
    (root / "config.json").write_text('{"architectures": ["GlmMoeDsaForCausalLM"]}')
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    for n in names:
        (root / n).write_bytes(b"\0" * 128)
    index = {"weight_map": {f"layer.{i}.weight": names[i % shards] for i in range(10)}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return root


def test_weights_check_on_real_files(tmp_path: Path) -> None:
    root = make_weights(tmp_path / "m")
    assert check_weights(root).status == "ok"
    (root / "model-00002-of-00003.safetensors").unlink()
    c = check_weights(root)
    assert c.status == "fail" and "1 missing (first: model-00002-of-00003.safetensors)" in c.message
    (root / "model-00002-of-00003.safetensors").write_bytes(b"")
    assert "1 empty" in check_weights(root).message
    (root / "config.json").unlink()
    assert "config.json is missing" in check_weights(root).message
    assert "does not exist" in check_weights(tmp_path / "nope").message


def test_port_check_finds_a_stale_listener(port: int) -> None:
    assert check_port_free(port).status == "ok"
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        c = check_port_free(port)
    assert c.status == "fail" and "a stale server?" in c.message


def test_dg_cache_check(tmp_path: Path) -> None:
    assert check_dg_cache(str(tmp_path)).status == "ok"
    assert "does not exist" in check_dg_cache(str(tmp_path / "missing")).message
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert check_dg_cache(str(blocker)).status == "fail"


class FakeNVML:
    """A unit-test stand-in for pynvml with N GPUs of one name and some memory used."""

    class NVMLError(Exception):
        pass

    def __init__(self, names: list[str], used_gib: list[float]) -> None:
        self.names, self.used = names, used_gib

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, i: int) -> str:
        return self.names[i]

    def nvmlDeviceGetMemoryInfo(self, i: int) -> object:
        return type("Mem", (), {"used": int(self.used[i] * (1 << 30))})()


@pytest.mark.parametrize(
    ("names", "used", "status", "text"),
    [
        (["NVIDIA B200"] * 8, [0.5] * 8, "ok", "8x NVIDIA B200"),
        (["NVIDIA B200"] * 4, [0.5] * 4, "fail", "4 GPUs, tensor parallelism needs 8"),
        (["NVIDIA H100 80GB HBM3"] * 8, [0.5] * 8, "fail", "expected B200"),
        (["NVIDIA B200"] * 8, [0.5] * 7 + [95.0], "fail", "GPU 7 has 95.0 GiB in use"),
    ],
)
def test_gpu_check_logic(monkeypatch, names, used, status, text) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(names, used))
    c = check_gpus(8, "B200")
    assert c.status == status and text in c.message


def test_gpu_check_skips_without_nvml(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert check_gpus(8, "B200").status == "skip"


# ----------------------------------------------------------------------------- crash causes
# Texts as SGLang 0.5.23 and PyTorch print them (file:function in sglang_causes.CRASH_CAUSES' comments;
# tests/test_fidelity.py checks the SGLang templates against the installed source).
REAL_TAILS = [
    (
        "cuda-out-of-memory",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of 178.36 GiB",
    ),
    (
        "nccl-unhandled-cuda-error",
        "torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:3356, unhandled cuda error",
    ),
    (
        "gpu-illegal-memory-access",  # torch 2.11 on an H200 (benchmarks/gpu/RESULTS-fault-texts-H200.txt)
        "torch.AcceleratorError: CUDA error: an illegal memory access was encountered",
    ),
    (
        "gpu-illegal-memory-access",  # older torch, as SGLang users' logs show it (sglang #26987)
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    ),
    (
        "gpu-illegal-memory-access",  # cupy's driver error, the same H200 run
        "cupy_backends.cuda.api.driver.CUDADriverError: CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered",
    ),
    ("gpu-ecc-error", "RuntimeError: CUDA error: uncorrectable ECC error encountered"),
    ("gpu-requires-reset", "pynvml.NVMLError_ResetRequired: GPU requires reset"),
    (
        "cuda-graph-capture-failed",
        "Exception: Capture cuda graph failed: CUDA out of memory. Tried to allocate 1.50 GiB.",
    ),
    (
        "nccl-error",
        "[rank3]:[E1102 10:00:00.123456 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE) ran for 600000 milliseconds before timing out.",
    ),
    (
        "address-in-use",
        "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): address already in use",
    ),
    (
        "missing-weights",
        "OSError: /model-cache/GLM-5.1-FP8 does not appear to have a file named config.json.",
    ),
    (
        "scheduler-killed-during-init",
        "RuntimeError: Rank 0 scheduler died during initialization (exit code: -9). If exit code is -9 (SIGKILL), a common cause is the OS OOM killer. Run `dmesg -T | grep -i oom` to check.",
    ),
    (
        "watchdog-timeout",
        "[2026-01-02 10:00:00 TP0] Scheduler watchdog timeout (self.watchdog_timeout=1200, self.soft=False)",
    ),
    (
        "warmup-failed",
        "[2026-01-02 10:00:00] Initialization failed. warmup error: Traceback (most recent call last):",
    ),
    (
        "scheduler-exception",
        "[2026-01-02 10:00:00 TP0] Scheduler hit an exception: Traceback (most recent call last):",
    ),
    # at TP 1 a scheduler's record has no tag (scheduler.py:configure_scheduler_process), with
    # DP attention it has ` DPd TPn`: the cause never depends on the tag
    (
        "scheduler-exception",
        "[2026-01-02 10:00:00] Scheduler hit an exception: Traceback (most recent call last):",
    ),
    (
        "scheduler-exception",
        "[2026-01-02 10:00:00 DP1 TP5] Scheduler hit an exception: Traceback (most recent call last):",
    ),
    (
        "watchdog-timeout",
        "[2026-01-02 10:00:00] Scheduler watchdog timeout (self.watchdog_timeout=1200, self.soft=False)",
    ),
    (
        "subprocess-crashed",
        "[2026-01-02 10:00:00] Subprocess scheduler_0 (pid=4242) crashed with exit code -6. Triggering SIGQUIT for cleanup...",
    ),
    (
        "child-failed",
        "[2026-01-02 10:00:00] Received sigquit from a child process. It usually means the child failed.",
    ),
    (
        "child-failed",
        "[2026-01-02 10:00:00] SIGQUIT received. signum=None, frame=None. It usually means one child failed.",
    ),
]


@pytest.mark.parametrize(("cause", "line"), REAL_TAILS)
def test_crash_causes_from_real_sglang_texts(cause: str, line: str) -> None:
    tail = ["[2026-01-02 10:00:00] Load weight begin. avail mem=78.50 GB", line, "Killed"]
    assert classify_crash(tail) == cause


def test_unknown_crash_and_priority() -> None:
    causes = dict(REAL_TAILS[::-1])  # the first text of each cause
    assert classify_crash(["something odd happened"]) == "unknown"
    both = [causes["child-failed"], causes["cuda-out-of-memory"]]
    assert classify_crash(both) == "cuda-out-of-memory"  # the root cause wins over its symptom
    running = [causes["subprocess-crashed"], causes["child-failed"]]
    assert classify_crash(running) == "subprocess-crashed"


def test_a_warning_that_names_nccl_is_no_crash_cause() -> None:
    warnings = [
        "[rank0]:[W1102 10:00:00.123456 ProcessGroupNCCL.cpp:4715] Warning: TORCH_NCCL_AVOID_RECORD_STREAMS is the default now, this environment variable is thus deprecated. (function operator())",
        "/usr/lib/python3/dist-packages/torch/distributed/c10d_logger.py:83: UserWarning: NCCL error reporting is asynchronous",
        "[2026-01-02 10:00:00 TP0] WARNING: ProcessGroupNCCL is slow to start",
    ]
    assert classify_crash(warnings) == "unknown"
    assert not any(is_error_line(w) for w in warnings)
    assert is_error_line(REAL_TAILS[1][1])


def test_cli_crash_report_names_the_cause(port: int) -> None:
    with Watched(
        cli(
            "serve",
            "--profile",
            "qwen3-8b",
            "--fake",
            "--port",
            str(port),
            "--no-liveness",
            "--fake-arg=--fake-load-time=0.3",
            "--fake-arg=--fake-warmup-time=0.1",
            "--fake-arg=--fake-time-scale=0.1",  # /health 0.1 s: serving before the crash
            "--fake-arg=--fake-fault=crash-after-serving",
            "--fake-arg=--fake-crash-after=0.3",
        )
    ) as w:
        rc, _ = w.wait_exit(60)
        assert rc == 1
        assert "cause=cuda-out-of-memory" in w.output()


def test_phase_markers_are_sglang_lines() -> None:
    names = [n for n, _ in PHASE_MARKERS]
    assert names == ["load_weight", "weights_loaded", "engine_ready", "http_up", "ready_line"]


# ----------------------------------------------------------------------------- DeepGEMM
FAKE_COMPILE = [
    sys.executable,
    "-m",
    "supervisor.testing.fake_sglang",
    "--fake-mode",
    "compile",
    "--fake-load-time",
    "0.3",
    "--fake-warmup-time",
    "0.1",
    "--fake-time-scale",
    "0.05",  # the script's 10 s polls and 10 s settle become 0.5 s
]


class Quiet:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def child(self, stream: str, text: str) -> None:
        self.lines.extend(text.splitlines())

    def supervisor(self, line: str) -> None:
        self.lines.append(line)


@pytest.mark.anyio
async def test_compile_succeeds_writes_marker_and_is_skipped_next_time(
    tmp_path: Path, port: int
) -> None:
    launch = get_profile("glm-5.1-fp8").launch.with_overrides(
        dg_cache_dir=str(tmp_path), port=port, host="127.0.0.1"
    )
    sink = Quiet()
    result = await compile_deepgemm(launch, timeout_s=60, engine=FAKE_COMPILE, sink=sink)
    assert result.ok and not result.skipped and result.returncode == 0
    marker = json.loads((tmp_path / "sglang-supervisor-deepgemm.json").read_text())
    assert marker["sglang_version"] == SGLANG_VERSION and marker["tp_size"] == 8
    assert marker["model_path"] == "/model-cache/GLM-5.1-FP8" and marker["compiled_at"] > 0
    assert marker_matches(launch) and check_marker(launch).status == "ok"
    assert not any("--api-key" in line for line in sink.lines)
    again = await compile_deepgemm(launch, timeout_s=60, engine=FAKE_COMPILE, sink=sink)
    assert again.ok and again.skipped
    other = launch.with_overrides(tp_size=4)
    assert not marker_matches(other) and "recompile" in check_marker(other).message


@pytest.mark.anyio
async def test_compile_fails_fast_when_its_server_dies(tmp_path: Path, port: int) -> None:
    launch = get_profile("glm-5.1-fp8").launch.with_overrides(
        dg_cache_dir=str(tmp_path), port=port, host="127.0.0.1"
    )
    start = anyio.current_time()
    # The fake compile script keeps polling for its whole --timeout (3600 s) after the crash.
    result = await compile_deepgemm(
        launch,
        timeout_s=3600,
        engine=[*FAKE_COMPILE, "--fake-fault", "crash-loading"],
        sink=Quiet(),
    )
    assert not result.ok and "cause: scheduler-killed-during-init" in result.reason
    assert anyio.current_time() - start < 20
    assert not (tmp_path / "sglang-supervisor-deepgemm.json").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("poll_s", [1.0, 4.0])
async def test_a_silent_server_death_fails_the_compile_within_15s_despite_the_tracker(
    tmp_path: Path, port: int, poll_s: float
) -> None:
    """The server process is SIGKILLed without a line; the script and its resource tracker live
    on (the script polls for its whole --timeout), so the tree never shrinks to one process.

    At a 4 s poll the server (0.5 s of loading) is dead before the first look: it is seen only
    as the script's zombie child, the race a loaded CI machine once lost for an hour."""
    launch = get_profile("glm-5.1-fp8").launch.with_overrides(
        dg_cache_dir=str(tmp_path), port=port, host="127.0.0.1"
    )
    sink = Quiet()
    start = anyio.current_time()
    result = await compile_deepgemm(
        launch,
        timeout_s=3600,
        engine=[*FAKE_COMPILE, "--fake-load-time", "1", "--fake-fault", "sigkill-loading"],
        sink=sink,
        tree_poll_s=poll_s,
    )
    took = anyio.current_time() - start
    assert not result.ok, result.reason
    assert (
        "the compile server (pid" in result.reason and "died without an error line" in result.reason
    )
    assert "helper process(es) (resource tracker) still running" in result.reason
    assert took < 15, f"took {took:.1f} s"
    assert not any("Traceback" in line or "Error" in line for line in sink.lines)  # silent


@pytest.mark.anyio
async def test_a_warning_that_names_nccl_does_not_fail_the_compile(
    tmp_path: Path, port: int
) -> None:
    launch = get_profile("glm-5.1-fp8").launch.with_overrides(
        dg_cache_dir=str(tmp_path), port=port, host="127.0.0.1"
    )
    warning = (
        "[rank0]:[W1102 10:00:00.123456 ProcessGroupNCCL.cpp:4715] Warning: "
        "TORCH_NCCL_AVOID_RECORD_STREAMS is the default now (function operator())"
    )
    sink = Quiet()
    result = await compile_deepgemm(
        launch, timeout_s=60, engine=[*FAKE_COMPILE, "--fake-extra-log", warning], sink=sink
    )
    assert result.ok and result.returncode == 0, result.reason
    assert any("ProcessGroupNCCL.cpp:4715] Warning" in line for line in sink.lines)


def test_the_fake_compile_tree_is_shaped_like_sglangs(port: int) -> None:
    """Script -> resource tracker + spawn-mode server child -> schedulers, as the real one."""
    proc = subprocess.Popen(
        [*FAKE_COMPILE, "--port", str(port), "--fake-load-time", "3", "--tp-size", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        servers: list[int] = []
        helpers: list[int] = []
        while time.monotonic() < deadline:
            found, helpers = server_processes(proc.pid)
            servers = [info.pid for info in found]
            if servers and helpers and len(_tree(servers[0])) >= 2:
                break
            time.sleep(0.1)
        assert len(servers) == 1 and len(helpers) == 1
        assert b"multiprocessing.spawn" in Path(f"/proc/{servers[0]}/cmdline").read_bytes()
        assert len(_tree(servers[0])) >= 2  # its two schedulers
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def _tree(root: int) -> list[int]:
    from supervisor.testing.fake_sglang._schedulers import descendants

    return [root, *descendants(root)]


def test_compile_cli_on_the_fake(tmp_path: Path, port: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "compile",
            "--profile",
            "glm-5.1-fp8",
            "--fake",
            "--dg-cache-dir",
            str(tmp_path),
            "--timeout",
            "60",
            "--fake-arg=--fake-load-time=0.2",
            "--fake-arg=--fake-time-scale=0.05",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DeepGEMM Kernels compilation finished successfully." in done.stdout
    assert (tmp_path / "sglang-supervisor-deepgemm.json").exists()


def test_compile_of_a_profile_without_deepgemm_is_a_one_line_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "compile", "--profile", "qwen3-8b", "--fake"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "python -m supervisor: error: profile qwen3-8b does not use DeepGEMM: nothing to compile"
    )
