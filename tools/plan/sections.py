"""The plan's supporting sections: what data is needed, what hardware, how long, what can
go wrong, and the few-shot prompt to try first. Pure text from plain values."""

from __future__ import annotations

from ftagent.tools.data.facts import DataFacts
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.fit import Fit, Timing
from ftagent.tools.plan.types import Item
from ftagent.tools.registry import ModelCard

# Examples a task usually needs for a fine-tune to beat prompting (common practice).
RECOMMENDED = {
    "classification": 500,
    "extraction": 500,
    "style": 200,
    "summarization": 1000,
    "chat": 1000,
    "domain_knowledge": 2000,
    "code": 2000,
    "preference": 1000,
    "distillation": 2000,
}
PER_LABEL = 50


def recommended_examples(task: str, data: DataFacts) -> tuple[int, str]:
    base = RECOMMENDED.get(task, 1000)
    if task == "classification" and data.n_labels:
        need = max(base, PER_LABEL * data.n_labels)
        return need, f"{PER_LABEL} per label x {data.n_labels} labels"
    return base, f"typical for {task.replace('_', ' ')}"


def dataset_requirements(task: str, data: DataFacts, seq: int) -> list[Item]:
    need, why = recommended_examples(task, data)
    n = data.n_examples
    have = "enough" if n >= need else f"{n / need:.0%} of it"
    unit = "preference pairs" if task == "preference" else "examples"
    items = [
        Item(text=f"Size: you have {n:,} {unit}; about {need:,} recommended ({why}): {have}.",
             detail="" if n >= need else "More varied examples help more than more epochs."),
        Item(text=f"Format: {data.schema_name} rows, read as {data.kind}; "
             + ("kept as prompt / chosen / rejected, rendered with the model's chat template."
                if data.kind == "preference" else "converted to one chat form with the "
                "model's own chat template, loss on the answers only.")),
        Item(text=f"Length: {data.tokens_p50} tokens typical, {data.tokens_p99} at p99, "
             f"{data.tokens_max} longest{'' if data.tokens_measured else ' (estimated)'}; "
             f"training max length {seq}."),
        Item(text="Quality: duplicates, near-duplicates, PII, empty or cut answers and leakage "
             "are checked by data_prep and shown at the dataset gate."),
        Item(text="Split: 80/10/10 train/validation/test, seeded, stratified by label, near-same "
             "prompts kept in one split."),
    ]
    if data.kind == "prompts":
        items.append(Item(text="The rows have prompts but no answers: answers must be "
                          "generated (by a teacher) or written before training."))
    return items


def hardware_requirements(
    hw: Hardware, fit: Fit, card: ModelCard, local: bool, download_gb: float
) -> list[Item]:
    per = "per GPU" if hw.gpus else "of RAM"
    items = [
        Item(text=f"Memory: about {fit.memory_gb} GB {per} (usable: {fit.usable_gb:g} GB) with "
             f"micro-batch {fit.batch_size}"
             f"{' and gradient checkpointing' if fit.gradient_checkpointing else ''}.",
             detail=", ".join(f"{k} {v:g} GB" for k, v in fit.parts_gb.items())),
        Item(text=f"Devices: {fit.n_devices} x {hw.gpus[0].name if hw.gpus else 'CPU'}"
             f"{f' on {hw.nodes} nodes' if hw.nodes > 1 else ''}, {fit.strategy}, "
             f"{fit.precision}.",
             detail="As described by --hardware (the GPU table in tools/gpus.py), not this "
             "machine." if hw.described else ""),
        Item(text=f"Disk: about {download_gb * 2 + 1:.0f} GB (base {download_gb:g} GB, merged "
             f"export, checkpoints); {hw.disk_free_gb:g} GB free."),
    ]
    if not local:
        items.append(Item(
            text=f"{card.id} is not on this machine: download it first "
            f"(`huggingface-cli download {card.id}`, {download_gb:g} GB).",
        ))
    if fit.adapter == "qlora":
        items.append(Item(text="bitsandbytes with a working 4-bit backend (checked before "
                          "training)."))
    return items


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return "under a minute"
    if hours < 1:
        return f"~{hours * 60:.0f} min"
    if hours < 48:
        return f"~{hours:.1f} h"
    return f"~{hours / 24:.0f} days"


