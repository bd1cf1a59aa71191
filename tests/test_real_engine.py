"""The real SGLang 0.5.23 under the supervisor, side by side with the fake that stands in for it.

One real server and one fake are started for the whole module (`serve --profile cpu-tiny`, the
same flags, a hostile API key), because a real start costs 20-40 s. Every test asks both the
same question and requires the same answer: where they differ, the real engine is right and the
fake must be fixed (docs/FIDELITY.md, the "checked against the running engine" column).
The module ends with the slow ones: both servers left idle for 90 s (no false stall) and a
SIGTERM with a stream in flight (the stream finishes, exit 0, nothing left).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor._redact import escaped_forms
from supervisor.engines.sglang_progress import (
    SGLANG_HEARTBEAT_COUNTERS,
    SGLANG_PROGRESS_COUNTERS,
    SGLANG_REQUEST_GAUGES,
    SGLANG_WORK_GAUGES,
)
from supervisor.engines.sglang_release import READY_LINE
from supervisor.profiles import get_profile
from supervisor.testing.fake_sglang._http import ADMIN_OPTIONAL_ROUTES
from tests.engines import (
    HOSTILE_ADMIN_KEY,
    Served,
    require_real,
    start_serve,
    stop,
)
from tests.sglang_source import admin_optional_routes, sglang_dir

# One real engine at a time (2 cores, several GB each): under the README's `-n 2 --dist
# loadgroup` every real-engine test runs on one worker, its module fixture started once.
pytestmark = [pytest.mark.real_engine, pytest.mark.xdist_group("real-engine")]

ENGINES = ("real", "fake")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model directory: `serve --profile cpu-tiny` builds the model there itself."""
    require_real()
    return tmp_path_factory.mktemp("tiny") / "tiny-gpt2"


@pytest.fixture(scope="module")
def servers(tiny: Path) -> Iterator[dict[str, Served]]:
    flags = ("--stall-window", "10", "--progress-interval", "1", "--metrics-port", "0")
    both = {"real": start_serve("real", tiny, *flags)}
    try:
        both["fake"] = start_serve("fake", None, *flags)
        yield both
    finally:
        for served in both.values():
            served.watched.close()


