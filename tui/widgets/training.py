"""Live training: progress bar with ETA, step, epoch, loss, tokens/s and the loss curve,
updated from the driver's `train_progress` events (rows of the trainer's metrics.jsonl)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar


def _eta(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class TrainingPanel(Vertical):
    """Hidden until training starts. The plot is mounted on first use so that start-up
    does not pay for importing plotext."""

    def compose(self) -> ComposeResult:
        yield Label("Training", id="train-title", classes="title")
        # The ETA shown is the trainer's own (eta_s in metrics.jsonl): a resumed run replays its
        # earlier rows at once, which would fool an ETA measured here.
        yield ProgressBar(total=None, show_eta=False, id="train-bar")
        yield Label("waiting for the first step…", id="train-stats")

    def reset(self, attempt: int | None = None) -> None:
        self.stats: dict = {}
        self.query_one("#train-title", Label).update(
            "Training" + (f" (attempt {attempt})" if attempt else ""))
        self.query_one("#train-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-stats", Label).update("starting the trainer…")
        plot = self._plot()
        if plot is not None:
            plot.clear()

    def _plot(self, create: bool = False):
        found = self.query("LossPlot")
        if found:
            return found.first()
        if not create:
            return None
        from ftagent.tui.widgets.loss_plot import LossPlot

        plot = LossPlot(id="train-plot")
        self.mount(plot)
        return plot

    def update_from(self, row: dict) -> None:
        """Fold one metrics row in: totals, counters and the curve."""
        if not hasattr(self, "stats"):
            self.stats = {}
        self.stats.update({k: v for k, v in row.items() if v is not None})
        s = self.stats
        bar = self.query_one("#train-bar", ProgressBar)
        if s.get("max_steps"):
            bar.update(total=s["max_steps"], progress=s.get("step", 0))
        parts = [f"step {s.get('step', 0)}/{s.get('max_steps', '?')}"]
        if isinstance(s.get("epoch"), int | float):
            parts.append(f"epoch {s['epoch']:.2f}")
        if isinstance(s.get("loss"), int | float):
            parts.append(f"loss {s['loss']:.4f}")
        if isinstance(s.get("eval_loss"), int | float):
            parts.append(f"val {s['eval_loss']:.4f}")
        if isinstance(s.get("tokens_per_s"), int | float):
            parts.append(f"{s['tokens_per_s']:.0f} tok/s")
        parts.append(f"ETA {_eta(s.get('eta_s'))}")
        self.query_one("#train-stats", Label).update("  ·  ".join(parts))
        if "loss" in row or "eval_loss" in row:
            self._plot(create=True).add(row)
