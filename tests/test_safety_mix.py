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
from ftagent.tools import bundled
from ftagent.tools.bundled import make_probes
from ftagent.tools.data.safety_mix import (
    HARMFUL_WEIGHTS,
    answer_budget,
    benign_pool,
    counts,
    harmful_pool,
    pick,
    refusal_for,
    trim_to_words,
    whole_sentences,
)
from ftagent.tools.evaluate.probes import load_probes
from ftagent.tools.evaluate.refusal import is_refusal

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
    assert counts(140, 0.25) == (14, 21) and counts(140, 0.0) == (0, 0)
    assert counts(139, 0.6) == (33, 50) and counts(3, 0.25) == (0, 1)
    pool = harmful_pool()
    assert pick(pool, 10, 42) == pick(pool, 10, 42) and pick(pool, 10, 42) != pick(pool, 10, 7)
    assert {r["source"] for r in pick(pool, 30, 42)} == {"advbench", "xstest"}
    weighted = [r["source"] for r in pick(pool, 18, 42, HARMFUL_WEIGHTS)]
    assert weighted[:3] == ["advbench", "advbench", "xstest"]  # two goals per question
    assert weighted.count("advbench") == 12 and weighted.count("xstest") == 6
    everything = pick(pool, 500, 42, HARMFUL_WEIGHTS)  # one source runs out, the other goes on
    assert len(everything) == len(pool) == len({r["prompt"] for r in everything})
    assert whole_sentences("Run kill. Then wait for it to stop and") == "Run kill."
    assert whole_sentences("All done.") == "All done."
    assert whole_sentences("no sentence end at all") == ""
    # look-alike answers keep the task's length: whole sentences within the budget
    assert answer_budget(["a b c d e f g h i j"] * 3 + ["x " * 40]) == 60
    assert answer_budget(["yes"]) == 12 and answer_budget([]) == 120
    text = "One two three. Four five six seven. Eight nine ten eleven twelve. And more"
    assert trim_to_words(text, 8) == "One two three. Four five six seven."
    assert trim_to_words("word " * 30 + "end.", 10) == ""  # one sentence far too long


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
    for package in ("ftagent", "agent", "tools", "tui", "prompts"):
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
        assert f"ftagent/tools/bundled/{name}" in names, name
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a wheel installs by unpacking
        z.extractall(site)
    code = ("import ftagent.tools.evaluate.probes as p, ftagent; "
            f"assert str(ftagent.__file__).startswith({str(site)!r}), ftagent.__file__; "
            "n = p.load_probes(); "
            "print(json.dumps({k: len(v) for k, v in n.items()}))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"arc": 100, "harmful": 50, "safe": 40}


# ---------------------------------------------------------- on the real base model


@pytest.mark.e2e
def test_mix_goes_to_train_only_with_the_task_system_prompt(tmp_path, bundled_model):
    """`ftagent data prepare` twice on the same chat data: with the mix (the default) and
    with --safety-mix 0. The validation and test splits are byte-identical; the training
    split gains refusals and look-alikes answered by the real SmolLM2, none a probe."""
    from conftest import ftagent

    system = "You are a concise assistant for a cooking website."
    rows = [{"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": f"Give me cooking tip number {i}."},
                          {"role": "assistant", "content": f"Tip {i}: salt pasta water well, "
                           f"and taste as you go ({i} times a day)."}]} for i in range(40)]
    data = tmp_path / "tips.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain, out = tmp_path / "plain", tmp_path / "mixed"
    for folder, flags in ((plain, ["--safety-mix", "0"]), (out, [])):
        r = ftagent("data", "prepare", str(data), "--out", str(folder),
                    "--near-dup-threshold", "0", *flags)
        assert r.returncode == 0, r.stderr[-2000:]
    before = json.loads((plain / "report.json").read_text())
    mixed = json.loads((out / "report.json").read_text())
    assert before.get("safety_mix") is None
    n_task, mix = before["splits"]["train"], mixed["safety_mix"]
    harmful, benign = counts(n_task, 0.6)
    assert mix["harmful"] == harmful and 0 < mix["benign"] <= benign
    assert mixed["splits"]["train"] == n_task + mix["rows"]
    for split in ("val", "test"):  # the task's metrics never see a mixed row
        assert (out / f"{split}.jsonl").read_bytes() == (plain / f"{split}.jsonl").read_bytes()
    assert (out / "train_task.jsonl").read_bytes() == (plain / "train.jsonl").read_bytes()
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    added = train[n_task:]
    assert len(added) == mix["rows"] == len((out / "safety_mix.jsonl").read_text().splitlines())
    assert all(r["messages"][0] == {"role": "system", "content": system} for r in added)
    refused = [r for r in added if is_refusal(r["messages"][-1]["content"])]
    assert len(refused) == mix["harmful"]  # the look-alikes are answered, not refused
    measured = {_norm(r["prompt"]) for r in load_probes()["harmful"] + load_probes()["safe"]}
    assert not {_norm(r["messages"][-2]["content"]) for r in added} & measured
    assert "safety mix" in (out / "report.md").read_text()


