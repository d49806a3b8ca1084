"""A loss curve drawn in the terminal (textual-plotext): train loss and validation loss
by optimizer step, from metrics.jsonl rows or live `train_progress` events."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LossPlot(PlotextPlot):
    def __init__(self, rows: list[dict] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        for row in rows or []:
            self.add(row, redraw=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.redraw()

    def add(self, row: dict, redraw: bool = True) -> None:
        step = row.get("step")
        if step is None:
            return
        if isinstance(row.get("loss"), int | float):
            self.train.append((step, row["loss"]))
        if isinstance(row.get("eval_loss"), int | float):
            self.val.append((step, row["eval_loss"]))
        if redraw:
            self.redraw()

    def clear(self) -> None:
        self.train, self.val = [], []
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("loss by step")
        if self.train:
            plt.plot(*zip(*self.train, strict=True), label="train", marker="braille")
        if self.val:
            plt.plot(*zip(*self.val, strict=True), label="validation", marker="dot")
        self.refresh()
