"""Import of OpenAI fine-tuning jobs: the job's intent (epochs, batch, learning-rate
multiplier) becomes a local LoRA config, and its OpenAI chat JSONL files are checked line
by line and copied (never changed in place). A way off hosted fine-tuning.

`ftagent serve --fine-tuning` uses the same pieces for jobs that arrive over HTTP: the
line-by-line checks of chat (supervised) and preference (DPO) files, and the mapping of a
job's hyperparameters to config fields (`hyperparameter_fields`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftagent.tools.atomic import write_jsonl
from ftagent.tools.config.imported import ConfigImportError, Imported, Keys, build_imported
from ftagent.tools.config.train_config import TrainConfig, default_config
from pydantic import BaseModel

OPENAI_BASE_LR = 2e-4  # the usual LoRA learning rate; OpenAI's own base rate is undisclosed
OPENAI_DEFAULT_MODEL = "smollm2-135m-instruct"

OPENAI_ROLES = {"system", "user", "assistant", "tool", "function"}


class _ChatFile(BaseModel):
    """An OpenAI chat JSONL file, checked and cleaned for ftagent's trainer."""

    rows: list[dict]
    weight_zero: int = 0  # assistant messages OpenAI would not train on
    tool_rows: int = 0  # rows with tool/function messages
    trimmed: int = 0  # rows with messages after the last assistant turn


def _check_message(msg: Any, where: str) -> None:
    if not isinstance(msg, dict):
        raise ConfigImportError(f"{where}: expected an object with role and content")
    if msg.get("role") not in OPENAI_ROLES:
        raise ConfigImportError(f"{where}.role: '{msg.get('role')}' is not one of "
                                f"{', '.join(sorted(OPENAI_ROLES))}")
    if msg.get("weight") not in (None, 0, 1):
        raise ConfigImportError(f"{where}.weight: must be 0 or 1, got {msg['weight']!r}")
    content = msg.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise ConfigImportError(f"{where}.content: expected text")


def _clean_row(row: Any, where: str, stats: _ChatFile) -> dict:
    """Check one example; keep messages up to the last assistant turn (the one ftagent's
    trainer learns), without OpenAI's per-message weights."""
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs:
        raise ConfigImportError(f"{where}: messages: expected a non-empty list of messages")
    for i, msg in enumerate(msgs):
        _check_message(msg, f"{where}: messages[{i}]")
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ConfigImportError(f"{where}: messages: no assistant message to learn from")
    if not isinstance(msgs[last].get("content"), str) or not msgs[last]["content"].strip():
        raise ConfigImportError(f"{where}: messages[{last}].content: the last assistant "
                                "message has no text (ftagent trains on that turn)")
    stats.weight_zero += sum(1 for m in msgs if m["role"] == "assistant" and m.get("weight") == 0)
    stats.tool_rows += any(m["role"] in ("tool", "function") for m in msgs)
    stats.trimmed += last < len(msgs) - 1
    kept = [{k: v for k, v in m.items() if k != "weight"} for m in msgs[: last + 1]]
    return {"messages": kept}


def _lines(path: Path, name: str | None):
    """(where, row) for each non-blank line; `where` names the file (or `name`, for a file
    whose path means nothing to the reader, such as an upload) and the line."""
    if not path.is_file():
        raise ConfigImportError(f"{name or path}: file not found")
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            where = f"{name}, line {n}" if name else f"{path}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigImportError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigImportError(f"{where}: not valid JSON: {exc.msg}") from None
            yield where, row


def read_openai_chat(path: str | Path, name: str | None = None) -> _ChatFile:
    """Check an OpenAI chat JSONL file line by line; errors name file, line and field."""
    stats = _ChatFile(rows=[])
    for where, row in _lines(Path(path), name):
        stats.rows.append(_clean_row(row, where, stats))
    if not stats.rows:
        raise ConfigImportError(f"{name or path}: no examples")
    return stats


