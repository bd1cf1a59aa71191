"""The fake server's signal handlers and SGLang's SIGTERM drain, mixed into `FakeSGLang`.

SIGQUIT from a child: the launch-phase handler (`srt/entrypoints/engine.py:
launch_phase_sigquit_handler`) before the first generate request, the running-phase one
(`tokenizer_manager.py: SignalHandler.running_phase_sigquit_handler`) after it; both kill the
whole tree, the server included. SIGTERM: before the first generate request its default action
(once uvicorn serves, uvicorn's shutdown lines first, then death by the signal all the same);
after it, `TokenizerManager.sigterm_watchdog`: noticed within 5 s, in-flight requests waited for
(counted every 5 s), ShutdownReq to the schedulers (and, on a multi-node rank 0, to every
worker), 15 s for them to release, the rest of the tree killed, exit 0 by itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._logs import (
    LAUNCH_SIGQUIT_LINE,
    RUNNING_SIGQUIT_LINE,
    SIGTERM_LINE,
    UVICORN_SHUTDOWN_LINES,
    drain_line,
    log,
    stragglers_line,
)
from ._schedulers import Schedulers, SubprocessWatchdog, kill_process_tree
from ._timings import Timings

if TYPE_CHECKING:
    from ._engine import Engine
    from ._ranks import Rendezvous


class SignalsAndDrain:
    """SIGQUIT, SIGTERM and the drain; the attributes are `FakeSGLang`'s."""

    faults: set[str]
    timings: Timings
    running_phase: threading.Event
    gracefully_exit: threading.Event
    schedulers: Schedulers | None
    watchdog: SubprocessWatchdog | None
    http: ThreadingHTTPServer | None
    engine: Engine
    rendezvous: Rendezvous | None

    def die(self, code: int) -> None:
        sys.stderr.flush()
        os._exit(code)

    def install_signals(self) -> None:
        signal.signal(signal.SIGQUIT, self.on_sigquit)
        if "ignore-sigterm" in self.faults:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, self.on_sigterm)

    def self_sigquit(self) -> None:
        os.kill(os.getpid(), signal.SIGQUIT)

    def on_sigquit(self, signum: int, frame: Any) -> None:
        """A child failed: launch-phase or running-phase handler, then the tree dies by SIGKILL."""
        if self.running_phase.is_set():
            log(RUNNING_SIGQUIT_LINE)
            if self.watchdog is not None:
                self.watchdog.stop()
        else:
            log(LAUNCH_SIGQUIT_LINE)
        kill_process_tree(os.getpid())

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if not self.running_phase.is_set():
            # No drain installed yet. Once uvicorn serves, its own handler has SIGTERM: it shuts
            # down (its four lines, as the real engine prints them with --skip-server-warmup),
            # then raises the signal again, so the process still dies by it (-15); before
            # uvicorn, SIGTERM keeps its default action.
            if self.http is not None:
                for line in UVICORN_SHUTDOWN_LINES:
                    log(line.format(pid=os.getpid()))
            if self.schedulers is not None:
                self.schedulers.kill()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log(SIGTERM_LINE)
        self.gracefully_exit.set()

    def sigterm_watchdog(self) -> None:
        """tokenizer_manager.py:TokenizerManager.sigterm_watchdog, with SGLang's timings."""
        t = self.timings
        while not self.gracefully_exit.is_set():
            time.sleep(t.sigterm_notice)
        while True:
            rids = self.engine.rids()
            log(drain_line(rids))
            if not rids:
                break
            time.sleep(t.drain_poll)
        if self.watchdog is not None:
            self.watchdog.stop()  # child exits are expected now, not crashes
        assert self.schedulers is not None
        self.schedulers.shutdown()
        if self.rendezvous is not None:
            self.rendezvous.shutdown_all()
        deadline = time.monotonic() + t.scheduler_exit
        while time.monotonic() < deadline and self.schedulers.alive():
            time.sleep(0.1)
        stragglers = self.schedulers.alive()
        if stragglers:
            log(stragglers_line(t.scheduler_exit, stragglers))
        kill_process_tree(os.getpid(), include_parent=False)
        for line in UVICORN_SHUTDOWN_LINES:
            log(line.format(pid=os.getpid()))
        if self.http is not None:
            self.http.shutdown()
        kill_process_tree(os.getpid(), include_parent=False)  # launch_server.py's `finally`
        self.die(0)
