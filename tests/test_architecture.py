"""The import boundaries of pyproject.toml's [tool.importlinter], checked by import-linter
over every module and every import, lazy ones inside functions included.

import-linter reads packages from disk, and in the checkout `ftagent.agent` lives in
agent/ (setuptools' package-dir mapping), so the check runs on a copy laid out as the
wheel installs it: ftagent/{agent,tools,tui,prompts}.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def installed_layout(dest: Path) -> Path:
    pkg = dest / "ftagent"
    shutil.copytree(ROOT / "ftagent", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("agent", "tools", "tui", "prompts"):
        shutil.copytree(ROOT / part, pkg / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.jsonl", "*.md"))
    return dest


def test_import_boundaries_hold(tmp_path):
    site = installed_layout(tmp_path / "site")
    run = ("import sys; from importlinter.cli import lint_imports_command; "
           "sys.exit(lint_imports_command())")
    out = subprocess.run([sys.executable, "-c", run, "--config", str(ROOT / "pyproject.toml"),
                          "--no-cache"],
                         cwd=site, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def test_no_two_modules_import_each_other(tmp_path):
    """A circle between two modules (lazy imports counted) means neither can be read, tested
    or moved alone; the shared piece belongs in a module of its own."""
    site = installed_layout(tmp_path / "site")
    code = ("import grimp, json; g = grimp.build_graph('ftagent', cache_dir=None); "
            "print(json.dumps(sorted({tuple(sorted((a, b))) for a in g.modules "
            "for b in g.find_modules_directly_imported_by(a) "
            "if a in g.find_modules_directly_imported_by(b)})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=site, capture_output=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, text=True,
                         timeout=300, check=True)
    assert json.loads(out.stdout) == []
