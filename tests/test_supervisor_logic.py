"""The supervisor's decisions, driven through the in-memory process manager and a mock transport."""

from __future__ import annotations

import signal

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor import (
    ChildExited,
    ForeignListener,
    HealthPolicy,
    HealthTimeout,
    LaunchSpec,
    LivenessPolicy,
    OutcomeKind,
    PortInUse,
    ServerDied,
    State,
    StoppedBeforeServing,
    StopPolicy,
    Supervisor,
    SupervisorConfig,
    WarmupFailed,
    WarmupPayload,
    WarmupPolicy,
)
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.lowlevel import ListenerCheck
from supervisor.testing import InMemoryProcessManager
from supervisor.testing.recording import RecordingSink

pytestmark = pytest.mark.anyio

FAST_HEALTH = HealthPolicy(startup_timeout=5, initial_backoff=0.01, max_backoff=0.02, jitter=0)


class Server:
    """A mock HTTP server whose health answer the test controls."""

    def __init__(self, health: int = 200) -> None:
        self.health = health
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/health":
            return httpx.Response(self.health)
        if request.url.path == "/metrics":  # an engine without --enable-metrics
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})


def make(
    server: Server, manager: InMemoryProcessManager, **overrides
) -> tuple[Supervisor, RecordingSink]:
    cfg = dict(
        launch=LaunchSpec(argv=("server",)),
        port=8000,
        health=FAST_HEALTH,
        liveness=LivenessPolicy(interval=0.02, timeout=1, failures=2),
        stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
    )
    cfg.update(overrides)
    sink = RecordingSink()
    sup = Supervisor(
        SupervisorConfig(**cfg), manager=manager, sink=sink, transport=httpx.MockTransport(server)
    )
    return sup, sink