def _one_answer(value: Any, where: str) -> list[dict]:
    if (not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict)
            or value[0].get("role") != "assistant"):
        raise ConfigImportError(f"{where}: expected a list with one assistant message")
    if not isinstance(value[0].get("content"), str) or not value[0]["content"].strip():
        raise ConfigImportError(f"{where}[0].content: the answer has no text")
    return [{"role": "assistant", "content": value[0]["content"]}]


def read_openai_preference(path: str | Path, name: str | None = None) -> _ChatFile:
    """Check an OpenAI preference (DPO) JSONL file line by line: `input.messages`, one
    `preferred_output` and one `non_preferred_output` assistant message per line. Rows come
    back as ftagent's preference rows {prompt, chosen, rejected}."""
    stats = _ChatFile(rows=[])
    for where, row in _lines(Path(path), name):
        if not isinstance(row, dict):
            raise ConfigImportError(f"{where}: expected an object")
        msgs = (row.get("input") or {}).get("messages") if isinstance(row.get("input"), dict) \
            else None
        if not isinstance(msgs, list) or not msgs:
            raise ConfigImportError(f"{where}: input.messages: expected a non-empty list")
        for i, msg in enumerate(msgs):
            _check_message(msg, f"{where}: input.messages[{i}]")
        if msgs[-1]["role"] == "assistant":  # OpenAI: the answers are the last assistant turn
            raise ConfigImportError(f"{where}: input.messages[{len(msgs) - 1}].role: the input "
                                    "ends with an assistant message; the preferred and "
                                    "non-preferred outputs must be the reply to it")
        stats.rows.append({
            "prompt": [{k: v for k, v in m.items() if k != "weight"} for m in msgs],
            "chosen": _one_answer(row.get("preferred_output"), f"{where}: preferred_output"),
            "rejected": _one_answer(row.get("non_preferred_output"),
                                    f"{where}: non_preferred_output"),
        })
    if not stats.rows:
        raise ConfigImportError(f"{name or path}: no examples")
    return stats


def _chat_notes(name: str, stats: _ChatFile) -> list[str]:
    notes = []
    if stats.weight_zero:
        notes.append(f"{name}: {stats.weight_zero} assistant messages have weight 0; ftagent "
                     "trains on the last assistant turn of each example and ignores weights")
    if stats.tool_rows:
        notes.append(f"{name}: {stats.tool_rows} examples hold tool/function messages; check "
                     "that the base model's chat template renders them")
    if stats.trimmed:
        notes.append(f"{name}: {stats.trimmed} examples end after the last assistant turn; "
                     "the copy stops at that turn")
    return notes


def _openai_hyper(job: dict, source: str) -> dict:
    method = job.get("method")
    if not method:
        return job.get("hyperparameters") or {}
    kind = method.get("type", "supervised")
    if kind != "supervised":
        raise ConfigImportError(f"{source}: method.type '{kind}': ftagent's trainer imports "
                                "only supervised jobs so far")
    return (method.get("supervised") or {}).get("hyperparameters") or {}


def _openai_file(job: dict, key: str, source: str) -> Path | None:
    name = job.get(key)
    if not name:
        return None
    if str(name).startswith("file-"):
        raise ConfigImportError(f"{source}: {key} '{name}' is an OpenAI file id; download "
                                "the file and put its local path here")
    path = Path(name)
    return path if path.is_file() or path.is_absolute() else Path(source).parent / path


def _batch_split(batch: int) -> tuple[int, int]:
    """OpenAI's batch as per-device batch x accumulation: the largest divisor up to 8."""
    per_device = max(d for d in range(1, min(batch, 8) + 1) if batch % d == 0)
    return per_device, batch // per_device


