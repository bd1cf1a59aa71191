"""Dummy weights: a deployment's whole path on random weights, without the weights download.

A module of its own because the switch (SGLANG_SUPERVISOR_DUMMY_WEIGHTS, or `--dummy-weights`)
reaches every step of a deployment: the launch gains `--load-format dummy`, the command line and
the serving container print one banner, and the warmups' verdicts only warn. One place says what
the mode does, so every step does the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from supervisor._errors import ConfigError
from supervisor.deploy.env_vars import ENV_DUMMY_WEIGHTS, env_bool
from supervisor.engines.sglang import SGLangLaunch

__all__ = ["DUMMY_WEIGHTS_BANNER", "dummy_weights_enabled", "with_dummy_weights"]


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
