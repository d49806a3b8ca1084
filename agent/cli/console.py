"""Human-readable rendering of run events in the terminal (rich), or JSON lines."""

from __future__ import annotations

import json
import sys

from ftagent.agent.service.outcome import METRICS, node_summary
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class EventPrinter:
    """Turns events into lines and a live training progress bar."""

    def __init__(self, as_json: bool = False, console: Console | None = None):
        self.as_json = as_json
        self.console = console or Console(stderr=False, highlight=False)
        self.progress: Progress | None = None
        self.task = None

    def __call__(self, event: dict) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(event, default=str) + "\n")
            sys.stdout.flush()
            return
        kind = event["type"]
        if kind == "train_progress":
            self._train(event)
            return
        self._close_progress()
        c = self.console
        if kind in ("run_started", "run_resumed"):
            c.print(f"[bold]{'Run' if kind == 'run_started' else 'Resuming'} {event['run_id']}[/]")
        elif kind == "node_started":
            c.print(f"[cyan]→ {event['node']}[/]")
        elif kind == "node_finished":
            c.print(f"[green]✓ {event['node']}[/] " + node_summary(event))
        elif kind == "gate_waiting":
            mark = "[green]check passed[/]" if event["passed"] else "[red]check FAILED[/]"
            c.print(
                f"[yellow]◆ gate {event['gate']}[/] ({event['title']}; {mark}): {event['summary']}"
            )
            job = (event.get("evidence") or {}).get("scale_out_job")
            if job:  # work too big for this machine: the cluster job the plan recommends
                c.print(f"  [bold]{job['launcher']} job[/] ({job['path']}):")
                c.print(job["text"], markup=False, highlight=False)
        elif kind == "gate_decision":
            why = f" ({event['reason']})" if event.get("reason") else ""
            c.print(f"  [magenta]decision: {event['action']}[/]{why}")
        elif kind == "run_failed":
            c.print(f"[red bold]✗ failed:[/] {event['error']}")
        elif kind == "run_finished":
            c.print(f"[bold]Run {event['status']}.[/]")
        elif kind == "provider_job_created":
            c.print(f"  provider job {event['job_id']} created: {event['hyperparameters']}")
        elif kind == "provider_status":
            c.print(f"  provider job {event['job_id']}: {event['status']}")
        elif kind == "provider_event":
            c.print(f"  [dim]provider: {event['message']}[/]")
        elif kind == "provider_job_cancelled":
            c.print(f"  [yellow]provider job {event['job_id']} {event['status']}[/] "
                    f"({event['why']})")

    def _train(self, e: dict) -> None:
        total = e.get("max_steps") or None
        if self.progress is None:
            self.progress = Progress(
                TextColumn("  training"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, info="")
        info = []
        if "loss" in e:
            info.append(f"loss {e['loss']:.4f}")
        if "eval_loss" in e:
            info.append(f"val {e['eval_loss']:.4f}")
        if e.get("tokens_per_s"):
            info.append(f"{e['tokens_per_s']:.0f} tok/s")
        if e.get("event") in ("anomaly", "warning", "recovered"):
            self.console.print(f"  [yellow]{e['message']}[/] {e.get('fix', '')}")
        kwargs = {"info": "  ".join(info)} if info else {}
        self.progress.update(self.task, completed=e.get("step", 0), total=total, **kwargs)

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress, self.task = None, None


def comparison_table(report: dict) -> Table:
    table = Table(title=f"Held-out test split ({report['n_test']} examples): base vs tuned")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("tuned", justify="right")
    for name in METRICS:
        b, t = report["base"].get(name), report["tuned"].get(name)
        if b is None and t is None:
            continue
        table.add_row(name, f"{b:.4f}", f"{t:.4f}")
    return table


VERDICT_STYLE = {"met": "green", "better": "green", "MISSED": "red bold", "FLAGGED": "yellow",
                 "worse": "yellow", "same": "dim", "changed": "dim"}


def verdict_table(rows: list[dict], n_test: int) -> Table:
    """Every metric: base, tuned, change, the target it is held to, and the verdict."""
    table = Table(title=f"Held-out test split ({n_test} examples): base vs tuned, per target")
    for name, justify in (("metric", "left"), ("base", "right"), ("tuned", "right"),
                          ("change", "right"), ("target", "left"), ("verdict", "left")):
        table.add_column(name, justify=justify)
    from ftagent.tools.evaluate.verdict import TargetRow

    num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        row = TargetRow.model_validate(r)
        d = row.delta
        mark = row.mark()
        table.add_row(row.metric, num(row.base), num(row.tuned),
                      "-" if d is None else f"{d:+.4f}", row.target or "vs base",
                      f"[{VERDICT_STYLE[mark]}]{mark}[/]")
    return table
