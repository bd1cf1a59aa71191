"""The cache report (issue #20): each start counts the engine's caches before the spawn and once
serving; a second start of the same deployment compiles nothing and says "hit"."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from supervisor._caches import CacheCount, count_cache, describe_caches
from supervisor.deploy.lifecycle import ServerLifecycle
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_cache import (
    cache_identity,
    cache_key,
    keyed_cache_dir,
    mark_served,
    with_keyed_cache,
)
from supervisor.profiles import get_profile
from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import cli

FAKE = [sys.executable, "-m", "supervisor.testing.fake_sglang", "--fake-load-time", "0.2"]
FAKE += ["--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]


def test_counting_stats_files_follows_no_symlink_and_stops_at_its_limit(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "k1").write_bytes(b"x" * 10)
    (tmp_path / "k2").write_bytes(b"y" * 5)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"z" * 1000)
    os.symlink(outside, tmp_path / "link")  # never walked into
    assert count_cache(str(tmp_path)) == CacheCount(2, 15)
    assert count_cache(str(tmp_path), limit=1).truncated
    assert count_cache(str(tmp_path / "missing")) is None
    assert count_cache(str(tmp_path), skip=frozenset({str(tmp_path / "a")})) == CacheCount(1, 5)


def test_the_report_says_hit_miss_and_absent_in_one_line() -> None:
    before = {"sglang": CacheCount(3, 3000), "deepgemm": None, "gone": None}
    after = {"sglang": CacheCount(3, 3000), "deepgemm": CacheCount(12, 4_500_000), "gone": None}
    line, missed = describe_caches(before, after)
    assert line == (
        "cache report: sglang=hit (3 files, 3.0 KB) deepgemm=miss (+12 files, +4.5 MB; "
        "now 12 files, 4.5 MB) gone=absent"
    )
    assert missed == ["deepgemm"]


def test_sglangs_caches_follow_its_environment(tmp_path: Path) -> None:
    inside = SGLangLaunch("/m", "m", env={"SGLANG_CACHE_DIR": str(tmp_path)})
    assert inside.caches() == {"sglang": str(tmp_path)}  # DeepGEMM's own default is inside
    volume = SGLangLaunch("/m", "m", dg_cache_dir="/dg-cache", env={"SGLANG_CACHE_DIR": "/c"})
    assert volume.caches() == {"sglang": "/c", "deepgemm": "/dg-cache"}


@pytest.mark.process
def test_a_second_start_compiles_nothing_and_the_report_says_so(port: int, tmp_path: Path) -> None:
    env = {"SGLANG_CACHE_DIR": str(tmp_path / "cache")}
    serve = [
        "serve", "--profile", "qwen3-8b", "--fake", "--port", str(port),
        "--fake-arg=--fake-load-time=0.2", "--fake-arg=--fake-warmup-time=0.2",
    ]  # fmt: skip
    reports = []
    for _ in range(2):
        with Watched(cli(*serve, env=env)) as w:
            w.wait_for("state=serving", 60)
            w.signal()
            assert w.wait_exit(30)[0] == 0
            out = w.output()
            reports.append(next(x for x in out.splitlines() if "cache report:" in x))
            # said before serving, and counted on both sides of the start
            assert out.index("cache report:") < out.index("state=serving")
    assert "sglang=miss (+8 files, +8.2 KB; now 8 files, 8.2 KB)" in reports[0], reports[0]
    assert "sglang=hit (8 files, 8.2 KB)" in reports[1], reports[1]


def test_the_key_changes_with_what_kernels_depend_on(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    launch = SGLangLaunch(str(tmp_path), "m", tp_size=1)
    base = cache_identity(launch, "H100")
    assert base["sglang"] == "0.5.23" and base["model_config"] != "no-config"
    others = [
        cache_identity(launch, "B200"),
        cache_identity(SGLangLaunch(str(tmp_path), "m", tp_size=2), "H100"),
    ]
    (tmp_path / "config.json").write_text('{"hidden_size": 128}')  # another model revision
    others.append(cache_identity(launch, "H100"))
    assert len({cache_key(i) for i in [base, *others]}) == 4
    root = tmp_path / "volume"
    first, warm = keyed_cache_dir(root, base)
    assert not warm and (first / "manifest.json").is_file()
    again, warm = keyed_cache_dir(root, base)
    assert again == first and not warm  # made, even filled by the compile step: not served yet
    assert mark_served(first) and not mark_served(first)  # news once: one commit
    assert keyed_cache_dir(root, base) == (first, True)


@pytest.mark.process
def test_a_deployments_second_start_reads_its_keyed_cache_and_commits_only_the_first(
    tmp_path: Path, capfd
) -> None:
    """The Modal lifecycle on the fake: a cold key compiles and commits; the same key again is
    warm (hit, no commit); a new model config is a new key, cold again. The first start goes
    through `enter()`: its timeline begins with the steps before the spawn."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    volume = tmp_path / "dg-cache"
    volume.mkdir()
    profile = get_profile("qwen3-8b")
    launch = profile.launch.with_overrides(model_path=str(model), dg_cache_dir=str(volume))
    profile = dataclasses.replace(profile, launch=launch)
    commits: list[int] = []
    reports: list[str] = []
    timelines: list[str] = []
    for attempt in range(3):
        if attempt == 2:
            (model / "config.json").write_text('{"hidden_size": 128}')
        lines: list[str] = []
        env = {
            "SGLANG_SUPERVISOR_ENGINE_COMMAND": " ".join(FAKE),
            "SGLANG_SUPERVISOR_PORT": str(free_port()),
            "SGLANG_SUPERVISOR_DUMMY_WEIGHTS": "1",
        }
        life = ServerLifecycle(
            profile,
            recycle=lambda r: None,
            env=env,
            log=lines.append,
            commit=lambda: commits.append(1),
            runtime_check=lambda: (),
            reloads=(lambda: time.sleep(0.2),),
        )
        try:
            life.enter() if attempt == 0 else life.start()
        finally:
            life.exit()
        printed = capfd.readouterr().out.splitlines()  # the supervisor's own lines
        reports.append(next(x for x in printed if "cache report:" in x))
        timelines.append(next(x for x in printed if "startup timeline:" in x))
    assert "sglang=miss (+8 files" in reports[0]
    assert "sglang=hit (10 files" in reports[1]  # the 8 kernels, the manifest, the served mark
    assert "sglang=miss (+8 files" in reports[2]  # a new key: an empty directory
    assert commits == [1, 1]  # the two cold starts, not the warm one
    assert len(list((volume / "sglang").iterdir())) == 2
    lead = timelines[0].split("startup timeline: ")[1].split()[:4]
    assert [pair.split("=")[0] for pair in lead] == [
        "runtime_check",
        "volume_reload",
        "preflight",
        "spawn",
    ]
    assert float(lead[1].split("=")[1].rstrip("s")) >= 0.2  # the reload's own sleep
    assert "volume_reload" not in timelines[1]  # start() alone: nothing ran before it


