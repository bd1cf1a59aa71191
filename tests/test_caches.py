"""The cache report (issue #20): each start counts the engine's caches before the spawn and once
serving; a second start of the same deployment compiles nothing and says "hit"."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor._caches import CacheCount, count_cache, describe_caches
from supervisor.engines.sglang import SGLangLaunch
from tests._watch import Watched
from tests.conftest import cli


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
