"""Unit tests of the core's pieces: state table, config checks, redaction, log pump, health, warmup."""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import urllib.parse

import anyio
import httpx
import pytest

from supervisor import (
    ConfigError,
    Event,
    HealthPolicy,
    IllegalTransition,
    LaunchSpec,
    LivenessPolicy,
    State,
    SupervisorConfig,
    WarmupPayload,
    WarmupPolicy,
)
from supervisor._health import Nudge, probe, wait_healthy, watch_liveness
from supervisor._logs import StreamSink, pump
from supervisor._redact import escaped_forms
from supervisor._report import CrashReport
from supervisor._timeline import MAX_ENGINE_NUMBERS, MAX_SPANS, LeadPhases, Timeline
from supervisor._warmup import judge, run_warmups
from supervisor.engines.sglang_release import PHASE_MARKERS
from supervisor.engines.sglang_timings import TIMING_READERS
from supervisor.lowlevel import TRANSITIONS, LogTail, Redactor, StateMachine

pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- states
def test_happy_path_and_history() -> None:
    m = StateMachine()
    seen = []
    m.observe(lambda t: seen.append(t.new))
    m.fire(Event.HEALTHY)
    m.fire(Event.WARMED)
    m.fire(Event.EXITED, "signal SIGKILL")
    assert seen == [State.WARM, State.SERVING, State.DEAD]
    assert [t.event for t in m.history] == [Event.HEALTHY, Event.WARMED, Event.EXITED]


def test_illegal_transition_raises_and_changes_nothing() -> None:
    m = StateMachine()
    calls = []
    m.observe(calls.append)
    with pytest.raises(IllegalTransition, match="can't handle event 'warmed' in state 'starting'"):
        m.fire(Event.WARMED)
    assert m.state is State.STARTING and not calls and not m.history


def test_dead_is_terminal_and_every_live_state_can_stop_or_die() -> None:
    assert TRANSITIONS[State.DEAD] == {}
    for state in (State.STARTING, State.WARM, State.SERVING):
        assert TRANSITIONS[state][Event.STOP] is State.STOPPING
        assert TRANSITIONS[state][Event.EXITED] is State.DEAD
    assert set(TRANSITIONS) == set(State)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LaunchSpec(argv=()), "the command is empty"),
        (lambda: SupervisorConfig(LaunchSpec(argv=("x",)), port=70000), "port must be"),
        (lambda: HealthPolicy(path="health"), "must start with '/'"),
        (lambda: HealthPolicy(startup_timeout=float("nan")), "startup timeout must be"),
        (lambda: LivenessPolicy(failures=0), "liveness failures"),
        (lambda: WarmupPayload("a", "/x", {}, expect=("bogus",)), "unknown expect ['bogus']"),
        (
            lambda: WarmupPolicy((WarmupPayload("a", "/x", {}), WarmupPayload("a", "/y", {}))),
            "repeated",
        ),
        (
            lambda: WarmupPayload.from_json({"name": "a", "path": "/x", "body": {}, "oops": 1}),
            "unknown keys",
        ),
        (lambda: WarmupPayload("a", "/x", {}, max_answer_bytes=0), "max_answer_bytes must be"),
    ],
)
def test_bad_config_is_one_clear_line(build, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_api_key_is_not_in_repr() -> None:
    cfg = SupervisorConfig(LaunchSpec(argv=("x",)), port=1, api_key="topsecret")
    assert "topsecret" not in repr(cfg)
    assert cfg.secrets == ("topsecret",)


# ----------------------------------------------------------------------------- redaction
def test_redactor_hides_known_and_secret_shaped_values() -> None:
    r = Redactor(["abc123secret"])
    text = (
        "server_args=ServerArgs(api_key='zzz', admin_api_key=None) --api-key qqq "
        "Authorization: Bearer ttt plain abc123secret hf_abcdefghijklmnopqrstu"
    )
    out = r(text)
    for secret in ("zzz", "qqq", "ttt", "abc123secret", "hf_abcdefghijklmnopqrstu"):
        assert secret not in out
    assert "api_key='***'" in out and "admin_api_key=None" in out


KEY = "Zq9'Xw\\Rt7 Vp8"  # quotes, a backslash and a space: every escaping differs


@pytest.mark.parametrize(
    "form",
    [
        KEY,
        repr(KEY),
        repr({"api_key": KEY}),
        "'" + KEY.replace("\\", "\\\\").replace("'", "\\'") + "'",  # repr's other quote
        json.dumps(KEY),
        json.dumps("pässwörd\n" + KEY),
        shlex.quote(KEY),
        urllib.parse.quote(KEY),
        urllib.parse.quote(KEY, safe=""),
        urllib.parse.quote_plus(KEY),
    ],
)
def test_every_escaped_form_of_a_declared_key_is_hidden(form: str) -> None:
    r = Redactor([KEY, "pässwörd\n" + KEY])
    out = r(f"before {form} after")
    assert "***" in out and "Zq9" not in out and "Rt7" not in out and "Vp8" not in out, out


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('ServerArgs(api_key="Zq9\'Xw\\\\Rt7 Vp8", port=1)', 'ServerArgs(api_key="***", port=1)'),
        ("{'api_key': \"Zq9'Xw\\\\Rt7 Vp8\", 'port': 1}", "{'api_key': \"***\", 'port': 1}"),
        ("api_key='a\\'b c' next", "api_key='***' next"),
        ('{"api_key": "a\\"b c", "port": 1}', '{"api_key": "***", "port": 1}'),
        ("api_key='unterminated value\nnext line", "api_key='***\nnext line"),
        ("OPENAI_API_KEY=sk-123 next", "OPENAI_API_KEY=*** next"),
        ("--api-key 'Zq9'\"'\"'Xw\\Rt7 Vp8' --port 1", "--api-key *** --port 1"),
        ("['--api-key', \"a'b\", '--port']", "['--api-key', ***, '--port']"),
        ("{'authorization': 'Bearer tok123'}", "{'authorization': 'Bearer ***'}"),
        ("api_key=None admin_api_key=None --api-key-env NAME", None),
    ],
)
def test_secret_shaped_values_are_masked_even_with_escaped_quotes(text: str, masked) -> None:
    assert Redactor()(text) == (text if masked is None else masked)


