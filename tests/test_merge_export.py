"""Merge a LoRA adapter, verify the merge, export to GGUF + Ollama, one chat template end to
end, model card and CLI: on the tiny random Llama (one structure test on real SmolLM2)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import DEMO_DATA

# The training template differs from the base's (another default system prompt), so every
# check below tells "the template used in training" from "the base's".
TRAIN_SYSTEM = "You are the support assistant of an online bank."
TRAIN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + TRAIN_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "My card hasn't arrived. Where is it?"}],
    [{"role": "system", "content": "Reply with the intent only."},
     {"role": "user", "content": "I lost my card"}, {"role": "assistant", "content": "lost"},
     {"role": "user", "content": "And how do I change my PIN?"}],
]


@pytest.fixture(scope="module")
def rows():
    from ftagent.tools.evaluate.compare import read_rows

    return read_rows(DEMO_DATA)[::25]  # 10 real held-out-style rows, one per intent


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter that changes the output (lora_B small, random, non-zero), saved with a
    training tokenizer that carries TRAIN_TEMPLATE, as tools.train saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("train") / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    peft.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = TRAIN_TEMPLATE
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def merged(tiny_model, adapter, tmp_path_factory):
    from ftagent.tools.deploy.merge import merge_model

    return merge_model(tiny_model, adapter, tmp_path_factory.mktemp("m") / "merged")


@pytest.fixture(scope="module")
def gguf_f16(merged, tmp_path_factory):
    from ftagent.tools.deploy.gguf import export_gguf

    return export_gguf(merged.merged, tmp_path_factory.mktemp("g") / "gguf", "f16", name="tiny")


@pytest.fixture(scope="module")
def f16_reader(gguf_f16):
    import gguf

    return gguf.GGUFReader(gguf_f16.gguf)  # parsing 49k tokens and merges takes seconds


def test_merge_writes_a_plain_hf_folder_with_the_training_template(merged, tiny_model):
    from pathlib import Path

    from transformers import AutoTokenizer

    folder = Path(merged.merged)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "generation_config.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "adapter_config.json").exists()
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"  # the base's
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.chat_template == TRAIN_TEMPLATE != AutoTokenizer.from_pretrained(
        tiny_model).chat_template
    assert merged.template_from == "adapter" and merged.end_of_turn == "<|im_end|>"
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])


def test_merged_folder_loads_and_answers_without_ftagent(merged):
    from ftagent.tools.deploy.merge import check_loads_and_answers

    said = check_loads_and_answers(merged.merged, CONVERSATIONS[0])
    assert said["ok"], said
    assert said["ftagent_importable"] is False and said["new_tokens"] > 0


def test_verification_passes_on_a_real_merge_and_fails_on_tampered_weights(
        tiny_model, adapter, merged, rows, tmp_path):
    import torch
    from ftagent.tools.deploy.merge_verify import verify_merge
    from safetensors.torch import load_file, save_file

    check = verify_merge(tiny_model, adapter, merged.merged, rows[:6])
    print(check.summary())
    assert check.ok, check.problems
    assert check.max_abs_logit_diff < 1e-4 and abs(check.perplexity_rel_diff) < 1e-4
    # The adapter does change the model: the base alone is far from the merged model.
    from ftagent.tools.deploy.merge_verify import _max_logit_diff
    from ftagent.tools.evaluate.compare import load_plain

    base, tok = load_plain(tiny_model)
    moved = _max_logit_diff(base, load_plain(merged.merged)[0], tok, CONVERSATIONS)
    print(f"the adapter moves logits by up to {moved:.3g}")
    assert moved > 1000 * max(check.max_abs_logit_diff, 1e-6)

    tampered = tmp_path / "tampered"
    shutil.copytree(merged.merged, tampered)
    weights = load_file(tampered / "model.safetensors")
    torch.manual_seed(2)
    key = "model.layers.0.mlp.down_proj.weight"
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
    save_file(weights, tampered / "model.safetensors", metadata={"format": "pt"})
    bad = verify_merge(tiny_model, adapter, tampered, rows[:6])
    print(bad.summary())
    assert not bad.ok and bad.max_abs_logit_diff > bad.logit_tolerance
    assert any("logits differ" in p for p in bad.problems)


def test_bf16_base_merges_in_bf16_and_qlora_is_said(tiny_model, adapter, rows, tmp_path):
    import torch
    from ftagent.tools.deploy.merge import merge_model
    from ftagent.tools.deploy.merge_verify import verify_merge
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tmp_path / "base-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(base)
    run = tmp_path / "train"
    shutil.copytree(adapter, run / "adapter")
    (run / "config.yaml").write_text("# as tools.train saves it\nmethod: qlora\n")
    result = merge_model(base, run / "adapter", tmp_path / "merged")
    assert result.dtype == "bfloat16" and result.method == "qlora"
    assert "unquantised" in result.note and "4-bit" in result.note
    with safe_open(tmp_path / "merged" / "model.safetensors", framework="pt") as f:
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch.bfloat16
    check = verify_merge(base, run / "adapter", tmp_path / "merged", rows[:4])
    print(check.summary())
    assert check.ok, check.problems


def test_gguf_reads_back_as_transformers_reads_gguf(gguf_f16, f16_reader, merged, tmp_path):
    import gguf
    from ftagent.tools.deploy.gguf import export_gguf
    from safetensors import safe_open
    from transformers import AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    assert gguf_f16.check["ok"], gguf_f16.check["problems"]
    shapes = {t.name: [int(d) for d in t.shape] for t in f16_reader.tensors}
    assert shapes["blk.0.attn_k.weight"] == [32, 16]  # HF k_proj is (2 kv heads * 8, 32)
    assert shapes["token_embd.weight"] == [32, 49152] and "output.weight" not in shapes  # tied
    fields = f16_reader.fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.chat_template"].contents() == TRAIN_TEMPLATE
    assert fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_F16
    assert fields["llama.attention.head_count_kv"].contents() == 2

    # transformers' GGUF loader undoes llama.cpp's Q/K permutation with its own code:
    # getting the HF weights back from our tensors proves the layout.
    undo = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    tensors = {t.name: t for t in f16_reader.tensors}
    with safe_open(f"{merged.merged}/model.safetensors", framework="pt") as f:
        for hf, name in (("q_proj", "blk.1.attn_q.weight"), ("k_proj", "blk.1.attn_k.weight")):
            want = f.get_tensor(f"model.layers.1.self_attn.{hf}.weight").numpy()
            got = undo.process(tensors[name].data.astype("float32"), name).weights
            assert abs(got - want).max() <= 1e-3 * abs(want).max()
            assert abs(tensors[name].data - want).max() > 0.1 * abs(want).max()  # was permuted
    # ... and builds a tokenizer from our token list, types and merges that tokenizes alike.
    gtok = AutoTokenizer.from_pretrained(gguf_f16.out_dir, gguf_file="model.gguf")
    tok = AutoTokenizer.from_pretrained(merged.merged)
    text = "Hello world! 123 <|im_end|> café\n  spaced"
    assert gtok(text)["input_ids"] == tok(text)["input_ids"]

    q8 = export_gguf(merged.merged, tmp_path / "q8", "q8_0")
    assert q8.check["ok"] and 0 < q8.check["max_rel_error"] < 6e-3
    assert q8.check["tensor_types"] == {"Q8_0": 15, "F32": 5}  # 2 x 7 matrices + embeddings
    assert q8.size_bytes < gguf_f16.size_bytes  # (the vocabulary dominates a tiny model)
    with pytest.raises(FileExistsError):
        export_gguf(merged.merged, tmp_path / "q8", "q8_0")


def test_one_chat_template_end_to_end(merged, gguf_f16, f16_reader, adapter, tiny_model,
                                      tmp_path):
    """The same conversation through the merged tokenizer, the GGUF's stored template and
    the Modelfile TEMPLATE gives one string; EOS and stop tokens agree."""
    from pathlib import Path

    from ftagent.tools.chat_template import (
        parse_modelfile,
        render_jinja,
        render_ollama,
        vllm_commands,
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged.merged)
    reader = f16_reader
    stored = reader.fields["tokenizer.chat_template"].contents()
    mf = parse_modelfile(Path(gguf_f16.modelfile).read_text())
    assert mf["from"] == "./model.gguf" and mf["system"] == TRAIN_SYSTEM
    for conv in CONVERSATIONS:
        hf = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        assert render_jinja(stored, conv, True, tok.bos_token, tok.eos_token) == hf
        assert render_ollama(mf["template"], conv, mf["system"]) == hf
    assert hf.count("<|im_end|>") == 4  # end-of-turn markers included in the comparison
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert "<|im_end|>" in mf["stops"]
    assert reader.fields["tokenizer.ggml.eos_token_id"].contents() == im_end
    # llama.cpp's converter writes no eot id here (EOS is <|im_end|>); what matters is that
    # llama.cpp ends generation there.
    import llama_cpp

    llm = llama_cpp.Llama(model_path=gguf_f16.gguf, n_ctx=64, verbose=False)
    try:
        assert llama_cpp.llama_vocab_is_eog(llm._model.vocab, im_end)
    finally:
        llm.close()
    assert im_end in merged.eos_token_ids

    # vLLM: the merged tokenizer carries the template; a folder without it gets the flag.
    [serve] = vllm_commands(merged.merged, name="tiny")
    assert "--chat-template" not in serve
    bare = tmp_path / "bare"
    shutil.copytree(merged.merged, bare)
    (bare / "chat_template.jinja").unlink()
    [serve] = vllm_commands(bare, template_file=gguf_f16.chat_template)
    assert serve.endswith(f"--chat-template {gguf_f16.chat_template}")
    _, lora = vllm_commands(merged.merged, base=tiny_model, adapter_dir=adapter, name="tiny")
    assert f"--enable-lora --lora-modules tiny={adapter}" in lora
    assert f"--chat-template {adapter / 'chat_template.jinja'}" in lora  # base's differs


def test_template_translation_checks_itself():
    from ftagent.tools.chat_template import (
        UnsupportedTemplate,
        jinja_to_ollama,
        modelfile,
        render_jinja,
        render_ollama,
    )

    llama3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
              "'<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>"
              "\n\n' }}{% endif %}")
    t = jinja_to_ollama(llama3, "<|begin_of_text|>", "<|eot_id|>")
    assert t.system is None and t.stops == ["<|eot_id|>"]
    assert t.template.startswith("<|begin_of_text|>{{ range .Messages }}")
    for conv in CONVERSATIONS:
        assert render_ollama(t.template, conv) == render_jinja(
            llama3, conv, True, "<|begin_of_text|>", "<|eot_id|>")
    # Llama 2 folds the system prompt into the first user turn: no per-role Go template.
    llama2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
              "{% set system = messages[0]['content'] %}{% else %}{% set loop_messages = "
              "messages %}{% set system = false %}{% endif %}{% for m in loop_messages %}"
              "{% if loop.index0 == 0 and system != false %}{% set content = '<<SYS>>\\n' + "
              "system + '\\n<</SYS>>\\n\\n' + m['content'] %}{% else %}{% set content = "
              "m['content'] %}{% endif %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + "
              "content + ' [/INST]' }}{% else %}{{ ' ' + content + ' ' + eos_token }}{% endif %}"
              "{% endfor %}")
    with pytest.raises(UnsupportedTemplate):
        jinja_to_ollama(llama2, "<s>", "</s>")
    assert "TEMPLATE" not in modelfile("model.gguf", None).replace("# No TEMPLATE", "")


def test_model_card_is_a_pure_function_of_its_inputs():
    from ftagent.tools.deploy.card import model_card

    inputs = dict(
        goal="route banking questions",
        data={"source": "support.jsonl", "sha256": "ab" * 32, "rows": 250,
              "splits": {"train": 200, "test": 25}, "split_sha256": {"test": "cd" * 32},
              "licence": "CC BY 4.0"},
        config={"method": "lora", "learning_rate": 0.001, "num_epochs": 3,
                "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj"]}},
        eval_report={"n_test": 25, "task_type": "classification", "primary_metric": "accuracy",
                     "base": {"loss": 3.2, "perplexity": 24.5, "accuracy": 0.1},
                     "tuned": {"loss": 0.4, "perplexity": 1.5, "accuracy": 0.9}},
        vllm=["vllm serve runs/x/merged --served-model-name x"],
        ollama=["ollama create x -f runs/x/gguf/Modelfile"],
    )
    base = {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "licence": "apache-2.0"}
    card = model_card("x", base, "lora", **inputs)
    assert card == model_card("x", base, "lora", **inputs)
    for text in ("base_model: HuggingFaceTB/SmolLM2-135M-Instruct", "license: apache-2.0",
                 "ab" * 32, "cd" * 32, "CC BY 4.0", "| accuracy | 0.1 | 0.9 | +0.8 (better) |",
                 "| perplexity | 24.5 | 1.5 | -23 (better) |", "r=16, alpha=32",
                 "vllm serve runs/x/merged", "ollama create x -f", "## Intended use and limits"):
        assert text in card, text


def _cli(*args):
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def test_cli_merge_and_export_never_overwrite(tiny_model, adapter, rows, tmp_path):
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    out = tmp_path / "merged"
    args = ["merge", "--base", str(tiny_model), "--adapter", str(adapter), "--out", str(out),
            "--test", str(test_file), "--no-load-check"]
    done = _cli(*args)
    assert done.exit_code == 0, done.output
    assert "merge verified" in done.output and "vllm serve" in done.output
    assert (out / "README.md").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    again = _cli(*args)
    assert again.exit_code == 2 and "never overwritten" in again.output
    wrong = _cli("merge", "--base", str(tiny_model), "--adapter", str(tiny_model),
                 "--out", str(tmp_path / "m2"))
    assert wrong.exit_code == 2 and "full model, not an adapter" in wrong.output
    bad = _cli("export", str(tmp_path), "--gguf", "--out", str(tmp_path / "g2"))
    assert bad.exit_code == 2 and "no config.json" in bad.output
    assert _cli("export", str(out), "--gguf", "--quant", "q4").exit_code == 2
    assert "--gguf" in _cli("export", str(out)).output  # says what to export


def test_cli_takes_paths_from_a_run(tiny_model, adapter, rows, tmp_path):
    run = tmp_path / "run-1"
    shutil.copytree(adapter, run / "adapter")
    (run / "data").mkdir()
    test_file = run / "data" / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (run / "manifest.json").write_text(json.dumps(
        {"run_id": "run-1", "inputs": {"goal": "route banking questions"},
         "base_model": {"path": str(tiny_model)}}))
    (run / "data" / "report.json").write_text(json.dumps(
        {"source": str(DEMO_DATA), "sha256": "ef" * 32, "kept": 10, "schema_detail": "chat",
         "splits": {"test": 4}, "split_paths": {"test": str(test_file)}}))
    (run / "config.yaml").write_text("method: lora\nlearning_rate: 0.001\n")
    (run / "eval").mkdir()
    (run / "eval" / "report.json").write_text(json.dumps(
        {"n_test": 4, "task_type": "classification", "primary_metric": "accuracy",
         "base": {"accuracy": 0.0}, "tuned": {"accuracy": 0.5}}))
    done = _cli("merge", "--run", str(run), "--no-load-check")
    assert done.exit_code == 0, done.output
    card = (run / "merged" / "README.md").read_text()
    assert "ef" * 32 in card and "| accuracy | 0 | 0.5 |" in card
    assert "--served-model-name run-1" in card
    assert not (run / "merged" / "adapter").exists()  # the run keeps it next to merged
    assert _cli("merge", "--run", str(run)).exit_code == 2
    exported = _cli("export", "--run", str(run), "--gguf", "--quant", "q8_0")
    assert exported.exit_code == 0, exported.output
    assert "ollama create run-1 -f" in exported.output
    assert (run / "gguf" / "model.gguf").is_file() and (run / "gguf" / "Modelfile").is_file()
    assert "## GGUF" in (run / "gguf" / "README.md").read_text()
    again = _cli("export", "--run", str(run), "--gguf")
    assert again.exit_code == 2 and "never overwritten" in again.output


def test_llama_cpp_generates_from_the_gguf(gguf_f16):
    from ftagent.tools.deploy.gguf import llama_cpp_generate, llama_cpp_runtime

    # `make test` installs llama-cpp-python (tools/deploy/llama_runtime.py): no skip.
    assert llama_cpp_runtime() == "llama_cpp"
    text = llama_cpp_generate(gguf_f16.gguf, "<|im_start|>user\nhi<|im_end|>\n", n_tokens=4)
    assert isinstance(text, str)


def test_smollm2_exports_to_gguf(bundled_model, tmp_path):
    import time

    from ftagent.tools.chat_template import parse_modelfile
    from ftagent.tools.deploy.gguf import export_gguf

    started = time.time()
    result = export_gguf(bundled_model.path, tmp_path / "gguf", "f16", name="smollm2")
    print(f"SmolLM2 f16: {result.size_bytes / 2**20:.1f} MiB in {time.time() - started:.1f} s")
    assert result.check["ok"], result.check["problems"]
    assert result.n_tensors == 272 and result.tokenizer_pre == "smollm"  # as upstream's GGUF
    mf = parse_modelfile((tmp_path / "gguf" / "Modelfile").read_text())
    assert mf["system"].startswith("You are a helpful AI assistant named SmolLM")
    assert mf["stops"][0] == "<|im_end|>"
