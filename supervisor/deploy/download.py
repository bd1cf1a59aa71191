"""Downloading a profile's weights: idempotent, resumable, checked by the engine's own rule.

Split from the serving lifecycle because it runs in another container, before any GPU: it
needs only the profile, huggingface_hub (imported when called, so serving never loads it) and
the weights check that the preflight uses too, so "complete" means the same at both ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from supervisor import ConfigError
from supervisor.deploy.dummy_weights import DUMMY_DOWNLOAD_PATTERNS, check_model_config
from supervisor.engines.preflight import Check, check_weights
from supervisor.profiles import Profile

__all__ = ["download_weights"]


def download_weights(
    profile: Profile,
    *,
    model_path: str | None = None,
    token: str | None = None,
    max_workers: int = 8,
    dummy: bool = False,
    log: Callable[[str], None] = print,
    snapshot_download: Callable[..., object] | None = None,
) -> Check:
    """Idempotent and resumable: complete weights are left alone; partial ones are completed.

    Completeness is the engine's own check (config.json and every shard the index names,
    non-empty), not a sentinel file that a crashed download could have left behind. With `dummy`
    only what SGLang reads besides the weights is fetched (config, tokenizer, model code: a few
    MB), enough for `--load-format dummy`.
    """
    target = model_path or profile.launch.model_path
    check = check_model_config if dummy else check_weights
    before = check(target)
    if before.status == "ok":
        log(f"[download] already complete: {before.message}")
        return before
    what = "config and tokenizer only (dummy weights)" if dummy else before.message
    log(f"[download] {profile.hf_repo} -> {target} ({what})")
    if snapshot_download is None:
        from huggingface_hub import snapshot_download as hf_snapshot_download

        snapshot_download = hf_snapshot_download
    start = time.monotonic()
    # huggingface_hub skips files already complete and resumes partial ones; its progress bars
    # go to the logs.
    snapshot_download(
        repo_id=profile.hf_repo,
        local_dir=target,
        max_workers=max_workers,
        token=token,
        allow_patterns=list(DUMMY_DOWNLOAD_PATTERNS) if dummy else None,
    )
    after = check(target)
    log(f"[download] {after.line()} after {time.monotonic() - start:.0f} s")
    if after.status != "ok":
        raise ConfigError(f"download finished but the weights are incomplete: {after.message}")
    return after
