"""Sleep/wake for memory snapshots: the state table's new rows, and the HTTP steps on a mock server.

The HTTP tests run `release_memory` / `resume_and_verify` against `httpx.MockTransport` servers
that answer like SGLang 0.5.23 (docs/SNAPSHOTS.md), and against the ways a restore goes wrong: a
resume that fails or hangs, a health path that never comes back, a generation that fails, an
answer that never ends. Each failure must name its step and arrive within its deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from supervisor import _states
from supervisor._errors import ConfigError, IllegalTransition, StartupError
from supervisor._metrics import SupervisorMetrics
from supervisor._snapshot import (
    ClientSlot,
    SnapshotError,
    SnapshotPolicy,
    SnapshotTiming,
    freeze_tree,
    fresh_client,
)
from supervisor._snapshot_http import generated_text, release_memory, resume_and_verify
from supervisor._states import TRANSITIONS, Event, State, StateMachine

BASE = "http://sglang.test"

pytestmark = pytest.mark.anyio

# ============================================================================= the state table
# The shortest event path from `starting` to each state, so a test can stand a machine anywhere.
PATHS: dict[State, tuple[Event, ...]] = {
    State.STARTING: (),
    State.WARM: (Event.HEALTHY,),
    State.SERVING: (Event.HEALTHY, Event.WARMED),
    State.SLEEPING: (Event.HEALTHY, Event.WARMED, Event.SLEEP),
    State.ASLEEP: (Event.HEALTHY, Event.WARMED, Event.SLEEP, Event.SLEPT),
    State.WAKING: (Event.HEALTHY, Event.WARMED, Event.SLEEP, Event.SLEPT, Event.WAKE),
    State.STOPPING: (Event.STOP,),
    State.DEAD: (Event.EXITED,),
}


def machine_in(state: State) -> StateMachine:
    m = StateMachine()
    for event in PATHS[state]:
        m.fire(event)
    assert m.state is state
    return m


def test_every_state_has_a_path_and_a_row() -> None:
    assert set(PATHS) == set(State) == set(TRANSITIONS)


def test_a_full_sleep_wake_cycle_twice() -> None:
    m = machine_in(State.SERVING)
    seen: list[tuple[State, Event, State]] = []
    m.observe(lambda t: seen.append((t.old, t.event, t.new)))
    for _ in range(2):
        m.fire(Event.SLEEP)
        m.fire(Event.SLEPT, "released in 1.2 s")
        m.fire(Event.WAKE)
        m.fire(Event.WOKEN, "verified in 0.4 s")
    cycle = [
        (State.SERVING, Event.SLEEP, State.SLEEPING),
        (State.SLEEPING, Event.SLEPT, State.ASLEEP),
        (State.ASLEEP, Event.WAKE, State.WAKING),
        (State.WAKING, Event.WOKEN, State.SERVING),
    ]
    assert seen == cycle * 2
    assert m.history[-3].note == "released in 1.2 s"


NEW_ROWS = [
    (State.SERVING, Event.SLEEP, State.SLEEPING),
    (State.SLEEPING, Event.SLEPT, State.ASLEEP),
    (State.SLEEPING, Event.FAILED, State.DEAD),
    (State.SLEEPING, Event.EXITED, State.DEAD),
    (State.SLEEPING, Event.STOP, State.STOPPING),
    (State.ASLEEP, Event.WAKE, State.WAKING),
    (State.ASLEEP, Event.EXITED, State.DEAD),
    (State.ASLEEP, Event.STOP, State.STOPPING),
    (State.WAKING, Event.WOKEN, State.SERVING),
    (State.WAKING, Event.FAILED, State.DEAD),
    (State.WAKING, Event.EXITED, State.DEAD),
    (State.WAKING, Event.STOP, State.STOPPING),
]


@pytest.mark.parametrize(("old", "event", "new"), NEW_ROWS)
def test_each_new_transition(old: State, event: Event, new: State) -> None:
    m = machine_in(old)
    before = len(m.history)
    t = m.fire(event, "note")
    assert (t.old, t.event, t.new, t.note) == (old, event, new, "note")
    assert m.state is new and len(m.history) == before + 1


def test_the_new_rows_are_all_the_new_rows() -> None:
    """Nothing else was added: each new state's row is exactly what NEW_ROWS says."""
    for state in (State.SLEEPING, State.ASLEEP, State.WAKING):
        assert TRANSITIONS[state] == {e: n for o, e, n in NEW_ROWS if o is state}


