"""Data that ships inside the ftagent package: the demo's training set, the evaluator's
probes and the safety mix's sources (README.md here gives each file's source and licence).

Read through importlib.resources, so an installed wheel finds them as a checkout does;
before, they sat in a top-level data/ folder that no wheel carried, and a non-editable
install ran the safety gate without a single probe.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

DEMO_DATA = "demo/support_intents.jsonl"
ADVBENCH_PROBE = "probes/advbench_goals.jsonl"
XSTEST_SAFE_PROBE = "probes/xstest_safe.jsonl"
ARC_PROBE = "probes/arc_easy_100.jsonl"
HARMFUL_MIX = "safety/harmful_prompts.jsonl"
XSTEST_SAFE_MIX = "safety/xstest_safe_mix.jsonl"
LOOKALIKES = "safety/lookalikes.yaml"
REFUSALS = "safety/refusals.yaml"


class BundledFileMissing(FileNotFoundError):
    """A file that should ship with ftagent is not there: a broken install."""


def bundled_path(name: str) -> Path:
    """A bundled file as a filesystem path (wheels install unpacked, so it is one), for
    callers that hand a path on, e.g. the demo's --data."""
    path = Path(str(files(__name__).joinpath(name)))
    if not path.is_file():
        raise BundledFileMissing(
            f"{path} is missing: ftagent's bundled data did not install; reinstall ftagent "
            "(pip install --force-reinstall ftagent, or make install in a checkout)")
    return path


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in bundled_path(name).read_text("utf-8").splitlines()
            if line.strip()]


def read_yaml_list(name: str, key: str) -> list[str]:
    import yaml

    return list(yaml.safe_load(bundled_path(name).read_text("utf-8"))[key])
