"""Does the exported GGUF answer like the merged model? llama.cpp against transformers.

For every held-out conversation:
- the prompt: the chat template llama.cpp reads from the GGUF (`tokenizer.chat_template`,
  rendered by llama-cpp-python's Jinja2 formatter, as its chat completions do) must give the
  same text as transformers' `apply_chat_template` on the merged folder, and llama.cpp's
  tokenizer the same token ids;
- stopping: llama.cpp's greedy answer must end at an end-of-generation token of the file
  (`llama_vocab_is_eog`: the template's end of turn) within the token limit wherever
  transformers' does;
- the answer: greedy token by token against transformers' greedy answer (float32 compute on
  the merged weights). At the first token where they differ, transformers' margin between
  its own token and llama.cpp's is set against how far the export's rounding moves the gap
  between two logits (`NEAR_TIE_MARGIN`, measured per quant with `evals/near_tie.py`): a
  margin within it is a near-tie that the rounding can flip (reported, not a failure); a
  wider one is a real difference. Logit differences beyond the quant's tolerance fail too.
  The margin is judged against a fixed, measured bound, not against the logit differences
  of the same comparison: llama.cpp choosing another token already means the two logits
  moved by at least the margin between them, so that test could never fail.
- speed: time to first token and decoding tokens/s, llama.cpp and transformers on the
  same prompts and threads.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from pydantic import BaseModel, Field

# Largest |logit difference| between llama.cpp and transformers (float32) on the same prefix
# that the export's rounding explains, as a share of the largest |logit| there: f16 keeps 11
# bits of each weight, bf16 8, q8_0 about 8 per block of 32. Measured (README "Measured"):
# f16 0.15% on SmolLM2-135M, at most 0.3% on tiny models of seven architectures; q8_0 on
# SmolLM2-135M 1.9-5.9% (0.7-2.2 logits of about 35) over 10 held-out prompts. A broken export
# (a wrong permutation, norm or attention scale) differs by tens of percent.
LOGIT_TOLERANCE = {"f32": 0.002, "f16": 0.01, "bf16": 0.10, "q8_0": 0.10}
# Identical greedy answers needed (rounded down). q8_0 flips near-ties, more often the longer
# the answer: measured on SmolLM2-135M, 8/10 identical on 16-token answers and 1/5 on 48-token
# ones, every other answer parting where transformers' top two logits were 0.018-0.063 apart.
# So for q8_0 and bf16 the share is reported, not required: a difference that is not a
# near-tie, logits beyond the tolerance or a task metric moved by more than a point fail.
MIN_IDENTICAL = {"f32": 1.0, "f16": 1.0, "bf16": 0.0, "q8_0": 0.0}
# The widest margin (transformers' logit of its token minus that of llama.cpp's token, at the
# first token where they part) that counts as a near-tie, per quant: about the most the
# export's rounding moved the gap between transformers' top two logits in
# `python -m evals.near_tie` (SmolLM2-135M-Instruct, 32 prompts from the demo, self_instruct,
# sgd and hh_rlhf, 48 tokens, 1,482 positions, 2026-12-08). f16: median 0.003, p99 0.016,
# max 0.039 logit, no answer parted; bound twice the max. q8_0: median 0.111, p99 0.48, max
# 0.90; 27 of 32 answers parted, at margins 0.001-0.303 (sgd's deployment run: 0.16). bf16 is
# not measured; it keeps as many bits as q8_0, so it gets q8_0's bound.
NEAR_TIE_MARGIN = {"f32": 0.01, "f16": 0.08, "bf16": 1.0, "q8_0": 1.0}


class PromptParity(BaseModel):
    prompt: str  # the last user message
    same_prompt: bool
    same_prompt_ids: bool
    prompt_diff: str = ""  # where the rendered texts part, when they do
    hf_answer: str
    gguf_answer: str
    hf_tokens: int
    gguf_tokens: int
    hf_stopped: bool  # ended at an end-of-turn token within the limit
    gguf_stopped: bool
    stop_token: str = ""  # the token llama.cpp stopped at
    identical: bool
    first_divergence: int | None = None  # token index in the answer
    margin: float | None = None  # transformers' top-1 minus top-2 logit there
    max_logit_diff: float  # llama.cpp vs transformers on transformers' greedy path
    logit_scale: float = 0.0  # the largest |logit| of transformers' there
    near_tie: bool = False
    hf_correct: bool | None = None  # the answer equals the held-out reference
    gguf_correct: bool | None = None


class ParityReport(BaseModel):
    ok: bool
    gguf: str
    quant: str
    runtime: str  # llama-cpp-python version
    n: int = 0
    same_prompt: int = 0
    stopped: int = 0
    identical: int = 0
    near_ties: int = 0
    max_logit_diff: float = 0.0
    max_rel_logit_diff: float = 0.0  # max_logit_diff / logit_scale, the worst prompt
    logit_tolerance: float = 0.0  # on max_rel_logit_diff
    min_identical: float = 1.0
    near_tie_margin: float = 0.0  # the widest parting margin that counts as a near-tie
    exact_match: dict[str, float] = Field(default_factory=dict)  # vs the held-out answers
    speed: dict[str, dict[str, float]] = Field(default_factory=dict)
    rows: list[PromptParity] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        if not self.n:
            return f"llama.cpp parity not run: {'; '.join(self.problems)}"
        s = (f"llama.cpp {self.runtime} on the {self.quant} GGUF vs transformers, {self.n} "
             f"held-out prompts: same prompt {self.same_prompt}/{self.n}, stopped at end of "
             f"turn {self.stopped}/{self.n}, identical answers {self.identical}/{self.n}"
             f" ({self.near_ties} near-ties within {self.near_tie_margin:g} logit), largest "
             "logit difference "
             f"{self.max_logit_diff:.3f} = {self.max_rel_logit_diff:.2%} of the largest logit "
             f"(tolerance {self.logit_tolerance:.1%})")
        ll, hf = self.speed.get("llama.cpp", {}), self.speed.get("transformers", {})
        if ll:
            s += (f"; first token {ll.get('first_token_ms', 0):.0f} ms, "
                  f"{ll.get('tokens_per_s', 0):.1f} tok/s (transformers "
                  f"{hf.get('first_token_ms', 0):.0f} ms, {hf.get('tokens_per_s', 0):.1f} tok/s)")
        return s + ("" if self.ok else ". Problems: " + "; ".join(self.problems))

    def table(self, served: dict | None = None) -> list[str]:
        """Markdown rows for the deployment report: llama.cpp next to ftagent's server."""
        ll, hf = self.speed.get("llama.cpp", {}), self.speed.get("transformers", {})
        rows = ["| check | result |", "|---|---|",
                f"| rendered prompt equal | {self.same_prompt}/{self.n} |",
                f"| stopped at end of turn | {self.stopped}/{self.n} |",
                f"| identical greedy answers | {self.identical}/{self.n} "
                f"({self.near_ties} near-ties within {self.near_tie_margin:g} logit"
                + (f"; need {self.min_identical:.0%}" if self.min_identical else "") + ") |",
                f"| largest logit difference | {self.max_logit_diff:.3f} = "
                f"{self.max_rel_logit_diff:.2%} of the largest logit (tolerance "
                f"{self.logit_tolerance:.1%}) |"]
        for who, em in self.exact_match.items():
            rows.append(f"| exact match with held-out answers, {who} | {em:.0%} |")
        rows += ["", "| runtime | first token (ms) | tokens/s |", "|---|---|---|",
                 f"| llama.cpp ({self.quant}) | {ll.get('first_token_ms', 0):.0f} | "
                 f"{ll.get('tokens_per_s', 0):.1f} |",
                 f"| transformers (float32) | {hf.get('first_token_ms', 0):.0f} | "
                 f"{hf.get('tokens_per_s', 0):.1f} |"]
        if served and served.get("latency_ms"):
            rows.append(f"| ftagent serve | {served['latency_ms'].get('stream_first', 0):.0f} "
                        "| – |")
        return rows


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
             min(len(a), len(b)))
    return f"at character {i}: transformers {a[i:i + 40]!r}, llama.cpp {b[i:i + 40]!r}"