ILLEGAL = [(s, e) for s in State for e in Event if e not in TRANSITIONS[s]]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_illegal_transitions_raise_and_change_nothing(state: State, event: Event) -> None:
    m = machine_in(state)
    history = m.history
    calls: list[object] = []
    m.observe(calls.append)
    with pytest.raises(IllegalTransition, match=f"'{event.value}' in state '{state.value}'"):
        m.fire(event)
    assert m.state is state and m.history == history and calls == []
    assert not m.allows(event)


def test_illegal_includes_the_dangerous_ones() -> None:
    """The pairs the wiring relies on being refused are in the illegal list above."""
    for pair in [
        (State.SERVING, Event.WAKE),  # wake without a sleep: a resume SGLang would die of
        (State.ASLEEP, Event.SLEEP),  # release twice: torch_memory_saver exits the scheduler
        (State.SLEEPING, Event.WAKE),  # wake while the release is in flight
        (State.WARM, Event.SLEEP),  # sleep before warmups finished
        (State.ASLEEP, Event.WOKEN),  # serving again without resume and verify
        (State.SLEEPING, Event.UNHEALTHY),  # liveness is off while asleep
        (State.ASLEEP, Event.UNHEALTHY),
        (State.WAKING, Event.UNHEALTHY),  # a wake failure is `failed` (exit 3), not a death
        (State.ASLEEP, Event.FAILED),
    ]:
        assert pair in ILLEGAL


def test_dead_is_reachable_from_every_live_state_and_terminal() -> None:
    assert TRANSITIONS[State.DEAD] == {}
    for start in State:
        if start is State.DEAD:
            continue
        # The main process's exit is always an event, and it always leads to dead directly.
        assert TRANSITIONS[start][Event.EXITED] is State.DEAD
        reached, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()].values():
                if nxt not in reached:
                    reached.add(nxt)
                    frontier.append(nxt)
        assert State.DEAD in reached


@pytest.mark.parametrize("state", [State.SLEEPING, State.ASLEEP, State.WAKING])
def test_stop_from_the_sleep_path_then_dead(state: State) -> None:
    m = machine_in(state)
    m.fire(Event.STOP)
    m.fire(Event.STOPPED, "exit code 0")
    assert [t.new for t in m.history[-2:]] == [State.STOPPING, State.DEAD]


def test_liveness_runs_only_where_unhealthy_is_an_event() -> None:
    # liveness (UNHEALTHY) is judged while serving only: never asleep, sleeping or waking
    assert {s for s in State if Event.UNHEALTHY in TRANSITIONS[s]} == {State.SERVING}


def test_the_docstring_names_every_state_and_event() -> None:
    doc = _states.__doc__ or ""
    for state in State:
        assert state.value in doc, state
    for event in Event:
        assert event.value in doc, event


def test_metrics_know_the_new_states() -> None:
    metrics = SupervisorMetrics()
    m = machine_in(State.SERVING)
    m.observe(metrics.on_transition)
    m.fire(Event.SLEEP)
    m.fire(Event.SLEPT)
    value = metrics.registry.get_sample_value("supervisor_state", {"supervisor_state": "asleep"})
    assert value == 1.0
    count = metrics.registry.get_sample_value(
        "supervisor_transitions_total",
        {"from_state": "serving", "to_state": "sleeping", "event": "sleep"},
    )
    assert count == 1.0


