"""OpenAI's fine-tuning pattern, run unchanged against `ftagent serve --fine-tuning`.

    nice -n 19 python -m evals.fine_tuning_api                 # SmolLM2-135M, the demo data
    python -m evals.fine_tuning_api --out eval-ft.json --poll 10

What it does, as a team moving its OpenAI code would see it:
1. splits the demo data (tools/bundled/demo/support_intents.jsonl, 250 BANKING77 messages,
   10 intents) as `ftagent demo` does (200/25/25, stratified, seed 42) and keeps the 25
   test rows back: they are never uploaded;
2. starts `ftagent serve smollm2-135m-instruct --fine-tuning` on 127.0.0.1 (the bundled
   SmolLM2-135M-Instruct, found as `ftagent demo` finds it) with a policy that approves
   every gate, so the job's own evaluation decides nothing and this script measures;
3. runs the pattern from OpenAI's fine-tuning guide with the official `openai` client, the
   only change being `base_url` (and the key, the server's): `files.create` ->
   `fine_tuning.jobs.create` -> poll `fine_tuning.jobs.retrieve` -> `chat.completions.create`
   with `job.fine_tuned_model`;
4. prints the job's timeline (each status with the time it was first seen, and the job's
   own events) and the held-out accuracy of base and tuned on the 25 test rows (greedy;
   the label parsed from the answer as ftagent's tester parses it).

Training SmolLM2-135M takes a few minutes on a CPU; the job also runs the server's whole
workflow (evaluation with probes, merge, export), which the timeline shows.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"
MODEL = "smollm2-135m-instruct"
POLICY = "".join(f"{gate}: always\n" for gate in
                 ("strategy", "dataset", "training", "evaluation", "safety", "deployment"))


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def split_demo(out: Path) -> tuple[dict[str, Path], list[str]]:
    from ftagent.tools.data import PrepareOptions, prepare_dataset
    from ftagent.tools.models import resolve_model

    report = prepare_dataset(DEMO, out, PrepareOptions(model=str(resolve_model(MODEL).path)))
    return {k: Path(v) for k, v in report.split_paths.items()}, report.labels


def the_openai_pattern(base_url: str, api_key: str, train: Path, poll_s: float,
                       hyperparameters: dict):
    """OpenAI's guide, unchanged apart from base_url (and the model name)."""
    client = OpenAI(base_url=base_url, api_key=api_key)
    file = client.files.create(file=open(train, "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=file.id, model=MODEL,
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}})
    seen = [(job.status, time.time())]
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(poll_s)
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status != seen[-1][0]:
            seen.append((job.status, time.time()))
            print(f"  {_clock(seen[-1][1])}  {job.status}", flush=True)  # as it happens
    return client, job, seen


def accuracy(client: OpenAI, model: str, rows: list[dict], labels: list[str]) -> float:
    from ftagent.tools.evaluate.metrics import classification_metrics

    answers = []
    for row in rows:
        completion = client.chat.completions.create(
            model=model, messages=row["messages"][:-1], max_tokens=16, temperature=0)
        answers.append(completion.choices[0].message.content or "")
    refs = [row["messages"][-1]["content"] for row in rows]
    return classification_metrics(answers, refs, labels)["accuracy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between polls")
    ap.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    ap.add_argument("--keep", type=Path, help="a folder for the server's data (default: temp)")
    ap.add_argument("--epochs", default="auto", help="n_epochs (default auto: the server's "
                    "planner decides, 3 for the demo)")
    ap.add_argument("--train-rows", type=int, help="upload only the first N training rows "
                    "(a quicker run on a busy machine); default all 200")
    args = ap.parse_args(argv)

    from ftagent.tools.serve.app import start_server_process

    work = args.keep or Path(tempfile.mkdtemp(prefix="ftagent-ft-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    splits, labels = split_demo(work / "demo")
    (work / "policy.yaml").write_text(POLICY)
    key = "sk-local-" + secrets.token_hex(8)
    t0 = time.time()
    handle = start_server_process(
        MODEL, api_key=key, model_name=MODEL, entry=("-m", "ftagent", "serve"),
        log_path=work / "serve.log", timeout=600,
        extra_args=["--fine-tuning", "--fine-tuning-dir", str(work / "fine_tuning"),
                    "--fine-tuning-policy", str(work / "policy.yaml")])
    print(f"server {handle.base_url} up in {time.time() - t0:.0f} s (work folder {work})")
    try:
        train = splits["train"]
        if args.train_rows:
            train = work / f"train-{args.train_rows}.jsonl"
            train.write_text("".join(splits["train"].read_text().splitlines(True)
                                     [:args.train_rows]))
        epochs = args.epochs if args.epochs == "auto" else int(args.epochs)
        client, job, seen = the_openai_pattern(handle.base_url, key, train, args.poll,
                                               {"n_epochs": epochs})
        events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data[::-1]
        test = [json.loads(x) for x in splits["test"].read_text().splitlines() if x.strip()]
        base = accuracy(client, MODEL, test, labels)
        tuned = accuracy(client, job.fine_tuned_model, test, labels) \
            if job.status == "succeeded" else None
    finally:
        handle.stop(timeout=60)
    start = seen[0][1]
    print(f"\njob {job.id}: {job.status}, fine_tuned_model {job.fine_tuned_model}")
    print(f"hyperparameters: {job.hyperparameters.model_dump()}; trained tokens "
          f"{job.trained_tokens}")
    print("\ntimeline (status, first seen by polling every "
          f"{args.poll:g} s; +seconds from job creation):")
    for status, at in seen:
        print(f"  {_clock(at)}  +{at - start:6.0f} s  {status}")
    print("\njob events (the server's, oldest first; training steps left out):")
    for e in events:
        if e.type != "metrics":
            print(f"  {_clock(e.created_at)}  +{e.created_at - job.created_at:6.0f} s  "
                  f"{e.message[:110]}")
    steps = [e.data for e in events if e.type == "metrics" and "train_loss" in (e.data or {})]
    if steps:
        print(f"  ({len(steps)} metrics events: train_loss {steps[0]['train_loss']:.3f} at "
              f"step {steps[0]['step']} -> {steps[-1]['train_loss']:.3f} at step "
              f"{steps[-1]['step']})")
    rows = len(train.read_text().splitlines())
    print(f"\ntrained on {rows} rows; held-out accuracy on the demo's {len(test)} test rows "
          "(never uploaded): "
          f"base {base:.3f}" + (f", tuned {tuned:.3f}" if tuned is not None else
                               ", tuned: none (the job did not succeed)"))
    total = (job.finished_at or time.time()) - job.created_at
    print(f"job wall time {total:.0f} s; whole script {time.time() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({
            "job": job.id, "status": job.status, "model": job.fine_tuned_model,
            "timeline": [{"status": s, "time": t} for s, t in seen],
            "n_train": rows, "n_test": len(test), "accuracy_base": base, "accuracy_tuned": tuned,
            "job_seconds": total}, indent=2))
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
