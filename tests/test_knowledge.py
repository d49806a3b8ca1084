"""The fine-tuning knowledge base: every file parses into sections, questions retrieve the
section that answers them (hit rate on a table), answers cite, the grounded prompt numbers
its passages; and run diagnosis reads real-shaped run folders into cited findings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from ftagent.agent.chat import knowledge as kb
from ftagent.agent.chat.run_diagnosis import (
    KIND_QUERY,
    answer_about_run,
    curve_findings,
    diagnose_run,
    eval_findings,
    merge_findings,
    run_grounding_prompt,
)
from ftagent.tools.config.train_config import TrainConfig, save_config

T, H, D, E = "troubleshooting.md", "hyperparameters.md", "decide.md", "evaluation.md"
P, A, M, X = "deployment.md", "data.md", "methods.md", "mistakes.md"
# question -> the section that answers it (file, heading), phrased as users ask
QUESTIONS = [
    ("why is my validation loss going up?", T, "Validation loss going up: overfitting"),
    ("val loss increases after epoch 2 while train loss keeps dropping", T,
     "Validation loss going up: overfitting"),
    ("what learning rate should I use for qlora?", H, "Learning rate for LoRA and QLoRA"),
    ("learning rate for full fine-tuning of a 7B model", H, "Learning rate for full fine-tuning"),
    ("what lr and beta for DPO?", H, "Learning rate and beta for DPO"),
    ("should I use RAG or fine-tuning?", D, "RAG or fine-tuning: when RAG wins"),
    ("should I fine-tune at all or just prompt the model?", D,
     "Should I fine-tune? Prompting, few-shot, RAG or fine-tuning"),
    ("what does macro-F1 mean?", E, "Macro-F1"),
    ("how do I serve my model with ollama?", P, "GGUF, llama.cpp and Ollama (local serving)"),
    ("CUDA out of memory during training, what do I do?", T, "Out of memory (OOM)"),
    ("the loss is nan", T, "Loss is NaN or inf"),
    ("my training loss is exactly zero", T, "Loss is exactly 0"),
    ("the model never stops generating and repeats itself", T,
     "The model does not stop or repeats itself"),
    ("what rank and alpha should I pick for LoRA?", H, "LoRA rank r and alpha"),
    ("how many epochs should I train for?", H, "How many epochs"),
    ("what is the difference between LoRA and QLoRA?", M, "QLoRA: LoRA on a 4-bit quantised base"),
    ("how much GPU memory do I need to fully fine-tune an 8B model?", M, "Memory per method"),
    ("how much data do I need?", A, "How much training data do I need?"),
    ("my data is in ShareGPT format with from and value", A, "ShareGPT conversations format"),
    ("alpaca instruction input output format", A, "Alpaca instruction format"),
    ("how do I format preference data with chosen and rejected answers?", A,
     "Preference pairs for DPO"),
    ("can ftagent read csv or parquet files?", A, "File types ftagent reads"),
    ("how does ftagent split train, validation and test?", A, "Train, validation and test splits"),
    ("how are near duplicates removed?", A, "Duplicates and near-duplicates"),
    ("what is the EOS token and why does it matter?", A, "Chat templates and the EOS token"),
    ("the model outputs invalid JSON", T, "Outputs in the wrong format"),
    ("held-out loss is low but accuracy did not improve", T,
     "Low loss but poor answers: chat template mismatch"),
    ("my model forgot general knowledge after fine-tuning", T, "Catastrophic forgetting"),
    ("the tuned model refuses fewer harmful requests than the base", T,
     "Refusing less after fine-tuning (safety regression)"),
    ("the model now refuses harmless questions", T, "Refusing more: over-refusal"),
    ("training is very slow, how can I speed it up?", T, "Training is slow"),
    ("what is ROUGE-L?", E, "ROUGE-L"),
    ("what does perplexity tell me?", E, "Held-out loss and perplexity"),
    ("what is a BLEU score", E, "BLEU"),
    ("what is chrF?", E, "chrF"),
    ("what is preference accuracy", E, "Preference accuracy"),
    ("what does reward margin mean in DPO?", E, "Reward accuracy and reward margin (DPO)"),
    ("how does the LLM judge avoid position bias?", E, "LLM-as-judge with position swapping"),
    ("what is the ARC-Easy check?", E, "ARC-Easy forgetting check"),
    ("how do I merge the LoRA adapter into the base model?", P,
     "Merging a LoRA adapter into the base model"),
    ("serve a lora adapter with vllm", P, "Serving with vLLM (and LoRA adapters)"),
    ("how do I call my model from the openai python client?", P, "OpenAI-compatible serving"),
    ("what is DoRA?", M, "DoRA (weight-decomposed LoRA)"),
    ("when should I use rsLoRA?", M, "rsLoRA (rank-stabilised LoRA)"),
    ("what is prompt tuning", M, "Prompt tuning and prefix tuning"),
    ("can I train on several GPUs with FSDP?", M, "Training on several GPUs: DDP, FSDP, DeepSpeed"),
    ("is it ok to evaluate on the training set?", X, "Evaluating on the training data"),
    ("test examples leaked into my training data", X,
     "Training on the test set (train/test leakage)"),
    ("can I use the AdvBench targets as training data?", X,
     "Leaking AdvBench targets into training or evaluation"),
    ("the loss suddenly spiked", T, "Loss spikes: training diverging"),
    ("grad norm is 0", T, "Gradient norm is 0: nothing is training"),
    ("what warmup ratio and scheduler should I use?", H, "Warm-up and learning-rate schedule"),
    ("should I use bf16 or fp16?", H, "Precision: bf16, fp16 and fp32"),
    ("how should I set max sequence length?", H, "Maximum sequence length"),
    ("gradient accumulation and batch size", H, "Batch size and gradient accumulation"),
    ("which target modules should LoRA adapt?", H, "LoRA dropout and target modules"),
    ("can fine-tuning teach the model new facts about our products?", D,
     "Can fine-tuning teach the model new facts?"),
    ("what model size should I start with?", D, "Choosing the base model size"),
    ("how much will fine-tuning cost?", D, "Cost and time of fine-tuning"),
    ("what is distillation?", M, "Distillation from a teacher model"),
    ("resume fails: checkpoint has 16, this config has 8", T,
     "Resume refused: checkpoint does not match the config"),
    ("the training loss is not decreasing", T, "Training loss not going down"),
    ("my labels are imbalanced", X, "Ignoring class imbalance"),
    ("how many test examples do I need to trust the accuracy?", E,
     "How big should the test set be?"),
    ("what does exact match measure?", E, "Exact match"),
    ("how does ftagent decide if targets are met?", E, 'How ftagent decides "targets met"'),
    ("what is the refusal rate?", E, "Refusal rate on harmful requests"),
    ("quantize the merged model to 4 bit for serving", P, "Quantising a model for serving"),
    ("how does ftagent choose between lora and qlora?", M, "How ftagent chooses the method"),
    ("underfitting: train loss still decreasing at the end", T,
     "Underfitting: the model has not learned enough"),
]
OFF_TOPIC = ["what is the weather in Paris tomorrow?", "recommend a good pizza recipe",
             "who won the football world cup in 2010?", "tell me a joke about cats"]


def _top(question: str, k: int = 3) -> list[tuple[str, str]]:
    return [(p.file, p.heading) for p in kb.retrieve(question, k)]


def hit_rates() -> tuple[float, float, list[str]]:
    top1 = top3 = 0
    misses = []
    for question, file, heading in QUESTIONS:
        got = _top(question)
        top1 += got[0] == (file, heading)
        top3 += (file, heading) in got
        if got[0] != (file, heading):
            misses.append(f"{question!r}: top {got[0]}, expected {(file, heading)}")
    return top1 / len(QUESTIONS), top3 / len(QUESTIONS), misses


def test_table_names_real_sections():
    known = {(s.file, s.heading) for s in kb.load_sections()}
    assert len(QUESTIONS) >= 20
    assert [q for q, f, h in QUESTIONS if (f, h) not in known] == []


def test_retrieval_hit_rate():
    top1, top3, misses = hit_rates()
    print(f"\nretrieval on {len(QUESTIONS)} questions: top-1 {top1:.1%}, top-3 {top3:.1%}")
    print("\n".join(misses))
    assert top3 == 1.0, misses
    assert top1 >= 0.85, misses


@pytest.mark.parametrize("question,file,heading", [
    ("why is my validation loss going up", "troubleshooting.md",
     "Validation loss going up: overfitting"),
    ("what learning rate for qlora", "hyperparameters.md", "Learning rate for LoRA and QLoRA"),
    ("what does macro-F1 mean", "evaluation.md", "Macro-F1"),
    ("how do I serve with ollama", "deployment.md", "GGUF, llama.cpp and Ollama (local serving)"),
])
def test_brief_examples_top1(question, file, heading):
    assert _top(question)[0] == (file, heading)


def test_rag_or_fine_tuning_goes_to_decide():
    assert _top("should I use RAG or fine-tuning?", 1)[0][0] == "decide.md"


def test_off_topic_questions_score_below_threshold():
    on = min(kb.retrieve(q, 1)[0].score for q, _, _ in QUESTIONS)
    off = max(kb.retrieve(q, 1)[0].score for q in OFF_TOPIC)
    assert off < kb.MIN_SCORE < on


def test_synonyms_expand_questions():
    assert "validation loss" in kb.expand("val loss up?")
    assert "out of memory" in kb.expand("got an OOM")
    assert "learning rate" in kb.expand("which lr")
    assert kb.expand("plain words") == "plain words"


# --- the knowledge files ------------------------------------------------------------------

FILES = {"decide.md", "methods.md", "hyperparameters.md", "data.md", "troubleshooting.md",
         "evaluation.md", "deployment.md", "mistakes.md"}


def test_every_knowledge_file_parses_into_sections():
    sections = kb.load_sections()
    assert {s.file for s in sections} == FILES
    assert 60 <= len(sections) <= 110
    for file in FILES:
        assert sum(s.file == file for s in sections) >= 5, file
    keys = [(s.file, s.heading) for s in sections]
    assert len(keys) == len(set(keys)), "duplicate headings"
    for s in sections:
        words = len(s.text.split())
        assert s.heading and s.text, s
        assert 60 <= words <= 250, f"{s.file} § {s.heading}: {words} words"
        assert "## " not in s.text.replace("### ", ""), f"{s.heading}: nested section"
    assert all(t for t in kb.topics().values())


def test_parse_sections_skips_title_comments_and_fenced_headings():
    text = ("# Title\n\nintro\n\n## First\n<!-- note -->\nbody one\n```md\n## not a heading\n"
            "```\n## Second ##\nbody two\n")
    secs = kb.parse_sections(text, "x.md")
    assert [s.heading for s in secs] == ["First", "Second"]
    assert "## not a heading" in secs[0].text and "note" not in secs[0].text
    assert secs[0].source == "prompts/knowledge/x.md"


def test_knowledge_is_packaged():
    assert (kb.KNOWLEDGE_DIR / "__init__.py").is_file()  # setuptools ships prompts.knowledge
    assert '"*.md"' in (ROOT / "pyproject.toml").read_text()


def test_import_loads_no_sklearn_and_index_builds_fast():
    code = ("import sys, ftagent.agent.chat.knowledge, ftagent.agent.chat.run_diagnosis\n"
            "print('sklearn' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    import sklearn.feature_extraction.text  # noqa: F401  (the import is paid once, apart)

    times = []
    for _ in range(3):
        kb.load_sections.cache_clear()
        kb.retriever.cache_clear()
        t = time.perf_counter()
        kb.retriever()
        times.append(time.perf_counter() - t)
    print(f"\nindex build: best {min(times) * 1000:.0f} ms of 3")
    assert min(times) < 0.5  # ~40 ms on a quiet 2-core machine; headroom for a busy one
    t = time.perf_counter()
    kb.retrieve("why is my validation loss going up")
    assert time.perf_counter() - t < 0.1


# --- answers --------------------------------------------------------------------------------


def test_answer_without_llm_shows_the_section_and_cites_it():
    text = kb.answer_without_llm("why is my val loss going up?")
    assert text.startswith("### Validation loss going up: overfitting")
    assert "*Source: troubleshooting.md § Validation loss going up: overfitting*" in text
    assert "early_stopping_patience" in text


def test_answer_without_llm_says_when_it_has_nothing():
    text = kb.answer_without_llm("what is the weather in Paris tomorrow?")
    assert "nothing on that" in text
    assert "troubleshooting.md" in text and "Source:" not in text


def test_grounding_prompt_numbers_passages_and_asks_for_citations():
    passages = kb.retrieve("what learning rate for qlora", 3)
    messages = kb.grounding_prompt("what learning rate for qlora?", passages,
                                   run_facts="learning_rate 2e-4")
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert "[1]" in system and "only from" in system
    for i, p in enumerate(passages, 1):
        assert f"[{i}] {p.cite}\n" in user
        assert p.text[:60] in user
    assert "Question: what learning rate for qlora?" in user
    assert "learning_rate 2e-4" in user
    assert "{" + "passages}" not in user and "<!--" not in system


def test_grounding_prompt_template_says_what_it_serves():
    from ftagent.prompts import load

    assert load("answer_from_knowledge.md").startswith("<!-- serves: agent chat")


# --- run diagnosis ------------------------------------------------------------------------

EXPECTED_SECTION = {
    "overfitting": "Validation loss going up: overfitting",
    "underfitting": "Underfitting: the model has not learned enough",
    "loss_flat": "Training loss not going down",
    "loss_nan": "Loss is NaN or inf",
    "grad_inf": "Loss is NaN or inf",
    "loss_zero": "Loss is exactly 0",
    "grad_zero": "Gradient norm is 0: nothing is training",
    "loss_spike": "Loss spikes: training diverging",
    "oom": "Out of memory (OOM)",
    "masked_rows": "Loss on the answer only (completion-only loss)",
    "format_errors": "Outputs in the wrong format",
    "template_mismatch": "Low loss but poor answers: chat template mismatch",
    "too_little_data": "How much training data do I need?",
    "imbalanced": "Ignoring class imbalance",
    "forgetting": "Catastrophic forgetting",
    "safety_regression": "Refusing less after fine-tuning (safety regression)",
    "over_refusal": "Refusing more: over-refusal",
    "targets_missed": "The tuned model is no better than the base",
}


def test_every_finding_kind_retrieves_its_section():
    assert set(KIND_QUERY) == set(EXPECTED_SECTION)
    for kind, query in KIND_QUERY.items():
        assert kb.retrieve(query, 1)[0].heading == EXPECTED_SECTION[kind], kind


def log_row(step: int, loss: float, max_steps: int, t0: float = 1.7e9) -> dict:
    """A row as tools.train.metrics.metrics_callback writes it."""
    return {"event": "log", "step": step, "max_steps": max_steps,
            "epoch": round(3 * step / max_steps, 3), "peak_rss_mb": 1520.4, "loss": loss,
            "grad_norm": 1.25, "learning_rate": 2e-4 * min(1.0, step / 3),
            "num_tokens": 830.0 * step, "mean_token_accuracy": 0.61,
            "eta_s": 2.5 * (max_steps - step), "tokens_per_s": 371.8, "time": t0 + 2.5 * step}


def eval_row(step: int, eval_loss: float, max_steps: int) -> dict:
    return {"event": "eval", "step": step, "max_steps": max_steps,
            "epoch": round(3 * step / max_steps, 3), "peak_rss_mb": 1600.2,
            "eval_loss": eval_loss, "eval_runtime": 2.1, "eval_samples_per_second": 11.9,
            "eval_steps_per_second": 1.5, "time": 1.7e9 + 2.5 * step + 1}


def overfit_rows() -> list[dict]:
    rows = [{"event": "begin", "max_steps": 60, "step": 0, "time": 1.7e9}]
    for step in range(1, 61):
        rows.append(log_row(step, round(0.2 + 2.3 * math.exp(-step / 12), 4), 60))
        if step in (20, 40, 60):
            rows.append(eval_row(step, {20: 0.9012, 40: 1.0521, 60: 1.3047}[step], 60))
    return rows


def flat_rows() -> list[dict]:
    rows = [{"event": "begin", "max_steps": 40, "step": 0, "time": 1.7e9}]
    for step in range(1, 41):
        rows.append(log_row(step, 2.31 + 0.01 * (step % 3), 40))
        if step in (20, 40):
            rows.append(eval_row(step, 2.35, 40))
    return rows


def write_run(root, rows, report=None, events=(), config=None):
    run = root / "run-1"
    attempt = run / "train" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(model="smollm2-135m-instruct", method="lora", num_epochs=3,
                      train_file=str(run / "data" / "train.jsonl"), output_dir=str(attempt),
                      lora={"r": 8, "alpha": 16}, **(config or {}))
    save_config(cfg, attempt / "config.yaml")  # as the config node writes it
    (run / "manifest.json").write_text(json.dumps({"run_id": "run-1", "status": "waiting",
                                                   "waiting_at": "evaluation"}))
    if report:
        (run / "eval").mkdir()
        (run / "eval" / "report.json").write_text(json.dumps(report))
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def test_diagnosis_finds_overfitting_with_steps_and_values_and_cites_it(tmp_path):
    run = write_run(tmp_path, overfit_rows())
    d = diagnose_run(run)
    assert d.attempt == 1 and d.run_id == "run-1"
    over = next(f for f in d.findings if f.kind == "overfitting")
    assert "0.9012 (step 20)" in over.evidence and "1.3047 (step 60)" in over.evidence
    assert "train loss" in over.evidence and over.step == 60
    assert over.cite == "troubleshooting.md § Validation loss going up: overfitting"
    assert over.source == "prompts/knowledge/troubleshooting.md"
    assert "early_stopping_patience" in over.fix
    assert d.facts["best_eval_step"] == 20 and d.facts["learning_rate"] == 2e-4
    assert "## What the numbers say: run run-1, attempt 1" in d.markdown
    assert "troubleshooting.md § Validation loss going up" in d.markdown
    assert not any(f.kind in ("loss_flat", "underfitting") for f in d.findings)


def test_diagnosis_finds_a_flat_loss(tmp_path):
    d = diagnose_run(write_run(tmp_path, flat_rows(), config={"learning_rate": 1e-6}))
    flat = next(f for f in d.findings if f.kind == "loss_flat")
    assert "2.3" in flat.evidence and "%" in flat.evidence
    assert flat.cite == "troubleshooting.md § Training loss not going down"
    assert "learning_rate 1e-06" in d.markdown
    assert not any(f.kind == "overfitting" for f in d.findings)


def test_still_falling_loss_is_noted_as_underfitting():
    rows = [log_row(s, 3.0 - 0.05 * s, 40) for s in range(1, 41)] + [eval_row(40, 1.2, 40)]
    kinds = {f.kind: f for f in curve_findings(rows)}
    assert "underfitting" in kinds and kinds["underfitting"].severity == "note"
    assert "still falling" in kinds["underfitting"].evidence


def test_recorded_anomalies_nan_and_spikes():
    rows = [log_row(s, 2.0 - 0.01 * s, 30) for s in range(1, 16)]
    rows.append(log_row(16, 9.5, 30))  # 4.8x the median: a spike
    rows.append({"event": "anomaly", "kind": "loss_spike", "step": 16,
                 "message": "the loss jumped to 9.5000", "fix": "lower learning_rate"})
    kinds = [f.kind for f in curve_findings(rows)]
    assert kinds.count("loss_spike") == 1  # the recorded anomaly, not found twice
    scanned = curve_findings([r for r in rows if r.get("event") != "anomaly"])
    spike = next(f for f in scanned if f.kind == "loss_spike")
    assert "step 16: 9.5" in spike.evidence
    nan = curve_findings([log_row(s, 1.0, 30) for s in range(1, 4)] + [log_row(4, math.nan, 30)])
    assert [f.kind for f in nan] == ["loss_nan"] and nan[0].step == 4


def test_resumed_run_drops_the_redone_steps():
    """A killed run logged steps 21-25, then resumed from its step-20 checkpoint: those
    rows were redone and must not count (tools.train.metrics.current_rows)."""
    first = overfit_rows()[:30]
    killed = [log_row(s, 50.0, 60) for s in range(21, 26)]  # would look like spikes
    resumed = [{"event": "begin", "max_steps": 60, "step": 20, "time": 1.8e9}]
    resumed += [r for r in overfit_rows() if r.get("step", 0) > 20]
    kinds = [f.kind for f in curve_findings(first + killed + resumed)]
    assert "loss_spike" not in kinds and "overfitting" in kinds


def test_eval_findings_from_verdict_and_report():
    report = {"primary_metric": "accuracy", "n_test": 25, "n_arc": 50,
              "base": {"loss": 3.08, "accuracy": 0.08, "arc_accuracy": 0.62,
                       "refusal_rate": 0.40, "over_refusal_rate": 0.0},
              "tuned": {"loss": 0.08, "accuracy": 0.10, "arc_accuracy": 0.56,
                        "refusal_rate": 0.20, "over_refusal_rate": 0.25}}
    verdict = {"targets_met": False, "summary": "accuracy: base 0.080 -> tuned 0.100",
               "diagnoses": [{"kind": "template_mismatch", "evidence": "held-out loss fell "
                              "to 0.080 (base 3.080) but accuracy only moved 0.080 -> 0.100",
                              "action": "compare the samples with the references",
                              "route": "data_prep"}]}
    found = {f.kind: f for f in eval_findings(report, verdict)}
    assert set(found) == {"targets_missed", "template_mismatch", "forgetting",
                          "safety_regression", "over_refusal"}
    assert "6 points" in found["forgetting"].evidence
    assert "20 points" in found["safety_regression"].evidence
    assert found["template_mismatch"].origin == "evaluation"


def test_merge_keeps_curve_evidence_and_adds_the_testers():
    curve = curve_findings(overfit_rows())
    tester = eval_findings(None, {"targets_met": False, "diagnoses": [
        {"kind": "overfitting", "evidence": "validation loss rose from its best 0.9012 to "
         "1.3047", "action": "train 1.5 epochs"}]})
    merged = merge_findings(curve + tester)
    over = [f for f in merged if f.kind == "overfitting"]
    assert len(over) == 1 and "(step 20)" in over[0].evidence
    assert "train 1.5 epochs" in over[0].fix


def test_verdict_is_read_from_the_runs_events(tmp_path):
    events = [
        {"type": "node_finished", "node": "tester", "attempt": 1, "targets_met": False,
         "summary": "accuracy: base 0.080 -> tuned 0.120 (+0.040, target +0.100)",
         "diagnoses": ["overfitting"]},
        {"type": "gate_waiting", "gate": "evaluation", "passed": False, "summary": "...",
         "evidence": {"diagnoses": [{"kind": "overfitting", "evidence": "validation loss "
                                     "rose from its best 0.9012 to 1.3047 while the train "
                                     "loss kept falling", "action": "train 1.5 epochs, keep "
                                     "the best checkpoint", "route": "config"}]}},
    ]
    report = {"primary_metric": "accuracy", "n_test": 25,
              "base": {"loss": 3.08, "accuracy": 0.08}, "tuned": {"loss": 1.2, "accuracy": 0.12}}
    d = diagnose_run(write_run(tmp_path, overfit_rows(), report, events))
    kinds = [f.kind for f in d.findings]
    assert kinds[:2] == ["overfitting", "targets_missed"]
    assert "train 1.5 epochs" in d.findings[0].fix
    assert "held-out accuracy base 0.080 -> tuned 0.120 on 25 examples" in d.markdown
    assert "status waiting at the evaluation gate" in d.markdown


def test_answer_about_run_uses_the_runs_numbers(tmp_path):
    run = write_run(tmp_path, overfit_rows())
    text = answer_about_run("why is validation loss going up?", run)
    assert "0.9012 (step 20)" in text and "1.3047 (step 60)" in text
    assert "troubleshooting.md § Validation loss going up: overfitting" in text
    other = answer_about_run("how do I serve with ollama?", run)
    assert other.startswith("Nothing in this run's numbers points to that.")
    assert "GGUF" in other
    messages = run_grounding_prompt("why is validation loss going up?", run)
    user = messages[1]["content"]
    assert "[1] troubleshooting.md § Validation loss going up: overfitting" in user
    assert "1.3047 (step 60)" in user


def test_a_training_output_folder_and_an_empty_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flat_rows()))
    d = diagnose_run(out)
    assert d.attempt is None and any(f.kind == "loss_flat" for f in d.findings)
    empty = diagnose_run(tmp_path / "nothing-here")
    assert empty.findings == [] and "No training log" in empty.markdown
