"""The operator's commands for issues #11, #13 and #14, run as written, on the fake engine.

Each test starts `python -m supervisor serve --profile ... --fake` as a real process (real
sockets on 127.0.0.1, real signals) and asserts what the issue's "done when" promises: a two-node
profile's ranks recycle together, a snapshot rehearsal ends serving, a stall with a request in
flight ends the container within a minute while idle and slow servers are left alone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from supervisor.testing import free_port
from tests._watch import Watched
from tests.conftest import cli

FAST = ["--fake-arg=--fake-load-time=0.3", "--fake-arg=--fake-warmup-time=0.2"]
SCALE = ["--fake-arg=--fake-time-scale=0.1"]


def serve(*args: str) -> Watched:
    return Watched(cli("serve", "--fake", *args))


def two_ranks() -> list[Watched]:
    """Rank 0 and rank 1 of the two-node profile on this host, both serving."""
    ports, status, dist = [free_port(), free_port()], [free_port(), free_port()], free_port()
    peers = ",".join(f"127.0.0.1:{p}" for p in status)
    common = ["--profile", "glm-5.1-fp8-2x8xh100", "--dist-init-addr", f"127.0.0.1:{dist}"]
    ranks = [
        serve(
            *common,
            "--node-rank",
            str(r),
            "--port",
            str(ports[r]),
            "--cluster-peers",
            peers,
            *FAST,
            *SCALE,
        )
        for r in range(2)
    ]
    try:
        for w in ranks:
            # this rank's own transition, not a "peer rank=0 state=serving" line
            w.wait_for("] state=serving from=", 60)
    except BaseException:
        kill_all(ranks)
        raise
    return ranks


def kill_all(ranks: list[Watched]) -> None:
    for w in ranks:
        if w.popen.poll() is None:
            w.popen.kill()
            w.popen.wait()


# ----------------------------------------------------------------------------- #11 two nodes
def test_two_fake_ranks_serve_then_a_lost_worker_ends_both_naming_rank_1() -> None:
    ranks = two_ranks()
    try:
        trees = [w.tree() for w in ranks]
        worker_engine = [
            pid for pid in trees[1] if b"--node-rank" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert worker_engine, "the worker's fake engine was not found in its tree"
        killed = time.monotonic()
        for pid in worker_engine:  # the engine: its main process and its schedulers
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc1, t1 = ranks[1].wait_exit(30)
        rc0, t0 = ranks[0].wait_exit(60)
        assert (rc0, rc1) == (1, 1), ranks[0].output()[-3000:]
        print(f"worker exit {t1 - killed:.2f} s, rank 0 exit {t0 - killed:.2f} s after the kill")
        # the issue says 5 s (measured: 4.2 s); generous here for a loaded 2-core CI machine
        assert t1 - killed < 8.0, "the worker's supervisor took too long"
        assert t0 - killed < 30
        for w in ranks:
            report = w.output().split("CRASH REPORT", 1)[1]
            assert "rank 1 failed" in report
        for tree in trees:
            assert Watched.alive(tree) == []
    finally:
        kill_all(ranks)


def test_sigterm_to_rank_0_stops_both_ranks_cleanly() -> None:
    ranks = two_ranks()
    try:
        trees = [w.tree() for w in ranks]
        ranks[0].popen.send_signal(signal.SIGTERM)
        codes = [w.wait_exit(60)[0] for w in ranks]
        assert codes == [0, 0], [w.output()[-2000:] for w in ranks]
        for tree in trees:
            assert Watched.alive(tree) == []
    finally:
        kill_all(ranks)


# ----------------------------------------------------------------------------- #13 snapshots
def test_snapshot_rehearsal_ends_serving_and_a_chat_completion_succeeds() -> None:
    port = free_port()
    w = serve(
        "--profile",
        "qwen3-8b",
        "--port",
        str(port),
        "--snapshot-rehearsal",
        "--snapshot-pause",
        "1",
        *FAST,
        *SCALE,
    )
    try:
        order = ["state=sleeping", "state=asleep", "state=waking"]
        times = [w.wait_for(text, 60) for text in order]
        assert times == sorted(times)
        woke = w.wait_for("state=serving from=waking", 60)
        assert woke >= times[-1]
        body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]
        w.popen.send_signal(signal.SIGTERM)
        assert w.wait_exit(60)[0] == 0
    finally:
        if w.popen.poll() is None:
            w.popen.kill()


@pytest.mark.parametrize("fault", ["resume-fails", "unhealthy-after-resume"])
def test_a_broken_wake_exits_3_and_says_why(fault: str) -> None:
    w = serve(
        "--profile",
        "qwen3-8b",
        "--port",
        str(free_port()),
        "--snapshot-rehearsal",
        "--snapshot-pause",
        "1",
        "--snapshot-health-timeout",
        "3",
        f"--fake-arg=--fake-fault={fault}",
        *FAST,
        *SCALE,
    )
    rc, _ = w.wait_exit(90)
    assert rc == 3, w.output()[-3000:]
    out = w.output()
    assert "state=dead from=waking event=failed" in out
    step = "resume: POST /resume_memory_occupation" if fault == "resume-fails" else "health"
    assert f"sleep/wake failed: {step}" in out, out[-3000:]


def test_a_profile_that_cannot_snapshot_refuses_the_rehearsal_in_one_line() -> None:
    w = serve("--profile", "glm-5.1-fp8", "--snapshot-rehearsal", "--port", str(free_port()))
    rc, _ = w.wait_exit(60)
    assert rc == 2 and "not snapshot-capable" in w.output()


# ----------------------------------------------------------------------------- #14 progress
@pytest.mark.slow
def test_default_settings_recycle_a_stall_within_60_s_and_spare_idle_and_slow_servers() -> None:
    """All three at once (about 95 s of wall time): a stall with a request in flight, an idle
    server and a slow streamed generation, each on the qwen3-8b profile with default settings."""
    stall_port, idle_port, slow_port = free_port(), free_port(), free_port()
    stalled = serve(
        "--profile", "qwen3-8b", "--port", str(stall_port), "--fake-arg=--fake-fault=stall", *FAST
    )
    idle = serve("--profile", "qwen3-8b", "--port", str(idle_port), *FAST)
    slow = serve(
        "--profile", "qwen3-8b", "--port", str(slow_port), *FAST, "--fake-arg=--fake-token-time=0.1"
    )
    everyone = (stalled, idle, slow)
    try:
        for w in everyone:
            w.wait_for("state=serving", 60)
        slow_done: list[str] = []

        def stream() -> None:  # 900 tokens at 0.1 s: 90 s of steady, slow progress
            body = {
                "model": "qwen3-8b",
                "messages": [{"role": "user", "content": "count"}],
                "max_tokens": 900,
                "ignore_eos": True,
                "stream": True,
            }
            chunks = 0
            with httpx.stream(
                "POST", f"http://127.0.0.1:{slow_port}/v1/chat/completions", json=body, timeout=150
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
                        chunks += 1
                    if line == "data: [DONE]":
                        slow_done.append(f"done after {chunks} chunks")

        slow_thread = threading.Thread(target=stream, daemon=True)
        slow_thread.start()
        stall_at = stalled.wait_for("fake: scheduler stalled", 60)

        def in_flight() -> None:  # a request the stalled engine takes and never finishes
            body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hi"}]}
            try:
                httpx.post(
                    f"http://127.0.0.1:{stall_port}/v1/chat/completions", json=body, timeout=90
                )
            except httpx.HTTPError:
                pass

        threading.Thread(target=in_flight, daemon=True).start()
        rc, exited = stalled.wait_exit(75)
        assert rc == 1, stalled.output()[-3000:]
        assert exited - stall_at < 60, f"took {exited - stall_at:.1f} s after the stall"
        report = stalled.output().split("CRASH REPORT", 1)[1]
        assert "stall" in report and "no forward progress" in report
        slow_thread.join(timeout=110)
        assert slow_done, "the slow generation did not finish"
        for w in (idle, slow):
            assert w.popen.poll() is None, w.output()[-3000:]  # still serving after ~90 s
            assert "CRASH REPORT" not in w.output()
            w.popen.send_signal(signal.SIGTERM)
            assert w.wait_exit(60)[0] == 0
    finally:
        for w in everyone:
            if w.popen.poll() is None:
                w.popen.kill()
                w.popen.wait()
