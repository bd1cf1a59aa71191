"""Preflight: what can be checked in seconds before a cold start that costs fifteen minutes.

Each check gives one line that says what to fix. A check that cannot run here (no SGLang, no
NVML) says so and is skipped, never silently passed.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_check import check_argv, parser_available
from supervisor.engines.sglang_release import SGLANG_VERSION
from supervisor.engines.shm import inspect_shm

__all__ = [
    "Check",
    "PreflightReport",
    "check_dg_cache",
    "check_gpus",
    "check_port_free",
    "check_shm",
    "check_weights",
    "marker_path",
    "read_marker",
    "run_preflight",
    "write_marker",
]

MARKER_NAME = "sglang-supervisor-deepgemm.json"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "fail" or "skip"
    message: str

    def line(self) -> str:
        mark = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}[self.status]
        return f"[{mark}] {self.name}: {self.message}"


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def render(self) -> str:
        verdict = "preflight passed" if self.ok else f"preflight FAILED ({len(self.failures)})"
        return "\n".join([*(c.line() for c in self.checks), verdict])


def check_argv_parses(argv: Sequence[str], python: str | None = None) -> Check:
    if not parser_available(python):
        return Check("argv", "skip", "SGLang is not importable here; set SGLANG_PYTHON")
    try:
        verdict = check_argv(argv, python=python)
    except (RuntimeError, OSError) as exc:
        return Check("argv", "fail", str(exc))
    if verdict.version != SGLANG_VERSION:
        return Check(
            "argv", "fail", f"installed SGLang is {verdict.version}, pinned is {SGLANG_VERSION}"
        )
    if not verdict.ok:
        return Check("argv", "fail", "; ".join(verdict.problems))
    extra = f" (warnings: {'; '.join(verdict.warnings)})" if verdict.warnings else ""
    return Check("argv", "ok", f"parses with SGLang {verdict.version}{extra}")


def check_weights(model_path: str | os.PathLike[str]) -> Check:
    """config.json plus every shard the index names, each present and non-empty."""
    root = Path(model_path)
    if not root.is_dir():
        return Check("weights", "fail", f"{root} does not exist: download the weights first")
    config = root / "config.json"
    if not config.is_file() or config.stat().st_size == 0:
        return Check("weights", "fail", f"{config} is missing or empty: the download is incomplete")
    index = root / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            return Check("weights", "fail", f"{index} is unreadable ({exc}): download it again")
    else:
        shards = sorted(p.name for p in root.glob("*.safetensors"))
        if not shards:
            return Check(
                "weights", "fail", f"no *.safetensors in {root}: the download is incomplete"
            )
    missing = [s for s in shards if not (root / s).is_file()]
    empty = [s for s in shards if (root / s).is_file() and (root / s).stat().st_size == 0]
    if missing or empty:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if empty:
            parts.append(f"{len(empty)} empty (first: {empty[0]})")
        return Check("weights", "fail", f"{len(shards)} shards, {', '.join(parts)}: download again")
    size = sum((root / s).stat().st_size for s in shards)
    return Check("weights", "ok", f"{len(shards)} shards, {size / 1e9:.1f} GB, config.json present")


def check_port_free(port: int, host: str = "0.0.0.0") -> Check:
    """Nothing may answer on the port: a stale server there would pass our health check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return Check(
                "port", "fail", f"something already answers on port {port}: a stale server? stop it"
            )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the server will: a port in TIME_WAIT after a stop is free, only a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return Check("port", "fail", f"cannot bind {host}:{port} ({exc.strerror})")
    return Check("port", "ok", f"{port} is free")


