"""GPU memory release and resume, and pausing generation: SGLang 0.5.23's four control endpoints.

`/release_memory_occupation`, `/resume_memory_occupation` (GET or POST), `/pause_generation`,
`/continue_generation` (POST), all `ADMIN_OPTIONAL` (`srt/entrypoints/http_server.py`), with a
required JSON body (FastAPI's 422 without one). What each does, from the source
(docs/SNAPSHOTS.md section 3):

- release (`scheduler_components/weight_updater.py: release_memory_occupation`): asserts the
  scheduler is idle, or it dies ("Scheduler hit an exception", SIGQUIT, the tree is killed, the
  request never answered); adds the tags (none or `[]`: `kv_cache`, `weights`, `cuda_graph`) to
  `offload_tags`; with `--enable-memory-saver` pauses each region, and pausing one already
  paused is torch_memory_saver's `exit(1)` in the scheduler (the subprocess watchdog then ends
  the tree); answers 200 `null`;
- resume: removes each tag from `offload_tags` (a tag not released: `KeyError`, the scheduler
  dies, with or without the memory saver); resumed weights without `--enable-weights-cpu-backup`
  are garbage (generations answer 200 with junk); answers 200 `null`;
- without `--enable-memory-saver` the adapter is a no-op: 200, nothing freed, generation works;
- with it, a generation on released memory (not paused), `/health`'s included, is an illegal
  memory access in the scheduler: the tree dies, the request gets no answer;
- pause: 200 `{"message": "Generation paused successfully.", "status": "ok"}` (`_engine.pause`);
  continue: 200 `{"message": "Generation continued successfully.", "status": "ok"}`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._engine import Engine, block_forever
from ._faults import (
    ILLEGAL_ACCESS_LINES,
    RELEASE_NOT_IDLE_LINES,
    cannot_pause_line,
    resume_key_error_lines,
)

if TYPE_CHECKING:
    from ._generate import Responder

# srt/constants.py: GPU_MEMORY_ALL_TYPES, in this order
ALL_TAGS = ("kv_cache", "weights", "cuda_graph")
PAUSE_MODES = ("abort", "retract", "in_place")
PAUSED = {"message": "Generation paused successfully.", "status": "ok"}
CONTINUED = {"message": "Generation continued successfully.", "status": "ok"}
RESUME_FAILED = {"error": {"message": "CUDA error: out of memory"}}
CONTROL_PATHS = (
    "/release_memory_occupation",
    "/resume_memory_occupation",
    "/pause_generation",
    "/continue_generation",
)
GET_ALLOWED = CONTROL_PATHS[:2]


def missing_body() -> dict[str, Any]:
    """FastAPI's answer when a required `Body()` is absent (status 422)."""
    return {
        "detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    }


def validate(path: str, raw: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(body, None), or (None, FastAPI's 422 detail) for the request body of a control path."""

    def error(kind: str, loc: list[Any], msg: str, value: Any, **ctx: str) -> dict[str, Any]:
        item = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}
        return {"detail": [{**item, "ctx": ctx} if ctx else item]}

    if not raw.strip():
        return None, missing_body()
    try:
        body = json.loads(raw)
    except ValueError as e:
        return None, error("json_invalid", [0], "JSON decode error", {}, error=str(e))
    if body is None:
        return None, missing_body()
    if not isinstance(body, dict):
        return None, error("dict_type", [], "Input should be a valid dictionary", body)
    if path in GET_ALLOWED and body.get("tags") is not None:
        tags = body["tags"]
        if not isinstance(tags, list):
            return None, error("list_type", ["tags"], "Input should be a valid list", tags)
        for i, tag in enumerate(tags):
            if not isinstance(tag, str):
                return None, error(
                    "string_type", ["tags", i], "Input should be a valid string", tag
                )
    if path == "/pause_generation" and body.get("mode", "abort") not in PAUSE_MODES:
        msg = "Input should be 'abort', 'retract' or 'in_place'"
        return None, error("literal_error", ["mode"], msg, body["mode"])
    return body, None


class Memory:
    """`offload_tags`, the memory saver's paused regions, and what a resume left behind."""

    def __init__(
        self,
        engine: Engine,
        *,
        memory_saver: bool,
        cpu_backup: bool,
        faults: set[str],
        release_time: float,
        resume_time: float,
        pause_poll: float,
        crash: Callable[[Sequence[str]], None],
        scheduler_exit: Callable[[int, str], None],
    ) -> None:
        self.engine = engine
        self.memory_saver = memory_saver
        self.cpu_backup = cpu_backup
        self.faults = faults
        self.release_time = release_time
        self.resume_time = resume_time
        self.pause_poll = pause_poll
        self.crash = crash
        self.scheduler_exit = scheduler_exit
        self.lock = threading.Lock()  # the scheduler handles one control request at a time
        self.offload_tags: set[str] = set()
        self.paused_regions: set[str] = set()
        self.garbage = False  # generations answer junk
        self.unhealthy = False  # /health 503, generations 500
        engine.illegal_access = self.illegal_access

    def illegal_access(self) -> bool:
        """A forward pass on unmapped memory: the scheduler dies (True: the caller must block)."""
        if not (self.memory_saver and self.paused_regions):
            return False
        self.crash(ILLEGAL_ACCESS_LINES)
        return True

    def release(self, tags: list[str]) -> None:
        """`release_memory_occupation`; never returns when the scheduler dies of it."""
        if self.engine.stalled:
            block_forever()
        if not self.engine.idle():
            self.crash(RELEASE_NOT_IDLE_LINES)
            block_forever()
        tags = tags or list(ALL_TAGS)
        with self.lock:
            self.offload_tags.update(tags)
            for region in ALL_TAGS:  # kv_cache, then weights, then cuda_graph
                if region not in tags or not self.memory_saver:
                    continue
                if region in self.paused_regions:
                    self.scheduler_exit(1, cannot_pause_line(region))
                    block_forever()
                self.paused_regions.add(region)
            time.sleep(self.release_time)

    def resume(self, tags: list[str]) -> bool:
        """`resume_memory_occupation`: False when `resume-fails` makes it fail (nothing resumed)."""
        if self.engine.stalled:
            block_forever()
        tags = tags or list(ALL_TAGS)
        with self.lock:
            time.sleep(self.resume_time)
            if "resume-fails" in self.faults:
                return False
            for tag in tags:
                if tag not in self.offload_tags:
                    self.crash(resume_key_error_lines(tag))
                    block_forever()
                self.offload_tags.remove(tag)
            if "weights" in tags and "weights" in self.paused_regions and not self.cpu_backup:
                self.garbage = True  # new physical memory, old contents gone
            self.paused_regions -= set(tags)
            self.garbage |= "garbage-after-resume" in self.faults
            self.unhealthy |= "unhealthy-after-resume" in self.faults
        return True


def control(h: Responder, path: str, raw: bytes) -> None:
    body, problem = validate(path, raw)
    if problem is not None:
        h.send_json(422, problem)
        return
    assert body is not None
    if path == "/pause_generation":
        h.engine.pause(body.get("mode", "abort"), h.memory.pause_poll)
        h.send_json(200, PAUSED)
    elif path == "/continue_generation":
        h.engine.resume_generation()
        h.send_json(200, CONTINUED)
    elif path == "/release_memory_occupation":
        h.memory.release(list(body.get("tags") or []))
        h.send_json(200, None)
    elif h.memory.resume(list(body.get("tags") or [])):
        h.send_json(200, None)
    else:  # http_server.py: _create_error_response(e), an exception's default 400
        h.send_json(400, RESUME_FAILED)
