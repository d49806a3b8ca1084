"""A person's decision on the one gate a run waits at, from the terminal app or the chat.

Every decision is a `GateDecision` (agent/graph/gates.py), which checks its changes against
the gate in one place and records who decided (source, detail, proposed_by). Headless runs
decide through an `ApprovalPolicy` (flags or a policy file; agent/service/session.py and
policy.py); this module adds the policy of one answer at a time that conversations need.
"""

from __future__ import annotations

from ftagent.agent.graph.gates import GateDecision, GateRequest
from ftagent.agent.service.session import ApprovalPolicy


class OneDecision(ApprovalPolicy):
    """Answers the waiting gate once, as the person decided; any later gate (the same one
    again after a re-plan or a retrain, too) waits for the person."""

    gate: str
    decision: GateDecision | None = None

    def decide(self, request: GateRequest) -> GateDecision | None:
        if request.gate == self.gate and self.decision is not None:
            decision, self.decision = self.decision, None
            return decision
        return None


def one_decision(gate: str, action: str, reason: str = "", changes: dict | None = None,
                 source: str = "unrecorded", detail: str = "",
                 proposed_by: str | None = None) -> OneDecision:
    """The person's decision on the waiting gate. Raises DecisionError (naming the key and
    the allowed ones) for an edit the gate does not accept."""
    return OneDecision(gate=gate, decision=GateDecision(
        action=action, reason=reason, changes=changes or {}, gate=gate, source=source,
        detail=detail, proposed_by=proposed_by))
