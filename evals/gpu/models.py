"""Random-weight models built from a config: the device machine reaches no hub, and
throughput and memory do not depend on the weights' values. Each is a plain safetensors
folder with SmolLM2's tokenizer and chat template, so every ftagent path (trainer,
estimator, evaluator, server) loads it as it would a real checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

# Llama-architecture shapes (SmolLM2 is a Llama). The ~1B one is Llama-3.2-1B's body
# with SmolLM2's 49k vocabulary (the tokenizer that travels): ~1.07B parameters.
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=8192, rope_theta=100000.0),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8,
                     max_position_embeddings=8192, rope_theta=500000.0),
}
TINY = "tiny"  # tools.models.build_tiny_llama: the test suite's 2-layer model


def build(name: str, tokenizer_dir: Path, out: Path, device: str) -> dict:
    """Write model `name` to `out`; return its facts (parameters, build time)."""
    started = time.monotonic()
    if name == TINY:
        from ftagent.tools.models import build_tiny_llama

        build_tiny_llama(tokenizer_dir, out)
    else:
        _build_shape(SHAPES[name], tokenizer_dir, out, device)
    import json

    from ftagent.tools.plan.estimate import shape_from_config

    shape = shape_from_config(json.loads((out / "config.json").read_text()))
    return {"path": str(out), "params": shape.params, "layers": shape.num_layers,
            "hidden": shape.hidden_size, "vocab": shape.vocab_size,
            "build_s": round(time.monotonic() - started, 1)}


def _build_shape(shape: dict, tokenizer_dir: Path, out: Path, device: str) -> None:
    """Initialised on the device (seconds on a GPU, not a minute on its CPU) in bf16,
    the dtype every run here loads; saved with the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **shape)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