def load_llama(gguf_path: str | Path, n_ctx: int = 2048):
    """llama.cpp on the file, CPU, as many threads as torch uses, every position's logits."""
    import torch
    from llama_cpp import Llama

    return Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=torch.get_num_threads(),
                 logits_all=True, verbose=False, seed=0)


def gguf_chat_prompt(llm, messages: list[dict]) -> tuple[str, list[int]]:
    """The prompt as llama.cpp renders it: the GGUF's own template and special tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("the GGUF file has no tokenizer.chat_template")
    m = llm._model
    eos, bos = m.token_eos(), m.token_bos()
    fmt = Jinja2ChatFormatter(template=template,
                              eos_token=m.token_get_text(eos) if eos != -1 else "",
                              bos_token=m.token_get_text(bos) if bos != -1 else "")
    rendered = fmt(messages=messages)
    ids = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special,
                       special=True)
    return rendered.prompt, ids


def llama_greedy(llm, prompt_ids: list[int], max_tokens: int) -> dict:
    """Greedy decoding by llama.cpp until an end-of-generation token or `max_tokens`."""
    import llama_cpp
    import numpy as np

    vocab = llm._model.vocab
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt_ids)
    out, stopped, first_ms = [], None, 0.0
    for step in range(max_tokens):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if step == 0:
            first_ms = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            stopped = tok
            break
        out.append(tok)
        llm.eval([tok])
    decode_s = time.perf_counter() - t1
    return {"tokens": out, "stopped": stopped, "first_token_ms": first_ms,
            "decode_tokens": len(out), "decode_s": decode_s}


def llama_logits(llm, ids: list[int], n_prompt: int):
    """llama.cpp's logits at every answer position of `ids` (teacher-forced)."""
    llm.reset()
    llm.eval(ids)
    return llm.scores[n_prompt - 1:len(ids)].copy()