def timeline(t: Timing, n: int, prompting: bool, objective: str) -> list[Item]:
    items = []
    if prompting:
        items.append(Item(text="Few-shot baseline",
                          detail="~1 h: run the few-shot prompt (in the approach) on the test "
                          "split; stop here if it meets the targets."))
    items += [
        Item(text="Data preparation", detail=f"{_duration(n / 2e5 / 60 + 1 / 60)}: validate, "
             "fix, split, review at the dataset gate."),
        Item(text="Training" + (" (DPO)" if objective == "dpo" else ""),
             detail=f"{_duration(t.train_hours)} for {t.tokens:,} tokens"),
        Item(text="Evaluation", detail=f"{_duration(max(t.train_hours * 0.1, 2 / 60))}: base vs "
             "tuned on the held-out split, refusal probe."),
        Item(text="Merge, export and check", detail="~10 min"),
    ]
    return items


def risks(
    task: str, data: DataFacts, fit: Fit, card: ModelCard, seq: int, hw: Hardware,
    objective: str,
) -> list[Item]:
    out: list[Item] = []
    n = data.n_examples
    if n < 1000:
        out.append(Item(text=f"Overfitting on {n:,} examples.",
                        detail="Validation loss each epoch, early stopping, a low LoRA rank; "
                        "the tester compares with the base on held-out data."))
    if data.n_labels and n / data.n_labels < 20:
        out.append(Item(text=f"Few examples per label ({n / data.n_labels:.0f} on average).",
                        detail="Stratified splits; watch per-label accuracy; add examples for "
                        "the weakest labels."))
    if data.tokens_max > seq:
        out.append(Item(text=f"Longest example ({data.tokens_max} tokens) exceeds max length "
                        f"{seq}.", detail="Over-long rows are dropped at data_prep (or cut with "
                        "--truncate); raise max_length if memory allows."))
    logits = fit.parts_gb.get("logits", 0.0)
    if logits > 0.3 * fit.memory_gb:
        scored = "every token" if objective == "dpo" else "the tokens that carry loss"
        out.append(Item(text=f"Memory is dominated by the logits ({logits:g} GB of "
                        f"{fit.memory_gb:g} GB): {scored} x a {card.shape.vocab_size:,}-"
                        "token vocabulary.",
                        detail="A fused, chunked cross-entropy (Liger kernels on CUDA) cuts this; "
                        "so do shorter max_length or micro-batch 1."))
    if fit.adapter == "qlora":
        out.append(Item(text="QLoRA is ~30% slower per step and trains against a 4-bit base.",
                        detail="The adapter is merged into the de-quantised base and checked "
                        "against it before deployment."))
    if fit.adapter == "full":
        out.append(Item(text="Full fine-tuning can forget general skills.",
                        detail="Low learning rate, one epoch, a general-capability check."))
    else:
        out.append(Item(text="Forgetting general skills.",
                        detail="A general-capability set is scored base vs tuned."))
    if not fit.fits:
        out.append(Item(text="The run does not fit the memory planned.",
                        detail="Pick a smaller model, QLoRA, shorter sequences or more memory."))
    if card.licence_kind != "permissive":
        out.append(Item(text=f"Licence: {card.licence}.",
                        detail="Read its terms (use, size, attribution) before shipping."))
    if objective == "dpo":
        out.append(Item(text="DPO on a model never tuned on this domain learns slowly.",
                        detail="SFT on the chosen answers first when the margin stays flat; "
                        "beta 0.1."))
    if task == "distillation":
        out.append(Item(text="The teacher's terms may forbid training on its outputs.",
                        detail="Check the provider's terms; keep the generated data's origin "
                        "in the manifest."))
    if not hw.gpus:
        out.append(Item(text="CPU training is slow beyond a few hundred million parameters.",
                        detail="Keep the model small here; move to a GPU for larger ones."))
    out.append(Item(text="Less safe than the base after tuning.",
                    detail="Refusal rate on harmful requests, base vs tuned, gates deployment."))
    return out


def few_shot_prompt(data: DataFacts, k: int = 4) -> str | None:
    """A prompt with k training examples as demonstrations, to measure before training."""
    shots = []
    system = ""
    for ex in data.examples[:k]:
        msgs = ex.get("messages") or []
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        if msgs[0].get("role") == "system":
            system = system or msgs[0]["content"]
        user = "\n".join(m["content"] for m in msgs[:-1] if m["role"] == "user")
        shots.append(f"User: {user.strip()}\nAssistant: {msgs[-1]['content'].strip()}")
    if not shots:
        return None
    head = f"{system.strip()}\n\n" if system else ""
    return head + "\n\n".join(shots) + "\n\nUser: {input}\nAssistant:"
