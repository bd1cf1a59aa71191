"""The entry point: composes the core's `run` with the deployment commands built on profiles.

The core's command line (`supervisor._cli`) knows no engine; the deployment room adds `serve`,
`demo`, `compile` and `preflight`, which know SGLang through the profiles. Composing them here,
at the top of the house, keeps every import arrow pointing down.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from supervisor import force_exit
from supervisor.cli import main as core_main
from supervisor.deploy.commands import add_commands
from supervisor.engines.sglang_traits import SGLANG


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return core_main(argv, extra=[add_commands], engines=[SGLANG])
    except BrokenPipeError:  # `serve --dry-run | head`: the reader left; that is not an error
        sys.stderr.close()
        return 0


def run() -> None:
    """The process's entry: `main`, then leave at once with its exit code.

    The interpreter's own shutdown after `main` returns (module teardown, thread joins) took
    about 100 ms: most of the time from a server's death to the exit that makes the platform
    recycle the container. By then the tree is dead, the report written and every file closed;
    `force_exit` flushes our streams and skips the rest.
    """
    force_exit(main())


if __name__ == "__main__":
    run()
