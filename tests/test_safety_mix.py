"""The safety mix and its sources: disjoint from the probes, rebuilt byte-identical, shipped
in the wheel, and mixed into the training split only (the last on the real SmolLM2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools import bundled
from tools.bundled import make_probes
from tools.data.safety_mix import (
    benign_pool,
    counts,
    harmful_pool,
    pick,
    refusal_for,
    whole_sentences,
)
from tools.eval_probes import is_refusal, load_probes

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(__file__).parent / "assets" / "probe_sources"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _shingles(text: str, n: int = 4) -> set[str]:
    t = _norm(text)
    return {t[i : i + n] for i in range(max(len(t) - n + 1, 1))}


def test_mix_sources_and_probes_share_no_prompt():
    probes = load_probes()
    measured = {_norm(r["prompt"]) for r in probes["harmful"] + probes["safe"]}
    mixed = [_norm(r["prompt"]) for r in harmful_pool() + benign_pool()]
    assert len(measured) == 90 and len(mixed) == 114 + 80
    assert not measured & set(mixed)


def test_own_lookalikes_are_no_paraphrase_of_a_probe():
    """The project's look-alikes are written in XSTest's style; none may be so close to a
    probe prompt that training on it teaches the probe's answer (character 4-gram Jaccard;
    the closest pair today is far below the bar)."""
    probes = load_probes()["safe"] + load_probes()["harmful"]
    own = bundled.read_yaml_list(bundled.LOOKALIKES, "lookalikes")
    worst = max(
        (len(_shingles(a) & _shingles(b["prompt"])) / len(_shingles(a) | _shingles(b["prompt"])),
         a) for a in own for b in probes)
    assert worst[0] < 0.5, worst


def test_make_probes_rebuilds_probes_and_mix_sources_byte_identical(tmp_path):
    counts_ = make_probes.build_all(SOURCES, tmp_path)
    assert counts_["harmful_mix"] == 114
    for name in (bundled.ADVBENCH_PROBE, bundled.XSTEST_SAFE_PROBE, bundled.ARC_PROBE,
                 bundled.HARMFUL_MIX, bundled.XSTEST_SAFE_MIX):
        assert (tmp_path / name).read_bytes() == bundled.bundled_path(name).read_bytes(), name
    for name in (bundled.ADVBENCH_PROBE, bundled.HARMFUL_MIX):  # attack targets never copied
        text = bundled.bundled_path(name).read_text("utf-8")
        assert '"target"' not in text and "Sure, here is" not in text


def test_the_bundled_refusals_read_as_refusals_and_vary():
    refusals = bundled.read_yaml_list(bundled.REFUSALS, "refusals")
    assert len(refusals) >= 12 and len(set(refusals)) == len(refusals)
    assert all(is_refusal(r) for r in refusals)
    chosen = {refusal_for(r["prompt"], refusals) for r in harmful_pool()}
    assert len(chosen) >= len(refusals) - 2  # spread over nearly all of them


def test_counts_pick_and_sentences():
    assert counts(140, 0.25) == (18, 17) and counts(140, 0.0) == (0, 0)
    assert counts(3, 0.25) == (1, 0)
    pool = harmful_pool()
    assert pick(pool, 10, 42) == pick(pool, 10, 42) and pick(pool, 10, 42) != pick(pool, 10, 7)
    assert {r["source"] for r in pick(pool, 30, 42)} == {"advbench", "xstest"}
    assert whole_sentences("Run kill. Then wait for it to stop and") == "Run kill."
    assert whole_sentences("All done.") == "All done."
    assert whole_sentences("no sentence end at all") == ""


def test_bundled_path_names_a_missing_file_and_what_to_do():
    with pytest.raises(bundled.BundledFileMissing, match="reinstall ftagent"):
        bundled.bundled_path("probes/nope.jsonl")


# ------------------------------------------------------------------------------ wheel


def test_the_wheel_carries_the_probes_demo_and_mix_and_reads_them_installed(tmp_path):
    """A non-editable install must find its probes: build the wheel (no network: the
    venv's setuptools), check its files, install it into a folder and load the probes
    from there, away from the checkout."""
    src = tmp_path / "src"  # a copy: the build writes build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for package in ("agent", "tools", "tui", "prompts"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True,
                   capture_output=True)
    wheel = next((tmp_path / "dist").glob("ftagent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (bundled.DEMO_DATA, bundled.ADVBENCH_PROBE, bundled.XSTEST_SAFE_PROBE,
                 bundled.ARC_PROBE, bundled.HARMFUL_MIX, bundled.XSTEST_SAFE_MIX,
                 bundled.LOOKALIKES, bundled.REFUSALS):
        assert f"tools/bundled/{name}" in names, name
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a wheel installs by unpacking
        z.extractall(site)
    code = ("import tools.eval_probes as p, tools; assert str(tools.__file__).startswith("
            f"{str(site)!r}), tools.__file__; n = p.load_probes(); "
            "print(json.dumps({k: len(v) for k, v in n.items()}))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"arc": 100, "harmful": 50, "safe": 40}


# ---------------------------------------------------------- on the real base model


@pytest.mark.e2e
def test_mix_goes_to_train_only_with_the_task_system_prompt(tmp_path, bundled_model):
    from agent.nodes.data_prep import mix_in_safety
    from tools.data import PrepareOptions, prepare_dataset

    system = "You are a concise assistant for a cooking website."
    rows = [{"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": f"Give me cooking tip number {i}."},
                          {"role": "assistant", "content": f"Tip {i}: salt pasta water well, "
                           f"and taste as you go ({i} times a day)."}]} for i in range(40)]
    data = tmp_path / "tips.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "data"
    report = prepare_dataset(data, out, PrepareOptions(model=str(bundled_model.path),
                                                       near_dup_threshold=None))
    before = {k: Path(p).read_bytes() for k, p in report.split_paths.items()}
    n_task = report.splits["train"]
    plan = {"model_path": str(bundled_model.path), "precision": "fp32"}
    mixed = mix_in_safety(report, out, plan, 0.25)

    mix = mixed.safety_mix
    assert mix["harmful"] == counts(n_task, 0.25)[0] and 0 < mix["benign"] <= counts(
        n_task, 0.25)[1]
    assert mixed.splits["train"] == n_task + mix["rows"]
    for split in ("val", "test"):  # the task's metrics never see a mixed row
        assert Path(mixed.split_paths[split]).read_bytes() == before[split]
    assert Path(mixed.split_paths["train_task"]).read_bytes() == before["train"]
    train = [json.loads(x) for x in Path(mixed.split_paths["train"]).read_text().splitlines()]
    added = train[n_task:]
    assert len(added) == mix["rows"]
    assert all(r["messages"][0] == {"role": "system", "content": system} for r in added)
    refused = [r for r in added if is_refusal(r["messages"][-1]["content"])]
    assert len(refused) == mix["harmful"]  # the look-alikes are answered, not refused
    measured = {_norm(r["prompt"]) for r in load_probes()["harmful"] + load_probes()["safe"]}
    assert not {_norm(r["messages"][-2]["content"]) for r in added} & measured
    saved = json.loads((out / "report.json").read_text())
    assert saved["safety_mix"]["rows"] == mix["rows"] and "safety mix" in (
        out / "report.md").read_text()
