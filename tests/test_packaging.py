"""The installed package: `pip install .` into a fresh venv gives a working `ftagent`
that runs the demo from its own files, and claims no generic top-level name."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

FOLDERS = {"ftagent": "ftagent", "agent": "ftagent.agent", "tools": "ftagent.tools",
           "tui": "ftagent.tui", "prompts": "ftagent.prompts"}


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (the package-dir mapping rules out
    discovery): a new folder with an __init__.py must be on the list, or the wheel lacks it."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {FOLDERS[init.parent.relative_to(ROOT).parts[0]] + "".join(
                 f".{p}" for p in init.parent.relative_to(ROOT).parts[1:])
             for top in FOLDERS for init in (ROOT / top).rglob("__init__.py")}
    assert listed == found


def fresh_venv(where: Path) -> Path:
    """A new venv whose dependencies come from this one (a .pth line, so nothing is
    downloaded) but whose ftagent is only what `pip install .` puts there. Its own old
    setuptools goes: the build uses this venv's, the one the project pins."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    site = Path(subprocess.run(
        [str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    for old in [*site.glob("setuptools*"), *site.glob("_distutils_hack"),
                *site.glob("distutils-precedence.pth")]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return where


@pytest.mark.e2e
def test_pip_install_gives_a_working_ftagent_demo(tmp_path, bundled_model):
    src = tmp_path / "src"  # a copy: the build writes build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = fresh_venv(tmp_path / "venv")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", str(src)], check=True, capture_output=True)
    shutil.rmtree(src)  # nothing may come from the sources now
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    env.pop("PYTHONPATH", None)

    where = subprocess.run(
        ["python", "-c", "import importlib.util as u, ftagent; print(ftagent.__file__); "
         "print([n for n in ('agent', 'tools', 'tui', 'prompts') if u.find_spec(n)])"],
        cwd=away, env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert where[0].startswith(str(venv)) and where[1] == "[]"

    def ftagent(*args):
        return subprocess.run(["ftagent", *args], cwd=away, env=env, capture_output=True,
                              text=True, timeout=900)

    # The demo up to its first gate, then on to the data gate: the bundled data, the
    # bundled model, the plan template and the data checks all come from the install.
    first = ftagent("demo", "--approve", "none", "--run-dir", str(away / "run"))
    assert first.returncode == 3, first.stdout + first.stderr
    assert "Waiting at gate 'strategy'" in first.stdout
    assert (away / "run" / "plan.md").read_text().startswith("#")
    run_id = re.search(r"ftagent resume (\S+) --approve", first.stdout).group(1)
    second = ftagent("resume", run_id, "--approve", "strategy")
    assert second.returncode == 3 and "Waiting at gate 'dataset'" in second.stdout, second.stdout
    assert (away / "run" / "data" / "report.json").exists()