def hf_greedy(model, prompt_ids: list[int], eos_ids: set[int], max_tokens: int) -> dict:
    """transformers' greedy answer with its cache, and the logits of every step."""
    import torch

    dev = model.device
    past, ids, out, logits, stopped = None, torch.tensor([prompt_ids], device=dev), [], [], None
    t0 = time.perf_counter()
    first_ms, t1 = 0.0, t0
    with torch.no_grad():
        for step in range(max_tokens):
            res = model(input_ids=ids, past_key_values=past, use_cache=True)
            past, row = res.past_key_values, res.logits[0, -1].float().cpu()
            tok = int(row.argmax())
            logits.append(row.numpy())
            if step == 0:
                first_ms, t1 = (time.perf_counter() - t0) * 1000, time.perf_counter()
            if tok in eos_ids:
                stopped = tok
                break
            out.append(tok)
            ids = torch.tensor([[tok]], device=dev)
    return {"tokens": out, "stopped": stopped, "logits": logits, "first_token_ms": first_ms,
            "decode_tokens": len(out), "decode_s": time.perf_counter() - t1}


def _margin(row) -> float:
    import numpy as np

    top = np.partition(row, -2)[-2:]
    return float(top[1] - top[0])


def compare(hf: dict, gguf_tokens: list[int], ll_logits, quant: str = "q8_0") -> dict:
    """First divergence of llama.cpp's greedy tokens from transformers', with transformers'
    margin there (its token's logit minus that of llama.cpp's token) and the largest logit
    difference on the shared prefix (teacher-forced along transformers' path, so every
    answer position is compared)."""
    import numpy as np

    ref = hf["tokens"] + ([hf["stopped"]] if hf["stopped"] is not None else [])
    n = min(len(ll_logits), len(hf["logits"]))
    diffs = [float(np.abs(ll_logits[i] - hf["logits"][i]).max()) for i in range(n)]
    scale = max((float(np.abs(hf["logits"][i]).max()) for i in range(n)), default=0.0)
    first = next((i for i, (a, b) in enumerate(zip(ref, gguf_tokens, strict=False)) if a != b),
                 None)
    if first is None and len(gguf_tokens) != len(ref):
        first = min(len(gguf_tokens), len(ref))
    if first is None:
        return {"identical": True, "first_divergence": None, "margin": None,
                "max_logit_diff": max(diffs, default=0.0), "logit_scale": scale,
                "near_tie": False}
    margin = None
    if first < len(hf["logits"]) and first < len(ref) and first < len(gguf_tokens):
        row = hf["logits"][first]
        margin = float(row[ref[first]] - row[gguf_tokens[first]])
    local = max(diffs[:first + 1], default=0.0)  # the shared prefix and the parting token
    bound = NEAR_TIE_MARGIN.get(quant, NEAR_TIE_MARGIN["q8_0"])
    return {"identical": False, "first_divergence": first, "margin": margin,
            "max_logit_diff": local, "logit_scale": scale,
            "near_tie": margin is not None and margin <= bound}


