"""Every private Modal access of the test suite, in one file: a Modal upgrade breaks only here.

Modal 1.6.4 has no public way to read min/max containers, scaledown window, or a web server's
port and startup timeout back. These helpers read them from the objects the decorators built.
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
    web_port: int | None
    web_startup_timeout: int | None


def class_settings(cls: Any, web_method: str) -> PrivateSettings:
    service = synchronizer._translate_in(cls._get_class_service_function())
    cells = dict(zip(service._load.__code__.co_freevars, service._load.__closure__, strict=True))
    webhook = synchronizer._translate_in(
        cls._get_partial_functions()[web_method]
    ).params.webhook_config
    return PrivateSettings(
        min_containers=cells["min_containers"].cell_contents,
        max_containers=cells["max_containers"].cell_contents,
        scaledown_window=cells["scaledown_window"].cell_contents,
        web_port=webhook.web_server_port,
        web_startup_timeout=webhook.web_server_startup_timeout,
    )
