"""llama.cpp runs what ftagent exports: the pinned runtime and converter are installed; tiny
random-weight models of each common architecture, written by llama.cpp's converter, give
transformers' logits and greedy tokens in llama.cpp; the parity check passes on the bundled
model and fails on a template that differs; the Modelfile and the vLLM command agree with
what llama.cpp renders."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# llama.cpp scales Gemma's attention by 1/sqrt(head_dim) whatever query_pre_attn_scalar says
# (the released Gemma 2/3 set it so, but for the 27B's hidden/heads); the config's default of
# 256 would not match a tiny head_dim.
GEMMA = {"head_dim": 16, "query_pre_attn_scalar": 16}
# name: (config class, model class, extra config). Sizes are tiny; std 0.2 weights make the
# logits spread (at transformers' 0.02 every next token is a near-tie).
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", GEMMA),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
}
# Given SmolLM2's tokenizer.json, transformers 5 loads a Qwen2 folder's tokenizer as its own
# Qwen2Tokenizer (model_type decides, with Qwen2's pre-tokenizer), which llama.cpp's
# converter then does not recognise: those two get a SentencePiece model instead (Gemma 2's
# converter reads tokenizer.model only). Real Qwen2 and Gemma 2 folders carry their own.
SPM = {"qwen2", "gemma2"}


def _spm_tokenizer(out: Path) -> int:
    """A small SentencePiece model trained here; returns its vocabulary size."""
    import io

    import sentencepiece as spm

    lines = [json.loads(line)["messages"][0]["content"] for line in
             (Path(__file__).parent.parent / "tools" / "bundled" / "demo"
              / "support_intents.jsonl").read_text().splitlines()[:400]]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                   vocab_size=300, model_type="bpe", byte_fallback=True,
                                   minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>"}))
    return spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).vocab_size()


def build_tiny(arch: str, tokenizer_dir: Path, out: Path) -> Path:
    import torch
    import transformers
    from transformers import AutoTokenizer

    config_cls, model_cls, extra = ARCHS[arch]
    out.mkdir(parents=True)
    if arch in SPM:
        vocab, special = _spm_tokenizer(out), {"bos_token_id": 1, "eos_token_id": 2,
                                               "pad_token_id": 0}
    else:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        tok.save_pretrained(out)
        vocab, special = len(tok), {"bos_token_id": tok.bos_token_id,
                                    "eos_token_id": tok.eos_token_id,
                                    "pad_token_id": tok.pad_token_id}
    if arch == "phi3":  # as Phi-4-mini: a GPT-2 BPE tokenizer (else it reads tokenizer.model)
        cfg_file = out / "tokenizer_config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()),
                                        "tokenizer_class": "GPT2Tokenizer"}))
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.2, **special, **extra)
    getattr(transformers, model_cls)(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def exported(bundled_model, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Every architecture built and written to f16 GGUF by llama.cpp's converter (two at a
    time: each is its own process)."""
    from ftagent.tools.deploy.gguf import convert_with_llama_cpp

    root = tmp_path_factory.mktemp("archs")
    folders = {a: build_tiny(a, bundled_model.path, root / a) for a in ARCHS}

    def convert(arch):
        path = root / f"{arch}.gguf"
        try:
            # Not named after the folder: llama.cpp sets Phi-3's token attributes by the
            # model's *name* and needs Phi-3's own <s>, </s>, <unk> for that (SmolLM2's
            # vocabulary has none).
            convert_with_llama_cpp(folders[arch], path, "f16", name="ftagent-test")
        except ValueError as exc:
            return arch, exc
        return arch, path

    with ThreadPoolExecutor(2) as pool:
        return {a: (folders[a], p) for a, p in pool.map(convert, ARCHS)}


