"""Fidelity to SGLang 0.5.23 (issue #9): the image and runtime check, the KV cache, the drain,
the compile step's watch, the running-phase crash texts. Each test names what it proves."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from supervisor import ConfigError
from supervisor.engines.image import (
    IMAGE_ENV,
    RuntimeProbes,
    check_runtime,
    default_image,
    image_tag,
    runtime_problems,
)
from supervisor.engines.sglang import SGLANG_VERSION
from tests.conftest import ROOT


# ----------------------------------------------------------------------------- image
def test_default_image_is_the_cuda13_release_tag_of_the_pin() -> None:
    assert default_image() == f"lmsysorg/sglang:v{SGLANG_VERSION}"
    assert default_image(runtime=True) == f"lmsysorg/sglang:v{SGLANG_VERSION}-runtime"
    assert image_tag({}) == default_image()
    assert image_tag({IMAGE_ENV: "registry.example/sglang:mine"}) == "registry.example/sglang:mine"
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
    check_runtime(probes=FITTING)


def test_a_version_mismatch_stops_with_one_clear_line() -> None:
    probes = RuntimeProbes(**{**FITTING.__dict__, "sglang_version": lambda: "0.5.22"})
    with pytest.raises(ConfigError) as info:
        check_runtime(probes=probes)
    message = str(info.value)
    assert "\n" not in message
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
    with pytest.raises(ConfigError) as info:
        check_runtime()
    message = str(info.value)
    assert "\n" not in message
    assert "SGLang 0.5.22 is installed but this supervisor is pinned to 0.5.23" in message
    assert "driver supports CUDA 12.8 but the image needs CUDA 13.0" in message
    assert "torch" not in sys.modules and "sglang" not in sys.modules
