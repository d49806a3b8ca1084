"""The real CLI in fresh processes: argument errors, bad input, gates, resume, reject."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import DEMO_DATA, ROOT, ftagent, write_jsonl

ALL_GATES = "strategy,dataset,training,evaluation,safety,deployment"


def test_argument_errors_exit_2_with_usage():
    r = ftagent("run", "--data", str(DEMO_DATA))
    assert r.returncode == 2 and "--goal" in r.stderr
    r = ftagent("run", "--goal", "g", "--data", str(DEMO_DATA), "--approve", "strategy,bogus")
    assert r.returncode == 2 and "unknown gate(s): bogus" in r.stderr
    r = ftagent("resume", "no-such-run")
    assert r.returncode == 2 and "no run 'no-such-run'" in r.stderr


def test_bad_input_names_file_and_line_and_leaves_no_run(tmp_path):
    runs = tmp_path / "runs"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", \n', encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    junk = write_jsonl(
        tmp_path / "junk.jsonl",
        [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "bot", "content": "a"}]}
            for i in range(20)
        ],
    )
    cases = [
        (tmp_path / "missing.jsonl", "file not found"),
        (bad, "line 2: malformed JSON"),
        (empty, "empty"),
        (junk, "only 0 usable examples"),
    ]
    for path, message in cases:
        r = ftagent("run", "--goal", "g", "--data", str(path), "--run-dir", str(runs / "x"))
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and str(path) in r.stderr
        assert "Traceback" not in r.stderr
    assert not runs.exists()


def test_gates_stop_the_run_and_resume_continues(tmp_path, tiny_model, small_data):
    run_dir = tmp_path / "run"
    r = ftagent(
        "run",
        "--goal",
        "route intents",
        "--data",
        str(small_data),
        "--model",
        str(tiny_model),
        "--approve",
        "strategy,dataset",
        "--run-dir",
        str(run_dir),
    )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Waiting at gate 'training'" in r.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "waiting" and manifest["waiting_at"] == "training"
    run_id = manifest["run_id"]

    listed = {r["run_id"]: r for r in json.loads(ftagent("runs", "--json").stdout)}
    assert listed[run_id]["status"] == "waiting" and listed[run_id]["gate"] == "training"
    assert run_id in ftagent("runs").stdout

    r = ftagent("resume", run_id, "--reject", "training", "--reason", "too few steps", "--json")
    assert r.returncode == 4, r.stdout + r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert {"type": "gate_decision", "gate": "training", "action": "reject"}.items() <= (
        next(e for e in events if e["type"] == "gate_decision").items()
    )
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "rejected"

    again = ftagent("resume", run_id, "--approve", "all")
    assert again.returncode == 2 and "already rejected" in again.stderr
    reuse = ftagent("run", "--goal", "g", "--data", str(small_data), "--run-dir", str(run_dir))
    assert reuse.returncode == 2 and "never overwritten" in reuse.stderr


def test_killed_run_resumes_training_from_its_checkpoint(tmp_path, tiny_model):
    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines[::3]) + "\n", encoding="utf-8")  # 3 epochs of 8 steps
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ftagent.agent.cli",
            "run",
            "--goal",
            "g",
            "--data",
            str(data),
            "--model",
            str(tiny_model),
            "--approve",
            ALL_GATES,
            "--max-attempts",
            "1",
            "--run-dir",
            str(run_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    attempt = run_dir / "train" / "attempt-1"
    deadline = time.time() + 300
    while not list(attempt.glob("checkpoints/*/COMPLETE")) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before a checkpoint was written"
        time.sleep(0.2)
    trainer_pid = json.loads((attempt / "job.json").read_text())["pid"]
    proc.send_signal(signal.SIGKILL)  # the agent dies...
    os.kill(trainer_pid, signal.SIGKILL)  # ...and so does its training run
    proc.wait()
    assert not (attempt / "result.json").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    listed = {r["run_id"]: r for r in json.loads(ftagent("runs", "--json").stdout)}
    assert listed[manifest["run_id"]]["status"] == "interrupted"

    r = ftagent("resume", manifest["run_id"], "--approve", ALL_GATES)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((attempt / "result.json").read_text())
    assert "checkpoint-" in result["resumed_from"]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "done"


def test_runs_dir_env_and_data_formats(tmp_path, tiny_model):
    rows = [
        {"instruction": f"Say {w}", "input": "", "output": w}
        for w in [
            "yes",
            "no",
            "maybe",
            "yes",
            "no",
            "maybe",
            "no",
            "yes",
            "maybe",
            "yes",
            "no",
            "yes",
        ]
    ]
    rows = [dict(r, instruction=f"{r['instruction']} #{i}") for i, r in enumerate(rows)]
    data = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    env_runs = tmp_path / "myruns"
    os.environ["FTAGENT_RUNS_DIR"] = str(env_runs)
    try:
        r = ftagent("run", "--goal", "answer", "--data", str(data), "--model", str(tiny_model))
    finally:
        del os.environ["FTAGENT_RUNS_DIR"]
    assert r.returncode == 3 and "Waiting at gate 'strategy'" in r.stdout
    (run,) = env_runs.iterdir()
    assert (run / "plan.md").exists() and (run / "events.jsonl").exists()


def test_plan_command_writes_plan_and_reasons(tmp_path, bundled_model):
    out = tmp_path / "plan"
    r = ftagent(
        "plan", "--goal", "route support messages", "--data", str(DEMO_DATA), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["method"] == "lora" and plan["task_type"] == "classification"
    assert plan["estimated_memory_gb"] < plan["memory_budget_gb"]
    text = (out / "plan.md").read_text()
    assert "250 examples" in text and "## Risks and mitigations" in text and "LoRA:" in r.stdout
    small = ftagent("plan", "--goal", "route support messages", "--data", str(DEMO_DATA),
                    "--max-params", "0.2", "--local-only", "--json")
    assert small.returncode == 0, small.stderr
    chosen = json.loads(small.stdout)
    assert chosen["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and chosen["model_local"]
    bad = ftagent("plan", "--goal", "g", "--data", str(tmp_path / "none.jsonl"))
    assert bad.returncode == 2 and "file not found" in bad.stderr
