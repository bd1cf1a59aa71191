"""The SGLang GPU image: which tag to deploy, and a runtime check to run as the container starts.

SGLang's CUDA 12.9 images ended with v0.5.19: "SGLang requires CUDA 13. The CUDA 12 [...] wheels
and images are retired, because PyTorch 2.14 publishes no CUDA 12.9 builds. SGLang 0.5.19 is the
last release with a CUDA 12 lane." (docs.sglang.io, install page). Later
releases are tagged by release alone, `lmsysorg/sglang:vX.Y.Z`, with a smaller `-runtime` variant.
So the default tag is derived from `SGLANG_VERSION` with no CUDA suffix, and a deployment can
override it (`IMAGE_ENV`, read by `deploy/settings.py`).

A wrong image is a quiet disaster: argv that the pinned parser accepted meets another parser, or
a CUDA runtime the host driver cannot run fails deep inside weight loading, 15 minutes in.
`runtime_problems` catches both in well under a second, before any weights load, and says what
is wrong, one line per problem. It never imports `sglang` or `torch` (both are heavy and
`import sglang` redirects cache directories as a side effect): it reads package metadata,
torch's `version.py` as text, and NVML.

Guesses, to re-check when the pin moves:
- `IMAGE_CUDA` (13, 0): the CUDA of the v0.5.2x images is assumed to be 13.0, the toolkit of
  PyTorch's `cu130` wheels; the check prefers the CUDA that the installed torch reports, so the
  guess only matters where torch's `version.py` cannot be read.
- That `lmsysorg/sglang:v0.5.23` and `-runtime` exist was not checked against the registry from
  here; the tag scheme is the documented one.
- CUDA minor-version compatibility: a driver whose CUDA major version matches the runtime's is
  accepted even if its minor version is lower (NVIDIA's documented compatibility); a lower major
  version is a mismatch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.engines.sglang_release import SGLANG_VERSION

__all__ = [
    "IMAGE_CUDA",
    "IMAGE_ENV",
    "IMAGE_REPOSITORY",
    "RuntimeProbes",
    "default_image",
    "runtime_problems",
]

IMAGE_REPOSITORY = "lmsysorg/sglang"
IMAGE_ENV = "SGLANG_IMAGE"  # the variable a deployment sets to override the tag
IMAGE_CUDA: tuple[int, int] = (13, 0)  # a guess: see the module docstring


def default_image(version: str = SGLANG_VERSION, *, runtime: bool = False) -> str:
    """`lmsysorg/sglang:v<version>`, or its smaller `-runtime` variant.

    The full image is the default because it is the documented one; the runtime variant drops
    development tools (and, per SGLang's Dockerfile, keeps the CUDA compiler DeepGEMM's JIT needs).
    """
    return f"{IMAGE_REPOSITORY}:v{version}" + ("-runtime" if runtime else "")


# --------------------------------------------------------------------------- probes
def _sglang_version() -> str | None:
    """The installed SGLang's version from its package metadata (what `sglang.__version__` is)."""
    try:
        return importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return None


_TORCH_CUDA = re.compile(r"^cuda(?:\s*:\s*[\w\[\], ]+)?\s*=\s*['\"]([\d.]+)['\"]", re.M)


def _torch_cuda() -> str | None:
    """`torch.version.cuda`, read from torch's `version.py` as text; None for a CPU build."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        try:
            text = (Path(location) / "version.py").read_text()
        except OSError:
            continue
        match = _TORCH_CUDA.search(text)
        return match.group(1) if match else None
    try:  # a wheel's local version says it too: 2.9.1+cu130
        local = importlib.metadata.version("torch").partition("+")[2]
    except importlib.metadata.PackageNotFoundError:
        return None
    digits = re.fullmatch(r"cu(\d+)(\d)", local)
    return f"{int(digits.group(1))}.{digits.group(2)}" if digits else None


def _nvml() -> object | None:
    try:
        import pynvml  # nvidia-ml-py, installed into the GPU image
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable driver
        return None
    return pynvml


def _visible_gpus() -> int | None:
    """GPUs this process may use: NVML's count, narrowed by CUDA_VISIBLE_DEVICES; None: unknown."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    nvml = _nvml()
    if nvml is None:
        try:  # no NVML: the driver's device nodes still tell
            count = len([d for d in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", d)])
        except OSError:
            return None
    else:
        try:
            count = int(nvml.nvmlDeviceGetCount())  # type: ignore[attr-defined]
        finally:
            nvml.nvmlShutdown()  # type: ignore[attr-defined]
    if count and visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def _driver_cuda() -> tuple[int, int] | None:
    """The newest CUDA the driver supports (`nvmlSystemGetCudaDriverVersion`: 13000 is 13.0)."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        raw = int(nvml.nvmlSystemGetCudaDriverVersion())  # type: ignore[attr-defined]
    except Exception:
        return None
    finally:
        nvml.nvmlShutdown()  # type: ignore[attr-defined]
    return raw // 1000, (raw % 1000) // 10


@dataclass(frozen=True)
class RuntimeProbes:
    """Where `runtime_problems` gets its facts; each is replaceable, so tests need no GPU.

    A probe returns None when it cannot tell (no NVML, say): an unknown is not reported as a
    mismatch, except a missing SGLang.
    """

    sglang_version: Callable[[], str | None] = _sglang_version
    torch_cuda: Callable[[], str | None] = _torch_cuda
    visible_gpus: Callable[[], int | None] = _visible_gpus
    driver_cuda: Callable[[], tuple[int, int] | None] = _driver_cuda


def _version(text: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def runtime_problems(
    *,
    expected_version: str = SGLANG_VERSION,
    image_cuda: tuple[int, int] = IMAGE_CUDA,
    require_gpu: bool = True,
    probes: RuntimeProbes | None = None,
) -> tuple[str, ...]:
    """Every mismatch between this runtime and the pin, one short line each; () when it fits.

    `require_gpu=False` for steps that run without GPUs (a verify function): then only the
    SGLang version is checked, plus the torch CUDA against the driver where both are known.
    """
    probes = probes or RuntimeProbes()
    problems: list[str] = []
    installed = probes.sglang_version()
    if installed is None:
        problems.append(f"SGLang is not installed; this supervisor is pinned to {expected_version}")
    elif installed != expected_version:
        problems.append(
            f"SGLang {installed} is installed but this supervisor is pinned to {expected_version} "
            f"(use image {default_image(expected_version)} or set {IMAGE_ENV} to an image of it)"
        )
    gpus = probes.visible_gpus() if require_gpu else None
    if require_gpu and gpus == 0:
        problems.append("no CUDA device is visible (check the GPU request, CUDA_VISIBLE_DEVICES)")
    torch_cuda = probes.torch_cuda()
    runtime = _version(torch_cuda) if torch_cuda else None
    if require_gpu and torch_cuda is None and installed is not None:
        problems.append("the installed torch has no CUDA build")
    needed = runtime or image_cuda
    driver = probes.driver_cuda()
    if driver is not None and driver[0] < needed[0]:
        problems.append(
            f"the GPU driver supports CUDA {driver[0]}.{driver[1]} but the image needs "
            f"CUDA {needed[0]}.{needed[1]} (a newer driver, or an older image)"
        )
    return tuple(problems)
