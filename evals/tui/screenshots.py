"""SVG screenshots of the terminal app for docs/, taken from a real run: the bundled
model on the demo data, driven with Textual's pilot as a person would.

    .venv/bin/python evals/tui/screenshots.py [--out docs] [--max-steps 12]

Writes tui-main.svg (chat and steps at the first gate), tui-gate.svg (the strategy gate
with plan.md), tui-training.svg (live training: bar, counters, loss curve),
tui-gate-training.svg (the training gate with its loss curve) and tui-light.svg (the
light theme). The run is rejected at the training gate (screenshots only) and left in a
temporary runs folder unless --runs-dir is given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"
GOAL = "customer support assistant that routes banking questions to the right intent"
SIZE = (130, 42)


async def until(pilot, condition, timeout: float = 600) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.1)


async def shoot(app, pilot, out: Path, name: str) -> None:
    await pilot.pause(0.5)  # let the last frame settle
    app.save_screenshot(filename=name, path=str(out))
    print(f"wrote {out / name}")


async def main(out: Path, runs: Path, max_steps: int) -> None:
    from ftagent.tui.app import FtagentApp
    from ftagent.tui.screens.config_editor import ConfigEditorScreen
    from ftagent.tui.screens.gate import GateScreen
    from textual.widgets import TextArea

    def gate(app, name):
        s = app.screen
        return (isinstance(s, GateScreen) and s.request["gate"] == name
                and s.query_one("#approve").region.width > 0)

    app = FtagentApp(runs_root=runs, offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        app.main.query_one("#command").value = f'/workflow:fine-tuning "{GOAL}" --data {DEMO}'
        await pilot.press("enter")
        await until(pilot, lambda: gate(app, "strategy"))
        await pilot.press("escape")  # decide later: the main screen with the run so far
        await until(pilot, lambda: app.screen is app.main)
        await shoot(app, pilot, out, "tui-main.svg")
        app.theme = "textual-light"
        await shoot(app, pilot, out, "tui-light.svg")
        app.theme = "textual-dark"

        await pilot.press("ctrl+g")
        await until(pilot, lambda: gate(app, "strategy"))
        await shoot(app, pilot, out, "tui-gate.svg")
        await pilot.press("e")  # a short training for the pictures
        await until(pilot, lambda: isinstance(app.screen, ConfigEditorScreen))
        area = app.screen.query_one(TextArea)
        area.move_cursor(area.document.end)
        area.insert(f"max_steps: {max_steps}\neval_steps: 4\n")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: gate(app, "dataset"))
        await pilot.click("#approve")

        plot = lambda: app.training.query("LossPlot")  # noqa: E731
        await until(pilot, lambda: plot() and len(plot().first().train) >= max_steps // 2)
        await shoot(app, pilot, out, "tui-training.svg")
        await until(pilot, lambda: gate(app, "training"))
        await shoot(app, pilot, out, "tui-gate-training.svg")
        await pilot.click("#reject")
        await pilot.press(*"screenshots only", "enter")
        await until(pilot, lambda: "## Run rejected" in app.chat.text(), 120)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--max-steps", type=int, default=12)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="ftagent-shots-")) / "runs"
    asyncio.run(main(args.out.resolve(), runs, args.max_steps))
