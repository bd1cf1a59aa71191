"""SGLang 0.5.23 as the core sees it: the `EngineTraits` that `run` and `serve` hand the core.

One value gathers what the engine room knows and the core may use (crash causes, the ready
line, the startup phases, the drain budget) and a recogniser for SGLang's command lines, so
`python -m supervisor run -- python -m sglang.launch_server ...` gets all of it without a flag.
The built-in fake (`supervisor.testing.fake_sglang`) stands in for SGLang and is recognised too:
the differential tests run the same scenarios through `run` on both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from supervisor.engines.sglang_causes import CAUSE_HINTS, classify_crash
from supervisor.engines.sglang_cluster import SGLANG_WORKER_RULES
from supervisor.engines.sglang_progress import SGLANG_PROGRESS
from supervisor.engines.sglang_release import PHASE_MARKERS, READY_LINE
from supervisor.engines.sglang_stop import stop_budget
from supervisor.engines.sglang_timings import TIMING_READERS
from supervisor.lowlevel import EngineTraits

__all__ = ["SGLANG", "looks_like_sglang"]

#: `python -m MODULE` values that start an SGLang server (or the fake that imitates one).
_MODULES = frozenset({"sglang.launch_server", "supervisor.testing.fake_sglang"})


def looks_like_sglang(argv: Sequence[str]) -> bool:
    """Whether `argv` starts SGLang: `... -m sglang.launch_server ...` or `sglang serve ...`.

    Wrappers in front (`env`, `timeout`, `taskset`, `nice`) are looked through: the test is on
    the words, not on argv[0].
    """
    words = list(argv)
    for i, word in enumerate(words):
        module = word[2:] if word.startswith("-m") and len(word) > 2 else None
        if word == "-m" and i + 1 < len(words):
            module = words[i + 1]
        if module in _MODULES:
            return True
        if os.path.basename(word) == "sglang" and i + 1 < len(words) and words[i + 1] == "serve":
            return True
    return False


SGLANG = EngineTraits(
    name="sglang",
    classify=classify_crash,
    hints=CAUSE_HINTS,
    ready_line=READY_LINE,
    phase_markers=PHASE_MARKERS,
    timing_readers=TIMING_READERS,
    progress=SGLANG_PROGRESS,
    stop_timeout=stop_budget().stop_timeout_s,
    worker=SGLANG_WORKER_RULES,
    recognizes=looks_like_sglang,
)
