"""The fake's engine: requests inside it, tokens made one at a time, and what stops them.

It stands for SGLang's tokenizer manager and scheduler together, as far as a client, the drain
and `/metrics` can tell:

- `requests` is the tokenizer's `rid_to_state`: a generation enters on arrival, before it waits
  out a pause (`tokenizer_manager.py: generate_request` calls `_init_req_state` first), so the
  drain counts it; `running` is the scheduler's batch, which `sglang:num_running_reqs` shows;
- `admit` waits while paused (`is_pause_cond.wait_for(lambda: not self.is_pause)`), then hands
  the request to the scheduler: its prompt is prefilled (`realtime_tokens_total{mode=
  "prefill_compute"}`); `token` makes one token (`--fake-token-time` seconds, then
  `{mode="decode"}` + 1); `finish` books it on the tokenizer side, aborts included;
- `stall` is a scheduler stuck in a forward pass or a collective: from then on nothing is
  admitted, made or finished, and the scheduler and tokenizer series freeze. A caller waits for
  ever, as SGLang's handler does, except that it looks every `SGLANG_REQUEST_STATE_WAIT_TIMEOUT`
  (4 s, time-scaled) whether its client is gone, and then gives up (`Disconnected`), the request
  staying in `rid_to_state` (`tokenizer_manager.py: _stream_one_response`,
  `_release_req_states_on_failure`: a dispatched request waits for the scheduler's answer);
- a pause in `abort` mode marks every running request aborted (it ends early, finish reason
  `abort`); `retract` and `in_place` hold them where they are until `/continue_generation`;
- `last_receive` is `TokenizerManager.last_receive_tstamp`: `/health` passes when any output
  arrived after it started (`http_server.py: health_generate`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn

from ._metrics import Metrics

_NEVER = threading.Event()  # what a stuck scheduler's callers wait on: never set
#: The longest a waiting thread sleeps at once. Python runs signal handlers in the main thread
#: only, and the kernel may hand a process-directed signal (SIGTERM) to any other thread: the
#: main thread then runs the handler only when it next runs Python code. A main thread asleep
#: for an hour ignored a SIGTERM for that long (a CI flake); SGLang's main thread is an asyncio
#: loop, woken by its signal wakeup fd, and answers at once.
SIGNAL_LOOK_S = 0.2


def nap(seconds: float) -> None:
    """`time.sleep` for the main thread: in slices of `SIGNAL_LOOK_S`, so a signal's handler
    runs within one slice whichever thread the kernel handed the signal to."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, SIGNAL_LOOK_S))


def block_forever() -> NoReturn:
    """A request handler stuck on a scheduler that never answers (SGLang awaits with no timeout:
    `communicator.py: FanOutCommunicator.queueing_call`, `_wait_one_response`). The thread is a
    daemon; the process ends by a signal or a tree kill. Also the main thread's idle wait, so it
    wakes often enough to run a signal's handler (`SIGNAL_LOOK_S`)."""
    while True:
        _NEVER.wait(SIGNAL_LOOK_S)


class Aborted(Exception):
    """The request was aborted inside the scheduler (`/pause_generation` in `abort` mode)."""


class Disconnected(Exception):
    """The client left a request stuck on the scheduler: the handler ends, nothing is sent."""


@dataclass
class Generation:
    """One request inside the engine."""

    rid: str
    prompt_tokens: int
    streaming: bool
    health: bool = False
    produced: int = 0
    aborted: bool = False
    closed: bool = False
    gone: Callable[[], bool] | None = None  # is the client gone? (None: never asked)
    dp_rank: int = 0  # the DP rank the controller sent it to (round robin)


