"""Sleep and wake around a memory snapshot (issue #13), wired: the rehearsal on the fake, and the API.

`run --snapshot-rehearsal --snapshot-pause 1` on the fake with `--enable-memory-saver
--enable-weights-cpu-backup`: serving -> sleeping -> asleep -> waking -> serving, then a chat
completion works; a resume that fails, a server unhealthy after it, and a death while asleep or
while waking all end with exit 3 and no process left (decided: a server that dies around a
snapshot never proved it serves again, so it is a failed start, like a failed wake). The
in-memory tests drive `Supervisor.sleep()`/`wake()` and `BlockingSupervisor` without processes.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import httpx
import pytest

from supervisor import (
    ConfigError,
    HealthPolicy,
    IllegalTransition,
    LaunchSpec,
    LivenessPolicy,
    SnapshotError,
    SnapshotPolicy,
    State,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
)
from supervisor.blocking import BlockingSupervisor
from supervisor.testing import InMemoryProcessManager
from tests._watch import Watched
from tests.conftest import cli, fake_argv

FAST = ["--fake-load-time", "0.3", "--fake-warmup-time", "0.2", "--fake-time-scale", "0.1"]
MEMORY = ["--enable-memory-saver", "--enable-weights-cpu-backup"]
REHEARSAL = ["--snapshot-rehearsal", "--snapshot-pause", "1", "--snapshot-health-timeout", "3"]


def rehearse(port: int, *fake_flags: str, flags: tuple[str, ...] = ()) -> Watched:
    args = ["run", "--port", str(port), "--ready-line", "fired up", *REHEARSAL, *flags, "--"]
    return Watched(cli(*args, *fake_argv(port, *FAST, *MEMORY, *fake_flags)))


def states(out: str) -> list[str]:
    return [line.split("state=")[1].split()[0] for line in out.splitlines() if "] state=" in line]


@pytest.mark.process
def test_the_rehearsal_sleeps_freezes_wakes_and_serves_again(port: int) -> None:
    with rehearse(port) as w:
        w.wait_for("snapshot rehearsal: serving again", 30)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(30)
        out = w.output()
    assert rc == 0, out
    assert states(out) == [
        "warm", "serving", "sleeping", "asleep", "waking", "serving", "stopping", "dead"
    ]  # fmt: skip
    assert "process(es) stopped and continued after" in out
    for step in ("pause=", "release=", "resume=", "continue=", "health=", "verify=", "asleep="):
        assert step in out.split("snapshot timing: ")[-1]


@pytest.mark.process
@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (
            "resume-fails",
            "resume: POST /resume_memory_occupation answered HTTP 400: "
            '{"error": {"message": "CUDA error: out of memory"}}',
        ),
        (
            "unhealthy-after-resume",
            "health: GET /health did not answer 200 within 3 s after resume (last probe: HTTP 503)",
        ),
    ],
)
def test_a_failed_wake_exits_3_naming_the_step(port: int, fault: str, needle: str) -> None:
    with rehearse(port, "--fake-fault", fault) as w:
        w.wait_for("] state=waking", 30)
        tree = w.tree()
        rc, _ = w.wait_exit(30)
        out = w.output()
        assert rc == 3, out
        assert f"sleep/wake failed: {needle}" in out
        assert "state=dead from=waking event=failed" in out
        assert "last lines of the server's log:" in out
        assert w.alive(tree) == []


@pytest.mark.process
@pytest.mark.parametrize("when", ["asleep", "waking"])
def test_a_death_around_the_snapshot_exits_3_and_leaves_nothing(port: int, when: str) -> None:
    slow_resume = ("--fake-resume-time", "5") if when == "waking" else ()
    with rehearse(port, *slow_resume) as w:
        w.wait_for(f"] state={when} from=", 30)
        tree = w.tree()
        main = int(w.output().split("spawned pid=")[1].split()[0])
        os.kill(main, signal.SIGKILL)
        killed = time.monotonic()
        rc, exited = w.wait_exit(30)
        out = w.output()
        assert rc == 3, out
        assert f"state=dead from={when} event=exited (signal SIGKILL)" in out
        assert f"startup failed: the server exited while {when}, with signal SIGKILL" in out
        assert exited - killed < 5.0  # seen at once, even with the tree frozen
        assert w.alive(tree) == [] and "CRASH REPORT" not in out


@pytest.mark.process
def test_rehearsal_flags_are_checked(port: int) -> None:
    for flags, needle in (
        (["--snapshot-pause", "1"], "--snapshot-pause needs --snapshot-rehearsal"),
        (["--snapshot-rehearsal", "--snapshot-pause", "0"], "--snapshot-pause: must be"),
        (["--snapshot-health-timeout", "3"], "--snapshot-health-timeout needs"),
    ):
        done = cli("run", "--port", str(port), *flags, "--", "true")
        out, _ = done.communicate(timeout=30)
        assert done.returncode == 2, out
        assert needle in out and len(out.strip().splitlines()) == 1, out


# ============================================================================ in memory
class Engine:
    """A mock SGLang with the memory endpoints; `fail` names a path that answers 500."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.released = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        if path == self.fail:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        if path == "/metrics":
            return httpx.Response(404)
        if path == "/release_memory_occupation":
            self.released = True
        if path == "/resume_memory_occupation":
            self.released = False
        if path == "/generate":
            return httpx.Response(200, json={"text": " Paris."})
        return httpx.Response(200, json=None)


