"""Model profiles: one small module per model, each a launch config plus its warmup set.

A profile also carries what a deployment platform needs to know about the model (GPU type and
count, the Hugging Face repository, volume and app names), as plain data: the Modal entry reads it,
so deploying another SGLang model is a matter of naming another profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor._config import WarmupPayload
from supervisor._errors import ConfigError
from supervisor.engines.sglang import SGLangLaunch

__all__ = ["Profile", "get_profile", "profile_names"]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    hf_repo: str
    launch: SGLangLaunch
    warmups: tuple[WarmupPayload, ...]
    gpu: str  # Modal's GPU type name, e.g. "B200"
    gpu_count: int
    app_name: str
    weights_volume: str
    dg_cache_volume: str
    api_key_secret: str  # a secret that provides API_KEY
    hf_secret: str = "huggingface-secret"  # a secret that provides HF_TOKEN
    startup_timeout_s: float = 3600.0
    uses_deepgemm: bool = True
    weights_gb: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.launch.tp_size != self.gpu_count:
            raise ConfigError(
                f"profile {self.name}: tensor parallelism {self.launch.tp_size} must equal the GPU "
                f"count {self.gpu_count}"
            )


def _registry() -> dict[str, Profile]:
    from . import deepseek_r1, glm51, qwen3_8b

    return {p.name: p for p in (glm51.PROFILE, deepseek_r1.PROFILE, qwen3_8b.PROFILE)}


def profile_names() -> list[str]:
    return sorted(_registry())


def get_profile(name: str) -> Profile:
    profiles = _registry()
    try:
        return profiles[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(profiles)}") from None
