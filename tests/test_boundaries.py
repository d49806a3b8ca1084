"""Import boundaries: tools know nothing of the agent or UI; `--help` loads no torch."""

import subprocess
import sys

from conftest import ROOT


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return set(out.stdout.split())


def test_tools_import_no_agent_langgraph_or_textual():
    mods = modules_after(
        "import tools.models, tools.data, tools.plan, tools.train, tools.jobs, "
        "tools.evaluate, tools.merge, tools.verdict, tools.hardware"
    )
    assert not {m for m in mods if m.split(".")[0] in {"agent", "langgraph", "textual", "tui"}}


def test_agent_imports_no_textual():
    mods = modules_after("import agent.graph, agent.session, agent.cli")
    assert not {m for m in mods if m.split(".")[0] in {"textual", "tui"}}


def test_help_is_fast_and_loads_no_torch():
    mods = modules_after(
        "import sys; sys.argv=['ftagent','--help']\n"
        "from agent.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert "torch" not in mods and "transformers" not in mods and "langgraph" not in mods
