"""End to end on the real bundled SmolLM2-135M-Instruct: `ftagent run` on a small slice."""

import json
import subprocess
import sys

import pytest
from conftest import ftagent

pytestmark = pytest.mark.e2e

ALL_GATES = "strategy,dataset,training,evaluation,safety,deployment"
ARTIFACTS = [
    "manifest.json",
    "events.jsonl",
    "state.sqlite",
    "plan.md",
    "plan.json",
    "config.yaml",
    "data/train.jsonl",
    "data/val.jsonl",
    "data/test.jsonl",
    "data/report.json",
    "data/report.md",
    "train/attempt-1/config.yaml",
    "train/attempt-1/metrics.jsonl",
    "train/attempt-1/result.json",
    "train/attempt-1/loss.png",
    "train/attempt-1/adapter/adapter_model.safetensors",
    "eval/report.json",
    "eval/report.md",
    "eval/metrics.png",
    "adapter/adapter_config.json",
    "merged/model.safetensors",
    "merged/config.json",
    "merged/tokenizer.json",
    "merged/README.md",
    "gguf/Modelfile",
]


def test_run_end_to_end_on_smollm2(tmp_path, bundled_model, small_data):
    run_dir = tmp_path / "run"
    r = ftagent(
        "run",
        "--goal",
        "route banking support messages to an intent",
        "--data",
        str(small_data),
        "--approve",
        ALL_GATES,
        "--max-attempts",
        "1",
        "--run-dir",
        str(run_dir),
        "--json",
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for rel in ARTIFACTS:
        assert (run_dir / rel).exists(), rel
    assert list((run_dir / "train/attempt-1/checkpoints").glob("checkpoint-*"))

    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert [e["node"] for e in events if e["type"] == "node_finished"] == [
        "planner",
        "data_prep",
        "config",
        "trainer",
        "tester",
        "deployer",
    ]
    assert [e["gate"] for e in events if e["type"] == "gate_waiting"] == ALL_GATES.split(",")
    progress = [e for e in events if e["type"] == "train_progress" and "loss" in e]
    assert progress and progress[-1]["step"] == progress[-1]["max_steps"]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert len(manifest["data"]["sha256"]) == 64
    assert set(manifest["data"]["split_sha256"]) == {"train", "val", "test"}
    # No --model: the planner picked the registry model that is on this machine.
    assert manifest["base_model"]["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    plan_text = (run_dir / "plan.md").read_text()
    assert "## Risks and mitigations" in plan_text and "## Cost estimate" in plan_text
    assert manifest["packages"]["trl"] and manifest["config"]["method"] == "lora"
    tuned, base = manifest["metrics"]["tuned"], manifest["metrics"]["base"]
    assert tuned["loss"] < base["loss"]  # even a few steps teach the answer format

    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from transformers import AutoModelForCausalLM, AutoTokenizer;"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]);"
            "t = AutoTokenizer.from_pretrained(sys.argv[1]);"
            "e = t.apply_chat_template([{'role':'user','content':'My card has not arrived'}],"
            " add_generation_prompt=True, return_tensors='pt', return_dict=True);"
            "o = m.generate(**e, max_new_tokens=8, do_sample=False);"
            "print(t.decode(o[0, e['input_ids'].shape[1]:], skip_special_tokens=True))",
            str(run_dir / "merged"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip()

    # The deployer served the merged model and the official client got the merged model's
    # answers; llama.cpp ran the GGUF as transformers runs the merged model.
    waiting = [e for e in events if e["type"] == "gate_waiting" and e["gate"] == "deployment"]
    d = waiting[0]["evidence"]
    assert waiting[0]["passed"], waiting[0]["summary"]
    assert d["gguf"]["quant"] == "q8_0" and (run_dir / "gguf" / "model.gguf").exists()
    assert "held-out answers equal the merged model's" in waiting[0]["summary"]
    assert d["llama_cpp"]["ok"] and "llama.cpp parity" in waiting[0]["summary"]
    assert "vllm serve" in (run_dir / "merged" / "README.md").read_text()
