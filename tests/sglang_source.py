"""Facts read from the installed SGLang's own source at test time, never from a copy."""

from __future__ import annotations

import ast
import subprocess
from functools import cache
from pathlib import Path

from supervisor.engines.sglang_check import find_sglang_python


@cache
def sglang_dir() -> Path | None:
    python = find_sglang_python()
    if python is None:
        return None
    done = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('sglang').origin)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Path(done.stdout.strip()).parent if done.returncode == 0 else None


def admin_optional_routes(root: Path) -> list[tuple[str, str]]:
    """(method, path) of every route `srt/entrypoints/http_server.py` registers unconditionally
    with `@auth_level(AuthLevel.ADMIN_OPTIONAL)`: the routes the client's key must not open."""
    tree = ast.parse((root / "srt" / "entrypoints" / "http_server.py").read_text())
    found = []
    for node in tree.body:  # top level only: a route inside an `if` may not exist
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        decorators = [ast.unparse(d) for d in node.decorator_list]
        if "auth_level(AuthLevel.ADMIN_OPTIONAL)" not in decorators:
            continue
        for d in node.decorator_list:
            if not (isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)):
                continue
            kind = d.func.attr
            if kind not in ("get", "post", "put", "delete", "api_route") or not d.args:
                continue
            path = ast.literal_eval(d.args[0])
            methods = [kind.upper()]
            for kw in d.keywords:
                if kw.arg == "methods":
                    methods = list(ast.literal_eval(kw.value))
            found.append((methods[0], path))
    return found
