"""The deploy-time environment variables: their names, and one-line parsers for their values.

Split from `settings` (which resolves a whole deployment from them) because the names are shared
by every module that reads one (the settings, the dummy-weights switch, the serving lifecycle)
and a parser's error must read the same wherever a variable is read: one `ConfigError` line,
naming the variable and what its value must be.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from supervisor import ConfigError
from supervisor.engines.image import IMAGE_ENV

__all__ = [
    "ENTRIES",
    "ENTRY_SERVER",
    "ENTRY_WEB_SERVER",
    "ENV_ADMIN_KEY_SECRET",
    "ENV_API_KEY_SECRET",
    "ENV_COMPUTE_REGION",
    "ENV_DG_CACHE_VOLUME",
    "ENV_DRAIN_IN_FLIGHT",
    "ENV_DUMMY_WEIGHTS",
    "ENV_ENTRY",
    "ENV_GPU",
    "ENV_HF_SECRET",
    "ENV_IMAGE",
    "ENV_MAX_CONCURRENCY",
    "ENV_MAX_CONTAINERS",
    "ENV_MEMORY_HIGH",
    "ENV_MIN_CONTAINERS",
    "ENV_PORT",
    "ENV_PROFILE",
    "ENV_PROFILE_FILE",
    "ENV_PROXY_AUTH",
    "ENV_ROUTING_REGION",
    "ENV_SCALEDOWN_WINDOW",
    "ENV_STARTUP_TIMEOUT",
    "ENV_TARGET_CONCURRENCY",
    "ENV_WEIGHTS_VOLUME",
    "PROFILE_FILE_MOUNT",
    "SETTINGS_ENV",
    "bad_value",
    "env_bool",
    "env_int",
    "env_name",
]

ENV_PROFILE: Final = "SGLANG_SUPERVISOR_PROFILE"
#: A profile in a TOML file instead of a built-in one (`python -m supervisor profile show`).
ENV_PROFILE_FILE: Final = "SGLANG_SUPERVISOR_PROFILE_FILE"
#: Where the deploy puts that file in every container (the binding adds it to the images), and
#: so what a container's ENV_PROFILE_FILE says.
PROFILE_FILE_MOUNT: Final = "/root/sglang-supervisor-profile.toml"
ENV_ENTRY: Final = "SGLANG_SUPERVISOR_MODAL_ENTRY"
ENV_DUMMY_WEIGHTS: Final = "SGLANG_SUPERVISOR_DUMMY_WEIGHTS"
ENV_IMAGE: Final = IMAGE_ENV  # the engine room names it
ENV_GPU: Final = "SGLANG_SUPERVISOR_GPU"
ENV_PORT: Final = "SGLANG_SUPERVISOR_PORT"
ENV_WEIGHTS_VOLUME: Final = "SGLANG_SUPERVISOR_WEIGHTS_VOLUME"
ENV_DG_CACHE_VOLUME: Final = "SGLANG_SUPERVISOR_DG_CACHE_VOLUME"
ENV_API_KEY_SECRET: Final = "SGLANG_SUPERVISOR_API_KEY_SECRET"
ENV_HF_SECRET: Final = "SGLANG_SUPERVISOR_HF_SECRET"
#: Optional: a Modal secret providing ADMIN_API_KEY, for an operator who wants SGLang's admin
#: routes (LoRA loading, profiling, weight updates). Unset: a random admin key per container.
ENV_ADMIN_KEY_SECRET: Final = "SGLANG_SUPERVISOR_ADMIN_KEY_SECRET"
ENV_STARTUP_TIMEOUT: Final = "SGLANG_SUPERVISOR_STARTUP_TIMEOUT"
ENV_DRAIN_IN_FLIGHT: Final = "SGLANG_SUPERVISOR_DRAIN_IN_FLIGHT"
ENV_TARGET_CONCURRENCY: Final = "SGLANG_SUPERVISOR_TARGET_CONCURRENCY"
ENV_MAX_CONCURRENCY: Final = "SGLANG_SUPERVISOR_MAX_CONCURRENCY"
ENV_MIN_CONTAINERS: Final = "SGLANG_SUPERVISOR_MIN_CONTAINERS"
ENV_MAX_CONTAINERS: Final = "SGLANG_SUPERVISOR_MAX_CONTAINERS"
ENV_SCALEDOWN_WINDOW: Final = "SGLANG_SUPERVISOR_SCALEDOWN_WINDOW"
ENV_ROUTING_REGION: Final = "SGLANG_SUPERVISOR_ROUTING_REGION"
ENV_COMPUTE_REGION: Final = "SGLANG_SUPERVISOR_COMPUTE_REGION"
ENV_PROXY_AUTH: Final = "SGLANG_SUPERVISOR_PROXY_AUTH"
#: The planned-recycle mark (`--memory-high`): `40G`, `300M`; unset: 90 % of the cgroup limit.
ENV_MEMORY_HIGH: Final = "SGLANG_SUPERVISOR_MEMORY_HIGH"

#: Every variable that shapes a deployment; a container gets the ones given at deploy time.
SETTINGS_ENV: Final = (
    ENV_PROFILE,
    ENV_PROFILE_FILE,
    ENV_ENTRY,
    ENV_DUMMY_WEIGHTS,
    ENV_IMAGE,
    ENV_GPU,
    ENV_PORT,
    ENV_WEIGHTS_VOLUME,
    ENV_DG_CACHE_VOLUME,
    ENV_API_KEY_SECRET,
    ENV_HF_SECRET,
    ENV_ADMIN_KEY_SECRET,
    ENV_STARTUP_TIMEOUT,
    ENV_DRAIN_IN_FLIGHT,
    ENV_TARGET_CONCURRENCY,
    ENV_MAX_CONCURRENCY,
    ENV_MIN_CONTAINERS,
    ENV_MAX_CONTAINERS,
    ENV_SCALEDOWN_WINDOW,
    ENV_ROUTING_REGION,
    ENV_COMPUTE_REGION,
    ENV_PROXY_AUTH,
    ENV_MEMORY_HIGH,
)

ENTRY_SERVER: Final = "server"  # @app.server: Modal Servers (the default)
ENTRY_WEB_SERVER: Final = "web_server"  # @app.cls + @modal.web_server + @modal.concurrent
ENTRIES: Final = (ENTRY_SERVER, ENTRY_WEB_SERVER)

# ------------------------------------------------------------------ parsing (one line each)
_OBJECT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Modal object names (volumes, secrets)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def bad_value(name: str, raw: str, want: str) -> ConfigError:
    """The one-line error for a bad value: `NAME='raw': what it must be`."""
    return ConfigError(f"{name}={raw!r}: {want}")


def env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """A whole number from `lo` to `hi`; unset or blank: `default`."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_value(name, raw, f"must be a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise bad_value(name, raw, f"must be a whole number from {lo} to {hi}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """1/0, true/false, yes/no, on/off (blank: false); unset: `default`."""
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_value(name, raw, "must be 1 or 0 (true/false, yes/no, on/off)")


def env_name(env: Mapping[str, str], name: str, default: str) -> str:
    """A Modal object name (a volume, a secret); unset or blank: `default`."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not _OBJECT_NAME.match(raw.strip()):
        raise bad_value(
            name, raw, "must be a Modal object name: letters, digits, '.', '_', '-' (1-64)"
        )
    return raw.strip()