# ----------------------------------------------------------------------------- log pump
class ChunkSource:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.closed = True


class ListSink:
    def __init__(self) -> None:
        self.text = ""

    def child(self, stream: str, text: str) -> None:
        self.text += text

    def supervisor(self, line: str) -> None:
        self.text += f"[supervisor] {line}\n"


async def run_pump(
    chunks: list[bytes], secrets: tuple[str, ...] = (), tail: int = 100
) -> tuple[str, LogTail]:
    sink, t = ListSink(), LogTail(tail)
    src = ChunkSource(chunks)
    await pump(src, stream="stderr", sink=sink, tail=t, redact=Redactor(secrets))
    assert src.closed
    return sink.text, t


async def test_pump_keeps_a_long_line_whole_and_the_final_partial_line() -> None:
    long = b"x" * (900 << 10)  # under the 1 MiB piece size: passed on whole
    chunks = [long[i : i + 65536] for i in range(0, len(long), 65536)] + [b"\nlast without newline"]
    text, tail = await run_pump(chunks)
    lines = text.split("\n")
    assert len(lines[0]) == 900 << 10
    assert lines[1] == "last without newline"
    # ... but the tail keeps 8 KiB of it, and says how much it cut.
    first, last = tail.lines()
    assert first == "x" * 8192 + f"…[{(900 << 10) - 8192} bytes cut]"
    assert last == "last without newline"


async def test_pump_replaces_invalid_utf8_and_never_fails() -> None:
    text, _ = await run_pump([b"ok \xff\xfe bad\n", b"caf\xc3", b"\xa9\n"])
    assert "ok \ufffd\ufffd bad" in text
    assert "café" in text  # a character split across reads is joined before decoding


async def test_pump_redacts_a_secret_split_across_reads() -> None:
    text, tail = await run_pump([b"key is sup", b"ersecret ok\n"], secrets=("supersecret",))
    assert "supersecret" not in text and "key is *** ok" in text
    assert tail.lines() == ["key is *** ok"]


async def test_tail_keeps_the_last_n_lines() -> None:
    _, tail = await run_pump([b"".join(f"line {i}\n".encode() for i in range(1000))], tail=10)
    assert tail.lines() == [f"line {i}" for i in range(990, 1000)]


