"""Every private Modal access of the test suite, in one file: a Modal upgrade breaks only here.

Modal 1.6.4 has no offline public way to read the autoscaler settings (min/max containers,
scaledown window, a Server's target and max concurrency) or a web server's port and startup
timeout back (`Server.autoscaler.settings()` asks Modal's API). These helpers read them from the
objects the decorators built: the service function's `_load` closure and the web method's
webhook config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modal._utils.async_utils import synchronizer


@dataclass(frozen=True)
class PrivateSettings:
    min_containers: int | None
    max_containers: int | None
    scaledown_window: int | None
    target_concurrency: float | None = None  # a Server's
    max_concurrency: int | None = None  # a Server's (0: no cap)
    web_port: int | None = None  # a web_server's
    web_startup_timeout: float | None = None
    web_requires_proxy_auth: bool | None = None


def _cells(service: Any) -> dict[str, Any]:
    fn = service._load
    return {
        name: cell.cell_contents
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True)
    }


def server_settings(server: Any) -> PrivateSettings:
    """A `modal.Server`'s autoscaler settings, as `@app.server` recorded them."""
    service = synchronizer._translate_in(server)._get_service_function()
    cells = _cells(service)
    autoscaler = cells["autoscaler_settings"]
    return PrivateSettings(
        min_containers=autoscaler.min_containers,
        max_containers=autoscaler.max_containers,
        scaledown_window=autoscaler.scaledown_window,
        target_concurrency=autoscaler.target_concurrency_float,
        max_concurrency=cells["max_concurrent_inputs"],
    )


def class_settings(cls: Any, web_method: str) -> PrivateSettings:
    """A `modal.Cls`'s autoscaler settings and its web_server method's port and startup wait."""
    service = synchronizer._translate_in(cls._get_class_service_function())
    cells = _cells(service)
    webhook = synchronizer._translate_in(
        cls._get_partial_functions()[web_method]
    ).params.webhook_config
    return PrivateSettings(
        min_containers=cells["min_containers"],
        max_containers=cells["max_containers"],
        scaledown_window=cells["scaledown_window"],
        web_port=webhook.web_server_port,
        web_startup_timeout=webhook.web_server_startup_timeout,
        web_requires_proxy_auth=webhook.requires_proxy_auth,
    )


@dataclass(frozen=True)
class SnapshotSettings:
    memory_snapshot: bool
    gpu_snapshot: bool


def snapshot_settings(server: Any) -> SnapshotSettings:
    """Whether `@app.server` recorded CPU+GPU memory snapshots (not in the public ServerInfo)."""
    service = synchronizer._translate_in(server)._get_service_function()
    cells = _cells(service)
    options = cells["experimental_options"] or {}
    return SnapshotSettings(
        memory_snapshot=bool(cells["enable_memory_snapshot"]),
        gpu_snapshot=str(options.get("enable_gpu_snapshot", "")).lower() == "true",
    )


def image_files(image: Any) -> list[tuple[str, str]]:
    """(local, remote) of every single file an image adds at container start (`add_local_file`).

    A mount layer is lazy (`_Image._add_mount_layer_or_copy`): its mount is known only as a
    dependency (`_Object._deps`) until the image loads, so walk those.
    """
    files: list[tuple[str, str]] = []
    seen: set[int] = set()
    todo = [synchronizer._translate_in(image)]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if type(obj).__name__ == "_Mount":
            for entry in obj.entries:
                if type(entry).__name__ == "_MountFile":
                    files += [(str(a), str(b)) for a, b in entry.top_level_paths()]
        deps = getattr(obj, "_deps", None)
        if deps is not None:
            todo.extend(deps())
    return files