# ------------------------------------------------------------------- the plan's share


def test_the_plan_mixes_for_chat_data_only_and_a_person_can_turn_it_off():
    from ftagent.tools.plan.decide import SAFETY_MIX, safety_mix_for
    from ftagent.tools.plan.types import Constraints

    assert safety_mix_for("chat", "chat", Constraints())[0] == SAFETY_MIX == 0.6
    assert safety_mix_for("summarization", "chat", Constraints(safety_mix=0.4))[0] == 0.4
    off, why = safety_mix_for("chat", "chat", Constraints(safety_mix=0))
    assert off == 0 and "off, as asked" in why
    for task, kind in (("classification", "classification"), ("extraction", "chat"),
                       ("chat", "preference")):
        assert safety_mix_for(task, kind, Constraints()) == (0.0, "")
    with pytest.raises(ValueError):
        Constraints(safety_mix=1.5)


def test_run_no_safety_mix_reaches_the_plan(tmp_path, bundled_model):
    from conftest import ftagent

    rows = [{"messages": [{"role": "user", "content": f"Write a haiku about the number {i}."},
                          {"role": "assistant", "content": f"Number {i} stands alone,\n"
                           f"quiet in a row of {i + 1},\nwaiting to be called."}]}
            for i in range(24)]
    data = tmp_path / "haiku.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for flags, share in (([], 0.6), (["--no-safety-mix"], 0.0)):
        run_dir = tmp_path / f"run{len(flags)}"
        r = ftagent("run", "--goal", "write haiku on request", "--data", str(data),
                    "--run-dir", str(run_dir), *flags)
        assert r.returncode == 3, r.stderr[-2000:]  # waits at the strategy gate
        plan = json.loads((run_dir / "plan.json").read_text())
        assert plan["safety_mix"] == share
        assert ("Safety mix: off" in (run_dir / "plan.md").read_text()) == bool(flags)


def test_missing_probe_files_fail_the_safety_check(tmp_path, monkeypatch, tiny_model,
                                                   small_data):
    """A broken install (a probe file gone) evaluates the task as usual and fails the
    safety gate, saying which file is missing, instead of passing unchecked."""
    from ftagent.tools.evaluate.compare import bundled_probes, evaluate
    from ftagent.tools.evaluate.verdict import judge

    monkeypatch.setattr(bundled, "ADVBENCH_PROBE", "probes/gone.jsonl")
    probes = bundled_probes(small_data, "classification", ["card_arrival"])
    assert probes.error and "probes/gone.jsonl is missing" in probes.error
    report = evaluate(tiny_model, tiny_model, small_data, tmp_path / "eval",
                      task_type="classification", labels=["card_arrival"], probes=probes)
    assert report.n_probe == 0 and "gone.jsonl" in report.probe_error
    verdict = judge(report, {"min_gain": 0.0})
    assert not verdict.safe and "did not run" in verdict.safety_question
    assert "gone.jsonl" in verdict.safety_summary