# ============================================================================= the policy
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"release_path": "release"}, "release path must start with '/'"),
        ({"verify_path": ""}, "verify path must start with '/'"),
        ({"pause_path": None}, "pause and continue paths go together"),
        ({"continue_path": None}, "pause and continue paths go together"),
        ({"call_timeout": 0}, "call timeout must be a finite number > 0"),
        ({"health_timeout": float("inf")}, "health timeout must be"),
        ({"verify_timeout": -1}, "verify timeout must be"),
        ({"health_interval": 5, "health_timeout": 1}, "interval must not exceed"),
        ({"max_body_bytes": 10}, "max body bytes must be a whole number"),
        ({"max_body_bytes": 1 << 30}, "max body bytes"),
        ({"verify_body": {}}, "verify body is empty"),
        ({"verify_body": {"x": float("nan")}}, "verify body is not JSON"),
        ({"verify_body": {"x": object()}}, "verify body is not JSON"),
        ({"verify_expect": "  "}, "verify_expect must be non-empty"),
        ({"release_body": {"tags": "weights"}}, "tags must be a list of strings"),
        ({"release_body": {"tags": ["weight"]}}, "unknown tags ['weight']"),
        (
            {"release_body": {"tags": ["kv_cache"]}},
            "resume tags ['cuda_graph', 'kv_cache', 'weights'] must equal the release tags ['kv_cache']",
        ),
        (
            {"release_body": {"tags": ["weights"]}, "resume_body": {"tags": ["kv_cache"]}},
            "must equal the release tags",
        ),
    ],
)
def test_policy_refuses_what_cannot_work(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SnapshotPolicy(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_policy_defaults_and_frozen_bodies() -> None:
    p = SnapshotPolicy()
    assert (p.release_path, p.resume_path) == (
        "/release_memory_occupation",
        "/resume_memory_occupation",
    )
    assert p.tags == {"kv_cache", "weights", "cuda_graph"}
    assert dict(p.pause_body) == {"mode": "abort"}
    with pytest.raises(TypeError):
        p.release_body["tags"] = ["weights"]  # type: ignore[index]
    body = {"tags": ["weights", "kv_cache"]}
    q = SnapshotPolicy(release_body=body, resume_body={"tags": ["kv_cache", "weights"]})
    body["tags"].append("cuda_graph")  # the caller's dict changing later changes nothing
    assert q.tags == {"weights", "kv_cache"}
    assert SnapshotPolicy(release_body={"tags": []}).tags == p.tags  # [] means all, like None


# ============================================================================= a mock SGLang
class FakeSGLang:
    """Answers like SGLang 0.5.23 does around a snapshot; each route can be replaced by a test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, str | None]] = []
        self.released = False
        self.health_answers: list[int] = []  # consumed first; then 200
        self.routes: dict[str, Callable[[httpx.Request], Any]] = {}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.calls.append((request.method, path, body, request.headers.get("authorization")))
        if path in self.routes:
            answer = self.routes[path](request)
            if hasattr(answer, "__await__"):
                answer = await answer
            return answer  # type: ignore[no-any-return]
        if path == "/pause_generation":
            return httpx.Response(
                200, json={"message": "Generation paused successfully.", "status": "ok"}
            )
        if path == "/continue_generation":
            return httpx.Response(
                200, json={"message": "Generation continued successfully.", "status": "ok"}
            )
        if path == "/release_memory_occupation":
            self.released = True
            return httpx.Response(200, json=None)  # FastAPI's answer to a handler returning None
        if path == "/resume_memory_occupation":
            if not self.released:  # SGLang: set.remove raises, the scheduler dies
                return httpx.Response(500)
            self.released = False
            return httpx.Response(200, json=None)
        if path == "/health":
            status = self.health_answers.pop(0) if self.health_answers else 200
            return httpx.Response(status)
        if path == "/generate":
            return httpx.Response(
                200, json={"text": " Paris. It is", "output_ids": [1, 2], "meta_info": {}}
            )
        return httpx.Response(404, json={"detail": "Not Found"})

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.calls]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), base_url=BASE)


FAST = {"call_timeout": 2.0, "health_timeout": 2.0, "health_interval": 0.01, "verify_timeout": 2.0}


async def test_release_pauses_then_releases_with_sglangs_bodies() -> None:
    server = FakeSGLang()
    timing = SnapshotTiming()
    async with server.client() as client:
        await release_memory(
            client, BASE, SnapshotPolicy(), "user-key", admin_api_key="admin-key", timing=timing
        )
    assert server.calls == [
        ("POST", "/pause_generation", {"mode": "abort"}, "Bearer admin-key"),
        ("POST", "/release_memory_occupation", {}, "Bearer admin-key"),
    ]
    assert list(timing.steps) == ["pause", "release"]
    assert server.released


async def test_release_without_pause_is_modals_example() -> None:
    server = FakeSGLang()
    policy = SnapshotPolicy(
        pause_path=None,
        continue_path=None,
        release_body={"tags": ["weights"]},
        resume_body={"tags": ["weights"]},
    )
    async with server.client() as client:
        await release_memory(client, BASE, policy, "user-key")
    assert server.calls == [
        ("POST", "/release_memory_occupation", {"tags": ["weights"]}, "Bearer user-key")
    ]


async def test_release_failure_names_the_step_and_what_sglang_said() -> None:
    server = FakeSGLang()
    server.routes["/release_memory_occupation"] = lambda r: httpx.Response(
        400,
        json={
            "error": {
                "message": "release_memory_occupation should be called only when server is idle."
            }
        },
    )
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await release_memory(client, BASE, SnapshotPolicy(**FAST))
    err = info.value
    assert isinstance(err, StartupError)
    assert (err.step, err.status) == ("release", 400)
    assert "release: POST /release_memory_occupation answered HTTP 400" in str(err)
    assert "only when server is idle" in err.snippet


async def test_a_failed_pause_stops_before_the_release() -> None:
    server = FakeSGLang()
    server.routes["/pause_generation"] = lambda r: httpx.Response(
        401, json={"error": "Unauthorized"}
    )
    async with server.client() as client:
        with pytest.raises(SnapshotError, match="pause: POST /pause_generation answered HTTP 401"):
            await release_memory(client, BASE, SnapshotPolicy(**FAST))
    assert server.paths() == ["/pause_generation"]
    assert not server.released


async def test_resume_and_verify_success_in_order() -> None:
    server = FakeSGLang()
    server.released = True
    server.health_answers = [503, 503]  # SGLang's /health may need a moment after resume
    timing = SnapshotTiming()
    policy = SnapshotPolicy(verify_expect="Paris", **FAST)
    async with server.client() as client:
        await resume_and_verify(
            client, BASE, policy, "user-key", admin_api_key="admin-key", timing=timing
        )
    assert server.paths() == [
        "/resume_memory_occupation",
        "/continue_generation",
        "/health",
        "/health",
        "/health",
        "/generate",
    ]
    auth = {path: key for _, path, _, key in server.calls}
    assert auth["/resume_memory_occupation"] == "Bearer admin-key"
    assert auth["/generate"] == "Bearer user-key"  # a normal endpoint wants the normal key
    assert auth["/health"] is None  # SGLang exempts /health from the key
    assert server.calls[-1][2] == {
        "text": "The capital of France is",
        "sampling_params": {"max_new_tokens": 8, "temperature": 0.0},
    }
    assert list(timing.steps) == ["resume", "continue", "health", "verify"]
    assert not server.released


async def test_resume_500_fails_the_wake_and_is_never_retried() -> None:
    server = FakeSGLang()
    server.routes["/resume_memory_occupation"] = lambda r: httpx.Response(
        500, text="Internal Server Error"
    )
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await resume_and_verify(client, BASE, SnapshotPolicy(**FAST))
    assert (info.value.step, info.value.status) == ("resume", 500)
    assert "resume: POST /resume_memory_occupation answered HTTP 500: Internal Server Error" in str(
        info.value
    )
    assert server.paths() == ["/resume_memory_occupation"]  # once, and nothing after it


async def test_a_refused_connection_is_the_only_retry() -> None:
    server = FakeSGLang()
    server.released = True
    refusals = [True, True]

    def resume(request: httpx.Request) -> httpx.Response:
        if refusals:
            refusals.pop()
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        server.released = False
        return httpx.Response(200, json=None)

    server.routes["/resume_memory_occupation"] = resume
    async with server.client() as client:
        await resume_and_verify(client, BASE, SnapshotPolicy(**FAST))
    assert server.paths().count("/resume_memory_occupation") == 3
    assert server.paths()[-1] == "/generate"


async def test_a_reset_after_sending_is_not_retried() -> None:
    server = FakeSGLang()

    def resume(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    server.routes["/resume_memory_occupation"] = resume
    async with server.client() as client:
        with pytest.raises(
            SnapshotError, match="resume: POST /resume_memory_occupation failed: ReadError"
        ):
            await resume_and_verify(client, BASE, SnapshotPolicy(**FAST))
    assert server.paths() == ["/resume_memory_occupation"]


async def test_refused_until_the_deadline_says_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        start = time.monotonic()
        with pytest.raises(
            SnapshotError, match=r"resume: the connection was refused .* within 0\.5 s"
        ):
            await resume_and_verify(client, BASE, SnapshotPolicy(**{**FAST, "call_timeout": 0.5}))
    assert time.monotonic() - start < 2.0


async def test_slow_resume_past_its_deadline() -> None:
    server = FakeSGLang()

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return httpx.Response(200, json=None)

    server.routes["/resume_memory_occupation"] = slow
    start = time.monotonic()
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await resume_and_verify(client, BASE, SnapshotPolicy(**{**FAST, "call_timeout": 0.3}))
    assert time.monotonic() - start < 2.0
    assert info.value.step == "resume" and info.value.status is None
    assert "no answer from POST /resume_memory_occupation within 0.3 s" in str(info.value)
    assert server.paths() == ["/resume_memory_occupation"]


async def test_health_never_200_fails_at_health_within_its_deadline() -> None:
    server = FakeSGLang()
    server.released = True
    server.health_answers = [503] * 10_000
    policy = SnapshotPolicy(**{**FAST, "health_timeout": 0.5, "health_interval": 0.05})
    start = time.monotonic()
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await resume_and_verify(client, BASE, policy)
    elapsed = time.monotonic() - start
    assert 0.45 < elapsed < 2.0
    err = info.value
    assert (err.step, err.status) == ("health", 503)
    assert "did not answer 200 within 0.5 s after resume (last probe: HTTP 503)" in str(err)
    assert "/generate" not in server.paths()
    assert 3 <= server.paths().count("/health") <= 12  # probes paced by the interval, not a spin


async def test_a_hanging_health_probe_is_cut_by_its_probe_timeout() -> None:
    server = FakeSGLang()
    server.released = True

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return httpx.Response(200)

    server.routes["/health"] = hang
    policy = SnapshotPolicy(
        **{**FAST, "health_timeout": 0.6, "health_probe_timeout": 0.2, "health_interval": 0.01}
    )
    start = time.monotonic()
    async with server.client() as client:
        with pytest.raises(SnapshotError, match=r"last probe: no answer"):
            await resume_and_verify(client, BASE, policy)
    assert time.monotonic() - start < 2.0
    assert server.paths().count("/health") >= 2  # one probe at a time, each cut at 0.2 s


async def test_verify_generation_500_fails_at_verify() -> None:
    server = FakeSGLang()
    server.released = True
    server.routes["/generate"] = lambda r: httpx.Response(
        500, json={"error": {"message": "CUDA error: an illegal memory access was encountered"}}
    )
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await resume_and_verify(client, BASE, SnapshotPolicy(**FAST))
    assert (info.value.step, info.value.status) == ("verify", 500)
    assert "illegal memory access" in str(info.value)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(200, json={"text": "   ", "meta_info": {}}), "generated no text"),
        (httpx.Response(200, text="<html>proxy</html>"), "body that is not JSON"),
        (httpx.Response(200, json={"text": "zzzz qqqq"}), "does not contain 'Paris'"),
    ],
)
async def test_verify_judges_the_answer(answer: httpx.Response, message: str) -> None:
    server = FakeSGLang()
    server.released = True
    server.routes["/generate"] = lambda r: answer
    async with server.client() as client:
        with pytest.raises(SnapshotError, match=message) as info:
            await resume_and_verify(client, BASE, SnapshotPolicy(verify_expect="Paris", **FAST))
    assert info.value.step == "verify"


async def _endless() -> AsyncIterator[bytes]:
    while True:
        yield b'{"text": "' + b"a" * 8192
        await anyio.sleep(0)


async def test_an_endless_generation_is_capped_not_read_forever() -> None:
    server = FakeSGLang()
    server.released = True
    server.routes["/generate"] = lambda r: httpx.Response(200, content=_endless())
    policy = SnapshotPolicy(**{**FAST, "verify_timeout": 30.0, "max_body_bytes": 4096})
    start = time.monotonic()
    async with server.client() as client:
        with pytest.raises(SnapshotError, match="answered more than 4096 bytes") as info:
            await resume_and_verify(client, BASE, policy)
    assert time.monotonic() - start < 2.0  # the cap ended it, not the 30 s deadline
    assert info.value.step == "verify"
    assert len(info.value.snippet) <= 200


async def test_an_endless_error_body_still_gives_a_short_snippet() -> None:
    server = FakeSGLang()
    server.routes["/release_memory_occupation"] = lambda r: httpx.Response(500, content=_endless())
    start = time.monotonic()
    async with server.client() as client:
        with pytest.raises(SnapshotError) as info:
            await release_memory(client, BASE, SnapshotPolicy(**{**FAST, "call_timeout": 30.0}))
    assert time.monotonic() - start < 2.0
    assert info.value.status == 500 and len(str(info.value)) < 400


def test_snapshot_error_carries_the_tail_for_exit_3() -> None:
    err = SnapshotError("resume: boom", step="resume", status=500, snippet="boom")
    full = err.with_tail(["line 1", "Scheduler hit an exception"], cause="scheduler")
    assert isinstance(full, StartupError)
    assert (full.step, full.status, full.snippet, str(full)) == (
        "resume",
        500,
        "boom",
        "resume: boom",
    )
    assert full.tail == ("line 1", "Scheduler hit an exception") and full.cause == "scheduler"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"text": " Paris", "meta_info": {}}, " Paris"),
        ([{"text": "a"}, {"text": "b"}], "a"),
        ({"choices": [{"message": {"content": "hi", "reasoning_content": "think "}}]}, "think hi"),
        ({"choices": [{"message": {"content": None, "reasoning_content": "think"}}]}, "think"),
        ({"choices": [{"text": "done"}]}, "done"),
        ({"choices": []}, ""),
        ({"error": "x"}, ""),
        ("text", ""),
        (None, ""),
    ],
)
def test_generated_text(body: Any, text: str) -> None:
    assert generated_text(body) == text


# ============================================================================= timing and clocks
def test_timing_measures_the_sleep_with_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"wall": 1_000.0, "mono": 50.0}
    monkeypatch.setattr(time, "time", lambda: clock["wall"])
    monkeypatch.setattr(time, "monotonic", lambda: clock["mono"])
    t = SnapshotTiming()
    t.record("release", 1.25)
    t.mark_asleep()
    clock["wall"] += 90.0  # the container slept 90 s ...
    clock["mono"] += 3600.0  # ... and came back with a monotonic clock an hour ahead
    t.mark_awake()
    t.record("resume", 0.5)
    assert t.asleep_s == pytest.approx(90.0)
    assert t.monotonic_jump_s == pytest.approx(3510.0)
    assert t.summary() == (
        "snapshot timing: release=1.250s resume=0.500s asleep=90.000s monotonic_jump=+3510.000s"
    )
    t.mark_awake()  # a second call without a sleep changes nothing
    assert t.asleep_s == pytest.approx(90.0)


def test_timing_with_nothing() -> None:
    assert SnapshotTiming().summary() == "snapshot timing: nothing measured"


async def test_deadlines_start_when_the_call_starts() -> None:
    """A policy built long ago (before a snapshot) gives each call its whole deadline anew."""
    policy = SnapshotPolicy(**{**FAST, "call_timeout": 0.4})
    await anyio.sleep(0.5)  # more than the deadline passes before the call, as across a restore
    server = FakeSGLang()

    async def slowish(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.2)
        server.released = False
        return httpx.Response(200, json=None)

    server.released = True
    server.routes["/resume_memory_occupation"] = slowish
    async with server.client() as client:
        await resume_and_verify(client, BASE, policy)
    assert server.paths()[-1] == "/generate"


# ============================================================================= the client slot
async def test_slot_retires_and_renews_the_pool() -> None:
    server = FakeSGLang()
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(fresh_client(httpx.MockTransport(server.handler)))
        return made[-1]

    async with ClientSlot(factory) as slot:
        first = slot.client
        assert slot.generation == 1 and slot.is_open
        await slot.retire()  # before the snapshot: no pooled socket goes into it
        assert first.is_closed and not slot.is_open
        with pytest.raises(RuntimeError, match="call renew"):
            _ = slot.client
        second = await slot.renew()  # after the restore
        assert second is slot.client and second is not first and not second.is_closed
        assert slot.generation == 2
        assert (await second.get(BASE + "/health")).status_code == 200
    assert second.is_closed and len(made) == 2


async def test_renew_without_retire_closes_the_old_one() -> None:
    slot = ClientSlot(lambda: fresh_client(httpx.MockTransport(lambda r: httpx.Response(200))))
    first = await slot.renew()
    second = await slot.renew()
    assert first.is_closed and not second.is_closed
    await slot.aclose()
    assert second.is_closed


class _WedgedTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def aclose(self) -> None:
        await anyio.sleep(60)  # a socket that will not close


async def test_a_wedged_close_cannot_hold_a_wake() -> None:
    slot = ClientSlot(lambda: httpx.AsyncClient(transport=_WedgedTransport()), close_timeout=0.2)
    await slot.renew()
    start = time.monotonic()
    await slot.renew()
    assert time.monotonic() - start < 1.5
    assert slot.generation == 2
    with anyio.move_on_after(1):
        await slot.aclose()


def test_slot_refuses_a_bad_close_timeout() -> None:
    with pytest.raises(ConfigError, match="close timeout"):
        ClientSlot(close_timeout=0)


async def test_refused_then_hanging_blames_the_hang() -> None:
    attempts: list[int] = []

    async def refuse_once_then_hang(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        await anyio.sleep(30)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse_once_then_hang)) as client:
        with pytest.raises(SnapshotError, match=r"resume: no answer from POST .* within 0\.5 s"):
            await resume_and_verify(client, BASE, SnapshotPolicy(**{**FAST, "call_timeout": 0.5}))
    assert len(attempts) == 2


# ============================================================================= the rehearsal freeze
def _state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def sleepers() -> Any:
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.process
async def test_freeze_tree_stops_then_continues_every_process(sleepers: Any) -> None:
    pids = tuple(p.pid for p in sleepers)
    seen: list[str] = []

    async def look() -> None:
        await anyio.sleep(0.3)
        seen.extend(_state_of(pid) for pid in pids)

    async with anyio.create_task_group() as tg:
        tg.start_soon(look)
        stopped = await freeze_tree(lambda: pids, 0.8)
    assert sorted(stopped) == sorted(pids)
    assert seen == ["T", "T"]  # stopped during the pause
    assert all(_state_of(pid) != "T" for pid in pids)  # running again after it


@pytest.mark.process
async def test_freeze_tree_continues_the_tree_when_cancelled(sleepers: Any) -> None:
    pids = tuple(p.pid for p in sleepers)
    with anyio.move_on_after(0.3):
        await freeze_tree(lambda: pids, 60)
    assert all(_state_of(pid) != "T" for pid in pids)


@pytest.mark.process
async def test_freeze_tree_skips_the_gone_and_itself(sleepers: Any) -> None:
    import os

    gone = sleepers[1]
    gone.kill()
    gone.wait(timeout=10)
    stopped = await freeze_tree(lambda: (sleepers[0].pid, gone.pid, os.getpid()), 0.05)
    assert stopped == (sleepers[0].pid,)


def test_freeze_tree_refuses_a_bad_pause() -> None:
    with pytest.raises(ConfigError, match="rehearsal pause"):
        anyio.run(freeze_tree, lambda: (), 0)
