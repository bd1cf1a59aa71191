"""pid 1 of the gVisor test sandbox: start the command, reap every orphan, exit with its code.

`runsc do CMD` makes CMD the sandbox's init, and an init that does not reap (pytest) collects
the zombies of every orphan. A container's real init (Modal's, tini, Docker's `--init`) reaps;
this stands in for it, so the tests see what a supervisor in a container sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, f: child.send_signal(s))
    code = 1
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return code
        except InterruptedError:
            continue
        if pid == child.pid:
            child.returncode = code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code
            # reap what is left of the orphans, then leave
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        return code
                except ChildProcessError:
                    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
