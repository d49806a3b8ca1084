"""Merge a LoRA adapter into full weights and prove the result loads and answers.

The merged folder is plain Hugging Face layout (safetensors, config, tokenizer with the
training chat template, generation config) in the base model's dtype; nothing in it needs
ftagent to load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ftagent.tools.atomic import publish_dir
from pydantic import BaseModel

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class MergeResult(BaseModel):
    merged: str
    adapter: str  # the adapter merged (or its kept copy)
    base: str
    method: str  # lora | qlora | ... as the training config says; "lora" when unknown
    dtype: str  # dtype of the saved weights (the base's)
    template_from: str  # "adapter" (the training tokenizer) or "base"
    end_of_turn: str | None  # the template's end-of-turn token, also an EOS of generation
    eos_token_ids: list[int]
    note: str = ""


def base_dtype(base_path: str | Path) -> str:
    """The base's dtype from its config.json (`dtype`, or the older `torch_dtype`);
    float32 when it says nothing."""
    cfg = json.loads((Path(base_path) / "config.json").read_text(encoding="utf-8"))
    value = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    if value not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"{base_path}/config.json: dtype {value!r} is not float32, float16 "
                         "or bfloat16; this merge does not handle it")
    return value


def training_method(adapter_path: str | Path) -> str | None:
    """The training method recorded next to an adapter: `config.yaml` in the adapter's or
    its parent folder (the training output or the run folder), else `result.json`."""
    import yaml

    adapter_path = Path(adapter_path)
    for folder in (adapter_path, adapter_path.parent):
        for name in ("config.yaml", "result.json"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = (yaml.safe_load if name.endswith(".yaml") else json.loads)(
                    path.read_text(encoding="utf-8"))
            except (ValueError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and isinstance(data.get("method"), str):
                return data["method"]
    return None


def check_adapter(adapter_path: Path) -> None:
    if not (adapter_path / "adapter_config.json").is_file():
        if (adapter_path / "config.json").is_file():
            raise ValueError(f"{adapter_path} is a full model, not an adapter: nothing to merge")
        raise ValueError(f"{adapter_path} is not a PEFT adapter (no adapter_config.json)")
    cfg = json.loads((adapter_path / "adapter_config.json").read_text(encoding="utf-8"))
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{adapter_path}: a {cfg.get('peft_type')} adapter cannot be merged into "
                         "the weights; serve the base with the adapter instead")


def end_of_turn_token(tokenizer) -> str | None:
    """The token that closes an assistant turn in the tokenizer's chat template."""
    from ftagent.tools.chat_template import UnsupportedTemplate, jinja_to_ollama

    if not isinstance(tokenizer.chat_template, str):  # none, or several named ones
        return None
    try:
        eot = jinja_to_ollama(tokenizer.chat_template, tokenizer.bos_token or "",
                              tokenizer.eos_token or "").end_of_turn
    except UnsupportedTemplate:
        return None
    return eot if eot in tokenizer.get_vocab() else None


def _eos_ids(generation_config, tokenizer, eot: str | None) -> list[int]:
    ids = generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, list | tuple) else [] if ids is None else [ids]
    for extra in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(eot) if eot else None):
        if extra is not None and extra not in ids:
            ids.append(extra)
    return ids