def check_dg_cache(path: str | None) -> Check:
    if not path:
        return Check("deepgemm-cache", "skip", "no DeepGEMM cache directory configured")
    root = Path(path)
    if not root.is_dir():
        return Check(
            "deepgemm-cache", "fail", f"{root} does not exist: mount the cache volume there"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        return Check("deepgemm-cache", "fail", f"{root} is not writable ({exc.strerror})")
    return Check("deepgemm-cache", "ok", f"{root} exists and is writable")


def check_gpus(
    expected_count: int, expected_type: str | None, *, max_used_gib: float = 2.0
) -> Check:
    """GPU count and type match, and no GPU is already full of a stale process's memory."""
    try:
        import pynvml  # nvidia-ml-py; present in GPU images
    except ImportError:
        return Check("gpus", "skip", "NVML is not available here (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Check("gpus", "skip", f"NVML could not start ({exc}): no GPU driver here")
    try:
        count = pynvml.nvmlDeviceGetCount()
        names, busy = [], []
        for i in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else name)
            used_gib = pynvml.nvmlDeviceGetMemoryInfo(handle).used / (1 << 30)
            if used_gib > max_used_gib:
                busy.append(f"GPU {i} has {used_gib:.1f} GiB in use")
    finally:
        pynvml.nvmlShutdown()
    if count < expected_count:
        return Check("gpus", "fail", f"{count} GPUs, tensor parallelism needs {expected_count}")
    if expected_type and not all(
        expected_type.lower() in n.lower() for n in names[:expected_count]
    ):
        return Check("gpus", "fail", f"expected {expected_type}, found {sorted(set(names))}")
    if busy:
        return Check("gpus", "fail", "; ".join(busy) + ": a stale process holds GPU memory")
    return Check("gpus", "ok", f"{count}x {names[0] if names else '?'}, memory free")


# --------------------------------------------------------------------------- DeepGEMM marker
def marker_path(dg_cache_dir: str | os.PathLike[str]) -> Path:
    return Path(dg_cache_dir) / MARKER_NAME


def marker_identity(launch: SGLangLaunch) -> dict[str, object]:
    """What must match for compiled kernels to be reused."""
    return {
        "sglang_version": SGLANG_VERSION,
        "model_path": launch.model_path,
        "tp_size": launch.tp_size,
    }


def write_marker(launch: SGLangLaunch, compiled_at: float) -> Path:
    assert launch.dg_cache_dir, "a compile step needs a DeepGEMM cache directory"
    path = marker_path(launch.dg_cache_dir)
    path.write_text(json.dumps({**marker_identity(launch), "compiled_at": compiled_at}, indent=2))
    return path


def read_marker(launch: SGLangLaunch) -> dict[str, object] | None:
    if not launch.dg_cache_dir:
        return None
    try:
        data = json.loads(marker_path(launch.dg_cache_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def marker_matches(launch: SGLangLaunch) -> bool:
    marker = read_marker(launch)
    return marker is not None and all(
        marker.get(k) == v for k, v in marker_identity(launch).items()
    )


def check_marker(launch: SGLangLaunch) -> Check:
    marker = read_marker(launch)
    if marker is None:
        return Check("deepgemm-marker", "fail", "no compile marker: run compile_deepgemm first")
    want = marker_identity(launch)
    diff = [k for k, v in want.items() if marker.get(k) != v]
    if diff:
        return Check(
            "deepgemm-marker", "fail", f"compiled for another {', '.join(diff)}: recompile"
        )
    return Check("deepgemm-marker", "ok", f"kernels compiled for SGLang {SGLANG_VERSION}")


def check_shm(gpus_per_node: int, root: Path | None = None, *, room: bool = True) -> Check:
    """/dev/shm: room for NCCL and SGLang, and no segments of a dead SGLang (`engines.shm`)."""
    status, detail = inspect_shm(gpus_per_node, root, room=room)
    return Check("shm", status, detail)


def run_preflight(
    launch: SGLangLaunch,
    argv: Sequence[str],
    *,
    gpu_type: str | None = None,
    weights: bool = True,
    gpus: bool = True,
    dg_cache: bool = True,
    marker: bool = False,
    port: bool = True,
    shm: bool = True,
    shm_room: bool = True,
    parser_python: str | None = None,
    argv_optional: bool = False,
) -> PreflightReport:
    """Every check at once. `argv_optional`: where no SGLang is here, leave the argv check out
    instead of saying it was skipped (a run on the fake does not need SGLang's parser)."""
    quiet = argv_optional and not parser_available(parser_python)
    checks = [] if quiet else [check_argv_parses(argv, parser_python)]
    if weights:
        checks.append(check_weights(launch.model_path))
    if port:
        checks.append(check_port_free(launch.port))
    if shm:
        checks.append(check_shm(launch.gpus_per_node, room=shm_room))
    if gpus:
        checks.append(check_gpus(launch.gpus_per_node, gpu_type))
    if dg_cache:
        checks.append(check_dg_cache(launch.dg_cache_dir))
    if marker:
        checks.append(check_marker(launch))
    return PreflightReport(tuple(checks))
