"""The six workflow steps and their status, folded from the driver's events. Pure, so a
run opened from disk (its events.jsonl) shows the same panel as a run watched live."""

from __future__ import annotations

from dataclasses import dataclass, field

STEPS = ("planner", "data_prep", "config", "trainer", "tester", "deployer")
LABELS = {
    "planner": "Plan",
    "data_prep": "Data",
    "config": "Config",
    "trainer": "Train",
    "tester": "Evaluate",
    "deployer": "Deploy",
}
# The step each quality gate belongs to (evaluation and safety both follow the tester).
GATE_STEP = {
    "strategy": "planner",
    "dataset": "data_prep",
    "training": "trainer",
    "evaluation": "tester",
    "safety": "tester",
    "deployment": "deployer",
}
STATUSES = ("pending", "running", "waiting", "done", "failed", "rejected")


@dataclass
class StepTracker:
    status: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STEPS, "pending"))
    detail: dict[str, str] = field(default_factory=dict)
    gate: str | None = None  # the gate the run waits at
    attempt: int = 0

    def apply(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "node_started" and event.get("node") in self.status:
            node = event["node"]
            if self.status[node] != "pending":  # a re-plan or a retrain redoes what follows
                for later in STEPS[STEPS.index(node) + 1:]:
                    self.status[later] = "pending"
                    self.detail.pop(later, None)
            self.status[node] = "running"
            self.gate = None
        elif kind == "node_finished" and event.get("node") in self.status:
            self.status[event["node"]] = "done"
            if event["node"] == "config":
                self.attempt = event.get("attempt") or self.attempt + 1
                self.detail["config"] = f"attempt {self.attempt}"
        elif kind == "gate_waiting":
            self.gate = event.get("gate")
            step = GATE_STEP.get(self.gate or "")
            if step:
                self.status[step] = "waiting"
                self.detail[step] = f"gate {self.gate}"
        elif kind == "gate_decision":
            step = GATE_STEP.get(event.get("gate", ""))
            self.gate = None
            if step:
                rejected = event.get("action") == "reject"
                self.status[step] = "rejected" if rejected else "done"
                self.detail[step] = f"{event['gate']}: {event.get('action')}"
        elif kind == "train_progress":
            if event.get("step") is not None and event.get("max_steps"):
                self.detail["trainer"] = f"step {event['step']}/{event['max_steps']}"
        elif kind == "run_failed":
            for step, status in self.status.items():
                if status == "running":
                    self.status[step] = "failed"
        elif kind == "run_waiting":
            self.gate = event.get("gate")

    @classmethod
    def from_events(cls, events: list[dict]) -> StepTracker:
        tracker = cls()
        for event in events:
            tracker.apply(event)
        return tracker
