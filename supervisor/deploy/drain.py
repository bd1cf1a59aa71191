"""The drain budget: how long a stop may take, derived from SGLang's own shutdown timings.

Split from `settings` (which parses deploy-time environment variables) because this is
arithmetic about SGLang, not configuration: the platform's exit grace and the supervisor's stop
timeout both follow from when SGLang notices SIGTERM, how often it counts in-flight requests, how
long its schedulers get to release GPU memory, and how long we allow for SIGKILL and the reap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from supervisor import ConfigError
from supervisor.engines import sglang_stop

__all__ = [
    "DEFAULT_DRAIN_IN_FLIGHT_S",
    "DRAIN_POLL_S",
    "MAX_EXIT_GRACE_S",
    "REAP_MARGIN_S",
    "SCHEDULER_RELEASE_S",
    "SIGTERM_NOTICE_S",
    "WEB_SERVER_EXIT_GRACE_S",
    "DrainBudget",
]

# ------------------------------------------------------------------ drain budget (SGLang 0.5.23)
# SGLang's own timings come from the engine edge (`supervisor.engines.sglang_stop`, with sources):
#: `sigterm_watchdog` sleeps 5 s between looks at the SIGTERM flag (tokenizer_manager.py).
SIGTERM_NOTICE_S: Final = int(sglang_stop.SIGTERM_NOTICE_S)
#: While requests are in flight it counts them every 5 s from its first look, so the count that
#: finds none comes at most 5 s after the last one ends: within the notice's 5 s, not on top.
DRAIN_POLL_S: Final = int(sglang_stop.DRAIN_POLL_S)
#: `_SCHEDULER_EXIT_TIMEOUT_SECS`: after `ShutdownReq`, schedulers get 15 s to release GPU memory.
SCHEDULER_RELEASE_S: Final = int(sglang_stop.SCHEDULER_EXIT_S)
#: Our SIGKILL to whatever is left of the tree (StopPolicy.kill_timeout, 5 s) and the reap, with
#: 5 s to spare before the platform kills the container.
REAP_MARGIN_S: Final = 10
#: The longest in-flight request a server-entry drain waits for. A GLM-5.1 reasoning answer of
#: ~15k tokens at ~50 tokens/s per stream under a full batch (48 running requests, EAGLE on
#: 8xB200) streams for about 5 minutes; longer answers are cut by the SIGKILL. Raising it costs
#: nothing when a container stops idle (SGLang exits as soon as nothing is in flight), only the
#: GPUs held while a long answer finishes during a redeploy or `modal app stop`.
DEFAULT_DRAIN_IN_FLIGHT_S: Final = 300
#: `@modal.exit` on an `@app.cls` container gets a fixed 30 s grace
#: (https://modal.com/docs/guide/lifecycle-functions); `@app.server` takes up to 3600 s.
WEB_SERVER_EXIT_GRACE_S: Final = 30
MAX_EXIT_GRACE_S: Final = 3600


@dataclass(frozen=True)
class DrainBudget:
    """How long a stop may take: SGLang's own derivation (`sglang_stop.stop_budget`, the one
    place it is written) with no exit margin, plus the platform's SIGKILL and reap.

    stop timeout (SIGTERM -> SIGKILL, the supervisor's) = SIGTERM notice 5 + in-flight
                 + scheduler release 15   (the count that finds no request left comes at most
                 5 s after the last one ends, and the notice's 5 s covers that)
    exit grace = stop timeout + SIGKILL/reap 10

    With no in-flight budget this is 30 s: exactly the fixed grace of an `@app.cls` container,
    which is why the web_server entry uses `DrainBudget.derive(0)`.
    """

    in_flight_s: int
    exit_grace_s: int
    stop_timeout_s: int

    @classmethod
    def derive(cls, in_flight_s: int) -> DrainBudget:
        if in_flight_s < 0:
            raise ConfigError(f"in-flight drain budget must be >= 0 s, got {in_flight_s}")
        stop = int(sglang_stop.stop_budget(in_flight_s, margin_s=0.0).stop_timeout_s)
        return cls(in_flight_s=in_flight_s, exit_grace_s=stop + REAP_MARGIN_S, stop_timeout_s=stop)

    @classmethod
    def longest_in_flight(cls, max_exit_grace_s: int = MAX_EXIT_GRACE_S) -> int:
        """The largest in-flight budget whose exit grace a platform capped at this accepts."""
        return max_exit_grace_s - cls.derive(0).exit_grace_s

    def describe(self) -> str:
        return (
            f"exit grace {self.exit_grace_s} s = SIGTERM notice {SIGTERM_NOTICE_S}"
            f" + in-flight {self.in_flight_s} + scheduler release {SCHEDULER_RELEASE_S}"
            f" + SIGKILL/reap {REAP_MARGIN_S}; supervisor stop timeout {self.stop_timeout_s} s"
        )
