"""Shared fixtures: an isolated FTAGENT_HOME, the bundled model converted once per
session, and a tiny random-weight Llama for fast unit tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"


@pytest.fixture(scope="session", autouse=True)
def ftagent_home(tmp_path_factory) -> Path:
    """All user state of the test session lives in one temp dir."""
    home = tmp_path_factory.mktemp("ftagent_home")
    os.environ["FTAGENT_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return home


@pytest.fixture(scope="session")
def bundled_model(ftagent_home):
    from ftagent.tools.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model(bundled_model, tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template."""
    from ftagent.tools.models import build_tiny_llama

    return build_tiny_llama(bundled_model.path, tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_gemma2(tmp_path_factory) -> Path:
    """A 2-layer random Gemma 2 with a 4-token sliding window on alternate layers and
    soft-capped attention logits: the attention paths' hardest case. Read-only: share it."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=2048, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=8, sliding_window=4, attn_logit_softcapping=5.0)
    path = tmp_path_factory.mktemp("tiny_gemma2")
    Gemma2ForCausalLM(cfg).save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path



@pytest.fixture(scope="session")
def spiky_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with large random weights (std 0.3 except the norms), saved: its
    greedy answers are printable and differ between prompts and with small weight changes
    (the plain tiny model answers every prompt with the same empty text), so a padding
    leak, a permutation or an adapter left unapplied would show. Read-only: share it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)
    out = tmp_path_factory.mktemp("spiky")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out

@pytest.fixture
def small_data(tmp_path) -> Path:
    """30 real demo examples spread over the intents (every 8th line)."""
    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(lines[::8]) + "\n", encoding="utf-8")
    return path


def ftagent(*args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "ftagent", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ},
    )
