"""SGLang's keys in a private file instead of its command line.

0.5.23 reads no environment variable for `--api-key` or `--admin-api-key`, so a key on the argv
is readable by every user of the host in `ps` and `/proc/PID/cmdline`, whatever our logs redact.
But `prepare_server_args` (`srt/server_args.py`) merges `--config FILE.yaml` into the arguments
before parsing (`srt/utils/server_args_config_parser.py` `ConfigArgumentMerger`: the file's
`key: value` pairs become `--key value`, placed before the command line's, which wins). So the
launch passes `--config PATH` and the keys live in a file of mode 0600 in a directory of mode
0700 that only the server's user can read, removed when the supervisor is done with it. The
values are written as JSON strings, which YAML reads back exactly (quotes, backslashes, spaces).

SGLang still logs its `server_args=ServerArgs(... api_key='...')` line: the supervisor redacts
that, as it redacts every form of a key it knows. The admin key of one start is made here too
(`fresh_admin_key`): without one, the client's key opens SGLang's admin routes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KEY_FILE_NAME", "fresh_admin_key", "key_file", "write_key_file"]

KEY_FILE_NAME = "sglang-keys.yaml"


def fresh_admin_key() -> str:
    """A random admin key for one start: known to the supervisor only, never to a client.

    SGLang marks 43 routes ADMIN_OPTIONAL (srt/entrypoints/http_server.py): with no
    `--admin-api-key` the client's key opens them (srt/utils/auth.py:decide_request_auth), so
    a client could pause, flush, load other weights or release a serving replica's memory.
    """
    return f"admin-{secrets.token_urlsafe(32)}"


def write_key_file(directory: Path, api_key: str | None, admin_api_key: str | None) -> Path:
    """The YAML `--config` file holding the keys, created 0600 (never world-readable, even for
    an instant), or refused if the name is taken."""
    lines = ["# sglang-supervisor: SGLang's keys, read by --config; removed when it stops"]
    for name, value in (("api-key", api_key), ("admin-api-key", admin_api_key)):
        if value:
            lines.append(f"{name}: {json.dumps(value)}")
    path = directory / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def key_file(api_key: str | None, admin_api_key: str | None) -> Iterator[Path | None]:
    """A key file for the life of the block (None when there is no key), then gone."""
    if not api_key and not admin_api_key:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="sglang-supervisor-keys-"))  # mode 0700
    try:
        yield write_key_file(directory, api_key, admin_api_key)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
