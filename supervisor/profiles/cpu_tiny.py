"""The real SGLang 0.5.23 on a CPU with a tiny random GPT-2: watch the supervisor own a real engine.

No GPU, no weights to download: `supervisor/testing/tiny_model.py` makes the model in seconds
(`serve` builds it when the directory is empty), and the real server is ready about 20-40 s
after launch on two cores (imports, mostly). The tree holds about 3.4 GB of RSS (main process,
scheduler, detokenizer). It needs SGLang's CPU environment: `.venv-sglang` as `.ci/run` builds it
from requirements/sglang-0.5.23-engine.txt (about 6 GB), or `SGLANG_PYTHON`.

Every flag is one the CPU path needs, read from 0.5.23 and tried on the running engine:
- `--device cpu`, `--attention-backend torch_native`, `--sampling-backend pytorch`: no CUDA
  kernels (leave `SGLANG_USE_CPU_ENGINE` unset: it needs a CPU build of `sgl_kernel`);
- `--grammar-backend xgrammar`: xgrammar runs on the CPU, so JSON mode is real;
- `--sleep-on-idle` (srt/arg_groups/fields/device.py; `IdleSleeper` in the scheduler): without
  it the idle scheduler spins a whole core, which on a two-core machine halves everything else;
- `--max-total-tokens 4096`: the KV pool fits the tiny context (1024) many times over.

The warmups are greedy (`temperature` 0) and ignore EOS, so the random model's answers are the
same every time and never empty. Not snapshot-capable: `/release_memory_occupation` on the CPU
path calls CUDA and kills the server.
"""

from __future__ import annotations

import os

from supervisor import WarmupPayload
from supervisor.engines.sglang import SGLangLaunch
from supervisor.engines.sglang_check import find_sglang_python
from supervisor.testing import tiny_model

from . import Profile

MODEL = "cpu-tiny"
#: Where `serve --profile cpu-tiny` keeps (and, when empty, makes) the tiny model.
MODEL_DIR = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
    "sglang-supervisor",
    "tiny-gpt2",
)
CHAT = "/v1/chat/completions"
_GREEDY = {"temperature": 0, "ignore_eos": True}


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


WARMUPS = (
    WarmupPayload(
        "chat",
        CHAT,
        {
            "model": MODEL,
            # greedy: this prompt's answer has visible text (others are newlines only)
            "messages": _messages("What's the weather in Tokyo?"),
            "max_tokens": 16,
            **_GREEDY,
        },
        expect=("content",),
        timeout=120,
    ),
    WarmupPayload(
        "stream",
        CHAT,
        {
            "model": MODEL,
            "messages": _messages("Hello, world!"),
            "max_tokens": 8,
            "stream": True,
            **_GREEDY,
        },
        expect=("stream",),
        timeout=120,
    ),
    WarmupPayload(
        "completions",
        "/v1/completions",
        {"model": MODEL, "prompt": "The supervisor", "max_tokens": 8, **_GREEDY},
        expect=("text",),
        timeout=120,
    ),
    WarmupPayload(
        "json-mode",
        CHAT,
        {
            "model": MODEL,
            "messages": _messages("Answer in JSON."),
            "max_tokens": 32,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        },
        expect=("json",),
        timeout=120,
    ),
)

LAUNCH = SGLangLaunch(
    model_path=MODEL_DIR,
    served_model_name=MODEL,
    tp_size=1,
    host="127.0.0.1",
    port=8000,
    attention_backend="torch_native",
    max_total_tokens=4096,
    enable_metrics=True,
    extra_args=(
        "--device",
        "cpu",
        "--sampling-backend",
        "pytorch",
        "--grammar-backend",
        "xgrammar",
        "--sleep-on-idle",
    ),
    warmup_timeout_s=600,
    python=find_sglang_python() or "python3",
)

PROFILE = Profile(
    name=MODEL,
    description="real SGLang 0.5.23 on the CPU with a tiny random GPT-2 (no GPU, no download)",
    hf_repo="",
    launch=LAUNCH,
    warmups=WARMUPS,
    gpu="CPU",
    gpu_count=1,
    app_name="cpu-tiny-sglang",
    weights_volume="cpu-tiny-model",
    dg_cache_volume="cpu-tiny-cache",
    api_key_secret="cpu-tiny-api-key",
    startup_timeout_s=600.0,
    uses_deepgemm=False,
    weights_gb=0,
    notes=("a local rehearsal of the real engine; not for Modal (no GPU)",),
    snapshot_capable=False,
    snapshot_blocker="/release_memory_occupation calls CUDA: on the CPU path it kills the server",
    model_builder=tiny_model.__file__,
)