def config(**overrides: Any) -> SupervisorConfig:
    base: dict[str, Any] = dict(
        launch=LaunchSpec(argv=("server",)),
        port=8000,
        health=HealthPolicy(startup_timeout=5, initial_backoff=0.01, max_backoff=0.02, jitter=0),
        liveness=LivenessPolicy(interval=0.02, timeout=1, failures=2),
        stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
        snapshot=SnapshotPolicy(verify_expect="Paris", health_interval=0.01),
    )
    base.update(overrides)
    return SupervisorConfig(**base)


@pytest.mark.anyio
async def test_sleep_pauses_liveness_closes_the_pool_and_wake_verifies() -> None:
    engine = Engine()
    sup = Supervisor(
        config(), manager=InMemoryProcessManager(), transport=httpx.MockTransport(engine)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        with pytest.raises(IllegalTransition):
            await sup.wake()
        await sup.sleep()
        assert sup.state is State.ASLEEP and engine.released
        assert not sup._run.slot.is_open  # no socket goes into the snapshot
        engine.calls.clear()
        await anyio.sleep(0.2)  # ten liveness intervals: nothing may probe a released server
        assert engine.calls == []
        timing = await sup.wake()
        assert sup.state is State.SERVING and not engine.released
        assert engine.calls[:4] == [
            "/resume_memory_occupation", "/continue_generation", "/health", "/generate"
        ]  # fmt: skip
        assert set(timing.steps) >= {"pause", "release", "resume", "health", "verify"}
        assert sup._run.slot.generation == 2
        await anyio.sleep(0.1)
        assert "/health" in engine.calls[4:]  # liveness is back
        sup.stop()
    assert sup.state is State.DEAD


@pytest.mark.anyio
async def test_a_failed_release_kills_the_server_and_raises_from_sleep_and_run() -> None:
    engine = Engine(fail="/release_memory_occupation")
    manager = InMemoryProcessManager()
    sup = Supervisor(config(), manager=manager, transport=httpx.MockTransport(engine))
    raised: list[BaseException] = []

    async def runner() -> None:
        try:
            await sup.run()
        except SnapshotError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await sup.wait_for(State.SERVING)
        with pytest.raises(SnapshotError) as info:
            await sup.sleep()
    assert info.value.step == "release" and "HTTP 500" in str(info.value)
    assert raised == [info.value] and sup.failure is info.value
    assert manager.children[0].tree_killed >= 1 and sup.state is State.DEAD


@pytest.mark.anyio
async def test_sleep_needs_a_policy_and_a_serving_server() -> None:
    sup = Supervisor(
        config(snapshot=None),
        manager=InMemoryProcessManager(),
        transport=httpx.MockTransport(Engine()),
    )
    with pytest.raises(ConfigError, match="needs a snapshot policy"):
        await sup.sleep()
    sup2 = Supervisor(config(), manager=InMemoryProcessManager())
    with pytest.raises(IllegalTransition, match="can't sleep in state 'starting'"):
        await sup2.sleep()


def test_blocking_sleep_and_wake() -> None:
    engine = Engine()
    blocking = BlockingSupervisor(
        config(), manager=InMemoryProcessManager(), transport=httpx.MockTransport(engine)
    )
    with pytest.raises(RuntimeError, match="call start"):
        blocking.sleep()
    with blocking:
        blocking.sleep()
        assert blocking.state is State.ASLEEP
        timing = blocking.wake()
        assert blocking.state is State.SERVING and timing.asleep_s is not None
    assert blocking.state is State.DEAD
