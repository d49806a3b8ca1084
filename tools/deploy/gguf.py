"""Export a merged Hugging Face folder to GGUF (llama.cpp, Ollama) with an Ollama Modelfile.

Llama architecture (LlamaForCausalLM, tied or untied embeddings) with a GPT-2-style
byte-level BPE tokenizer; f16 or q8_0 weights (norms stay f32). Tensors are renamed with
gguf's own `TensorNameMap`; Q and K rows are permuted as llama.cpp's converter does
(`LlamaModel.permute`), because llama.cpp applies rotary embeddings to interleaved pairs
where transformers rotates the two halves of each head. `check_gguf` reads the file back
and compares every tensor, un-permuted and de-quantised, with the HF weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ftagent.tools.atomic import publish_dir, write_text
from pydantic import BaseModel

GGUF_NAME = "model.gguf"
QUANTS = ("f16", "q8_0")  # ftagent's writer
CONVERTER_QUANTS = ("f16", "bf16", "q8_0")  # llama.cpp's converter (f32 and ternary too)
# Largest error of a weight after the round trip, relative to the tensor's largest |w|:
# f16 keeps 11 significant bits; q8_0 rounds to 1/127 of its block's max (stored in f16).
REL_TOLERANCE = {"f16": 1e-3, "q8_0": 6e-3, "f32": 0.0, "bf16": 8e-3}
# Pre-tokenizers (tokenizer.json) llama.cpp knows, by the regex it applies.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}"
                 r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}"
                r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


class GGUFCheckFailed(RuntimeError):
    """The written file does not read back as the HF folder it came from."""


class GGUFExport(BaseModel):
    out_dir: str
    gguf: str
    modelfile: str
    chat_template: str | None  # the template file written next to the GGUF
    quant: str
    size_bytes: int
    n_tensors: int
    seconds: float
    tokenizer_pre: str
    check: dict
    notes: list[str] = []
    writer: str = "convert_hf_to_gguf"  # or "ftagent" (the Llama-only fallback)
    architecture: str = ""  # general.architecture in the file


def permute_qk(w, n_head: int):
    """llama.cpp's row order for Q/K (convert_hf_to_gguf `LlamaModel.permute`)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w, n_head: int):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or []
    if archs != ["LlamaForCausalLM"]:
        raise ValueError(f"{model_dir}: architecture {archs} is not supported; this export "
                         "handles LlamaForCausalLM (use llama.cpp's convert_hf_to_gguf.py)")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ValueError(f"{model_dir}: rope scaling {rope.get('rope_type')!r} is not supported")
    return cfg


def _shape(cfg: dict) -> dict:
    heads = cfg["num_attention_heads"]
    return {
        "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"],
        "ffn": cfg["intermediate_size"], "heads": heads,
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "context": cfg["max_position_embeddings"], "vocab": cfg["vocab_size"],
        "eps": cfg.get("rms_norm_eps", 1e-6),
        "theta": (cfg.get("rope_parameters") or {}).get("rope_theta")
        or cfg.get("rope_theta") or 10000.0,
        "tied": bool(cfg.get("tie_word_embeddings", False)),
    }


def hf_tensors(model_dir: Path):
    """(name, float32 numpy array) for every tensor in the folder's safetensors files."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir} holds no .safetensors weights")
    for file in files:
        with safe_open(file, framework="pt") as f:  # "pt": numpy cannot read bfloat16
            for name in f.keys():
                yield name, f.get_tensor(name).float().numpy()


def tokenizer_pre(tok_json: dict, vocab: dict[str, int], clean_spaces: bool) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json, or ValueError."""
    pre = tok_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    types = [p.get("type") for p in parts]
    if types == ["ByteLevel"] and parts[0].get("use_regex", True):
        # GPT-2's regex. llama.cpp's "smollm" is that regex after splitting digits one by one:
        # the same tokens when the vocabulary has no multi-digit token, and it keeps spaces
        # on decoding as transformers does when clean_up_tokenization_spaces is off.
        digits = (t.lstrip("Ġ") for t in vocab)  # Ġ: a leading space, byte-level encoded
        multi_digit = any(len(d) > 1 and d.isdigit() for d in digits)
        return "gpt-2" if multi_digit or clean_spaces else "smollm"
    if types == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if types == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex == _LLAMA3_SPLIT:
            return "llama-bpe"
        if regex == _QWEN2_SPLIT:
            return "qwen2"
    raise ValueError(f"pre-tokenizer {types} is not one this export knows for llama.cpp; "
                     "use llama.cpp's convert_hf_to_gguf.py")