class Engine:
    """Requests, tokens, pause and stall; `crash(lines)` makes scheduler rank 0 hit an exception."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        token_time: float,
        gen_time: float,
        state_wait: float,
        crash: Callable[[list[str]], None],
        dp_size: int = 1,
        wedge_rank: int | None = None,
    ) -> None:
        self.metrics = metrics
        #: DP attention: requests go to the ranks in turn (data_parallel_controller.py,
        #: round robin); health checks go to rank 0 here, so that /health stays 200 while one
        #: rank is wedged, as in sglang #32949.
        self.dp_size = dp_size
        self.wedge_rank = wedge_rank  # `dp-rank-stall`: this rank wedges on its first request
        self._next_dp = 0
        self.token_time = token_time
        self.gen_time = gen_time
        self.state_wait = state_wait
        self.crash = crash
        self.cond = threading.Condition()
        self.requests: dict[str, Generation] = {}
        self.running: dict[str, Generation] = {}
        self.stalled = False
        #: The detokenizer stopped (sglang #33858, SIGSTOP on the real one): the scheduler still
        #: finishes every request, its counters advance, but no output reaches the tokenizer,
        #: so no client (and no /health) ever gets an answer.
        self.detokenizer_stopped = False
        self.is_pause = False  # the tokenizer's flag: new generations wait
        self.engine_paused: str | None = None  # the scheduler paused by `retract`/`in_place`
        self.last_receive = 0.0
        self.on_admitted: Callable[[Generation], None] = lambda gen: None
        self.on_finished: Callable[[Generation], None] = lambda gen: None
        # set by the memory side (`_memory.py`): a generation on released memory crashes
        self.illegal_access: Callable[[], bool] = lambda: False

    # ------------------------------------------------------------ state seen from outside
    def rids(self) -> list[str]:
        with self.cond:
            return list(self.requests)

    def busy(self) -> bool:
        with self.cond:
            return bool(self.running) and not self.stalled

    def _report(self) -> None:
        """`log_stats` (called with the lock held): each DP rank's running gauge."""
        throughput = 1.0 / self.token_time if self.token_time else 0.0
        for dp in range(self.dp_size):
            count = sum(1 for gen in self.running.values() if gen.dp_rank == dp)
            self.metrics.running(count, throughput if count else 0.0, dp)

    def _stuck(self, gen: Generation) -> NoReturn:
        """Wait for a scheduler that never answers, looking every `state_wait` for the client."""
        if gen.gone is None:
            block_forever()
        while True:
            _NEVER.wait(self.state_wait)
            if gen.gone():
                raise Disconnected(gen.rid)

    # ------------------------------------------------------------ a generation's life
    def enter(
        self,
        prompt_tokens: int,
        streaming: bool,
        health: bool = False,
        gone: Callable[[], bool] | None = None,
    ) -> Generation:
        """The tokenizer takes the request (`_init_req_state`): the drain counts it from now."""
        prefix = "HEALTH_CHECK_" if health else ""
        gen = Generation(f"{prefix}{uuid.uuid4().hex}", max(1, prompt_tokens), streaming, health)
        gen.gone = gone
        with self.cond:
            if not health and self.dp_size > 1:
                gen.dp_rank, self._next_dp = self._next_dp, (self._next_dp + 1) % self.dp_size
            self.requests[gen.rid] = gen
        return gen

    def admit(self, gen: Generation, pause_timeout: float | None = None) -> None:
        """Wait out a pause, then into the scheduler, whose prefill makes the first output.

        Raises `Aborted` when `pause_timeout` passes while still paused (a cancelled health
        check). Stuck on a stalled engine; crashes the tree on released memory.
        """
        with self.cond:
            if not self.cond.wait_for(lambda: not self.is_pause, pause_timeout):
                raise Aborted("still paused")
            stalled = self.stalled
            if not stalled and gen.dp_rank not in self.metrics.wedged:
                self.running[gen.rid] = gen
                self._report()
            wedge = gen.dp_rank == self.wedge_rank
            if wedge:  # its scheduler hangs in this request's forward: its series stand still
                self.metrics.wedged.add(gen.dp_rank)
        if stalled or wedge:
            self._stuck(gen)
        if self.illegal_access():
            block_forever()  # the tree is being killed
        self.metrics.realtime("prefill_compute", gen.prompt_tokens, gen.dp_rank)
        self.on_admitted(gen)
        if self.detokenizer_stopped:  # the prefill's first output goes nowhere
            self._lost_output(gen)

    def token(self, gen: Generation, count: int = 1) -> None:
        """Make one token: `--fake-token-time` (plus a share of `--fake-gen-time`) seconds."""
        delay = self.token_time + (self.gen_time / count if count else 0.0)
        if delay:
            time.sleep(delay)
        with self.cond:
            self.cond.wait_for(lambda: self.engine_paused is None or gen.aborted or self.stalled)
            stalled, aborted = self.stalled, gen.aborted
            lost = self.detokenizer_stopped
            if not stalled and not aborted:
                gen.produced += 1
                if not lost:
                    self.last_receive = time.monotonic()
        if stalled:
            self._stuck(gen)
        if lost and not aborted:
            self._lost_output(gen)
        if aborted:
            raise Aborted("Aborted")
        if not gen.health:  # a health check's one token comes out of its prefill
            self.metrics.realtime("decode", 1, gen.dp_rank)

    def _lost_output(self, gen: Generation) -> NoReturn:
        """The scheduler ends the request (running 0, counters moved); its output goes nowhere."""
        with self.cond:
            self.running.pop(gen.rid, None)
            self._report()
        if not gen.health:
            self.metrics.finished(gen.prompt_tokens, gen.produced, gen.streaming)
        self._stuck(gen)  # rid_to_state keeps it: the tokenizer waits for output for ever

    def stop_detokenizer(self) -> None:
        with self.cond:
            self.detokenizer_stopped = True

    def finish(self, gen: Generation) -> None:
        """The last output reaches the tokenizer (`collect_metrics`, aborts included); idempotent."""
        if self.detokenizer_stopped and not gen.closed:
            self._lost_output(gen)
        with self.cond:
            stalled = self.stalled
            if not stalled and not gen.closed:
                gen.closed = True
                self.requests.pop(gen.rid, None)
                if self.running.pop(gen.rid, None) is not None:  # its last output arrives
                    self.last_receive = time.monotonic()
                self._report()
                self.cond.notify_all()
        if stalled:
            self._stuck(gen)
        if gen.closed and not gen.health:
            self.metrics.finished(gen.prompt_tokens, gen.produced, gen.streaming)
            self.on_finished(gen)

    def forget(self, gen: Generation) -> None:
        """A request that never reached the scheduler leaves `rid_to_state`."""
        with self.cond:
            if not gen.closed:
                gen.closed = True
                self.requests.pop(gen.rid, None)
                self.running.pop(gen.rid, None)
                self._report()
                self.cond.notify_all()

    # ------------------------------------------------------------ stall, pause
    def stall(self) -> None:
        """The scheduler stops for good: nothing moves, every caller blocks."""
        self.metrics.freeze()
        with self.cond:
            self.stalled = True
            self.cond.notify_all()

    def pause(self, mode: str, poll: float) -> None:
        """`TokenizerManager.pause_generation`: `abort` aborts everything and waits (polling every
        `poll`) until no request holds the model-update lock; the others pause the scheduler."""
        with self.cond:
            self.is_pause = True
            if mode != "abort":
                self.engine_paused = mode
            stalled = self.stalled
        if stalled and mode != "abort":
            block_forever()  # dispatched to a scheduler that never answers
        while mode == "abort":
            with self.cond:
                for gen in self.running.values():
                    gen.aborted = True
                self.cond.notify_all()
                holders = [g for g in self.requests.values() if g.rid in self.running]
                if not holders:
                    return
            time.sleep(poll)

    def resume_generation(self) -> None:
        """`continue_generation`: the flag down, the waiters woken, the scheduler going again."""
        with self.cond:
            stalled = self.stalled
            self.is_pause = False
            self.engine_paused = None
            self.cond.notify_all()
        if stalled:
            block_forever()

    def idle(self) -> bool:
        """`Scheduler.is_fully_idle(ignore_waiting=engine paused)`: nothing in the running batch
        (a `retract` pause moved its requests back to the waiting queue, which is ignored)."""
        with self.cond:
            return not self.running or self.engine_paused == "retract"


def engine_for(
    args: Any,
    model: str,
    local_ranks: list[int],
    faults: Collection[str],
    timings: Any,
    crash: Callable[[list[str]], None],
) -> tuple[Metrics, Engine]:
    """The metrics and the engine a fake server runs, from its flags (DP attention included)."""
    dp_size = args.dp_size if args.enable_dp_attention else 1
    metrics = Metrics(model, local_ranks, stats_rank=args.node_rank == 0, dp_size=dp_size)
    engine = Engine(
        metrics,
        token_time=args.fake_token_time,
        gen_time=args.fake_gen_time,
        state_wait=timings.request_state_wait,
        crash=crash,
        dp_size=dp_size,
        wedge_rank=dp_size - 1 if "dp-rank-stall" in faults else None,
    )
    return metrics, engine
