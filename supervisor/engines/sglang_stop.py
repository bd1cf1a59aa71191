"""How long stopping SGLang 0.5.23 takes, from its own shutdown timings: the stop budget.

A module of its own because this is arithmetic about SGLang's drain, not its launch: the
supervisor's stop timeout (`sglang_traits`) and the deployment's drain budget
(`supervisor.deploy.drain`) both start from these timings.

Drain semantics the core relies on: SIGTERM to the main pid only (its children have no SIGTERM
handler, and signalling the group kills schedulers mid-drain). SGLang then notices within 5 s,
waits for in-flight requests with no time limit, gives its schedulers 15 s to release GPU memory
and exits by itself; `stop_budget` turns those timings into the supervisor's stop timeout and
the platform's exit grace.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor import ConfigError, StopPolicy

__all__ = [
    "DRAIN_POLL_S",
    "EXIT_MARGIN_S",
    "REAP_MARGIN_S",
    "SCHEDULER_EXIT_S",
    "SIGTERM_NOTICE_S",
    "StopBudget",
    "stop_budget",
]

#: SGLang 0.5.23's drain, srt/managers/tokenizer_manager.py (TokenizerManager.sigterm_watchdog,
#: installed with the first generate request, which SGLang's own warmup sends before the ready
#: line): it looks at the SIGTERM flag every 5 s, then counts in-flight requests every 5 s until
#: none is left (no time limit), then sends ShutdownReq and gives the schedulers
#: `_SCHEDULER_EXIT_TIMEOUT_SECS` (15 s) to release GPU memory before SIGKILLing stragglers.
SIGTERM_NOTICE_S = 5.0
DRAIN_POLL_S = 5.0
SCHEDULER_EXIT_S = 15.0
#: After the schedulers: kill_process_tree of what is left (reaped, 60 s bound but near instant
#: once the schedulers are gone), uvicorn's own shutdown, the interpreter's exit.
EXIT_MARGIN_S = 5.0
#: After the supervisor's SIGKILL: the kill bound (`StopPolicy.kill_timeout`) is spent only when a
#: process resists SIGKILL; then reaping, the crash report's write and our own exit.
REAP_MARGIN_S = 2.0


@dataclass(frozen=True)
class StopBudget:
    """How long a graceful stop may take: the supervisor's stop timeout and the platform's grace."""

    stop_timeout_s: float  # SIGTERM to the main pid .. SIGKILL to the tree
    kill_timeout_s: float  # SIGKILL .. giving up on survivors
    platform_grace_s: float  # the least exit grace a platform must give the container

    def stop_policy(self) -> StopPolicy:
        return StopPolicy(stop_timeout=self.stop_timeout_s, kill_timeout=self.kill_timeout_s)


def stop_budget(
    longest_request_s: float = 0.0,
    *,
    kill_timeout_s: float = 5.0,
    margin_s: float = EXIT_MARGIN_S,
) -> StopBudget:
    """The stop timeout that lets SGLang finish its own drain, from its own timings.

    `longest_request_s` is the longest in-flight request the deployment is willing to finish
    (0: finish only what ends by the first count). The derivation, worst case:

    - SIGTERM is noticed at most `SIGTERM_NOTICE_S` (5 s) after it arrives;
    - in-flight requests are counted then and every `DRAIN_POLL_S` (5 s), so the count that finds
      none comes at most 5 s after the last request ends, and never later than
      `longest_request_s + 5` s after SIGTERM (the first count is within 5 s);
    - the schedulers get `SCHEDULER_EXIT_S` (15 s) to release GPU memory;
    - `margin_s` covers the reap of the rest, uvicorn's shutdown and the exit.

    stop timeout = 5 + longest_request_s + 15 + margin_s (25 s with the defaults, which is also
    `StopPolicy`'s default); platform grace = stop timeout + kill_timeout_s + `REAP_MARGIN_S`
    (32 s with the defaults: more than a 30 s platform grace, so a deployment either asks its
    platform for that grace or accepts that the scheduler release may be cut short by SIGKILL).
    """
    if longest_request_s < 0 or kill_timeout_s <= 0 or margin_s < 0:
        raise ConfigError("stop budget: durations must be >= 0 (the kill timeout > 0)")
    stop = SIGTERM_NOTICE_S + longest_request_s + SCHEDULER_EXIT_S + margin_s
    return StopBudget(
        stop_timeout_s=stop,
        kill_timeout_s=kill_timeout_s,
        platform_grace_s=stop + kill_timeout_s + REAP_MARGIN_S,
    )