def test_runtime_and_converter_are_the_pinned_pair():
    import llama_cpp
    from ftagent.tools.deploy.llama_runtime import VERSION, cache_dir, converter_script, missing

    assert missing() == [] and llama_cpp.__version__ == VERSION
    # The converter runs with the gguf-py it was written with, from the same sdist.
    script = converter_script()
    assert (script.parent / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert (script.parent / "conversion" / "__init__.py").is_file()
    assert sorted(cache_dir().glob(f"llama_cpp_python-{VERSION}-*.whl")), "no cached wheel"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_architecture_runs_in_llama_cpp_as_in_transformers(exported, arch):
    import numpy as np
    import torch
    from ftagent.tools.deploy.llama_parity import NEAR_TIE_MARGIN
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    folder, gguf_path = exported[arch]
    assert isinstance(gguf_path, Path), f"{arch}: {gguf_path}"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    ids = [int(model.config.bos_token_id)] + rng.integers(
        3, model.config.vocab_size, 11).tolist()
    llm = Llama(model_path=str(gguf_path), n_ctx=64, n_threads=torch.get_num_threads(),
                logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        ours = llm.scores[:len(ids)].copy()
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].numpy()
        scale = float(np.abs(theirs).max())
        diff = float(np.abs(ours - theirs).max())
        print(f"{arch}: max |logit diff| {diff:.4f} of max |logit| {scale:.2f}")
        assert diff <= 0.01 * scale, f"{arch}: logits differ by {diff} (max |logit| {scale})"
        # Greedy continuation, 6 steps: the same tokens, or a near-tie where they part.
        hf_ids, ll_ids = list(ids), list(ids)
        for _ in range(6):
            with torch.no_grad():
                row = model(torch.tensor([hf_ids])).logits[0, -1].numpy()
            hf_ids.append(int(row.argmax()))
            llm.reset()
            llm.eval(ll_ids)
            ll_ids.append(int(np.argmax(llm.scores[len(ll_ids) - 1])))
            if hf_ids[-1] != ll_ids[-1]:
                margin = float(row[hf_ids[-1]] - row[ll_ids[-1]])
                assert margin <= NEAR_TIE_MARGIN["f16"], \
                    f"{arch}: greedy tokens part at a margin of {margin}, not a near-tie"
                break
    finally:
        llm.close()


def test_unsupported_architecture_is_refused_with_the_converters_reason(tmp_path):
    from ftagent.tools.deploy.gguf import convert_with_llama_cpp

    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["NoSuchModelForCausalLM"], "model_type": "no_such"}))
    with pytest.raises(ValueError, match="converter could not export"):
        convert_with_llama_cpp(tmp_path, tmp_path / "x.gguf", "f16")


@pytest.fixture(scope="module")
def smollm2_f16(bundled_model, tmp_path_factory):
    from ftagent.tools.deploy.gguf import export_gguf

    return export_gguf(bundled_model.path, tmp_path_factory.mktemp("smol") / "gguf", "f16",
                       name="smollm2")


CONVS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "My card has not arrived yet. What should I do?"}],
    [{"role": "user", "content": "Name three colours."}],
]


@pytest.mark.e2e
def test_bundled_model_in_llama_cpp_answers_as_in_transformers(smollm2_f16, bundled_model):
    from ftagent.tools.deploy.llama_parity import check_parity

    assert smollm2_f16.writer == "convert_hf_to_gguf" and smollm2_f16.architecture == "llama"
    rep = check_parity(smollm2_f16.gguf, bundled_model.path, CONVS, 24, "f16")
    print(rep.summary())
    assert rep.ok, rep.problems
    assert rep.same_prompt == rep.identical == rep.n == 3
    assert all(r.gguf_stopped == r.hf_stopped for r in rep.rows)
    assert any(r.gguf_stopped and r.stop_token == "<|im_end|>" for r in rep.rows)
    assert rep.max_rel_logit_diff <= rep.logit_tolerance
    assert rep.speed["llama.cpp"]["tokens_per_s"] > 0
    table = "\n".join(rep.table({"latency_ms": {"stream_first": 12.0}}))
    assert "| llama.cpp (f16) |" in table and "| ftagent serve | 12 |" in table


@pytest.mark.e2e
def test_modelfile_renders_what_llama_cpp_renders(smollm2_f16):
    from ftagent.tools.chat_template import parse_modelfile, render_ollama
    from ftagent.tools.deploy.llama_parity import gguf_chat_prompt, load_llama

    mf = parse_modelfile(Path(smollm2_f16.modelfile).read_text())
    llm = load_llama(smollm2_f16.gguf, n_ctx=256)
    try:
        for conv in CONVS:
            text, _ = gguf_chat_prompt(llm, conv)
            # Ollama puts the Modelfile's SYSTEM first where the request has none, as the
            # template's default system prompt does in llama.cpp's rendering.
            assert render_ollama(mf["template"], conv, mf["system"]) == text
        eot = llm._model.token_get_text(llm._model.token_eos())
    finally:
        llm.close()
    assert mf["stops"][0] == eot == "<|im_end|>"