async def test_reaches_serving_then_stop_sends_sigterm_to_main_only() -> None:
    manager, server = InMemoryProcessManager(), Server()
    sup, sink = make(
        server,
        manager,
        warmup=WarmupPolicy((WarmupPayload("a", "/v1/x", {}, expect=("content",)),)),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        assert sup.state is State.SERVING
        sup.stop()
    child = manager.children[0]
    assert child.signals == [signal.SIGTERM]
    assert sup.state is State.DEAD
    states = [line.split("state=")[1].split()[0] for line in sink.lines if "state=" in line]
    assert states == ["warm", "serving", "stopping", "dead"]


async def test_exit_while_starting_raises_child_exited_with_tail() -> None:
    manager, server = InMemoryProcessManager(), Server(health=503)
    sup, _ = make(server, manager)

    async def crash() -> None:
        while not manager.children:
            await anyio.sleep(0.01)
        manager.children[0].write(b"Loading...\nCUDA out of memory\n")
        await anyio.sleep(0.05)
        manager.children[0].exit(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(crash)
        with pytest.raises(ChildExited) as info:
            await sup.run()
    assert info.value.returncode == 1
    assert info.value.tail[-1] == "CUDA out of memory"
    assert sup.state is State.DEAD


async def test_health_timeout_kills_the_tree() -> None:
    manager, server = InMemoryProcessManager(), Server(health=503)
    sup, _ = make(
        server,
        manager,
        health=HealthPolicy(startup_timeout=0.2, initial_backoff=0.01, max_backoff=0.02, jitter=0),
    )
    with pytest.raises(HealthTimeout, match="last probe: HTTP 503"):
        await sup.run()
    assert manager.children[0].tree_killed >= 1 and manager.children[0].returncode == -9


async def test_failed_warmup_fails_startup_unless_told_to_warn() -> None:
    bad = WarmupPayload("t", "/v1/x", {}, expect=("tool_calls",))
    sup, _ = make(Server(), InMemoryProcessManager(), warmup=WarmupPolicy((bad,)))
    with pytest.raises(WarmupFailed) as info:
        await sup.run()
    assert [r.name for r in info.value.results] == ["t"]

    manager = InMemoryProcessManager()
    sup, sink = make(Server(), manager, warmup=WarmupPolicy((bad,), fail_startup=False))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        assert sup.state is State.SERVING
        sup.stop()
    assert any("warmup failures are warnings" in line for line in sink.lines)


async def test_death_after_serving_writes_one_report_and_calls_the_handler_once() -> None:
    manager, reports = InMemoryProcessManager(), []
    sup, sink = make(Server(), manager, liveness=LivenessPolicy(enabled=False))
    sup._run.on_death = reports.append
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        manager.children[0].write(b"Scheduler hit an exception\n")
        await anyio.sleep(0.05)
        manager.children[0].exit(-9)
    assert len(reports) == 1
    report = reports[0]
    assert report.reason == "exited" and report.returncode == -9
    assert report.tail[-1] == "Scheduler hit an exception"
    assert sum("CRASH REPORT" in line for line in sink.lines) == 1
    assert sup.state is State.DEAD


async def test_unhealthy_after_serving_is_a_death() -> None:
    manager, server = InMemoryProcessManager(), Server()
    sup, _ = make(server, manager)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        server.health = 503
    assert sup.report is not None and sup.report.reason == "unhealthy"
    assert "2 liveness probes failed in a row, last: HTTP 503" in sup.report.detail
    assert manager.children[0].tree_killed >= 1


async def test_stop_escalates_to_kill_when_sigterm_is_ignored() -> None:
    manager = InMemoryProcessManager(exit_on={})
    sup, sink = make(Server(), manager)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        sup.stop()
    assert manager.children[0].signals == [signal.SIGTERM]
    assert manager.children[0].returncode == -9
    assert any("still running after 0.3 s; SIGKILL" in line for line in sink.lines)


async def test_cancellation_leaves_nothing_running() -> None:
    manager = InMemoryProcessManager()
    sup, _ = make(Server(), manager)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        tg.cancel_scope.cancel()
    assert manager.children[0].returncode is not None
    assert sup.state is State.DEAD


async def test_context_manager_raises_server_died_into_the_body() -> None:
    manager = InMemoryProcessManager()
    sup, _ = make(Server(), manager, liveness=LivenessPolicy(enabled=False))
    with pytest.raises(ServerDied):
        async with sup:
            manager.children[0].exit(1)
            await anyio.sleep(5)  # cancelled by the death
            pytest.fail("the body should have been cancelled")


async def test_wait_for_and_run_once() -> None:
    manager = InMemoryProcessManager()
    sup, _ = make(Server(), manager)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        with anyio.fail_after(5):
            await sup.wait_for(State.SERVING)
        with pytest.raises(RuntimeError, match="runs once"):
            await sup.run()
        sup.stop()
    outcome_state = sup.state
    assert outcome_state is State.DEAD


async def test_metrics_follow_the_lifecycle_and_parse() -> None:
    manager = InMemoryProcessManager()
    sup, _ = make(Server(), manager, warmup=WarmupPolicy((WarmupPayload("a", "/v1/x", {}),)))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        manager.children[0].write(b"one\ntwo\n")
        await anyio.sleep(0.05)
        manager.children[0].exit(-9)
    text = sup.metrics.exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    state = {s.labels["supervisor_state"]: s.value for s in families["supervisor_state"].samples}
    assert state["dead"] == 1 and state["serving"] == 0
    deaths = [s for s in families["supervisor_deaths"].samples if s.name.endswith("_total")]
    assert deaths[0].labels["cause"] == "unknown" and deaths[0].value == 1
    lines = {
        s.labels["stream"]: s.value
        for s in families["supervisor_log_lines"].samples
        if s.name.endswith("_total")
    }
    assert lines["stderr"] == 2
    verdicts = [
        s for s in families["supervisor_warmup_results"].samples if s.name.endswith("_total")
    ]
    assert verdicts[0].labels == {"payload": "a", "verdict": "ok"}
    assert sup.report is not None and sup.report.served_s >= 0
    assert sup.history[-1].new is State.DEAD
    assert OutcomeKind.DIED.value == "died"


async def test_a_taken_port_is_refused_before_anything_is_spawned() -> None:
    manager = InMemoryProcessManager(port_in_use="port 8000 on 127.0.0.1 is already in use")
    sup, sink = make(Server(), manager)
    with pytest.raises(PortInUse, match=r"already in use \(a stale server\?\)"):
        await sup.run()
    assert manager.children == [] and sup.state is State.DEAD
    assert not any("spawned" in line for line in sink.lines)


async def test_a_healthy_answer_from_a_foreign_socket_fails_startup() -> None:
    class Stale(InMemoryProcessManager):
        async def start(self, spec):
            child = await super().start(spec)
            child.listener = ListenerCheck("foreign", "port 8000 is held by pid 1 (old-server)")
            return child

    manager = Stale()
    sup, _ = make(Server(), manager)
    with pytest.raises(ForeignListener, match="answered, but port 8000 is held by pid 1"):
        await sup.run()
    assert manager.children[0].tree_killed >= 1 and sup.state is State.DEAD


async def test_stop_now_cuts_the_drain_short() -> None:
    manager = InMemoryProcessManager(exit_on={})  # a server that ignores SIGTERM
    sup, sink = make(Server(), manager, stop=StopPolicy(stop_timeout=30, kill_timeout=1))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        sup.stop()
        await anyio.sleep(0.1)
        with anyio.fail_after(5):  # not the 30 s drain
            sup.stop(now=True)
            await sup.wait_for(State.DEAD)
    assert any("drain was cut short" in line for line in sink.lines)


async def test_a_stop_before_serving_wins_and_says_so() -> None:
    manager, server = InMemoryProcessManager(), Server(health=503)
    sup, _ = make(server, manager, health=HealthPolicy(startup_timeout=30, initial_backoff=0.01))
    async with anyio.create_task_group() as tg:

        async def stop_soon() -> None:
            await anyio.sleep(0.2)
            sup.stop()

        tg.start_soon(stop_soon)
        with anyio.fail_after(10), pytest.raises(StoppedBeforeServing, match="before serving"):
            await tg.start(sup.run)
    assert sup.state is State.DEAD and manager.children[0].returncode is not None

    # Awaited directly (the CLI's way), the same stop is an ordinary stopped outcome.
    manager = InMemoryProcessManager()
    sup, _ = make(Server(health=503), manager)
    sup.stop()
    outcome = await sup.run()
    assert outcome.kind is OutcomeKind.STOPPED


async def test_the_bodys_own_error_is_not_wrapped_in_a_group() -> None:
    manager = InMemoryProcessManager()
    sup, _ = make(Server(), manager)
    with pytest.raises(ValueError, match="mine") as info:
        async with sup:
            raise ValueError("mine")
    assert type(info.value) is ValueError
    assert sup.state is State.DEAD and manager.children[0].returncode is not None


async def test_a_failed_start_under_async_with_raises_the_startup_error_itself() -> None:
    sup, _ = make(
        Server(health=503),
        InMemoryProcessManager(),
        health=HealthPolicy(startup_timeout=0.2, initial_backoff=0.01, max_backoff=0.02, jitter=0),
    )
    with pytest.raises(HealthTimeout) as info:
        async with sup:
            pass
    assert type(info.value) is HealthTimeout and sup.state is State.DEAD


# ============================================================================ the wiring
async def test_race_reports_which_contender_won() -> None:
    """Each event wins alone, with no value; the phase's own result comes back with it; a crash
    set at the same time as a stop or a peer's failure still wins."""
    from supervisor._tasks import Race, race

    async def forever() -> str:
        await anyio.sleep_forever()
        return "never"

    async def value() -> str:
        return "value"

    for winner in (Race.EXITED, Race.PEER, Race.STOP, Race.SLEEP):
        events = {kind: anyio.Event() for kind in (Race.EXITED, Race.PEER, Race.STOP, Race.SLEEP)}
        events[winner].set()
        others = [(events[Race.PEER], Race.PEER), (events[Race.SLEEP], Race.SLEEP)]
        got = await race(forever, exited=events[Race.EXITED], stop=events[Race.STOP], others=others)
        assert got == (winner, None)
    assert await race(value, exited=anyio.Event(), stop=anyio.Event()) == (Race.DONE, "value")
    both = [anyio.Event() for _ in range(3)]
    for event in both:
        event.set()
    got = await race(forever, exited=both[0], stop=both[1], others=[(both[2], Race.PEER)])
    assert got == (Race.EXITED, None)


def test_crash_report_names_the_stall_and_the_failed_rank() -> None:
    from supervisor import CrashReport

    stalled = CrashReport("stalled", -9, "stalled", 12.0, detail="no forward progress for 40 s")
    assert stalled.summary() == (
        "server died after serving for 12.0 s: stalled (no forward progress for 40 s); "
        "cause=stalled"
    )
    peer = CrashReport(
        "peer", -9, "peer", 1.0, detail="rank 1's supervisor reported x", failed_rank=1
    )
    assert peer.summary().endswith(
        "a peer failed (rank 1's supervisor reported x); cause=peer; rank 1 failed"
    )
    own = CrashReport("exited", -9, "unknown", 1.0, failed_rank=2)
    assert "exited with signal SIGKILL" in own.summary() and own.summary().endswith("rank 2 failed")
    assert CrashReport("exited", 1, "unknown", 1.0).summary().endswith("cause=unknown")


async def test_a_progress_watch_that_breaks_does_not_take_the_server_down() -> None:
    """A scrape that raises (here: a transport bug, which the HTTP seam passes on untouched) is
    said once and contained."""
    manager = InMemoryProcessManager()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            raise RuntimeError("a bug, not the network")
        return httpx.Response(200, text="ok")

    sink = RecordingSink()
    sup = Supervisor(
        SupervisorConfig(
            launch=LaunchSpec(argv=("server",)),
            port=8000,
            health=FAST_HEALTH,
            liveness=LivenessPolicy(interval=0.02, timeout=1, failures=2),
            stop=StopPolicy(stop_timeout=0.3, kill_timeout=1),
            progress=SGLANG_PROGRESS,
        ),
        manager=manager,
        sink=sink,
        transport=httpx.MockTransport(answer),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await anyio.sleep(0.3)
        assert sup.state is State.SERVING
        sup.stop()
    broken = [line for line in sink.lines if "progress watch failed" in line]
    assert len(broken) == 1 and "the liveness probe remains" in broken[0]
    assert sup.state is State.DEAD and sup.report is None
