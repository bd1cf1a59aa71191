"""Dummy weights: a deployment's whole path on random weights, without the weights download.

A module of its own because the switch (SGLANG_SUPERVISOR_DUMMY_WEIGHTS, or `--dummy-weights`)
reaches every step of a deployment: the launch gains `--load-format dummy`, the command line and
the serving container print one banner, and the warmups' verdicts only warn. One place says what
the mode does, so every step does the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from supervisor import ConfigError
from supervisor.deploy.env_vars import ENV_DUMMY_WEIGHTS, env_bool
from supervisor.engines.preflight import Check
from supervisor.engines.sglang import SGLangLaunch

__all__ = [
    "DUMMY_DOWNLOAD_PATTERNS",
    "DUMMY_WEIGHTS_BANNER",
    "check_model_config",
    "dummy_weights_enabled",
    "with_dummy_weights",
]

#: What SGLang still reads with dummy weights: the config and the tokenizer (a few MB).
DUMMY_DOWNLOAD_PATTERNS = (
    "*.json",
    "*.py",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "tokenizer*",
)


def dummy_weights_enabled(env: Mapping[str, str]) -> bool:
    """Whether SGLANG_SUPERVISOR_DUMMY_WEIGHTS asks for random weights (`--load-format dummy`)."""
    return env_bool(env, ENV_DUMMY_WEIGHTS, False)


DUMMY_WEIGHTS_BANNER: Final = (
    "[supervisor] WARNING: DUMMY WEIGHTS (--load-format dummy): the model runs on RANDOM weights; "
    "every answer is garbage. The weights preflight is skipped and warmup verdicts only warn. "
    f"Drop --dummy-weights / {ENV_DUMMY_WEIGHTS} to serve the real model."
)


def with_dummy_weights(launch: SGLangLaunch) -> SGLangLaunch:
    """The same launch with `--load-format dummy`: SGLang initialises random weights instead of
    reading them, so a deployment's whole path (GPUs, CUDA graphs, warmups, routing, drain) can be
    tried without the ~700 GB download. SGLang still reads config.json and the tokenizer.

    Idempotent; refuses a launch that already names another load format.
    """
    args = list(launch.extra_args)
    for i, token in enumerate(args):
        if token == "--load-format" or token.startswith("--load-format="):
            value = token.partition("=")[2] or (args[i + 1] if i + 1 < len(args) else "")
            if value == "dummy":
                return launch
            raise ConfigError(f"dummy weights: the launch already sets --load-format {value}")
    return launch.with_overrides(extra_args=(*launch.extra_args, "--load-format", "dummy"))


def check_model_config(model_path: str | os.PathLike[str]) -> Check:
    """What dummy weights still need: config.json (SGLang builds the model from it)."""
    config = os.path.join(model_path, "config.json")
    if not os.path.isfile(config) or os.path.getsize(config) == 0:
        return Check(
            "model-config",
            "fail",
            f"{config} is missing: even dummy weights need the config and tokenizer "
            f"(run download_model with {ENV_DUMMY_WEIGHTS}=1)",
        )
    return Check("model-config", "ok", "config.json present (dummy weights: no shards needed)")
