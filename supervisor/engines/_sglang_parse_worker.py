"""Parse an argv with the installed SGLang's own parser and report every problem at once.

Stdlib and `sglang` only: this file also runs as a script under another interpreter (the
parse-only virtual environment in CI, the SGLang image on Modal) that has no `supervisor`
package. Input: a JSON object `{"argv": [...], "compile": bool}` on stdin, or `{"checks": [such
objects]}` to pay SGLang's import (several seconds) once for many argvs. Output: a JSON object
`{"problems": [...], "warnings": [...], "version": "..."}` on stdout, or a list of them.

Why not `prepare_server_args`: argparse exits on the first problem and prints 37 KB of usage.
Here the parser's `error()` raises, unknown flags are collected with `parse_known_args`, and an
offending flag is removed before the next pass, so one run lists every problem. Abbreviations
are refused (`allow_abbrev=False`): `--tp` only works by accident of argparse and must be written
`--tp-size`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and its neighbour `sglang.py`
# would shadow the real package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


class _ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ParseError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _ParseError(message or f"exit {status}")


def _import_sglang() -> Any:
    try:
        import triton  # noqa: F401
    except ImportError:  # parse-only: an empty module gives the same parser (see the reference)
        sys.modules["triton"] = types.ModuleType("triton")
    from sglang.srt.server_args import ServerArgs

    return ServerArgs


def _build(compile_step: bool) -> _Parser:
    server_args = _import_sglang()
    parser = _Parser(prog="sglang serve", allow_abbrev=False, add_help=False)
    server_args.add_cli_args(parser)
    if compile_step:  # sglang.compile_deep_gemm's CompileArgs, without importing that module
        parser.add_argument("--timeout", type=int, default=3600)
    return parser


def _drop(argv: list[str], flag: str, parser: argparse.ArgumentParser) -> list[str]:
    """Remove `flag` (and its value, if it takes one) from argv."""
    takes_value = True
    for action in parser._actions:
        if flag in action.option_strings:
            takes_value = action.nargs != 0
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == flag:
            skip = takes_value
            continue
        if token.startswith(flag + "="):
            continue
        out.append(token)
    return out


def _canonical(flag: str, parser: argparse.ArgumentParser) -> str | None:
    """The full flag that argparse would have expanded an abbreviation to, if exactly one."""
    if flag in _RENAMED:
        return _RENAMED[flag]
    matches = {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith(flag) and option != flag
    }
    return matches.pop() if len(matches) == 1 else None


def check(argv: list[str], *, compile_step: bool = False) -> dict[str, Any]:
    parser = _build(compile_step)
    problems: list[str] = []
    warnings: list[str] = []
    remaining = list(argv)
    for _ in range(len(argv) + 1):
        try:
            _, unknown = parser.parse_known_args(remaining)
        except _ParseError as exc:
            message = str(exc).strip()
            problems.append(message)
            match = re.search(r"argument (--[\w-]+)", message)
            if not match:
                break
            remaining = _drop(remaining, match.group(1), parser)
            continue
        for token in unknown:
            if not token.startswith("--"):
                continue
            flag = token.split("=", 1)[0]
            full = _canonical(flag, parser)
            hint = f"; write {full}" if full else ""
            problems.append(f"unrecognized argument: {flag}{hint}")
        break
    used = {t.split("=", 1)[0] for t in argv if t.startswith("--")}
    for action in parser._actions:
        if type(action).__name__.startswith("Deprecated") and used & set(action.option_strings):
            flag = sorted(used & set(action.option_strings))[0]
            new = getattr(action, "new_flag", None)
            warnings.append(f"{flag} is deprecated" + (f"; use {new}" if new else ""))
    for flag in sorted(used & set(_DEPRECATED_FLAGS)):
        warnings.append(f"{flag} is deprecated; use {_DEPRECATED_FLAGS[flag]}")
    for flag, value in itertools.pairwise(argv):
        # Deprecated choice aliases that the parser still accepts (reference: sglang-0.5.23-cli.md).
        if (flag, value) in _DEPRECATED_CHOICES:
            warnings.append(
                f"{flag} {value} is a deprecated alias; use {_DEPRECATED_CHOICES[flag, value]}"
            )
    import sglang

    return {
        "problems": problems,
        "warnings": warnings,
        "version": getattr(sglang, "__version__", "?"),
    }


# Flags renamed between releases: say what to write instead of a bare "unrecognized".
_RENAMED = {
    "--nsa-decode-backend": "--dsa-decode-backend",
    "--nsa-prefill-backend": "--dsa-prefill-backend",
}

# Deprecated spellings the parser still accepts and resolves later (server_args hooks).
_DEPRECATED_FLAGS = {
    "--enable-flashinfer-allreduce-fusion": "--flashinfer-allreduce-fusion-backend auto",
}

_DEPRECATED_CHOICES = {
    ("--attention-backend", "nsa"): "dsa",
    ("--tool-call-parser", "glm45"): "glm",
    ("--tool-call-parser", "qwen25"): "qwen",
}


def main() -> None:
    request = json.load(sys.stdin)
    if "checks" in request:
        results = [
            check(list(one["argv"]), compile_step=bool(one.get("compile")))
            for one in request["checks"]
        ]
        json.dump(results, sys.stdout)
        return
    result = check(list(request["argv"]), compile_step=bool(request.get("compile")))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