@pytest.fixture(scope="module")
def spiky_export(spiky_model, tmp_path_factory) -> Path:
    """`ftagent export --gguf --check` on the spiky tiny model: exported and run."""
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("spiky_gguf") / "gguf"
    done = CliRunner().invoke(app, ["export", str(spiky_model), "--gguf", "--check",
                                    "--max-tokens", "8", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "by convert_hf_to_gguf" in done.output and "llama.cpp check passed" in done.output
    assert "| identical greedy answers | 2/2" in done.output
    return out


def test_parity_fails_when_the_gguf_renders_another_prompt(spiky_export, spiky_model,
                                                           tmp_path):
    from ftagent.tools.deploy.llama_parity import check_parity

    other = tmp_path / "other"
    shutil.copytree(spiky_model, other)
    jinja = other / "chat_template.jinja"
    jinja.write_text(jinja.read_text().replace("<|im_start|>assistant", "<|im_start|>bot"))
    bad = check_parity(spiky_export / "model.gguf", other, CONVS[:2], 6, "f16")
    assert not bad.ok and bad.same_prompt == 0
    assert "renders another prompt" in bad.problems[0] and "bot" in bad.problems[0]


def test_vllm_command_names_the_model_and_template(spiky_model, tmp_path):
    import shlex

    from ftagent.tools.chat_template import vllm_commands

    cmd = shlex.split(vllm_commands(spiky_model, name="ftagent-r1")[0])
    assert cmd[:3] == ["vllm", "serve", str(spiky_model)]
    assert cmd[cmd.index("--served-model-name") + 1] == "ftagent-r1"
    assert "--chat-template" not in cmd  # the folder carries its template
    bare = tmp_path / "bare"
    shutil.copytree(spiky_model, bare, ignore=shutil.ignore_patterns("chat_template.jinja"))
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    tpl = tmp_path / "t.jinja"
    tpl.write_text((spiky_model / "chat_template.jinja").read_text())
    cmd = shlex.split(vllm_commands(bare, template_file=tpl, name="x")[0])
    assert cmd[cmd.index("--chat-template") + 1] == str(tpl)


def test_served_answer_differences_are_located_with_their_margin(tiny_model):
    from ftagent.tools.deploy.client_check import first_difference
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ref = tok("The card is on its way", add_special_tokens=False)["input_ids"]
    margins = [5.0, 4.0, 0.01, 3.0, 2.0, 1.0][:len(ref)]
    assert first_difference(" The card is on its way ", ref, margins, tok) == (None, None)
    at, margin = first_difference("The card was lost", ref, margins, tok)
    assert tok.decode(ref[:at]) == "The card" and margin == margins[at]
    assert first_difference("The card is on its way, today", ref, margins, tok)[0] == len(ref)


def test_a_parting_is_a_near_tie_only_within_the_measured_margin():
    """The margin is transformers' logit of its token minus that of llama.cpp's token, set
    against the quant's measured bound: a llama.cpp token that transformers ranked well
    below its choice is a real difference even when, as always at a parting, the two
    runtimes' logits moved by more than that margin."""
    import numpy as np
    from ftagent.tools.deploy.llama_parity import NEAR_TIE_MARGIN, compare

    def logits(*pairs):
        row = np.zeros(8, dtype=np.float32)
        for tok, value in pairs:
            row[tok] = value
        return row

    # transformers: tokens 3, 5, then the end-of-turn 7; its logits at each step
    hf = {"tokens": [3, 5], "stopped": 7,
          "logits": [logits((3, 9.0)), logits((5, 8.0), (2, 8.0 - 0.1), (4, 6.0)),
                     logits((7, 5.0))]}
    same = [logits((3, 9.0)), logits((5, 8.0), (2, 7.9)), logits((7, 5.0))]
    assert compare(hf, [3, 5, 7], same, "q8_0")["identical"]
    # llama.cpp takes token 2, transformers' runner-up by 0.1 logit: a near-tie for q8_0,
    # a real difference for f16
    flipped = [same[0], logits((5, 7.9), (2, 8.0)), same[2]]
    cmp = compare(hf, [3, 2, 7], flipped, "q8_0")
    assert cmp["first_divergence"] == 1 and cmp["margin"] == pytest.approx(0.1, abs=1e-5)
    assert cmp["near_tie"] and NEAR_TIE_MARGIN["f16"] < 0.1
    assert not compare(hf, [3, 2, 7], flipped, "f16")["near_tie"]
    # llama.cpp takes token 4, two logits below transformers' choice: never a near-tie,
    # though the logits moved by more than that (as any parting implies)
    far = [same[0], logits((5, 7.0), (4, 8.0)), same[2]]
    cmp = compare(hf, [3, 4, 7], far, "q8_0")
    assert cmp["margin"] == pytest.approx(2.0) and cmp["max_logit_diff"] >= 1.0
    assert not cmp["near_tie"]
    # llama.cpp runs past transformers' end of turn: judged on the end-of-turn logit
    late = compare(hf, [3, 5, 1], same, "q8_0")
    assert late["first_divergence"] == 2 and late["margin"] == pytest.approx(5.0)
    assert not late["near_tie"]
