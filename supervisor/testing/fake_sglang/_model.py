"""Which model the fake pretends to serve: its architecture, from `--model-path` or the flag.

SGLang reads the architecture from the checkpoint's `config.json`; the fake has no checkpoint,
so it guesses from the model path and served name (`--fake-architecture` overrides). The guess
only needs to be right for the profiles' models; anything else is `FakeForCausalLM`.
"""

from __future__ import annotations

# (substrings of the lower-cased path or served name, architecture, model_type)
KNOWN = (
    (("glm-5", "glm5"), "GlmMoeDsaForCausalLM", "glm_moe_dsa"),
    (("glm-4", "glm4"), "Glm4MoeForCausalLM", "glm4_moe"),
    (("deepseek-r1", "deepseek-v3", "deepseek"), "DeepseekV3ForCausalLM", "deepseek_v3"),
    (("qwen3",), "Qwen3ForCausalLM", "qwen3"),
    (("llama",), "LlamaForCausalLM", "llama"),
)
FALLBACK = ("FakeForCausalLM", "fake")


def architecture(model_path: str, served_name: str | None, override: str | None) -> tuple[str, str]:
    """(architecture, model_type) of the served model."""
    if override:
        return override, next((t for _, a, t in KNOWN if a == override), FALLBACK[1])
    names = f"{model_path} {served_name or ''}".lower()
    for needles, arch, model_type in KNOWN:
        if any(n in names for n in needles):
            return arch, model_type
    return FALLBACK
