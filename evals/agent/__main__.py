"""Score the chat agent on scripted conversations (evals/agent/conversations.yaml).

    python -m evals.agent                       # the configured LLM (ftagent config llm)
    python -m evals.agent --backend none        # the intent parser and knowledge base only
    python -m evals.agent --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME

Each conversation runs the real workflow on a tiny random-weight model (built once from the
bundled model's tokenizer), so a run reaches its gates in seconds; the score is whether the
right actions happened and the run ended where expected.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEMO = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"


def tiny_model(out: Path) -> Path:
    from ftagent.tools.models import build_tiny_llama, resolve_model

    return build_tiny_llama(resolve_model("smollm2-135m-instruct").path, out)


def small_data(out: Path) -> Path:
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[::8]) + "\n", encoding="utf-8")
    return out


def in_order(expected: list[str], actual: list[str]) -> bool:
    it = iter(actual)
    return all(any(a == e for a in it) for e in expected)


def answer_text(reply: str, asked: str) -> str:
    """What the answer itself says: without the cited sources list (section titles would
    pass any keyword check) and without the person's own words echoed back."""
    body = reply.split("\nSources:\n")[0]
    body = re.sub(r"^\s*\d+\.\s*\[\d+\].*$", "", body, flags=re.MULTILINE)  # listed sources
    return body.replace(asked, " ")


def score(conv: dict, bot, replies: list[str]) -> dict:
    from ftagent.agent.service.runs import read_manifest

    ctx = bot.ctx
    checks = {"actions": in_order(conv.get("expect_actions", []), bot.actions)}
    manifest = read_manifest(ctx.run_dir) if ctx.run_dir else None
    if conv.get("expect_no_run"):
        checks["no_run"] = ctx.run_dir is None
    if "expect_gate" in conv and not conv.get("expect_no_run"):
        checks["gate"] = (manifest or {}).get("waiting_at") == conv["expect_gate"]
    if "expect_status" in conv:
        checks["status"] = (manifest or {}).get("status") == conv["expect_status"]
    for key, value in (conv.get("expect_config") or {}).items():
        pending = {**ctx.pending_config}
        decided = json.dumps([json.loads(x) for x in (ctx.run_dir / "events.jsonl")
                              .read_text().splitlines()] if ctx.run_dir else [])
        checks[f"config {key}"] = pending.get(key) == value or f'"{key}": {value}' in decided
    for text in conv.get("expect_reply_contains") or []:
        checks[f"says {text!r}"] = any(text in r for r in replies)
    if conv.get("expect_reply_any"):
        said = " ".join(answer_text(r, t) for r, t in zip(replies, conv["turns"],
                                                         strict=False)).lower()
        checks["says one of " + "/".join(conv["expect_reply_any"])] = any(
            w.lower() in said for w in conv["expect_reply_any"])
    for name in conv.get("expect_not_actions") or []:
        checks[f"no {name}"] = name not in bot.actions
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["none", "openai", "local"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--only", help="run conversations whose name contains this")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from ftagent.agent.chat.assistant import Assistant
    from ftagent.agent.chat.llm import load_settings
    from ftagent.agent.chat.tools import ChatContext
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    settings = load_settings()
    for key in ("backend", "base_url", "model"):
        if getattr(args, key):
            setattr(settings, key, getattr(args, key))
    convs = yaml.safe_load((HERE / "conversations.yaml").read_text())
    if args.only:
        convs = [c for c in convs if args.only in c["name"]]
    work = Path(tempfile.mkdtemp(prefix="ftagent-agent-eval-"))
    model, data = tiny_model(work / "tiny"), small_data(work / "small.jsonl")
    results, passed = [], 0
    print(f"LLM: {settings.describe()}")
    for i, conv in enumerate(convs):
        ctx = ChatContext(runs_root=work / f"runs-{i}", model=str(model))
        bot = Assistant(ctx, settings, db_path=work / "conversations.sqlite")
        started, replies = time.time(), []
        for turn in conv["turns"]:
            text = turn.format(data=data, model=model)
            replies.append("".join(bot.reply(text)))
        checks = score(conv, bot, replies)
        ok = all(checks.values())
        passed += ok
        results.append({"name": conv["name"], "ok": ok, "checks": checks,
                        "actions": bot.actions, "seconds": round(time.time() - started, 1)})
        failed = [k for k, v in checks.items() if not v]
        results[-1]["replies"] = [r[:400] for r in replies]
        print(f"{'PASS' if ok else 'FAIL'}  {conv['name']}  ({results[-1]['seconds']} s)"
              + (f"  failed: {', '.join(failed)}; actions: {bot.actions}" if failed else ""))
    print(f"\n{passed}/{len(convs)} conversations right with {settings.describe()}")
    if args.out:
        args.out.write_text(json.dumps({"llm": settings.describe(), "passed": passed,
                                        "total": len(convs), "results": results}, indent=2))
    return 0 if passed == len(convs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