def _vocab(model_dir: Path, n_vocab: int, tok):
    """(tokens, token types, merges, adds bos, adds eos, pre) of a byte-level BPE tokenizer."""
    import gguf

    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise ValueError(f"{model_dir} has no tokenizer.json (a fast BPE tokenizer is needed)")
    tok_json = json.loads(tok_file.read_text(encoding="utf-8"))
    model = tok_json.get("model", {})
    decoder = (tok_json.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        raise ValueError(f"{model_dir}: only GPT-2-style byte-level BPE tokenizers are supported")
    vocab = tok.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:  # the embedding matrix is padded beyond the tokenizer
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL if i not in added else
                         gguf.TokenType.CONTROL if added[i].special else
                         gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    plain = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    adds_bos = len(full) > len(plain) and full[0] == tok.bos_token_id
    adds_eos = len(full) > len(plain) and full[-1] == tok.eos_token_id
    pre = tokenizer_pre(tok_json, vocab, bool(getattr(tok, "clean_up_tokenization_spaces", False)))
    return tokens, types, merges, adds_bos, adds_eos, pre


def write_gguf(model_dir: str | Path, path: str | Path, quant: str = "f16",
               name: str | None = None, tokenizer=None) -> dict:
    """Write `path` from the HF folder (and its tokenizer, loaded unless given); returns
    what was written (pre-tokenizer, end-of-turn token, notes)."""
    import gguf
    from ftagent.tools.deploy.merge import end_of_turn_token
    from gguf import GGMLQuantizationType as Q
    from transformers import AutoTokenizer

    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    model_dir = Path(model_dir)
    cfg = _config(model_dir)
    s = _shape(cfg)
    tok = tokenizer or AutoTokenizer.from_pretrained(model_dir)
    tokens, types, merges, adds_bos, adds_eos, pre = _vocab(model_dir, s["vocab"], tok)
    qtype = Q.F16 if quant == "f16" else Q.Q8_0
    arch = gguf.MODEL_ARCH.LLAMA
    w = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    _add_model_metadata(w, s, name or model_dir.name, quant)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        tid = getattr(tok, f"{kind}_token_id")
        if tid is not None:
            getattr(w, f"add_{kind}_token_id")(tid)
    eot = end_of_turn_token(tok)
    if eot:
        w.add_eot_token_id(tok.convert_tokens_to_ids(eot))
    w.add_add_bos_token(adds_bos)
    w.add_add_eos_token(adds_eos)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
    notes = _add_tensors(w, model_dir, s, qtype, gguf.get_tensor_name_map(arch, s["layers"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tokenizer_pre": pre, "end_of_turn": eot, "notes": notes}


def _add_model_metadata(w, s: dict, name: str, quant: str) -> None:
    """The architecture keys llama.cpp reads to rebuild the model; the head sizes are
    written only where they differ from hidden / heads, as llama.cpp's converter does."""
    import gguf

    ftype = gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    w.add_type("model")
    w.add_name(name)
    w.add_vocab_size(s["vocab"])
    w.add_context_length(s["context"])
    w.add_embedding_length(s["hidden"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(float(s["theta"]))
    w.add_rope_dimension_count(s["head_dim"])
    if s["head_dim"] != s["hidden"] // s["heads"]:
        w.add_key_length(s["head_dim"])
        w.add_value_length(s["head_dim"])
    w.add_layer_norm_rms_eps(float(s["eps"]))
    w.add_file_type(ftype)
    if quant != "f16":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tensors(w, model_dir: Path, s: dict, qtype, tmap) -> list[str]:
    """Every HF tensor under its GGUF name, in llama.cpp's layout (q/k rows permuted) and
    type; returns notes on tensors that could not take the asked quantisation."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    notes, unknown, fallback = [], [], []
    for hf_name, data in hf_tensors(model_dir):
        if hf_name == "lm_head.weight" and s["tied"]:
            continue  # llama.cpp reuses token_embd when there is no output tensor
        new = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            unknown.append(hf_name)
            continue
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute_qk(data, s["heads"])
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute_qk(data, s["kv_heads"])
        if data.ndim < 2:
            w.add_tensor(new, data.astype("float32"))
        elif qtype == Q.Q8_0 and data.shape[-1] % 32:
            fallback.append(new)  # q8_0 packs rows in blocks of 32
            w.add_tensor(new, data.astype("float16"))
        elif qtype == Q.Q8_0:
            w.add_tensor(new, gguf.quants.quantize(data, Q.Q8_0), raw_dtype=Q.Q8_0)
        else:
            w.add_tensor(new, data.astype("float16"))
    if unknown:
        raise ValueError(f"{model_dir}: tensors with no GGUF name: {', '.join(unknown[:5])}")
    if fallback:
        notes.append(f"{len(fallback)} tensors kept in f16 (rows not a multiple of 32)")
    return notes


def _field(reader, key: str):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_gguf(gguf_path: str | Path, model_dir: str | Path, quant: str = "f16",
               chat_template: str | None = None) -> dict:
    """Read the file back with `GGUFReader`: metadata as the HF config says, every HF
    tensor present with its dims reversed (GGUF lists the fastest dim first) and, after
    de-quantising and un-permuting Q/K, equal to the HF weights within the quant's error.
    `chat_template`: the one expected (default: the folder tokenizer's)."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    s = _shape(_config(model_dir))
    reader = gguf.GGUFReader(gguf_path)
    problems = []
    expect = {
        "general.architecture": "llama", "llama.block_count": s["layers"],
        "llama.context_length": s["context"], "llama.embedding_length": s["hidden"],
        "llama.feed_forward_length": s["ffn"], "llama.attention.head_count": s["heads"],
        "llama.attention.head_count_kv": s["kv_heads"],
        "llama.rope.dimension_count": s["head_dim"], "tokenizer.ggml.model": "gpt2",
    }
    template = chat_template or AutoTokenizer.from_pretrained(model_dir).chat_template
    if isinstance(template, str):  # several named templates are stored under other keys
        expect["tokenizer.chat_template"] = template
    for key, want in expect.items():
        if _field(reader, key) != want:
            problems.append(f"{key}: {_field(reader, key)!r}, expected {want!r}")
    for key, want in (("llama.rope.freq_base", s["theta"]),
                      ("llama.attention.layer_norm_rms_epsilon", s["eps"])):
        if not np.isclose(_field(reader, key) or 0.0, want, rtol=1e-6):
            problems.append(f"{key}: {_field(reader, key)!r}, expected {want!r}")
    tensors = {t.name: t for t in reader.tensors}
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, s["layers"])
    worst, seen = 0.0, set()
    for hf_name, data in hf_tensors(model_dir):
        if hf_name == "lm_head.weight" and s["tied"]:
            continue
        name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        t = tensors.get(name)
        if t is None:
            problems.append(f"{hf_name}: no tensor {name} in the GGUF file")
            continue
        seen.add(name)
        if [int(d) for d in t.shape] != list(reversed(data.shape)):
            problems.append(f"{name}: shape {list(t.shape)}, expected "
                            f"{list(reversed(data.shape))} (HF {list(data.shape)} reversed)")
            continue
        values = (t.data.astype(np.float32) if t.tensor_type in (Q.F32, Q.F16)
                  else gguf.quants.dequantize(t.data, t.tensor_type)).reshape(data.shape)
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            values = unpermute_qk(values, s["heads"])
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            values = unpermute_qk(values, s["kv_heads"])
        scale = float(np.abs(data).max()) or 1.0
        rel = float(np.abs(values - data).max()) / scale
        worst = max(worst, rel)
        kind = "f32" if t.tensor_type == Q.F32 else "f16" if t.tensor_type == Q.F16 else quant
        if rel > REL_TOLERANCE[kind] + 1e-7:
            problems.append(f"{name}: values differ by {rel:.2e} of max |w| (tolerance "
                            f"{REL_TOLERANCE[kind]:g} for {kind})")
    extra = sorted(set(tensors) - seen)
    if extra:
        problems.append(f"tensors not in the HF folder: {', '.join(extra[:5])}")
    return {"ok": not problems, "n_tensors": len(tensors), "tensor_types": _count_types(reader),
            "max_rel_error": worst, "problems": problems}


def convert_with_llama_cpp(model_dir: str | Path, path: str | Path, quant: str = "f16",
                           name: str | None = None, timeout: float = 3600) -> dict:
    """Write `path` with llama.cpp's convert_hf_to_gguf.py (the pinned copy) in a subprocess;
    ValueError with the converter's last lines when it refuses the model."""
    import sys

    from ftagent.tools.deploy.llama_runtime import converter_script, install_hint

    script = converter_script()
    if script is None:
        raise RuntimeError(f"llama.cpp's converter is not installed; {install_hint()}")
    if quant not in CONVERTER_QUANTS:
        raise ValueError(f"quant must be one of {', '.join(CONVERTER_QUANTS)}, got {quant!r}")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(path),
           "--outtype", quant, *(["--model-name", name] if name else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not Path(path).is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-6:]
        raise ValueError(f"llama.cpp's converter could not export {model_dir}: "
                         + " | ".join(tail))
    return {"command": cmd}


def _read_meta(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    return {"architecture": arch, "tokenizer_pre": _field(reader, "tokenizer.ggml.pre") or "",
            "chat_template": _field(reader, "tokenizer.chat_template"),
            "n_tensors": len(reader.tensors),
            "tensor_types": _count_types(reader)}


def _count_types(reader) -> dict[str, int]:
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return types


def _check_converted(path: Path, model_dir: Path, quant: str, template) -> tuple[dict, dict]:
    """The converter's file read back: for Llama every tensor against the HF weights (as
    for ftagent's writer); for the other architectures the chat template (the weights are
    checked by running the file: llama_parity)."""
    meta = _read_meta(path)
    archs = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("architectures")
    if archs == ["LlamaForCausalLM"] and quant != "bf16":
        return meta, check_gguf(path, model_dir, quant, template)
    problems = []
    if isinstance(template, str) and meta["chat_template"] != template:
        problems.append("tokenizer.chat_template differs from the folder's chat template")
    return meta, {"ok": not problems, "n_tensors": meta["n_tensors"],
                  "tensor_types": meta["tensor_types"], "max_rel_error": None,
                  "problems": problems, "read_back": "metadata only (run it to check weights)"}


def export_gguf(model_dir: str | Path, out_dir: str | Path, quant: str = "f16",
                name: str | None = None, overwrite: bool = False,
                writer: str = "auto") -> GGUFExport:
    """model.gguf, Modelfile and chat_template.jinja in `out_dir`, written whole or not at
    all, and only if it reads back as the HF folder (else GGUFCheckFailed). A finished
    `out_dir` is never overwritten unless `overwrite`. `writer`: "convert_hf_to_gguf"
    (llama.cpp's), "ftagent" (the Llama-only fallback) or "auto" (llama.cpp's if installed)."""
    from ftagent.tools.chat_template import UnsupportedTemplate, jinja_to_ollama, modelfile
    from ftagent.tools.deploy.llama_runtime import converter_script
    from transformers import AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if writer == "auto":
        writer = "convert_hf_to_gguf" if converter_script() else "ftagent"
    if (out_dir / GGUF_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds {GGUF_NAME}; a finished export is "
                              "never overwritten")
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    started = time.time()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)
    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
        if writer == "ftagent":
            info = write_gguf(model_dir, tmp / GGUF_NAME, quant, name, tok)
            check = check_gguf(tmp / GGUF_NAME, model_dir, quant, tok.chat_template)
            info["architecture"] = "llama"
        else:
            convert_with_llama_cpp(model_dir, tmp / GGUF_NAME, quant, name)
            meta, check = _check_converted(tmp / GGUF_NAME, model_dir, quant, tok.chat_template)
            info = {"notes": [], "tokenizer_pre": meta["tokenizer_pre"],
                    "architecture": meta["architecture"]}
        if not check["ok"]:
            raise GGUFCheckFailed("the GGUF file does not match the HF folder: "
                                  + "; ".join(check["problems"][:5]))
        notes = list(info["notes"])
        ollama = None
        if isinstance(tok.chat_template, str):
            write_text(tmp / "chat_template.jinja", tok.chat_template)
            try:
                ollama = jinja_to_ollama(tok.chat_template, tok.bos_token or "",
                                         tok.eos_token or "", set(tok.all_special_tokens))
            except UnsupportedTemplate as exc:
                notes.append(f"Modelfile has no TEMPLATE: {exc}")
        else:
            notes.append("the tokenizer has no single chat template: none in the Modelfile")
        write_text(tmp / "Modelfile", modelfile(GGUF_NAME, ollama, f"Weights: {quant}."))
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GGUFExport(
        out_dir=str(out_dir), gguf=str(out_dir / GGUF_NAME), modelfile=str(out_dir / "Modelfile"),
        chat_template=str(out_dir / "chat_template.jinja")
        if isinstance(tok.chat_template, str) else None,
        quant=quant, size_bytes=(out_dir / GGUF_NAME).stat().st_size,
        n_tensors=check["n_tensors"], seconds=round(time.time() - started, 2),
        tokenizer_pre=info["tokenizer_pre"], check=check, notes=notes, writer=writer,
        architecture=info["architecture"],
    )


def llama_cpp_runtime() -> str | None:
    """"llama_cpp" (the Python binding) or the path of a llama.cpp CLI, if installed."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return "llama_cpp"
    for exe in ("llama-cli", "llama-simple"):
        found = shutil.which(exe)
        if found:
            return found
    return None


def llama_cpp_generate(gguf_path: str | Path, prompt: str, n_tokens: int = 8) -> str:
    """Greedy continuation of `prompt` by llama.cpp (whichever runtime is installed)."""
    runtime = llama_cpp_runtime()
    if runtime is None:
        raise RuntimeError("no llama.cpp runtime installed (llama_cpp or llama-cli)")
    if runtime == "llama_cpp":
        from llama_cpp import Llama

        llm = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False)
        return llm(prompt, max_tokens=n_tokens, temperature=0.0)["choices"][0]["text"]
    proc = subprocess.run(
        [runtime, "-m", str(gguf_path), "-p", prompt, "-n", str(n_tokens), "--temp", "0",
         "-no-cnv"], capture_output=True, text=True, timeout=300, check=True)
    return proc.stdout[len(prompt):] if proc.stdout.startswith(prompt) else proc.stdout
