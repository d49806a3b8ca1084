"""Commands added to Textual's command palette (ctrl+p)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

PALETTE = (
    ("Runs: list, open or resume", "show_runs", "every run with its status and metrics"),
    ("Gate: show the waiting gate", "show_gate", "approve, reject or edit"),
    ("Config: edit the run's config", "edit_config", "checked with the config model"),
    ("Status of the current run", "status", "steps, model, method, data"),
    ("New fine-tuning run…", "new_run", "fills the input line"),
    ("Toggle dark / light theme", "toggle_dark", "ctrl+t"),
    ("Help: keys and commands", "help", "? or f1"),
)


class FtagentCommands(Provider):
    async def discover(self) -> Hits:
        for title, action, help_text in PALETTE:
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in PALETTE:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title),
                          partial(self.app.run_action, action), help=help_text)
