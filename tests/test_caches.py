"""The cache report (issue #20): each start counts the engine's caches before the spawn and once
serving; a second start of the same deployment compiles nothing and says "hit"."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from supervisor._caches import CacheCount, count_cache, describe_caches
from supervisor.deploy.lifecycle import ServerLifecycle
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_cache import cache_identity, cache_key, keyed_cache_dir
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
    assert again == first and warm


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
    assert "sglang=miss (+8 files" in reports[0] and "sglang=hit (9 files" in reports[1]
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
