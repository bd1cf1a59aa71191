"""The core's command line as parts, for the rooms that add commands to it (`serve`, `demo`, ...).

`main` is `python -m supervisor` without the deployment commands; `supervise` runs one config
under this process's signals and returns the exit code; the flag helpers and the flag types
check every value where it is parsed, so an added command says its errors the same one-line way.
"""

from __future__ import annotations

from ._cli import (
    CommandAdder,
    build_parser,
    config_from_args,
    main,
    read_api_key,
    read_warmup_file,
)
from ._flags import count, env_name, index, port, seconds, text, url_path
from ._run_flags import (
    add_cluster_flags,
    add_progress_flags,
    add_snapshot_flags,
    rehearsal_pause_from_args,
)
from ._supervise import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_DIED,
    EXIT_STARTUP,
    EXIT_STOPPED,
    supervise,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_DIED",
    "EXIT_STARTUP",
    "EXIT_STOPPED",
    "CommandAdder",
    "add_cluster_flags",
    "add_progress_flags",
    "add_snapshot_flags",
    "build_parser",
    "config_from_args",
    "count",
    "env_name",
    "index",
    "main",
    "port",
    "read_api_key",
    "read_warmup_file",
    "rehearsal_pause_from_args",
    "seconds",
    "supervise",
    "text",
    "url_path",
]
