"""What a deployment gets where neither its profile nor the environment says, and Modal's limits.

Split from `settings` (which resolves a deployment) because these are the platform's facts and
the project's choices behind every default: the GPU names and timeouts Modal accepts, where the
volumes are mounted, the scaling defaults with their reasons, the margins around SGLang's own
startup; and `validate_deployment`, the check of what Modal does not check at definition time.
"""

from __future__ import annotations

from typing import Final

from supervisor import ConfigError

__all__ = [
    "DEFAULT_MAX_CONTAINERS",
    "DEFAULT_MIN_CONTAINERS",
    "DEFAULT_PROFILE",
    "DEFAULT_ROUTING_REGION",
    "DEFAULT_SCALEDOWN_WINDOW_S",
    "DEFAULT_TARGET_CONCURRENCY",
    "DG_MOUNT",
    "ENTER_MARGIN_S",
    "KNOWN_GPUS",
    "MAX_TIMEOUT_S",
    "MODEL_MOUNT",
    "WEB_PORT_WAIT_S",
    "WEB_SERVER_TIMEOUT_S",
    "validate_deployment",
]

#: The profile a deployment serves when SGLANG_SUPERVISOR_PROFILE names none (and `demo`'s).
DEFAULT_PROFILE: Final = "glm-5.1-fp8"

#: GPU type names Modal accepts (Modal itself accepts any string at definition time).
KNOWN_GPUS = frozenset(
    {
        "T4",
        "L4",
        "A10G",
        "A100",
        "A100-40GB",
        "A100-80GB",
        "L40S",
        "H100",
        "H100!",
        "H200",
        "B200",
        "B200+",
    }
)
MAX_TIMEOUT_S = 24 * 3600  # Modal's limit for a function's timeout and startup timeout

MODEL_MOUNT: Final = "/model-cache"  # the weights volume; every profile's model path is under it
DG_MOUNT: Final = "/dg-cache"  # the DeepGEMM cache volume; SGLANG_DG_CACHE_DIR points here
DEFAULT_TARGET_CONCURRENCY: Final = 20.0  # the seed's @modal.concurrent(max_inputs=20)
DEFAULT_MIN_CONTAINERS: Final = 0
DEFAULT_MAX_CONTAINERS: Final = 3  # 24 B200s at most for GLM-5.1
DEFAULT_SCALEDOWN_WINDOW_S: Final = 900  # a cold start costs most of an hour: keep idle ones 15 min
DEFAULT_ROUTING_REGION: Final = "us-east"  # Modal's own default for @app.server
#: Preflight, volume reloads and the runtime check, before the supervisor's own startup deadline
#: starts counting: the part of Modal's startup timeout that is not SGLang's.
ENTER_MARGIN_S: Final = 300
#: The web_server entry's port wait after `serve()` returns: SGLang already answers by then
#: (`@modal.enter` returned only once serving), so this is a formality, not a cold-start bound.
WEB_PORT_WAIT_S: Final = 60
WEB_SERVER_TIMEOUT_S: Final = MAX_TIMEOUT_S  # @app.cls `timeout`: one request's longest life


def validate_deployment(
    *,
    gpu: str,
    gpu_count: int,
    timeout_s: int,
    max_inputs: int,
    startup_timeout_s: float,
    secrets_ok: bool,
) -> None:
    """What Modal does not check at definition time, checked before a deploy wastes an hour."""
    if gpu not in KNOWN_GPUS:
        raise ConfigError(f"unknown GPU type {gpu!r}; use one of {sorted(KNOWN_GPUS)}")
    if not 1 <= gpu_count <= 8:
        raise ConfigError(f"GPU count must be 1 to 8, got {gpu_count}")
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be 1 to {MAX_TIMEOUT_S} s, got {timeout_s}")
    if max_inputs < 1:
        raise ConfigError(f"concurrent max_inputs must be >= 1, got {max_inputs}")
    if not 0 < startup_timeout_s <= timeout_s:
        raise ConfigError(
            f"startup timeout must be > 0 and <= the timeout, got {startup_timeout_s}"
        )
    if not secrets_ok:
        raise ConfigError("secrets must be modal.Secret objects, not names")
