"""Distillation, end to end over real HTTP: the demo's tuned model, served by
`ftagent serve`, teaches the base SmolLM2-135M the demo's ten intents from unlabelled
BANKING77 customer messages.

    .venv/bin/python evals/bench/distill.py [--demo-run runs/<id>] [--out runs/bench/distill]
        [--json out.json]

1. Teacher: the merged model of a finished `ftagent demo` run (the newest under runs/,
   or --demo-run; made with `ftagent demo` when there is none), served on 127.0.0.1.
2. Prompts: the demo's BANKING77 messages (system prompt + customer message, no label),
   less the 25 of the demo run's held-out test split; CC BY 4.0, PolyAI (see
   tools/bundled/README.md).
3. `ftagent run` with `--teacher`, default decisions (`--approve all`): the planner picks
   distillation, data_prep has the teacher answer every prompt, the student trains on the
   answers that pass the checks.
4. The same generation again (`ftagent data distill`): every answer from the cache, no
   request. Then a generation into a fresh cache, killed half-way, and run again: the
   second run asks only for what the first did not store.
5. Accuracy on the demo run's test split (labels parsed from greedy answers, fp32): the
   teacher (through its endpoint), the student (base + the run's adapter) and the base.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY, KEY_ENV = "sk-bench-teacher", "FTAGENT_BENCH_TEACHER_KEY"
GOAL = "route banking customer messages to one of ten intents, distilled from the teacher"


def ftagent(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "ftagent", *args], env=env, text=True,
                       capture_output=True)
    if check and p.returncode not in (0,):
        sys.exit(f"ftagent {' '.join(args[:2])} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def demo_run(given: str | None, env: dict) -> Path:
    if given:
        return Path(given)
    done = []
    for m in sorted((ROOT / "runs").glob("*/manifest.json")):
        info = json.loads(m.read_text())
        if info.get("status") == "done" and "routes banking questions" in info["inputs"]["goal"] \
                and (m.parent / "merged" / "model.safetensors").exists():
            done.append(m.parent)
    if done:
        return done[-1]
    out = ROOT / "runs" / "bench-demo"
    print("no finished demo run: running ftagent demo (about 6 minutes)", flush=True)
    ftagent("demo", "--run-dir", str(out), env=env)
    return out


def chat_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def accuracy(answers: list[str], rows: list[dict], labels: list[str]) -> float:
    from ftagent.tools.evaluate.metrics import classification_metrics

    refs = [r["messages"][-1]["content"] for r in rows]
    return classification_metrics(answers, refs, labels)["accuracy"]


def model_answers(base: Path, adapter: Path | None, prompts: list[list[dict]]) -> list[str]:
    import torch
    from ftagent.tools.evaluate.compare import load_tuned
    from ftagent.tools.evaluate.generation import generate
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if adapter:
        model, tok = load_tuned(base, adapter)
    else:
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32,
                                                     use_safetensors=True)
    with torch.inference_mode():
        return generate(model, tok, prompts, max_new_tokens=16)


def endpoint_answers(url: str, prompts: list[list[dict]]) -> list[str]:
    import openai

    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=2)
    return [client.chat.completions.create(model="demo-teacher", messages=p, temperature=0,
                                           max_tokens=16).choices[0].message.content
            for p in prompts]


def cached(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-run", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "distill")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ftagent.tools.evaluate.metrics import parse_label
    from ftagent.tools.serve.app import start_server_process
    from ftagent.tools.teacher.checks import labels_in_prompt

    out = args.out
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty; give another --out")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, KEY_ENV: KEY, "FTAGENT_HOME": str(out / "home")}
    # The bundled model is converted once per FTAGENT_HOME; the bench's home starts empty
    # so that its answer cache does too.
    demo = demo_run(args.demo_run, {**os.environ})
    test = chat_rows(demo / "data" / "test.jsonl")
    held = {r["messages"][1]["content"] for r in test}
    source = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"
    prompts = [{"messages": r["messages"][:2]} for r in chat_rows(source)
               if r["messages"][1]["content"] not in held]
    (out / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    labels = labels_in_prompt(prompts[0]["messages"])
    (out / "teacher.yaml").write_text(f"api_key_env: {KEY_ENV}\nmax_tokens: 16\nconcurrency: 4\n")
    print(f"teacher: {demo / 'merged'}; {len(prompts)} prompts; {len(test)} test rows", flush=True)

    server = start_server_process(demo / "merged", api_key=KEY, model_name="demo-teacher",
                                  log_path=out / "serve.log")
    try:
        teach = ["--teacher", "demo-teacher", "--teacher-url", server.base_url,
                 "--teacher-config", str(out / "teacher.yaml")]
        t0 = time.time()
        run = ftagent("run", "--goal", GOAL, "--data", str(out / "prompts.jsonl"),
                      "--model", "smollm2-135m-instruct", "--approve", "all", "--run-dir",
                      str(out / "student"), "--max-attempts", "1", *teach, env=env,
                      check=False)
        run_wall = time.time() - t0
        (out / "student.log").write_text(run.stdout + run.stderr)
        gen = json.loads((out / "student" / "data" / "teacher" / "generation.json").read_text())
        status = json.loads((out / "student" / "manifest.json").read_text())["status"]

        ftagent("data", "distill", str(out / "prompts.jsonl"), "--out",
                        str(out / "again"), "--yes", *teach, env=env)
        second = json.loads((out / "again" / "generation.json").read_text())

        fresh = out / "killed.sqlite"
        cmd = [sys.executable, "-m", "ftagent", "data", "distill", str(out / "prompts.jsonl"),
               "--out", str(out / "killed"), "--cache", str(fresh), "--yes", *teach]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None and cached(fresh) < len(prompts) // 2:
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        at_kill = cached(fresh)
        ftagent(*cmd[3:], env=env)
        resumed = json.loads((out / "killed" / "generation.json").read_text())

        test_prompts = [r["messages"][:2] for r in test]
        teacher_acc = accuracy(endpoint_answers(server.base_url, test_prompts), test, labels)
    finally:
        server.stop()
    student_adapter = out / "student" / "adapter"
    if not student_adapter.exists():
        student_adapter = out / "student" / "train" / "attempt-1" / "adapter"
    from ftagent.tools.models import resolve_model

    os.environ["FTAGENT_HOME"] = str(out / "home")
    base = resolve_model("smollm2-135m-instruct").path
    student_acc = accuracy(model_answers(base, student_adapter, test_prompts), test, labels)
    base_acc = accuracy(model_answers(base, None, test_prompts), test, labels)
    agree = sum(parse_label(r["messages"][-1]["content"], labels) is not None
                for r in chat_rows(Path(gen["generated"])))
    result = {
        "prompts": len(prompts), "test_rows": len(test), "run_status": status,
        "run_wall_s": round(run_wall, 1),
        "teacher_accuracy": teacher_acc, "student_accuracy": student_acc,
        "base_accuracy": base_acc,
        "generation": {k: gen[k] for k in ("requests", "cache_hits", "kept", "rejected",
                                           "rejected_by_reason", "wall_s")},
        "generated_rows_with_a_label": agree,
        "second_run": {k: second[k] for k in ("requests", "cache_hits", "wall_s")},
        "killed_at_cached": at_kill,
        "resumed": {k: resumed[k] for k in ("requests", "cache_hits", "kept", "wall_s")},
    }
    rows = [
        ("teacher (demo's tuned model, via ftagent serve)", f"{teacher_acc:.0%}"),
        ("student (SmolLM2-135M distilled)", f"{student_acc:.0%}"),
        ("base SmolLM2-135M", f"{base_acc:.0%}"),
        ("workflow run", f"{status}, {run_wall:.0f} s wall"),
        ("generation", f"{gen['requests']} requests, {gen['cache_hits']} cache hits, "
                       f"{gen['kept']} kept, {gen['rejected']} set aside, {gen['wall_s']:.0f} s"),
        ("same generation again", f"{second['requests']} requests, {second['cache_hits']} "
                                  f"cache hits ({second['cache_hits'] / len(prompts):.0%}), "
                                  f"{second['wall_s']:.1f} s"),
        ("killed half-way, then resumed", f"{at_kill} cached at the kill; the rerun asked "
                                          f"{resumed['requests']}, took {resumed['cache_hits']} "
                                          "from the cache"),
    ]
    print(f"\n| on the demo's {len(test)} held-out test rows | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