def shape(value: object, depth: int = 3) -> object:
    """The keys of a JSON value, nested a few levels: what a client (and the supervisor) reads."""
    if depth == 0:
        return type(value).__name__
    if isinstance(value, dict):
        return {k: shape(v, depth - 1) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [shape(value[0], depth - 1)] if value else []
    return type(value).__name__


def metric_names(body: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in body.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_startup_port_closed_while_loading_then_ready_line_then_warm(servers, engine) -> None:
    out = servers[engine].output()
    refused = out.index("health probe: connection refused")
    ready = out.index(READY_LINE)
    warm = out.index("] state=warm from=starting")
    assert refused < ready < warm < out.index("] state=serving from=warm")
    # SGLang's own warmup, in its order, before the ready line; the startup lines we time
    own = [out.index(t) for t in ("GET /model_info", "POST /generate", "POST /freeze_gc")]
    assert own == sorted(own) and own[-1] < ready
    for marker in ("Load weight begin", "Load weight end", "Engine startup timings (s):"):
        assert out.index(marker) < ready, marker
    assert "'sglang serve' is the recommended entrypoint" in out  # launch_server's UserWarning
    assert "[supervisor] engine:" not in out  # serve knows its engine; only `run` says it


def timeline_keys(out: str) -> set[str]:
    line = next(x for x in out.splitlines() if "startup timeline:" in x)
    return {pair.split("=")[0] for pair in line.split("startup timeline: ", 1)[1].split()}


def test_the_startup_timeline_reads_both_engines_alike(servers) -> None:
    """The CUDA-graph group as its own phases (not top-level `prefill`, `decode`), the weights'
    seconds and size: parsed from the real engine's lines, which the fake prints the same way."""
    keys = {engine: timeline_keys(servers[engine].output()) for engine in ENGINES}
    # serve built the real engine's model (its directory was empty): our step, timed, leading
    assert "building cpu-tiny's model in" in servers["real"].output()
    assert "model_build" in keys["real"] and "model_build" not in keys["fake"]
    keys["real"].discard("model_build")
    assert keys["real"] == keys["fake"], keys["real"] ^ keys["fake"]
    graphs = {k for k in keys["real"] if k.startswith("engine.cuda_graph.")}
    assert {"engine.cuda_graph.prefill", "engine.cuda_graph.decode"} <= graphs
    assert "engine.decode" not in keys["real"] and "engine.prefill" not in keys["real"]
    assert {"engine.load_weight", "engine.tokenizer_e2e", "engine.weights.load_s"} <= keys["real"]


def test_ready_ping_model_info_health_and_the_log_format_agree(servers) -> None:
    """Rows of docs/FIDELITY.md that the CPU engine shows: `/ready` and `/ping` while serving,
    `/model_info`'s keys, `/health`'s one-second look, the `[%Y-%m-%d %H:%M:%S]` log prefix and
    the metrics exposition's content type and HELP/TYPE lines."""
    answers = {}
    for engine, served in servers.items():
        ready = served.request("/ready", key=None)
        ping = (served.request("/ping", key=None)[0], served.request("/ping")[0])  # keyed route
        info = served.request("/model_info")
        t0 = time.monotonic()
        health = served.request("/health", key=None)
        took = time.monotonic() - t0
        metrics_ct, metrics = served.metrics_with_type()
        log = [x for x in served.output().splitlines() if not x.startswith("[supervisor]")]
        stamped = [x for x in log if re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( TP0)?\] ", x)]
        answers[engine] = (
            ready[0],
            ping,
            info[0],
            # `embedding` only where SGLang has an embedding spec for the architecture
            # (http_server.py:model_info): GPT-2 has one; the fake, which serves no embeddings,
            # leaves it out, and the supervisor reads none of it
            sorted(set(json.loads(info[1])) - {"embedding"}),
            health[0],
            metrics_ct,
            "# HELP sglang:num_running_reqs" in metrics
            and "# TYPE sglang:num_running_reqs" in metrics,
            bool(stamped),
        )
        # SGLang looks after 1 s; the fake here runs at --fake-time-scale 0.2 (tests/engines.py)
        least = 0.9 if engine == "real" else 0.18
        assert least <= took < 30, f"{engine}: /health took {took:.2f} s (SGLang looks after 1 s)"
    assert answers["real"] == answers["fake"], answers
    assert answers["real"][:3] == (200, (401, 200), 200) and answers["real"][4] == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_every_profile_warmup_passes_concurrently(servers, engine) -> None:
    out = servers[engine].output()
    names = [w.name for w in get_profile("cpu-tiny").warmups]
    assert {"chat", "stream", "completions", "json-mode"} <= set(names)
    for name in names:
        assert f"warmup={name} verdict=ok status=200" in out, out
    # sent at once: every warmup line comes after the last one was sent, none before warm
    assert out.index("] state=warm") < min(out.index(f"warmup={n} ") for n in names)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_hostile_key_is_never_printed_in_any_form(servers, engine) -> None:
    served = servers[engine]
    # make the engine log requests that carry the key, then read everything printed so far
    assert served.request("/v1/models")[0] == 200
    time.sleep(0.5)
    out = served.output()
    for key in (served.key, HOSTILE_ADMIN_KEY):
        for form in escaped_forms(key):
            assert form not in out, f"a key leaked as {form!r}"
    # nor on any command line of the tree (`ps` shows those to every user of the host)
    argvs = []
    for pid in served.watched.tree():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argvs.append(f.read().decode("utf-8", "replace").replace("\0", " "))
        except OSError:
            pass  # gone meanwhile
    assert argvs and not any(k in a for a in argvs for k in (served.key, HOSTILE_ADMIN_KEY))
    keys = Path(out.split(" --config ", 1)[1].split()[0])
    assert keys.stat().st_mode & 0o777 == 0o600 and keys.parent.stat().st_mode & 0o777 == 0o700


def test_health_models_chat_and_auth_agree(servers) -> None:
    """Status codes and body shapes of every endpoint the supervisor and its clients call."""
    answers: dict[str, dict[str, object]] = {}
    for engine, served in servers.items():
        chat = served.chat(max_tokens=4)
        got = {
            "health": served.request("/health", key=None),
            "health-wrong-key": served.request("/health", key="wrong"),
            "models-no-key": served.request("/v1/models", key=None),
            "models-wrong-key": served.request("/v1/models", key="wrong"),
            "models": served.request("/v1/models"),
            "chat": served.request("/v1/chat/completions", chat),
            "chat-no-key": served.request("/v1/chat/completions", chat, key=None),
            # curl's default type: the real engine's validate_json_request refuses it (400)
            "chat-form-type": served.request(
                "/v1/chat/completions", chat, content_type="application/x-www-form-urlencoded"
            ),
            "completions": served.request(
                "/v1/completions", {"model": "cpu-tiny", "prompt": "hi", "max_tokens": 4}
            ),
            "metrics-no-key": served.request("/metrics", key=None),
        }
        answers[engine] = {
            name: (status, shape(json.loads(body)) if body.startswith("{") else "text")
            for name, (status, body) in got.items()
        }
    real, fake = answers["real"], answers["fake"]
    assert real["health"][0] == 200 and real["models-no-key"][0] == 401
    assert real["chat-form-type"][0] == 400
    assert real["metrics-no-key"][0] == 200  # exempt from keys by SGLang's design
    diffs = {name: (real[name], fake[name]) for name in real if real[name] != fake[name]}
    assert not diffs, f"fake and real disagree (real first): {diffs}"


def test_the_metrics_the_progress_watch_reads_exist_in_the_real_engine(servers) -> None:
    status, body = servers["real"].request("/metrics", key=None)
    assert status == 200
    real = metric_names(body)
    wanted = [
        s.name
        for s in (
            *SGLANG_WORK_GAUGES,
            *SGLANG_PROGRESS_COUNTERS,
            *SGLANG_REQUEST_GAUGES,
            *SGLANG_HEARTBEAT_COUNTERS,
        )
    ]
    # forward_execution_seconds_total exists only with SGLANG_ENABLE_METRICS_DEVICE_TIMER (GPU)
    missing = [n for n in wanted if n not in real and n != "sglang:forward_execution_seconds_total"]
    assert not missing, f"the real engine has no {missing}"
    _, fake_body = servers["fake"].request("/metrics", key=None)
    fake = metric_names(fake_body)
    assert [n for n in wanted if n in real and n not in fake] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_pause_then_continue_generation_with_the_admin_key_only(servers, engine) -> None:
    served = servers[engine]
    assert served.request("/pause_generation", {})[0] == 401  # the client's key: refused
    status, body = served.request("/pause_generation", {}, key=HOSTILE_ADMIN_KEY)
    assert status == 200 and json.loads(body)["status"] == "ok", body
    status, body = served.request("/continue_generation", {}, key=HOSTILE_ADMIN_KEY)
    assert status == 200 and json.loads(body)["status"] == "ok", body
    status, body = served.request("/v1/chat/completions", served.chat())
    assert status == 200, body


def test_the_fakes_admin_routes_are_the_installed_sglangs() -> None:
    root = sglang_dir()
    assert root is not None
    assert sorted({path for _, path in admin_optional_routes(root)}) == sorted(
        set(ADMIN_OPTIONAL_ROUTES)
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_the_clients_key_opens_no_admin_route(servers, engine) -> None:
    """Every ADMIN_OPTIONAL route of the installed SGLang, read from its source now."""
    served = servers[engine]
    root = sglang_dir()
    assert root is not None
    routes = admin_optional_routes(root)
    assert len(routes) >= 40  # 42 in 0.5.23: a parse that finds none must not pass
    opened = {}
    for method, path in routes:
        body = {} if method in ("POST", "PUT") else None
        status, text = served.request(path, body, method=method)
        if status not in (401, 403):
            opened[f"{method} {path}"] = (status, text[:80])
    assert not opened, f"the client's key opens: {opened}"
    assert served.request("/v1/chat/completions", served.chat())[0] == 200  # clients still chat
    # and the admin key does open them (a harmless one)
    assert served.request("/pause_generation", {}, key=HOSTILE_ADMIN_KEY)[0] == 200
    assert served.request("/continue_generation", {}, key=HOSTILE_ADMIN_KEY)[0] == 200


@pytest.mark.slow
def test_idle_servers_are_left_alone_for_30_seconds(servers) -> None:
    """Progress scraped every second with a 10 s window: three windows idle are never a stall."""
    before = {e: s.output().count("\n") for e, s in servers.items()}
    time.sleep(30)
    for engine, served in servers.items():
        assert served.watched.popen.poll() is None, f"{engine} exited while idle"
        new = served.output().split("\n")[before[engine] :]
        ours = [line for line in new if line.startswith("[supervisor]")]
        assert not [line for line in ours if "stall" in line or "state=" in line], ours


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_with_a_stream_in_flight_finishes_it_and_leaves_nothing(servers, engine) -> None:
    served = servers[engine]
    stream = served.stream_in_background(max_tokens=300)
    assert stream.first.wait(60) and stream.error is None
    during: list[int] = []

    def health_while_draining() -> None:  # SGLang: 503 once its shutdown began
        served.watched.wait_for("state=stopping", 30)
        for _ in range(20):  # the SIGTERM may land after our line: look until it did
            try:
                status = served.request("/health", key=None, timeout=30)[0]
            except OSError:
                return  # gone already
            if status == 503:
                during.append(status)
                return
            time.sleep(0.2)

    prober = threading.Thread(target=health_while_draining, daemon=True)
    prober.start()
    rc, took = stop(served)
    prober.join(30)
    assert during == [503], f"{engine}: /health never answered 503 during the drain"
    stream.join(60)
    assert stream.error is None and stream.done, (stream.error, stream.events[-3:])
    assert rc == 0, served.output()[-3000:]
    assert "state=stopping" in served.output()
    keys = Path(served.output().split(" --config ", 1)[1].split()[0])
    assert not keys.exists() and not keys.parent.exists()  # the keys' file went with the server
    assert served.watched.alive(served.tree_at_serving) == []
    assert took < 60, took