# ----------------------------------------------------------------------------- timeline
#: Printed by the real SGLang 0.5.23 CPU engine (tests/test_real_engine.py reads it live too).
REAL_TIMINGS = (
    "[2026-12-01 10:00:00] Engine startup timings (s): load_weight=0.02, "
    "kv_cache_allocation=0.58, scheduler_e2e=3.39, cuda_graph={prefill=0.00, decode=0.00, "
    "target_verify=0.00, draft_prefill=0.00, draft_decode=0.00, draft_extend=0.00}, "
    "tokenizer_e2e=18.73\n"
)
REAL_WEIGHTS = (
    "[2026-12-01 10:00:00] Load weight end. elapsed=120.00 s, type=GlmMoeDsaForCausalLM, "
    "quant=fp8, avail mem=12.30 GB, mem usage=66.20 GB.\n"
)


def sglang_timeline() -> Timeline:
    return Timeline(PHASE_MARKERS, readers=TIMING_READERS)


def test_timeline_reads_sglangs_timings_with_the_cuda_graph_group_as_its_own_phases() -> None:
    t = sglang_timeline()
    t.observe("[x] Load weight begin. avail mem=78.50 GB\n")
    t.observe(REAL_WEIGHTS)
    t.observe(REAL_TIMINGS)
    t.mark("serving")
    d = t.durations()
    assert {"spawn", "load_weight", "weights_loaded", "engine_ready", "total"} <= set(d)
    assert d["engine.load_weight"] == 0.02 and d["engine.tokenizer_e2e"] == 18.73
    graphs = {k: v for k, v in d.items() if k.startswith("engine.cuda_graph.")}
    assert sorted(graphs) == sorted(
        f"engine.cuda_graph.{k}"
        for k in (
            "prefill",
            "decode",
            "target_verify",
            "draft_prefill",
            "draft_decode",
            "draft_extend",
        )
    )
    assert "engine.prefill" not in d and "engine.decode" not in d  # the flat misreading
    assert d["engine.weights.gb"] == 66.2 and d["engine.weights.load_s"] == 120.0
    assert d["engine.weights.gb_per_s"] == pytest.approx(66.2 / 120, abs=1e-3)
    summary = t.summary()
    assert summary.startswith("startup timeline:")
    # each number with its unit: GB and GB/s are not seconds
    assert "engine.weights.gb=66.20GB " in summary and "engine.weights.gb_per_s=0.55GB/s" in summary
    assert "engine.weights.load_s=120.00s" in summary


@pytest.mark.parametrize(
    "line",
    [
        "Engine startup timings (s): " + ", ".join(f"k{i}={i}.0" for i in range(10_000)),
        "Engine startup timings (s): load_weight=1e400, x={y={z=1}}, NaN=nan, a=" + "9" * 5000,
        "Engine startup timings (s): " + "{" * 5000,
        "Load weight end. elapsed=0.00 s, mem usage=5.00 GB.",  # no division by zero
    ],
    ids=["ten-thousand-pairs", "odd-numbers", "unbalanced", "zero-elapsed"],
)
def test_a_forged_timings_line_costs_at_most_a_bounded_set_of_numbers(line: str) -> None:
    t = sglang_timeline()
    t.observe(line + "\n")
    assert len(t.engine) <= MAX_ENGINE_NUMBERS
    assert all(math.isfinite(v) for v in t.engine.values())
    assert all(re.fullmatch(r"[a-z][a-z0-9_.]*", k) for k in t.engine)


def test_a_reader_that_raises_costs_its_numbers_only() -> None:
    def broken(rest: str) -> dict[str, float]:
        raise ValueError(rest)

    t = Timeline(
        [("engine_ready", "Engine startup timings (s):")], readers={"engine_ready": broken}
    )
    t.observe(REAL_TIMINGS)
    assert t.engine == {} and "engine_ready" in t.marks


