"""Every bad flag value is one line and exit 2, checked in-process (the fast tier).

`python -m supervisor`'s `main` runs here as the console script runs it, minus the process:
the flag types refuse a bad value where it is parsed, before anything starts, so no process
is needed to see it (and the fast tier would fail the test if one were started). One case goes
through the real CLI process in `test_cli_blackbox`.
"""

from __future__ import annotations

import contextlib
import io
import sys

import pytest

from supervisor.__main__ import main

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def run_main(*argv: str) -> tuple[int, list[str]]:
    """main(argv) with its output captured: (exit code, the lines it wrote)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue().strip().splitlines()


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--startup-timeout", "0", "must be a finite number > 0"),
        ("--startup-timeout", "-5", "must be a finite number > 0"),
        ("--startup-timeout", "nan", "must be a finite number > 0"),
        ("--startup-timeout", "inf", "must be a finite number > 0"),
        ("--liveness-interval", "0", "must be a finite number > 0"),
        ("--liveness-timeout", "-1", "must be a finite number > 0"),
        ("--liveness-failures", "0", "must be >= 1"),
        ("--stop-timeout", "-1", "must be a finite number >= 0"),
        ("--stop-timeout", "nan", "must be a finite number >= 0"),
        ("--tail-lines", "0", "must be >= 1"),
        ("--health-path", "", "must start with '/'"),
        ("--health-path", "health", "must start with '/'"),
        ("--host", "", "must not be empty"),
        ("--ready-line", "", "must not be empty"),
        ("--warmup", "", "must not be empty"),
        ("--api-key-env", "", "not an environment variable name"),
        ("--metrics-port", "70000", "must be a port from 0 to 65535"),
        ("--metrics-port", "-1", "must be a port from 0 to 65535"),
        ("--port", "0", "must be a port from 1 to 65535"),
        ("--port", "x", "not a port number"),
    ],
)
def test_every_bad_flag_value_is_one_line_exit_2(flag: str, value: str, says: str) -> None:
    args = ["--port", "8000", flag, value] if flag != "--port" else [flag, value]
    code, lines = run_main("run", *args, "--", *SLEEPER)
    assert code == 2, lines
    assert len(lines) == 1 and f"argument {flag}: {says}" in lines[0], lines


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--profile", "qwen3-8b", "--fake", "--startup-timeout", "0"], "> 0"),
        (["serve", "--profile", "qwen3-8b", "--engine-command", ""], "must not be empty"),
        (["serve", "--profile", "qwen3-8b", "--model-path", ""], "must not be empty"),
        (["demo", "--port", "70000"], "must be a port from 1 to 65535"),
        (["demo", "--stop-timeout", "nan"], "must be a finite number >= 0"),
        (["compile", "--profile", "glm-5.1-fp8", "--timeout", "0"], "must be >= 1"),
    ],
)
def test_the_deployment_commands_check_their_flags_too(args: list[str], says: str) -> None:
    code, lines = run_main(*args)
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
