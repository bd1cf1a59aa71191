"""Make a tiny random GPT-2 that the real SGLang 0.5.23 serves on a CPU, with no model hub.

Why GPT-2: on 0.5.23's CPU path, Llama- and Qwen2-style models die in the scheduler importing
`vllm._custom_ops` (`srt/layers/rotary_embedding/base.py`), and `SGLANG_USE_CPU_ENGINE=1` needs a
CPU build of `sgl_kernel` that PyPI does not have; GPT-2 uses learned positions and no rotary
kernel. The model is random (n_embd 64, 2 layers, 4 heads, about 260k parameters, ~1 MB of
safetensors): its answers are noise, which is all a supervisor needs to see a real engine start,
serve, stream, drain and die. The tokenizer is a byte-level BPE trained here on a few sentences
(`tokenizers`), with a ChatML chat template so `/v1/chat/completions` works.

Run it with a Python that has SGLang's dependencies (the project's `.venv-sglang`):

    .venv-sglang/bin/python supervisor/testing/tiny_model.py DIR

It imports nothing of the supervisor, so it runs from its path in any such environment. The
build is deterministic (a fixed seed) and idempotent: a directory that already holds a complete
model is left as it is.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

#: The files a complete model directory holds; the last one is written last, as the marker.
FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")
MARKER = "model.safetensors"

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CORPUS = (
    "The supervisor keeps the server warm so the first customer never waits.",
    "Explain quicksort in one sentence.",
    "What's the weather in Tokyo? It is sunny and warm today.",
    "A dead or hung server must never keep serving errors.",
    "Cold starts cost tens of minutes of eight GPUs.",
    'Hello, world! Numbers 0 1 2 3 4 5 6 7 8 9 and JSON {"a": [1, 2]}.',
)
VOCAB = 512
CONTEXT = 1024


def is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES)


def build(directory: Path) -> Path:
    """Write the model into `directory` (made if missing): built beside it, then moved in."""
    directory = directory.expanduser().resolve()
    if is_complete(directory):
        return directory
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=directory.parent))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.model_max_length = CONTEXT
    fast.save_pretrained(work)
    eos = tok.token_to_id("<|im_end|>")
    bos = tok.token_to_id("<|endoftext|>")
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=CONTEXT,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=bos,
        eos_token_id=eos,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(work, safe_serialization=True)
    # transformers may write a generation_config.json too; keep it, it names the same ids.
    if not is_complete(work):
        missing = [name for name in FILES if not (work / name).is_file()]
        raise SystemExit(f"tiny_model: the build left out {missing}")
    if directory.exists():
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
    os.replace(work, directory)
    return directory


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: tiny_model.py DIR   (writes a tiny random GPT-2 into DIR)", file=sys.stderr)
        return 2
    path = build(Path(argv[0]))
    print(json.dumps({"model_path": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
