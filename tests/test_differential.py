"""The same deaths on the real engine and on the fake: the supervisor's outcomes must agree.

Each scenario runs once per engine, black-box through the CLI, and asserts the same outcome on
both (exit code, the states, the crash report's reason and cause, nothing left behind). The real
engine is SGLang 0.5.23 on the CPU; where it and the fake disagreed, the fake was fixed, or the
difference is explained here and in docs/FIDELITY.md. One difference is by construction: the
fake's scheduler processes do no work (generation runs in the fake's main process), so a
SIGSTOPped fake scheduler stalls nothing; the fake plays that hang with its `stall` fault.
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from tests.engines import (
    HOSTILE_ADMIN_KEY,
    build_tiny_model,
    require_real,
    start_run,
    start_serve,
)

pytestmark = [pytest.mark.real_engine, pytest.mark.slow, pytest.mark.xdist_group("real-engine")]

ENGINES = ("real", "fake")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_real()
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")


@pytest.mark.parametrize("engine", ENGINES)
def test_run_classifies_a_sigkilled_scheduler_with_dummy_weights(tiny, engine) -> None:
    """`run` recognises SGLang's command and names the cause; `--load-format dummy` serves."""
    served = start_run(engine, tiny, engine_flags=("--load-format", "dummy"))
    with served.watched:
        out = served.output()
        assert "[supervisor] engine: sglang (recognised from the command)" in out
        schedulers = served.schedulers()
        assert schedulers, "no scheduler process found"
        t0 = time.monotonic()
        os.kill(schedulers[0], signal.SIGKILL)
        rc, exited = served.watched.wait_exit(90)
        out = served.output()
        assert rc == 1, out[-3000:]
        assert "CRASH REPORT" in out
        assert "cause=subprocess-crashed" in out, out[-3000:]
        assert exited - t0 < 60
        assert served.watched.alive(served.tree_at_serving) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_stalled_scheduler_with_a_request_waiting_is_recycled(tiny, engine) -> None:
    flags = ["--stall-window", "20", "--progress-interval", "2"]
    if engine == "fake":
        # the fake's schedulers do no work: its stall fault freezes the engine (after the 4
        # warmups and one chat) instead
        flags += ["--fake-arg=--fake-fault=stall", "--fake-arg=--fake-stall-after-requests=5"]
    served = start_serve(engine, tiny if engine == "real" else None, *flags)
    with served.watched:
        if engine == "real":
            first = served.stream_in_background(max_tokens=4)
            first.join(60)
            for pid in served.schedulers():
                os.kill(pid, signal.SIGSTOP)
        else:
            assert served.request("/v1/chat/completions", served.chat())[0] == 200
        t0 = time.monotonic()
        waiting = served.stream_in_background(max_tokens=64)  # a request that never progresses
        rc, exited = served.watched.wait_exit(120)
        out = served.output()
        assert rc == 1, out[-3000:]
        assert "stalled" in out and "CRASH REPORT" in out, out[-3000:]
        assert exited - t0 < 60, exited - t0
        assert not waiting.done
        assert served.watched.alive(served.tree_at_serving, within=5) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_requests_nobody_answers_with_nothing_queued_are_recycled_within_60_s(tiny, engine) -> None:
    """sglang #33858: the detokenizer stops (SIGSTOP on the real one), the scheduler finishes
    every request, nothing runs or waits, /health 200 for its first 20 s, clients wait for ever.
    Default progress settings: the canary must find it within 60 s of the first unanswered
    request."""
    flags: list[str] = []
    if engine == "fake":  # after the 4 warmups and one chat, its detokenizer stops
        flags += [
            "--fake-arg=--fake-fault=detokenizer-stall",
            "--fake-arg=--fake-stall-after-requests=5",
        ]
    served = start_serve(engine, tiny if engine == "real" else None, *flags)
    with served.watched:
        assert served.request("/v1/chat/completions", served.chat())[0] == 200
        if engine == "real":
            detokenizers = served.processes_named(b"sglang::detokenizer")
            assert detokenizers, "no detokenizer process found"
            for pid in detokenizers:
                os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        waiting = served.stream_in_background(max_tokens=8)  # answered by nobody
        rc, exited = served.watched.wait_exit(120)
        out = served.output()
        assert rc == 1, out[-3000:]
        assert "requests hang with nothing running or waiting" in out, out[-3000:]
        assert "sending one canary /generate" in out and out.count("sending one canary") == 1
        assert exited - t0 < 60, exited - t0
        assert not waiting.done
        assert served.watched.alive(served.tree_at_serving, within=5) == []


def test_a_memory_release_on_the_cpu_engine_kills_it_and_the_supervisor_reports_it(tiny) -> None:
    """What the CPU path shows of release/resume (FIDELITY, issue #17): SGLang's release calls
    CUDA, so on the CPU the scheduler dies and the tree goes; the supervisor reports a death,
    exit 1, nothing left. The fake plays a GPU's release instead (it frees and resumes), so
    this one is the real engine's alone; the GPU behaviour stays source-read."""
    served = start_serve("real", tiny)
    with served.watched:
        try:
            answer: object = served.request("/release_memory_occupation", {}, key=HOSTILE_ADMIN_KEY)
        except (OSError, http.client.HTTPException) as exc:  # died before it answered
            answer = exc
        rc, _ = served.watched.wait_exit(90)
        out = served.output()
        assert rc == 1, (answer, out[-3000:])
        assert out.count("CRASH REPORT") == 1 and "server died after serving" in out
        assert served.watched.alive(served.tree_at_serving, within=5) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_signal_skips_the_drain_and_still_exits_0(tiny, engine) -> None:
    # the fake makes tokens instantly unless paced: 900 of them then take 45 s, like the real one
    pace = ("--fake-arg=--fake-token-time=0.05",) if engine == "fake" else ()
    served = start_serve(engine, tiny if engine == "real" else None, *pace)
    with served.watched:
        stream = served.stream_in_background(max_tokens=900)
        assert stream.first.wait(60)
        t0 = time.monotonic()
        served.watched.signal(signal.SIGTERM)
        served.watched.wait_for("received SIGTERM: stopping", 30)
        served.watched.signal(signal.SIGTERM)
        rc, exited = served.watched.wait_exit(60)
        out = served.output()
        assert rc == 0, out[-3000:]
        assert "received SIGTERM again: skipping the drain" in out
        assert exited - t0 < 30
        assert not stream.done  # cut short: the drain was skipped
        assert served.watched.alive(served.tree_at_serving, within=5) == []
