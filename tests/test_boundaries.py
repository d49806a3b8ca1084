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


def _under(mods: set[str], *prefixes: str) -> set[str]:
    return {m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes)}


def test_tools_import_no_agent_langgraph_or_textual():
    mods = modules_after(
        "import ftagent.tools.models, ftagent.tools.data, ftagent.tools.plan.rules, "
        "ftagent.tools.train.recipe, ftagent.tools.train.jobs, ftagent.tools.evaluate.compare, "
        "ftagent.tools.deploy.merge, ftagent.tools.evaluate.verdict, ftagent.tools.hardware"
    )
    assert not _under(mods, "ftagent.agent", "langgraph", "textual", "ftagent.tui")


def test_agent_imports_no_textual():
    mods = modules_after("import ftagent.agent.graph.workflow, ftagent.agent.service.session, "
                         "ftagent.agent.cli.main")
    assert not _under(mods, "textual", "ftagent.tui")


def test_help_is_fast_and_loads_no_torch():
    mods = modules_after(
        "import sys; sys.argv=['ftagent','--help']\n"
        "from ftagent.agent.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert "torch" not in mods and "transformers" not in mods and "langgraph" not in mods
