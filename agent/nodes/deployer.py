"""deployer: merge the adapter, keep it too, and prove the merged model answers."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.data.tokens import conversation
from tools.evaluate import read_rows
from tools.merge import check_loads_and_answers, merge_adapter


def deployer(state: dict) -> dict:
    run_dir = Path(state["run_dir"])
    adapter_src = Path(state["train_result"]["output"])
    adapter = run_dir / "adapter"
    tmp = run_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(adapter_src, tmp)
    shutil.rmtree(adapter, ignore_errors=True)
    tmp.rename(adapter)
    merged = merge_adapter(state["plan"]["model_path"], adapter, run_dir / "merged")
    probe = conversation(read_rows(state["data_report"]["split_paths"]["test"])[0])[:-1]
    check = check_loads_and_answers(merged, probe)
    deployment = {
        "merged": str(merged),
        "adapter": str(adapter),
        "prompt": probe[-1]["content"],
        **check,
    }
    return {"deployment": deployment, "history": [{"node": "deployer", "ok": check["ok"]}]}


def deployment_request(state: dict) -> GateRequest:
    d = state["deployment"]
    said = f"it answered {d['answer']!r} to {d['prompt']!r}" if d["ok"] else f"error: {d['error']}"
    return GateRequest(
        gate="deployment",
        title=GATES["deployment"],
        question="Merged model ready. Mark the deployment done?",
        passed=d["ok"],
        summary=f"Merged model at {d['merged']} loaded with plain transformers; {said}.",
        evidence=d,
    )
