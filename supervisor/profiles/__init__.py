"""Model profiles: one small module per model, each a launch config plus its warmup set.

A profile also carries what a deployment platform needs to know about the model (GPU type and
count, the Hugging Face repository, volume and app names), as plain data: the Modal entry reads it,
so deploying another SGLang model is a matter of naming another profile.

A profile may span nodes (`nnodes`, with `gpu_count` GPUs on each): its launch is then rank 0's
template, and `launch.for_rank(rank, dist_init_addr)` gives each node's. It also says whether the
GPU-snapshot flow can work for the model (`snapshot_capable`), or why not (`snapshot_blocker`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor import ConfigError, WarmupPayload
from supervisor.engines.sglang import SGLangLaunch

__all__ = ["HOPPER_GPUS", "Profile", "get_profile", "profile_names"]


#: Modal GPU names of Hopper cards: a profile for one must not use a Blackwell-only setting.
HOPPER_GPUS = frozenset({"H100", "H200"})


@dataclass(frozen=True)
class Profile:
    """One model's deployment: the launch (rank 0's template on a cluster), warmups, platform data.

    `gpu_count` is GPUs per node; `nnodes` nodes run one server, so the launch's total tensor
    parallelism is `gpu_count * nnodes`. `snapshot_capable` says whether the GPU-snapshot flow of
    docs/SNAPSHOTS.md (release, snapshot, restore, resume) can work for this model; when it
    cannot, `snapshot_blocker` says why, so a snapshot deploy can refuse with the reason.
    """

    name: str
    description: str
    hf_repo: str
    launch: SGLangLaunch
    warmups: tuple[WarmupPayload, ...]
    gpu: str  # Modal's GPU type name, e.g. "B200"
    gpu_count: int  # per node
    app_name: str
    weights_volume: str
    dg_cache_volume: str
    api_key_secret: str  # a secret that provides API_KEY
    hf_secret: str = "huggingface-secret"  # a secret that provides HF_TOKEN
    startup_timeout_s: float = 3600.0
    uses_deepgemm: bool = True
    weights_gb: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    nnodes: int = 1
    snapshot_capable: bool = False
    snapshot_blocker: str = ""  # why not, one line; required when not capable
    #: A script that makes the model when its directory is empty, run with the launch's Python
    #: as `PYTHON SCRIPT MODEL_PATH` (the tiny CPU model); empty for weights that are downloaded.
    model_builder: str = ""

    def __post_init__(self) -> None:
        launch = self.launch
        if launch.nnodes != self.nnodes:
            raise ConfigError(
                f"profile {self.name}: the launch has nnodes {launch.nnodes}, the profile "
                f"{self.nnodes}"
            )
        if launch.tp_size != self.gpu_count * self.nnodes:
            raise ConfigError(
                f"profile {self.name}: tensor parallelism {launch.tp_size} must equal "
                f"{self.gpu_count} GPUs per node x {self.nnodes} node(s)"
            )
        blackwell = launch.blackwell_only()
        if self.gpu in HOPPER_GPUS and blackwell:
            raise ConfigError(
                f"profile {self.name}: {blackwell[0]} needs a Blackwell GPU, not {self.gpu}"
            )
        self._check_snapshot()

    def _check_snapshot(self) -> None:
        """Capable and blocker agree, and a capable profile launches what the flow needs."""
        if not self.snapshot_capable:
            if not self.snapshot_blocker.strip():
                raise ConfigError(
                    f"profile {self.name}: not snapshot-capable, so snapshot_blocker must say why"
                )
            return
        if self.snapshot_blocker:
            raise ConfigError(f"profile {self.name}: snapshot-capable yet names a blocker")
        if not self.launch.enable_memory_saver:
            # without the saver /release_memory_occupation frees nothing (docs/SNAPSHOTS.md)
            raise ConfigError(
                f"profile {self.name}: snapshot-capable needs launch.enable_memory_saver"
            )
        if self.launch.tp_size != 1:
            # TP > 1 maps CUDA IPC memory (custom all-reduce, NCCL): cuda-checkpoint refuses it
            raise ConfigError(
                f"profile {self.name}: snapshot-capable needs tensor parallelism 1 (CUDA IPC "
                "memory cannot be checkpointed)"
            )


def _registry() -> dict[str, Profile]:
    from . import cpu_tiny, deepseek_r1, glm51, glm51_2x8xh100, qwen3_8b

    return {
        p.name: p
        for p in (
            glm51.PROFILE,
            glm51_2x8xh100.PROFILE,
            deepseek_r1.PROFILE,
            qwen3_8b.PROFILE,
            cpu_tiny.PROFILE,
        )
    }


def profile_names() -> list[str]:
    return sorted(_registry())


def get_profile(name: str) -> Profile:
    profiles = _registry()
    try:
        return profiles[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(profiles)}") from None
