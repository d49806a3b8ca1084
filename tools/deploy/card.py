"""The model card (README.md) of a merged or exported model: a pure function of what is
known about the run (base, method, data, config, evaluation, merge check, serving
commands), so the same inputs always give the same card."""

from __future__ import annotations

from pathlib import Path

from ftagent.tools.atomic import write_text

# (field in the eval report's scores, label, higher is better)
METRICS = [
    ("loss", "answer loss", False),
    ("perplexity", "perplexity", False),
    ("accuracy", "accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("exact_match", "exact match", True),
    ("rouge_l", "ROUGE-L", True),
    ("chrf", "chrF", True),
    ("json_compliance", "JSON compliance", True),
    ("refusal_rate", "refusal of harmful requests", True),
    ("over_refusal_rate", "refusal of benign look-alikes", False),
    ("arc_accuracy", "ARC-Easy accuracy (forgetting check)", True),
    ("answer_words", "words per answer", None),
]
CONFIG_KEYS = ["method", "objective", "learning_rate", "num_epochs", "max_steps", "batch_size",
               "grad_accum", "max_length", "seed", "bf16"]


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _eval_table(report: dict) -> list[str]:
    base, tuned = report.get("base") or {}, report.get("tuned") or {}
    lines = [f"Held-out test split: {report.get('n_test', '?')} examples; task "
             f"{report.get('task_type', '?')}; primary metric "
             f"`{report.get('primary_metric', '?')}`.", "",
             "| metric | base | tuned | change |", "|---|---|---|---|"]
    for key, label, higher in METRICS:
        b, t = base.get(key), tuned.get(key)
        if b is None and t is None:
            continue
        change = "" if b is None or t is None else f"{t - b:+.4g}"
        if change and higher is not None and t != b:
            change += " (better)" if (t > b) == higher else " (worse)"
        lines.append(f"| {label} | {_num(b)} | {_num(t)} | {change} |")
    return lines


def _config_lines(config: dict) -> list[str]:
    lines = [f"- {k}: `{config[k]}`" for k in CONFIG_KEYS if k in config]
    lora = config.get("lora") or {}
    if config.get("method") in ("lora", "qlora") and lora:
        lines.append(f"- LoRA: r={lora.get('r')}, alpha={lora.get('alpha')}, dropout="
                     f"{lora.get('dropout')}, targets {lora.get('target_modules')}"
                     + (", DoRA" if lora.get("use_dora") else "")
                     + (", rsLoRA" if lora.get("use_rslora") else ""))
    quant = config.get("quantization") or {}
    if config.get("method") == "qlora" and quant:
        lines.append(f"- 4-bit base: {quant.get('quant_type')}, double quant "
                     f"{quant.get('double_quant')}, compute {quant.get('compute_dtype')}")
    return lines


def _data_lines(data: dict) -> list[str]:
    lines = []
    if data.get("source"):
        lines.append(f"- source: `{data['source']}`")
    if data.get("schema"):
        lines.append(f"- format: {data['schema']}")
    if data.get("sha256"):
        lines.append(f"- sha256: `{data['sha256']}`")
    if data.get("rows") is not None:
        lines.append(f"- examples kept: {data['rows']}")
    for split, n in (data.get("splits") or {}).items():
        digest = (data.get("split_sha256") or {}).get(split)
        lines.append(f"- {split}: {n} examples" + (f", sha256 `{digest}`" if digest else ""))
    licence = data.get("licence") or ("not recorded: check the terms of the data source "
                                      "before you share this model")
    lines.append(f"- licence: {licence}")
    return lines


def _front_matter(base: dict, method: str, library: str) -> list[str]:
    lines = ["---", f"library_name: {library}", "tags:", "- ftagent", f"- {method}"]
    hub_id = base.get("name") or ""
    if "/" in hub_id and not hub_id.startswith(("/", ".", "~")):
        lines.append(f"base_model: {hub_id}")
    licence = (base.get("licence") or "").lower()
    if licence and " " not in licence:  # an SPDX-like id, not "unknown (check ...)"
        lines.append(f"license: {licence}")
    return lines + ["---", ""]


def model_card(
    name: str,
    base: dict,
    method: str,
    *,
    goal: str | None = None,
    data: dict | None = None,
    config: dict | None = None,
    eval_report: dict | None = None,
    merge: dict | None = None,
    verification: dict | None = None,
    gguf: dict | None = None,
    vllm: list[str] | None = None,
    ollama: list[str] | None = None,
    llama_cpp: list[str] | None = None,
    limits: list[str] | None = None,
) -> str:
    """Markdown for README.md. `base`: name, path, licence; `data`: source, schema, sha256,
    rows, splits, split_sha256, licence; `config`: the training config as a dict;
    `eval_report`: eval/report.json; `merge`: a MergeResult dict; `verification`: a
    MergeCheck dict; `gguf`: a GGUFExport dict (the card then describes the GGUF folder);
    `vllm`, `ollama`, `llama_cpp`: shell commands."""
    out = _front_matter(base, method, "gguf" if gguf else "transformers")
    out += [f"# {name}", "",
            f"Fine-tuned from **{base.get('name') or base.get('path')}** with **{method}** by "
            "ftagent." + (f" Goal: {goal}" if goal else ""), ""]
    out += _base_and_method_lines(base, method, merge)
    if config:
        out += ["## Training config", "", *_config_lines(config), ""]
    if data:
        out += ["## Data", "", *_data_lines(data), ""]
    if eval_report:
        out += ["## Evaluation: base vs tuned", "", *_eval_table(eval_report), ""]
    if verification:
        out += _verification_lines(verification)
    if gguf:
        out += _gguf_lines(gguf)
    out += _serving_lines([("vLLM (OpenAI-compatible server)", vllm), ("Ollama", ollama),
                           ("llama.cpp", llama_cpp)])
    out += _limits_lines(goal, eval_report, limits)
    return "\n".join(out).rstrip() + "\n"


def _base_and_method_lines(base: dict, method: str, merge: dict | None) -> list[str]:
    """Where the model came from and how it was made: the first things a reuser checks
    (licence, dtype, which tokenizer's chat template was kept)."""
    out = ["## Base model", "", f"- name: {base.get('name') or '—'}"]
    if base.get("path"):
        out.append(f"- local path: `{base['path']}`")
    out += [f"- licence: {base.get('licence') or 'not recorded: see the base model card'}", ""]
    out += ["## Method", "", f"- {method}" + (f"; weights saved in {merge['dtype']}" if merge
                                               else "")]
    if merge and merge.get("note"):
        out.append(f"- {merge['note']}")
    if merge:
        out.append(f"- chat template: the {merge.get('template_from')} tokenizer's (used in "
                   "training); the GGUF export stores the same template and translates it "
                   "into the Ollama Modelfile")
    out.append("")
    return out


def _verification_lines(v: dict) -> list[str]:
    """The merge check's evidence that the merged weights behave as base + adapter did."""
    out = ["## Merge check", "",
           f"- {'passed' if v.get('ok') else 'FAILED'}: max |logit difference| "
           f"{v.get('max_abs_logit_diff', 0):.2e} against base + adapter on "
           f"{v.get('n_prompts')} prompts (tolerance {v.get('logit_tolerance')})"]
    if v.get("perplexity_rel_diff") is not None:
        out.append(f"- perplexity on {v.get('n_rows')} held-out rows: "
                   f"{v['perplexity_merged']:.4f} merged vs {v['perplexity_reference']:.4f} "
                   f"base + adapter ({v['perplexity_rel_diff']:+.3%}; tolerance "
                   f"{v.get('perplexity_tolerance', 0.01):.0%})")
    out.append("")
    return out


def _gguf_lines(gguf: dict) -> list[str]:
    """What the GGUF file holds and how closely it matches the HF weights it came from."""
    return ["## GGUF", "",
            f"- `{Path(gguf['gguf']).name}`: {gguf['quant']}, "
            f"{gguf['size_bytes'] / 2**20:.1f} MiB, {gguf['n_tensors']} tensors, "
            f"pre-tokenizer `{gguf['tokenizer_pre']}`",
            f"- read back and compared with the HF weights: largest error "
            f"{gguf['check']['max_rel_error']:.2e} of each tensor's largest weight",
            *[f"- {n}" for n in gguf.get("notes") or []], ""]


def _serving_lines(served: list[tuple[str, list[str] | None]]) -> list[str]:
    """Commands to serve the model, per runtime; no section when none were given."""
    if not any(cmds for _, cmds in served):
        return []
    out = ["## Serving", ""]
    for label, cmds in served:
        if cmds:
            out += [f"{label}:", "", "```bash", *cmds, "```", ""]
    return out


def _limits_lines(goal: str | None, eval_report: dict | None,
                  limits: list[str] | None) -> list[str]:
    """Intended use and limits, always present: a card without them invites use beyond
    what was measured."""
    out = ["## Intended use and limits", "",
           f"- Intended use: {goal or 'the task of the training data'}; check answers on "
           "your own held-out data before relying on it."]
    default_limits = [
        "Measured only on the held-out split above; other inputs may fare worse."
        if eval_report else "No base-vs-tuned evaluation was given for this card: evaluate "
        "it (ftagent eval) before use.",
        "Inherits the base model's knowledge, biases and licence terms.",
    ]
    if eval_report and (eval_report.get("tuned") or {}).get("refusal_rate") is not None:
        default_limits.append("Safety was probed on a small set of harmful requests only "
                              "(see refusal rates above); it is not a safety evaluation.")
    out += [f"- {line}" for line in (limits or []) + default_limits]
    return out


def write_model_card(folder: str | Path, name: str, base: dict, method: str, **inputs) -> Path:
    """Write README.md in `folder` atomically."""
    return write_text(Path(folder) / "README.md", model_card(name, base, method, **inputs))
