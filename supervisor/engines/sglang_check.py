"""Check an argv with the installed SGLang's own parser, reporting every problem at once.

The check always runs in a child Python, so importing SGLang (torch, its logging setup) never
touches the supervisor's process. In the serving image that child is this same interpreter, and
the check takes about 1.5 s against a 15-minute failed cold start. Elsewhere (a laptop, CI's main
environment) it is another interpreter that has SGLang, found by `find_sglang_python`: the
`python` argument, `SGLANG_PYTHON` (or the older `SGLANG_PARSER_PYTHON`), the checkout's own
`.venv-sglang` that `.ci/run` builds, or this interpreter when it has SGLang. The worker is a
stdlib-plus-sglang script, so that interpreter needs nothing of this project.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ParseVerdict",
    "check_argv",
    "check_argvs",
    "find_sglang_python",
    "parser_available",
    "sglang_args",
]

WORKER = Path(__file__).with_name("_sglang_parse_worker.py")
_ENTRYPOINTS = ("sglang.launch_server", "sglang.compile_deep_gemm")


@dataclass(frozen=True)
class ParseVerdict:
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    version: str

    @property
    def ok(self) -> bool:
        return not self.problems


def sglang_args(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The flags after the entry point, with any API key replaced; and whether it is a compile."""
    argv = list(argv)
    compile_step = False
    for i, token in enumerate(argv):
        if token in _ENTRYPOINTS:
            compile_step = token.endswith("compile_deep_gemm")
            argv = argv[i + 1 :]
            break
    else:
        while argv and not argv[0].startswith("--"):
            argv = argv[1:]  # an engine command such as the fake's `python -m ...`
    out = []
    for i, token in enumerate(argv):
        out.append("<api-key>" if i and argv[i - 1] == "--api-key" else token)
    return out, compile_step


#: The environment `.ci/run` builds beside the checkout (requirements/sglang-0.5.23-engine.txt).
CHECKOUT_VENV = Path(__file__).resolve().parents[2] / ".venv-sglang" / "bin" / "python"


def find_sglang_python(python: str | None = None) -> str | None:
    """A Python that has SGLang, or None: the argument, the variables, the checkout's venv, us."""
    for candidate in (
        python,
        os.environ.get("SGLANG_PYTHON"),
        os.environ.get("SGLANG_PARSER_PYTHON"),
    ):
        if candidate:
            return candidate
    if CHECKOUT_VENV.exists():
        return str(CHECKOUT_VENV)
    if importlib.util.find_spec("sglang") is not None:
        return sys.executable
    return None


def parser_available(python: str | None = None) -> bool:
    return find_sglang_python(python) is not None


def check_argv(
    argv: Sequence[str], *, python: str | None = None, timeout: float = 120
) -> ParseVerdict:
    """Every problem SGLang's parser finds in `argv`, at once; raises if no SGLang is available."""
    return check_argvs([argv], python=python, timeout=timeout)[0]


def check_argvs(
    argvs: Sequence[Sequence[str]], *, python: str | None = None, timeout: float = 180
) -> list[ParseVerdict]:
    """`check_argv` for many argvs in one child, which imports SGLang (seconds) once."""
    python = find_sglang_python(python)
    if python is None:
        raise RuntimeError(
            "SGLang is not importable here; set SGLANG_PYTHON to a Python that has it"
        )
    checks = []
    for argv in argvs:
        flags, compile_step = sglang_args(argv)
        checks.append({"argv": flags, "compile": compile_step})
    done = subprocess.run(
        [python, str(WORKER)],
        input=json.dumps({"checks": checks}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the SGLang parser check could not run under {python}: {last}")
    return [
        ParseVerdict(tuple(r["problems"]), tuple(r["warnings"]), r["version"])
        for r in json.loads(done.stdout)
    ]
