"""The quality gates: the gate dialog, the config editor (an edit is a gate decision), and
sending the person's decision to the driver.

A run that waits at a gate has `app.request` set (the gate's question, from the driver's
outcome or, for a run opened from the list, its last `gate_waiting` event); deciding clears
it and hands the decision to the `_decide` worker (tui/workers.py).
"""

from __future__ import annotations

from ftagent.tui.screens.main import MainScreen

# Which gates belong to the step a command names (/train, /eval, /deploy): the command
# opens the gate when the run waits at one of them.
STEP_GATES = {"train": ("training",), "eval": ("evaluation", "safety"),
              "deploy": ("deployment",)}


class GateHandling:
    """Mixed into FtagentApp (tui/app.py): uses its `request`, `run_dir`, `busy`,
    `deciding`, `say` and `error`."""

    def decide(self, decision: dict) -> None:
        """Send the person's decision on the waiting gate; the driver resumes the graph."""
        if not self.request or not self.run_dir:
            self.error("no gate is waiting for a decision")
            return
        if self.busy:
            self.error("the run is already going on")
            return
        gate, self.request = self.request["gate"], None
        self.busy = self.deciding = True
        self._decide(self.run_dir, gate, decision)

    def action_show_gate(self) -> None:
        """ctrl+g: the gate dialog, over the main screen only (not over another dialog)."""
        if not self.request:
            self.error("no gate is waiting for a decision")
            return
        if isinstance(self.screen, MainScreen):
            from ftagent.tui.screens.gate import GateScreen

            self.push_screen(GateScreen(self.request, self.run_dir), self._gate_answered)

    def _gate_answered(self, decision: dict | None) -> None:
        """The dialog closed: a decision, or None when dismissed (the gate still waits)."""
        if decision is None:
            if self.request:
                self.say(f"The run waits at gate **{self.request['gate']}**: `/approve`, "
                         "`/reject REASON`, `/config`, or `ctrl+g` to see it again.")
            return
        self.decide(decision)

    def action_edit_config(self) -> None:
        """ctrl+o and /config: the run's config.yaml in the editor; only while the run
        stands still, since the running workflow reads that file."""
        from ftagent.tui.screens.config_editor import ConfigEditorScreen

        if not self.run_dir:
            self.error("no run yet: the config is written after the dataset gate")
            return
        if self.busy:
            self.error("the run is working; edit the config at its next gate")
            return
        path = self.run_dir / "config.yaml"
        if not path.exists() and not self.request:
            self.error("this run has no config.yaml")
            return
        gate = self.request["gate"] if self.request else None
        self.push_screen(ConfigEditorScreen(path if path.exists() else None, gate),
                         self._config_saved)

    def _config_saved(self, changes: dict | None) -> None:
        """At a gate, the edit is the gate's decision ("edit"), so the workflow records and
        uses it; with no gate waiting it is only saved."""
        if changes is None:
            return
        listed = ", ".join(f"`{k}={v}`" for k, v in changes.items()) or "no changes"
        if self.request and changes:
            self.say(f"Config edited ({listed}): sent as the edit of gate "
                     f"**{self.request['gate']}**.")
            self.decide({"action": "edit", "changes": changes,
                         "reason": "edited in the terminal app"})
        else:
            self.say(f"Config saved ({listed}).")