def merge_model(
    base_path: str | Path,
    adapter_path: str | Path,
    out_dir: str | Path,
    *,
    method: str | None = None,
    keep_adapter: str | Path | None = None,
    overwrite: bool = False,
) -> MergeResult:
    """`merge_and_unload` computed in float32, saved in the base's dtype with the training
    tokenizer and chat template; `keep_adapter` copies the adapter there too. A QLoRA
    adapter is merged into the unquantised base (the note says so)."""
    import torch
    from ftagent.tools.evaluate.compare import require_safetensors, require_safetensors_adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path, adapter_path, out_dir = Path(base_path), Path(adapter_path), Path(out_dir)
    check_adapter(adapter_path)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds files; a finished output is never "
                              "overwritten")
    dtype = base_dtype(base_path)
    method = method or training_method(adapter_path) or "lora"
    # Safetensors only: pickled weights (pytorch_model.bin, adapter_model.bin) are refused.
    require_safetensors(base_path)
    require_safetensors_adapter(adapter_path)
    # The delta B@A is added in float32 and rounded to the base's dtype once, at the end.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32,
                                                use_safetensors=True)
    merged = PeftModel.from_pretrained(base, adapter_path,
                                       use_safetensors=True).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    merged.config.dtype = dtype
    has_tokenizer = any((adapter_path / f).is_file() for f in TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(adapter_path if has_tokenizer else base_path)
    eot = end_of_turn_token(tokenizer)
    gen = merged.generation_config
    eos_ids = _eos_ids(gen, tokenizer, eot)
    gen.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0] if eos_ids else None
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else eos_ids[0] if eos_ids else None
    notes = []
    if method == "qlora":
        notes.append(
            "QLoRA: the adapter was trained on the 4-bit quantised base; it was merged into "
            f"the unquantised base weights (loaded in float32, saved in {dtype}), not into 4-bit "
            "weights, so the merged model lacks the base's quantisation error and differs "
            "slightly from the evaluated base+adapter.")
    if not has_tokenizer:
        notes.append(f"{adapter_path} holds no tokenizer: the base's tokenizer and chat template "
                     "were used.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # transformers 5 saves a SentencePiece tokenizer as tokenizer.json only; llama.cpp's
        # converter reads Gemma 2's, Phi-3's and Llama 2's vocabulary from tokenizer.model.
        spm = (adapter_path if has_tokenizer else Path(base_path)) / "tokenizer.model"
        if spm.is_file() and not (tmp / "tokenizer.model").exists():
            shutil.copy2(spm, tmp / "tokenizer.model")
        gen.save_pretrained(tmp)
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    kept = adapter_path
    if keep_adapter is not None and Path(keep_adapter).resolve() != adapter_path.resolve():
        kept = Path(keep_adapter)
        copy = kept.with_name(f".{kept.name}.tmp")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(adapter_path, copy)
        publish_dir(copy, kept)
    return MergeResult(
        merged=str(out_dir), adapter=str(kept), base=str(base_path), method=method, dtype=dtype,
        template_from="adapter" if has_tokenizer else "base", end_of_turn=eot,
        eos_token_ids=eos_ids, note=" ".join(notes),
    )


def merge_adapter(base_path: str | Path, adapter_path: str | Path, out_dir: str | Path) -> Path:
    """The merged folder's path (`merge_model` replacing an earlier merge at `out_dir`)."""
    return Path(merge_model(base_path, adapter_path, out_dir, overwrite=True).merged)


# Runs in a fresh interpreter with nothing but the installed libraries: what a user of the
# folder has. -S skipped site-packages and its .pth files (an editable ftagent install is
# one); the parent's library directories alone are added back (argv[3]), so transformers
# imports and ftagent cannot.
_CHECK = """
import importlib.util, json, sys
sys.path.extend(json.loads(sys.argv[3]))

def importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False

ftagent = [n for n in ("ftagent.tools.deploy.merge", "ftagent.agent.cli") if importable(n)]
from transformers import AutoModelForCausalLM, AutoTokenizer
path, messages = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                              return_dict=True)
out = model.generate(**enc, max_new_tokens=32, do_sample=False)
new = out[0, enc["input_ids"].shape[1]:]
print(json.dumps({"answer": tok.decode(new, skip_special_tokens=True).strip(),
                  "new_tokens": int(new.numel()), "ftagent_modules": ftagent}))
"""


def check_loads_and_answers(
    model_dir: str | Path, messages: list[dict], timeout_s: int = 300
) -> dict:
    """Load `model_dir` with stock transformers in a new, isolated process (-I -S, run from a
    temp dir, no PYTHONPATH: ftagent cannot be imported there) and answer one prompt."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Library folders of this interpreter, less any that holds ftagent's own packages.
    libs = [p for p in sys.path if p and Path(p).is_dir()
            and not (Path(p) / "ftagent" / "__init__.py").exists()]
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _CHECK, str(Path(model_dir).resolve()),
             json.dumps(messages), json.dumps(libs)],
            capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env,
        )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "answer": "", "ftagent_importable": None,
                "error": f"loading or generating failed: {last[0]}"}
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    importable = bool(said["ftagent_modules"])
    error = ("the check process could import ftagent modules "
             f"({', '.join(said['ftagent_modules'])}), so it proves nothing" if importable
             else "" if said["answer"] else "the model loaded but gave an empty answer")
    return {
        "ok": not error,
        "answer": said["answer"],
        "new_tokens": said["new_tokens"],
        "ftagent_importable": importable,
        "error": error,
    }
