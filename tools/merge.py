"""Merge a LoRA adapter into full weights and prove the result loads and answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.atomic import publish_dir


def merge_adapter(base_path: str | Path, adapter_path: str | Path, out_dir: str | Path) -> Path:
    """`merge_and_unload` in float32, saved as plain safetensors with the tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter_path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        merged.generation_config.save_pretrained(tmp)
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# Runs in a fresh interpreter with nothing but transformers: what a user of the folder has.
_CHECK = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path, messages = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                              return_dict=True)
out = model.generate(**enc, max_new_tokens=32, do_sample=False)
new = out[0, enc["input_ids"].shape[1]:]
print(json.dumps({"answer": tok.decode(new, skip_special_tokens=True).strip(),
                  "new_tokens": int(new.numel())}))
"""


def check_loads_and_answers(
    model_dir: str | Path, messages: list[dict], timeout_s: int = 300
) -> dict:
    """Load `model_dir` with stock transformers in a new process and answer one prompt."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK, str(model_dir), json.dumps(messages)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "answer": "", "error": f"loading or generating failed: {last[0]}"}
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = bool(said["answer"])
    return {
        "ok": ok,
        "answer": said["answer"],
        "new_tokens": said["new_tokens"],
        "error": "" if ok else "the model loaded but gave an empty answer",
    }