def _model_facts(model: str) -> tuple[int, int | None]:
    """The base model's size and context for ftagent's defaults, from the registry or a
    local folder's config.json (nothing is resolved or converted here)."""
    from ftagent.tools.plan.estimate import shape_from_config
    from ftagent.tools.registry import lookup

    card = lookup(model)
    if card:
        return card.params, card.context
    cfg_file = Path(model) / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        return shape_from_config(cfg).params, cfg.get("max_position_embeddings")
    return 10**9, None


def hyperparameter_fields(hyper: dict) -> dict:
    """An OpenAI job's hyperparameters as training-config fields; "auto" (or absent) leaves
    ftagent's default. The learning rate is 2e-4 x the multiplier (OPENAI_BASE_LR)."""
    out: dict[str, Any] = {}
    epochs, batch, mult, beta = (hyper.get(k, "auto") for k in
                                 ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"))
    if epochs not in ("auto", None):
        out["num_epochs"] = float(epochs)
    if batch not in ("auto", None):
        out["batch_size"], out["grad_accum"] = _batch_split(int(batch))
    if mult not in ("auto", None):
        out["learning_rate"] = OPENAI_BASE_LR * float(mult)
    if beta not in ("auto", None):
        out["dpo_beta"] = float(beta)
    return out


def _openai_hyper_fields(hyper: dict, base: TrainConfig, notes: list[str]) -> dict:
    out = {k: v for k, v in hyperparameter_fields(hyper).items() if k != "dpo_beta"}
    epochs, batch, mult = (hyper.get(k, "auto") for k in
                           ("n_epochs", "batch_size", "learning_rate_multiplier"))
    if mult == "auto":
        notes.append(f"learning_rate_multiplier auto: ftagent's default for this model and "
                     f"data size, {base.learning_rate:g}")
    else:
        notes.append(f"learning_rate {out['learning_rate']:g} = 2e-4 x multiplier {mult}: "
                     "OpenAI's multiplier scales a base rate it does not disclose; 2e-4 is "
                     "the usual LoRA rate")
    if "auto" in (epochs, batch):
        notes.append("n_epochs/batch_size auto: ftagent's defaults scaled to the data size")
    return out


def from_openai_job(job: dict, source: str, out_dir: str | Path,
                    model: str = OPENAI_DEFAULT_MODEL) -> Imported:
    """An OpenAI fine-tuning job as a local LoRA run with the same intent; the training
    and validation files are checked and copied (never changed in place) to `out_dir`."""
    k, notes = Keys(job), []
    hyper = _openai_hyper(job, source)
    for key in ("method", "hyperparameters", "training_file", "validation_file"):
        k.take(key)
    train_path = _openai_file(job, "training_file", source)
    if train_path is None:
        raise ConfigImportError(f"{source}: training_file is missing")
    val_path = _openai_file(job, "validation_file", source)
    out_dir = Path(out_dir)
    train = read_openai_chat(train_path)
    notes += _chat_notes(str(train_path), train)
    files = {"train_file": write_jsonl(out_dir / "train.jsonl", train.rows)}
    if val_path is not None:
        val = read_openai_chat(val_path)
        notes += _chat_notes(str(val_path), val)
        files["val_file"] = write_jsonl(out_dir / "val.jsonl", val.rows)
    notes.append(f"OpenAI model {k.take('model')}: trained locally on {model} with LoRA "
                 "(choose another with --model)")
    suffix = k.take("suffix")
    output_dir = out_dir / (f"output-{suffix}" if suffix else "output")
    params, context = _model_facts(model)
    base = default_config(model, "lora", str(files["train_file"]),
                          str(files.get("val_file")) if val_path else None, str(output_dir),
                          len(train.rows), params, "auto")
    update = _openai_hyper_fields(hyper, base, notes)
    if context and base.max_length > context:
        update["max_length"] = context  # a small model's context caps the default
    if "seed" in job:
        update["seed"] = int(k.take("seed"))
    data = base.model_dump() | update
    return build_imported(data, source, "openai", notes, k)