def check_parity(gguf_path: str | Path, merged_dir: str | Path, conversations: list[list[dict]],
                 max_tokens: int, quant: str, references: list[str] | None = None,
                 model=None, tokenizer=None) -> ParityReport:
    """llama.cpp on `gguf_path` against transformers on `merged_dir`, on `conversations`
    (each ends with the user turn to answer); `references[i]`: the held-out answer, for the
    exact-match rate of both."""
    import torch
    from ftagent.tools.deploy.llama_runtime import runtime_version
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    rep = ParityReport(ok=False, gguf=str(gguf_path), quant=quant,
                       runtime=runtime_version() or "?",
                       logit_tolerance=LOGIT_TOLERANCE.get(quant, LOGIT_TOLERANCE["q8_0"]),
                       min_identical=MIN_IDENTICAL.get(quant, 0.9),
                       near_tie_margin=NEAR_TIE_MARGIN.get(quant, NEAR_TIE_MARGIN["q8_0"]))
    tok = tokenizer or AutoTokenizer.from_pretrained(merged_dir)
    model = model or AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    gen = GenerationConfig.from_pretrained(merged_dir) if (
        Path(merged_dir) / "generation_config.json").is_file() else model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tok.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    hf_texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in conversations]
    longest = max((len(tok(t, add_special_tokens=False)["input_ids"]) for t in hf_texts),
                  default=0)
    # Every position's logits are kept (n_ctx x vocab floats): no larger than needed.
    llm = load_llama(gguf_path, n_ctx=-(-(longest + max_tokens + 16) // 256) * 256)
    speed = {"llama.cpp": [0.0, 0, 0.0], "transformers": [0.0, 0, 0.0]}
    correct = {"transformers": 0, "llama.cpp": 0}
    try:
        for i, conv in enumerate(conversations):
            hf_text = hf_texts[i]
            hf_ids = tok(hf_text, add_special_tokens=False)["input_ids"]
            ll_text, ll_ids = gguf_chat_prompt(llm, conv)
            hf = hf_greedy(model, hf_ids, eos_ids, max_tokens)
            ll = llama_greedy(llm, ll_ids, max_tokens)
            # transformers' path, as far as it has logits: logits row j follows token j - 1
            path = hf_ids + hf["tokens"][:len(hf["logits"]) - 1]
            cmp = compare(hf, ll["tokens"] + ([ll["stopped"]] if ll["stopped"] is not None
                                              else []), llama_logits(llm, path, len(hf_ids)),
                          quant)
            hf_answer = tok.decode(hf["tokens"], skip_special_tokens=True)
            ll_answer = llm.detokenize(ll["tokens"]).decode("utf-8", errors="replace")
            row = PromptParity(
                prompt=conv[-1]["content"], same_prompt=ll_text == hf_text,
                same_prompt_ids=ll_ids == hf_ids,
                prompt_diff="" if ll_text == hf_text else _first_difference(hf_text, ll_text),
                hf_answer=hf_answer, gguf_answer=ll_answer, hf_tokens=len(hf["tokens"]),
                gguf_tokens=len(ll["tokens"]), hf_stopped=hf["stopped"] is not None,
                gguf_stopped=ll["stopped"] is not None,
                stop_token=llm._model.token_get_text(ll["stopped"])
                if ll["stopped"] is not None else "", **cmp)
            if references is not None and i < len(references):
                want = references[i].strip()
                row.hf_correct, row.gguf_correct = hf_answer.strip() == want, \
                    ll_answer.strip() == want
                correct["transformers"] += row.hf_correct
                correct["llama.cpp"] += row.gguf_correct
            rep.rows.append(row)
            for who, r in (("llama.cpp", ll), ("transformers", hf)):
                speed[who][0] += r["first_token_ms"]
                speed[who][1] += r["decode_tokens"]
                speed[who][2] += r["decode_s"]
    finally:
        llm.close()
    n = rep.n = len(rep.rows)
    rep.same_prompt = sum(r.same_prompt and r.same_prompt_ids for r in rep.rows)
    rep.stopped = sum(r.gguf_stopped or not r.hf_stopped for r in rep.rows)
    rep.identical = sum(r.identical for r in rep.rows)
    rep.near_ties = sum(r.near_tie for r in rep.rows)
    rep.max_logit_diff = round(max((r.max_logit_diff for r in rep.rows), default=0.0), 4)
    rep.max_rel_logit_diff = round(max((r.max_logit_diff / r.logit_scale for r in rep.rows
                                        if r.logit_scale), default=0.0), 5)
    if references is not None and n:
        rep.exact_match = {k: v / n for k, v in correct.items()}
    rep.speed = {who: {"first_token_ms": round(v[0] / max(n, 1), 1),
                       "tokens_per_s": round(v[1] / v[2], 1) if v[2] else 0.0}
                 for who, v in speed.items()}
    rep.problems = _problems(rep)
    rep.ok = bool(n) and not rep.problems
    return rep


def _problems(rep: ParityReport) -> list[str]:
    out = []
    for r in rep.rows:
        head = f"{r.prompt[:40]!r}"
        if not r.same_prompt:
            out.append(f"{head}: the GGUF's chat template renders another prompt "
                       f"({r.prompt_diff})")
        elif not r.same_prompt_ids:
            out.append(f"{head}: llama.cpp tokenises the prompt differently (tokenizer or "
                       "pre-tokenizer not carried over)")
        if r.hf_stopped and not r.gguf_stopped:
            out.append(f"{head}: llama.cpp did not stop at the end-of-turn token within "
                       f"{r.gguf_tokens} tokens (transformers stopped after {r.hf_tokens})")
        if not r.identical and not r.near_tie:
            out.append(f"{head}: answers part at token {r.first_divergence} with a margin of "
                       f"{r.margin if r.margin is None else round(r.margin, 3)} logit (a "
                       f"near-tie is at most {rep.near_tie_margin:g} for {rep.quant}): "
                       f"transformers {r.hf_answer[:60]!r}, llama.cpp "
                       f"{r.gguf_answer[:60]!r}")
    if rep.max_rel_logit_diff > rep.logit_tolerance:
        out.append(f"logits differ by up to {rep.max_rel_logit_diff:.2%} of the largest logit "
                   f"(tolerance {rep.logit_tolerance:.1%} for {rep.quant})")
    if rep.n and rep.identical < math.floor(rep.min_identical * rep.n + 1e-9):
        out.append(f"only {rep.identical}/{rep.n} identical answers (need "
                   f"{rep.min_identical:.0%} for {rep.quant})")
    if len(rep.exact_match) == 2:
        gap = abs(rep.exact_match["transformers"] - rep.exact_match["llama.cpp"])
        if gap > 0.01 + 1e-9:
            out.append(f"exact match with the held-out answers moved by {gap:.1%} "
                       "(more than 1 point)")
    return out