# ----------------------------------------------------------------------------- health
def client_for(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_wait_healthy_treats_refused_and_503_as_not_yet() -> None:
    answers = iter(["refused", 503, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        a = next(answers)
        if a == "refused":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(a)

    seen = []
    policy = HealthPolicy(startup_timeout=10, initial_backoff=0.01, max_backoff=0.02, jitter=0)
    async with client_for(handler) as c:
        result = await wait_healthy(c, "http://x/health", policy, on_probe=seen.append)
    assert result is not None and result.status == 200
    assert [r.describe() for r in seen] == [
        "connection refused",
        "HTTP 503",
        "HTTP 503",
        "HTTP 200",
    ]


async def test_wait_healthy_gives_up_at_the_deadline() -> None:
    policy = HealthPolicy(startup_timeout=0.3, initial_backoff=0.05, max_backoff=0.05, jitter=0)
    async with client_for(lambda r: httpx.Response(503)) as c:
        start = anyio.current_time()
        assert await wait_healthy(c, "http://x/health", policy) is None
        assert 0.3 <= anyio.current_time() - start < 2.0


async def test_nudge_cuts_a_long_backoff_short() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503 if len(calls) == 1 else 200)

    nudge = Nudge()
    policy = HealthPolicy(startup_timeout=100, initial_backoff=50, max_backoff=50, jitter=0)
    async with client_for(handler) as c, anyio.create_task_group() as tg:

        async def fire_later() -> None:
            await anyio.sleep(0.1)
            nudge.fire()

        tg.start_soon(fire_later)
        with anyio.fail_after(5):  # without the nudge this would sleep 50 s
            result = await wait_healthy(c, "http://x/health", policy, nudge=nudge)
    assert result is not None and len(calls) == 2


class EndlessBody(httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.read = 0

    async def __aiter__(self):
        while True:
            self.read += 65536
            yield b"x" * 65536


async def test_a_probe_reads_the_status_and_never_the_body() -> None:
    body = EndlessBody()
    async with client_for(lambda r: httpx.Response(200, stream=body)) as c:
        result = await probe(c, "http://x/health", 5)
    assert result.ok and body.read == 0


async def test_the_startup_deadline_reports_the_probe_in_flight() -> None:
    calls = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503)
        await anyio.sleep(30)  # a probe that never answers
        return httpx.Response(200)

    seen = []
    policy = HealthPolicy(startup_timeout=0.5, initial_backoff=0.01, max_backoff=0.01, jitter=0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        assert await wait_healthy(c, "http://x/health", policy, on_probe=seen.append) is None
    assert seen[0].describe() == "HTTP 503"
    assert "no answer" in seen[-1].describe() and seen[-1].latency_s > 0.3


async def test_liveness_needs_consecutive_failures_and_resets_on_success() -> None:
    pattern = iter([500, 500, 200, 500, 500, 500])
    async with client_for(lambda r: httpx.Response(next(pattern))) as c:
        probes = []
        result = await watch_liveness(
            c,
            "http://x/health",
            LivenessPolicy(interval=0.01, timeout=1, failures=3),
            on_probe=probes.append,
        )
    assert result.status == 500 and len(probes) == 6


# ----------------------------------------------------------------------------- warmup
def chat(message: dict) -> str:
    return json.dumps({"choices": [{"index": 0, "message": message}]})


@pytest.mark.parametrize(
    ("expect", "message", "ok", "reason"),
    [
        (("content",), {"content": "hi"}, True, "has content"),
        (("content",), {"content": ""}, False, "content is empty"),
        (
            ("reasoning_content",),
            {"content": "x", "reasoning_content": None},
            False,
            "reasoning_content is empty",
        ),
        (
            ("no_reasoning",),
            {"content": "x", "reasoning_content": "thinking"},
            False,
            "although thinking is off",
        ),
        (("tool_calls",), {"content": ""}, False, "tool_calls is missing"),
        (
            ("tool_calls",),
            {"tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
            False,
            "not JSON",
        ),
        (
            ("tool_calls",),
            {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
            True,
            "has tool_calls",
        ),
    ],
)
def test_judge(expect, message, ok, reason) -> None:
    got_ok, got_reason = judge(
        WarmupPayload("p", "/v1/chat/completions", {}, expect=expect), 200, chat(message)
    )
    assert got_ok is ok and reason in got_reason


def test_judge_reports_status_and_body() -> None:
    ok, reason = judge(WarmupPayload("p", "/x", {}), 401, '{"error": "Unauthorized"}')
    assert not ok and reason == 'HTTP 401: {"error": "Unauthorized"}'


async def test_warmups_run_concurrently_with_bearer_key() -> None:
    in_flight = peak = 0
    auth = set()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        auth.add(request.headers.get("authorization"))
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.2)
        in_flight -= 1
        return httpx.Response(200, text=chat({"content": "ok"}))

    payloads = [
        WarmupPayload(f"w{i}", "/v1/chat/completions", {}, expect=("content",)) for i in range(4)
    ]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        results = await run_warmups(c, "http://x", payloads, api_key="k")
    assert peak == 4
    assert auth == {"Bearer k"}
    assert [r.name for r in results] == ["w0", "w1", "w2", "w3"] and all(r.ok for r in results)


async def test_warmup_timeout_is_a_verdict_not_a_crash() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        [r] = await run_warmups(c, "http://x", [WarmupPayload("slow", "/x", {}, timeout=0.2)])
    assert not r.ok and "no answer within 0.2 s" in r.reason


async def test_an_endless_warmup_answer_is_refused_past_its_cap() -> None:
    body = EndlessBody()
    async with client_for(lambda r: httpx.Response(200, stream=body)) as c:
        [r] = await run_warmups(
            c, "http://x", [WarmupPayload("big", "/x", {}, max_answer_bytes=1000)]
        )
    assert not r.ok and r.status == 200 and "longer than 1000 bytes" in r.reason
    assert body.read <= 2 * 65536


async def test_a_line_past_the_cap_is_passed_on_in_pieces_without_loss() -> None:
    sink, t = ListSink(), LogTail(10)
    data = b"y" * 300_000 + b"\n"
    await pump(
        ChunkSource([data[i : i + 65536] for i in range(0, len(data), 65536)]),
        stream="s",
        sink=sink,
        tail=t,
        redact=Redactor(),
        max_line_bytes=100_000,
    )
    assert sink.text.replace("\n", "") == "y" * 300_000
    assert len(t.lines()) >= 2


@pytest.mark.parametrize(("at", "size"), [(1015, 1), (1020, 1), (1024, 1), (1195, 300)])
async def test_a_secret_is_never_cut_between_pieces(at: int, size: int) -> None:
    # Lines past max_line_bytes (1024) go on in pieces. Read `size` bytes at a time, a naive cut
    # falls at 1025 (or 1200): inside the key. The api_key value that follows is tried at every
    # offset over a piece's length, so some cut falls inside it too.
    for gap in range(0, 1100, 9):
        line = "x" * at + KEY + "y" * gap + "api_key='undeclared-value'" + "z" * 2000 + "\n"
        data = line.encode()
        sink, t = ListSink(), LogTail(100)
        await pump(
            ChunkSource([data[i : i + size] for i in range(0, len(data), size)]),
            stream="s",
            sink=sink,
            tail=t,
            redact=Redactor([KEY]),
            max_line_bytes=1024,
        )
        expected = "x" * at + "***" + "y" * gap + "api_key='***'" + "z" * 2000
        assert sink.text.count("\n") >= 3  # it did go on in pieces
        assert sink.text.replace("\n", "") == expected, gap
        assert "undeclared" not in "".join(t.lines()) and "Rt7" not in "".join(t.lines())


def test_a_cut_keeps_an_unfinished_secret_for_the_next_piece() -> None:
    r = Redactor([KEY])
    longest = max(len(form) for form in escaped_forms(KEY))  # shlex's or the URL's: 20
    assert r.cut_point("x" * 5000) == 5000 - (longest - 1)
    assert r.cut_point("x" * 5000 + "api_key='" + "a" * 40) == 5000  # its value may go on
    assert r.cut_point("x" * 5000 + "api_key='abc'" + "y" * 5000) == 10013 - (longest - 1)


async def test_the_child_cannot_write_a_supervisor_line() -> None:
    text, tail = await run_pump(
        [b"[supervisor] state=serving\n", b"x\r[super", b"visor] state=serving\n"]
    )
    assert "[supervisor]" not in text and "[supervisor]" not in "".join(tail.lines())
    assert text == "[~supervisor] state=serving\nx\r[~supervisor] state=serving\n"
    out = io.StringIO()
    StreamSink(out).supervisor("two\nlines")
    assert out.getvalue() == "[supervisor] two\n[supervisor] lines\n"


async def test_clean_blocks_go_out_as_bytes_and_in_order() -> None:
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    sink = StreamSink(text)
    sink.supervisor("first")
    await pump(
        ChunkSource([b"caf\xc3\xa9 clean\n", b"bad \xff\n", b"key abc123 here\n"]),
        stream="s",
        sink=sink,
        tail=LogTail(10),
        redact=Redactor(["abc123"]),
    )
    sink.supervisor("last")
    assert raw.getvalue().decode() == (
        "[supervisor] first\ncafé clean\nbad \ufffd\nkey *** here\n[supervisor] last\n"
    )


def test_the_crash_report_is_bounded() -> None:
    report = CrashReport("exited", 1, "unknown", 1.0, tail=tuple("w" * 100_000 for _ in range(80)))
    text = report.render()
    assert len(text) < 40_000 and "bytes cut]" in text


def test_logging_sink_hands_every_line_to_logging(caplog) -> None:
    import logging

    from supervisor import LoggingSink

    sink = LoggingSink("supervisor-test")
    with caplog.at_level(logging.INFO, logger="supervisor-test"):
        sink.child("stderr", "one\ntwo\n")
        sink.supervisor("state=serving")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("supervisor-test.child", "one"),
        ("supervisor-test.child", "two"),
        ("supervisor-test", "state=serving"),
    ]
    assert caplog.records[0].stream == "stderr"


def test_timeline_reads_numbers_only_from_a_timings_line() -> None:
    t = Timeline([("load_weight", "Load weight begin")])
    t.observe("[x] Load weight begin. avail mem=78.50 GB\n")
    assert "load_weight" in t.marks and t.engine == {}


def test_lead_phases_come_first_and_count_in_the_total_while_warmup_spans_do_not() -> None:
    now = [100.0]
    t = Timeline(lead=[("volume_reload", 2.5), ("preflight", 0.5)], clock=lambda: now[0])
    now[0] += 4.0
    t.mark("healthy")
    t.span("warmup.chat-thinking", 1.25)  # inside `healthy`: listed, never added twice
    now[0] += 2.0
    t.mark("serving")
    d = t.durations()
    assert list(d)[:4] == ["volume_reload", "preflight", "spawn", "healthy"]
    assert d["warmup.chat_thinking"] == 1.25  # a label value: [a-z0-9_.] only
    assert d["total"] == 2.5 + 0.5 + 6.0
    assert "volume_reload=2.50s preflight=0.50s spawn=4.00s" in t.summary()


def test_timeline_spans_are_bounded_and_only_finite_non_negative_seconds_count() -> None:
    t = Timeline(lead=[("nan", math.nan), ("negative", -1.0), ("9lives", 1.0)])
    for i in range(MAX_SPANS * 3):
        t.span(f"warmup.{i}\n[supervisor] forged", float(i))
    t.mark("serving")
    d = t.durations()
    assert "nan" not in d and "negative" not in d and d["p9lives"] == 1.0
    spans = [k for k in d if k.startswith("warmup.")]
    assert len(spans) == MAX_SPANS and all(re.fullmatch(r"[a-z0-9_.]{1,64}", k) for k in spans)


def test_a_lead_phase_that_raises_is_still_timed() -> None:
    now = [0.0]
    lead = LeadPhases(clock=lambda: now[0])
    with pytest.raises(RuntimeError), lead.phase("preflight"):
        now[0] = 3.0
        raise RuntimeError("disk full")
    assert lead.phases == [("preflight", 3.0)]


@pytest.mark.anyio
async def test_a_status_pipe_without_newlines_is_cut_into_bounded_lines() -> None:
    """The keeper's status pipe is read line by line; bytes that never end a line must not
    grow the buffer without end (a broken or hostile writer), and a line after them still
    arrives whole."""
    import os

    from supervisor._pipes import StatusLines

    r, w = os.pipe()
    lines = StatusLines(r)
    try:
        os.write(w, b"x" * 20_000 + b"\nexited -9\n")
        os.close(w)
        got = []
        while (line := await lines.readline()) is not None:
            got.append(line)
        assert all(len(line) <= 8192 for line in got)
        assert got[-1] == "exited -9" and sum(map(len, got)) == 20_000 + len("exited -9")
    finally:
        await lines.aclose()
