"""A fake SGLang 0.5.23 server: a real process that starts, answers, logs, spawns and dies like one.

Run it as `python -m supervisor.testing.fake_sglang [SGLang flags] [--fake-* flags]`. It accepts the
SGLang flags that matter here (`--port`, `--api-key`, `--tp-size`, `--reasoning-parser`, ...) and
ignores the rest, so a profile's real SGLang argv runs on it unchanged. What it imitates, from
`shared/reference/sglang-0.5.23-behaviour.md`:

- the port stays closed while "weights load" (connection refused), then `/health` answers 503 with
  an empty body during SGLang's own warmup, then 200 after `/health` takes `--fake-health-time`;
- SGLang's log format on stderr, the `server_args=` line with the API key in clear, the phase
  lines and the ready line `The server is fired up and ready to roll!`;
- scheduler child processes (one per TP rank) in the same process group, which set
  PR_SET_PDEATHSIG=SIGKILL and so die with their parent;
- SIGTERM to the main pid: before the first request, plain death by SIGTERM; after it, a drain
  that logs like SGLang's, then exit 0;
- the OpenAI API: chat completions with `reasoning_content`, `tool_calls`, JSON mode and SSE
  streaming ending in `[DONE]`, legacy completions, `/v1/models`, `/generate`, `/metrics`, and the
  API key rules (401 `{"error": "Unauthorized"}`, `/health*`, `/ready`, `/metrics` exempt).

Faults (`--fake-fault NAME`, repeatable): crash-loading, crash-after-serving, hang, health-503,
ignore-sigterm, slow-warmup, warmup-error, log-flood, escape (a scheduler that leaves the session
and survives its parent). Stdlib only, so it runs anywhere Python does, GPU machines included.

Modules, one concern each: `_cli` (flags), `_server` (lifecycle, schedulers, signals, drain),
`_http` (routing, API key), `_openai` (answers, SSE), `_faults` (fault texts), `_logs` (the log
format), `_compile` (the DeepGEMM compile script).
"""

from __future__ import annotations

from ._cli import build_parser, main
from ._faults import FAULTS
from ._logs import READY_LINE

__all__ = ["FAULTS", "READY_LINE", "build_parser", "main"]
