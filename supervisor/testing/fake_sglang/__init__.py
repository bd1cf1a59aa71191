"""A fake SGLang 0.5.23 server: a real process that starts, answers, logs, spawns and dies like one.

Run it as `python -m supervisor.testing.fake_sglang [SGLang flags] [--fake-* flags]`. It accepts the
SGLang flags that matter here (`--port`, `--api-key`, `--tp-size`, `--reasoning-parser`, ...) and
ignores the rest, so a profile's real SGLang argv runs on it unchanged. What it imitates, each
with the 0.5.23 source it comes from and the test that checks it, is listed in docs/FIDELITY.md:

- the port stays closed while "weights load" (connection refused), then `/health` answers 503 with
  an empty body during SGLang's own warmup, whose `/generate` to itself is the first generate
  request; `/health` then runs a one-token generation of about 1 s;
- SGLang's log format on stderr, `server_args={...}` (a dict, the API key in clear), the phase
  lines and the ready line `The server is fired up and ready to roll!`;
- scheduler processes (one per TP rank) in the same process group, which set
  PR_SET_PDEATHSIG=SIGKILL, and the subprocess watchdog that SIGQUITs the server when one dies;
- SIGTERM: before the first generate request, death by the signal; after it (so always once
  ready), SGLang's drain with SGLang's timings: noticed within 5 s, in-flight requests finished
  (counted every 5 s), 15 s for the schedulers to release their memory, exit 0 by itself.
  `--fake-time-scale 0.1` shrinks these timings tenfold for fast tests;
- the OpenAI API: chat completions with `reasoning_content`, `tool_calls`, JSON mode and SSE
  streaming ending in `[DONE]`, legacy completions, `/v1/models`, `/generate`, and the API key
  rules (401 `{"error": "Unauthorized"}`, `/health*`, `/ready`, `/metrics` exempt; the control
  endpoints want `--admin-api-key` when one is set);
- tokens made one at a time (`--fake-token-time S` each, streamed as made; `ignore_eos` gives
  exactly `max_tokens`), and with `--enable-metrics` SGLang's `/metrics`: scheduler gauges,
  `sglang:realtime_tokens_total{mode}`, the per-rank heartbeat counters, the tokenizer counters
  and `sglang:http_requests_active` (docs/PROGRESS.md);
- `/pause_generation`, `/continue_generation`, `/release_memory_occupation`,
  `/resume_memory_occupation` with SGLang's bodies, answers and deaths (docs/SNAPSHOTS.md);
- multi-node ranks (`--nnodes`, `--node-rank`, `--dist-init-addr`): rank 0 waits for every
  worker and hangs silently when one is lost; a worker serves only the dummy health server,
  ignores SIGTERM and dies with rank 0 (docs/CLUSTER.md);
- `--fake-mode compile`: `python -m sglang.compile_deep_gemm`, spawn-mode server child and
  Python's resource tracker included.

Faults (`--fake-fault NAME`, repeatable, described in `_faults`): crash-loading, sigkill-loading,
crash-after-serving, hang, health-503, ignore-sigterm, slow-warmup, warmup-error, log-flood,
escape, stall, resume-fails, unhealthy-after-resume, garbage-after-resume. Stdlib only, so it
runs anywhere Python does, GPU machines included.

Modules, one concern each: `_cli` (flags), `_server` (lifecycle), `_signals` (signals, drain),
`_schedulers` (scheduler processes, subprocess watchdog, tree kill), `_engine` (requests, tokens,
pause, stall), `_metrics` (`/metrics`), `_memory` (release, resume, pause), `_ranks` (multi-node),
`_http` (routing, API key, health), `_openai` (answers, SSE), `_generate` (token pacing and
`/generate`), `_faults` (fault texts), `_logs` (SGLang's lines), `_timings` (SGLang's timings and
the time scale), `_model` (the served architecture), `_compile` (the compile script).
"""

from __future__ import annotations

from ._cli import build_parser, main
from ._faults import FAULTS
from ._logs import READY_LINE

__all__ = ["FAULTS", "READY_LINE", "build_parser", "main"]
