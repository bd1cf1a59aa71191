"""The engine seam: `run` recognises SGLang's command lines, `--engine` overrides the guess."""

from __future__ import annotations

import signal
import time

import pytest

from supervisor._cli import build_parser
from supervisor._engine import GENERIC, choose_engine
from supervisor._errors import ConfigError
from supervisor.engines.sglang_causes import classify_crash
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_stop import stop_budget
from supervisor.engines.sglang_traits import SGLANG, looks_like_sglang
from tests._watch import Watched
from tests.conftest import cli, fake_argv


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "-m", "sglang.launch_server", "--model-path", "/m"],
        ["/venv/bin/python", "-msglang.launch_server"],
        ["env", "A=1", "timeout", "9", "python", "-m", "sglang.launch_server"],
        ["sglang", "serve", "--model-path", "/m"],
        ["/usr/local/bin/sglang", "serve"],
        ["python", "-m", "supervisor.testing.fake_sglang", "--port", "1"],
    ],
)
def test_sglang_command_lines_are_recognised(argv) -> None:
    assert looks_like_sglang(argv)
    assert choose_engine(argv, [SGLANG]) is SGLANG


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-m", "http.server"],
        ["python", "serve.py", "--model", "sglang.launch_server.txt"],
        ["sglang", "version"],
        ["vllm", "serve", "sglang"],
    ],
)
def test_other_command_lines_are_generic(argv) -> None:
    assert not looks_like_sglang(argv)
    assert choose_engine(argv, [SGLANG]) is GENERIC


def test_engine_flag_overrides_the_guess_both_ways() -> None:
    sglang_argv = ["python", "-m", "sglang.launch_server"]
    assert choose_engine(sglang_argv, [SGLANG], "generic") is GENERIC
    assert choose_engine(["./my-server"], [SGLANG], "sglang") is SGLANG
    with pytest.raises(ConfigError, match="unknown engine"):
        choose_engine(["x"], [SGLANG], "vllm")


def test_sglang_traits_come_from_the_engine_room() -> None:
    assert SGLANG.classify is classify_crash
    assert SGLANG.stop_timeout == stop_budget().stop_timeout_s
    assert SGLANG.ready_line and SGLANG.phase_markers and SGLANG.timing_readers
    assert SGLANG.progress is SGLANG_PROGRESS and SGLANG.hints
    assert GENERIC.classify(["Triggering SIGQUIT for cleanup"]) == "unknown"
    # the core ships no SGLang fact: the generic engine reads no metrics, parses no lines
    assert GENERIC.progress is None and not GENERIC.timing_readers and not GENERIC.hints


@pytest.mark.process
def test_run_generic_reads_no_sglang_metrics_and_says_what_catches_a_hang(port: int) -> None:
    argv = fake_argv(port, "--fake-load-time", "0.2", "--fake-warmup-time", "0.2")
    run = ["run", "--port", str(port), "--engine", "generic", "--ready-line", "fired up"]
    with Watched(cli(*run, "--", *argv)) as w:
        w.wait_for("state=serving", 30)
        time.sleep(5.0)  # past one scrape interval (4 s): a progress watch would have scraped
        w.signal(signal.SIGTERM)
        rc, _ = w.wait_exit(30)
    out = w.output()
    assert rc == 0, out
    assert "engine: generic (named by --engine); no progress metrics known for it" in out
    assert "GET /metrics" not in out  # the fake logs every request: nobody scraped it
    assert "startup timeline:" in out and "engine." not in out.split("startup timeline:")[1]


def test_run_offers_the_known_engines_only(capsys) -> None:
    parser = build_parser(engines=[SGLANG])
    args = parser.parse_args(["run", "--port", "1", "--engine", "sglang", "--", "x"])
    assert args.engine == "sglang"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["run", "--port", "1", "--engine", "vllm", "--", "x"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_launch_gets_an_admin_key_that_is_a_secret() -> None:
    from supervisor._config import LaunchSpec, SupervisorConfig
    from supervisor._errors import ConfigError as Bad
    from supervisor.engines.sglang import SGLangLaunch
    from supervisor.engines.sglang_keys import fresh_admin_key

    a, b = fresh_admin_key(), fresh_admin_key()
    assert a != b and len(a) > 32
    launch = SGLangLaunch(model_path="/m", served_model_name="m")
    argv = launch.serve_argv("client", admin_api_key=a)
    assert argv[-4:] == ["--api-key", "client", "--admin-api-key", a]
    config = launch.supervisor_config(api_key="client", admin_api_key=a)
    assert a in config.secrets and "client" in config.secrets
    with pytest.raises(Bad, match="must not be in extra args"):
        SGLangLaunch(model_path="/m", served_model_name="m", extra_args=("--admin-api-key", "x"))
    with pytest.raises(Bad, match="must differ"):
        SupervisorConfig(LaunchSpec(("x",)), port=1, api_key="k", admin_api_key="k")