@pytest.mark.process
@pytest.mark.anyio
async def test_the_compile_step_fills_the_key_the_serving_start_reads(
    tmp_path: Path, capfd
) -> None:
    """The compile server JITs into the deployment's keyed directory (not its own home, lost
    with its container); the first serving start then compiles nothing and, the key not yet
    served from, warns of nothing; it commits once, for the served mark."""
    from supervisor.engines.deepgemm import compile_deepgemm

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    volume = tmp_path / "dg-cache"
    volume.mkdir()
    profile = get_profile("glm-5.1-fp8")
    port = free_port()
    launch = profile.launch.with_overrides(
        model_path=str(model), dg_cache_dir=str(volume), host="127.0.0.1", port=port
    )
    keyed_launch, keyed, warm = with_keyed_cache(launch, profile.gpu)
    assert keyed is not None and not warm
    compile_fake = [sys.executable, "-m", "supervisor.testing.fake_sglang", "--fake-mode"]
    compile_fake += ["compile", "--fake-load-time", "0.3", "--fake-time-scale", "0.05"]
    result = await compile_deepgemm(keyed_launch, timeout_s=120, engine=compile_fake)
    assert result.ok, result.reason
    assert len(list((keyed / "fake_jit").iterdir())) == 8  # the compile server's kernels, kept
    capfd.readouterr()
    commits: list[int] = []
    lines: list[str] = []
    life = ServerLifecycle(
        dataclasses.replace(profile, launch=launch),
        recycle=lambda r: None,
        env={
            "SGLANG_SUPERVISOR_ENGINE_COMMAND": " ".join(FAKE),
            "SGLANG_SUPERVISOR_PORT": str(free_port()),
            "SGLANG_SUPERVISOR_DUMMY_WEIGHTS": "1",
        },
        log=lines.append,
        commit=lambda: commits.append(1),
        runtime_check=lambda: (),
    )
    try:
        await anyio.to_thread.run_sync(life.start)
    finally:
        await anyio.to_thread.run_sync(life.exit)
    printed = capfd.readouterr().out
    report = next(x for x in printed.splitlines() if "cache report:" in x)
    assert "sglang=hit" in report, report
    assert "expected warm" not in printed
    assert commits == [1] and (keyed / "served").is_file()
    assert any("committing the cache volume: the served mark" in x for x in lines), lines
