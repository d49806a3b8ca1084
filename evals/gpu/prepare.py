"""What travels with the GPU check: the wheels the device image lacks (wheels.txt), for
the device's Python 3.12 on x86-64, and SmolLM2's tokenizer (the device reaches no hub),
all under .whl/ in the repository root (ignored by git: .git/info/exclude).

    python -m evals.gpu.prepare [--without bitsandbytes]

Prints the size of what travels against the device tool's 64 MiB per call (the
repository's tracked files count too); over it, run QLoRA in a second call (README.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(__file__).with_name("wheels.txt")
DEST = ROOT / ".whl"
TOKENIZER = DEST / "smollm2-tokenizer"
LIMIT_MIB = 64
# The device README's platform tags: pip matches manylinux_2_N exactly.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]


def pinned(without: list[str]) -> list[str]:
    lines = [x.strip() for x in WHEELS.read_text().splitlines()]
    return [x for x in lines if x and not x.startswith("#")
            and x.split("==")[0] not in without]


def download(specs: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(DEST)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + specs, check=True)


def save_tokenizer() -> None:
    from ftagent.tools.models import resolve_model
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").path).save_pretrained(
        TOKENIZER)


def exclude_from_git() -> None:
    """.whl/ must travel as an ignored, carried path, never be committed."""
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    exclude = (ROOT / common / "info" / "exclude").resolve()
    text = exclude.read_text() if exclude.exists() else ""
    if "/.whl/" not in text.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "/.whl/\n")


def tracked_mib() -> float:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files
               if f and (ROOT / f.decode()).is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--without", nargs="*", default=[], help="wheels to leave out by name")
    a = ap.parse_args()
    DEST.mkdir(exist_ok=True)
    exclude_from_git()
    for old in DEST.glob("*.whl"):  # two versions of one package stop the whole install
        old.unlink()
    download(pinned(a.without))
    save_tokenizer()
    sizes = sorted(((p.stat().st_size / 2**20, p.name) for p in DEST.rglob("*") if p.is_file()),
                   reverse=True)
    carried, repo = sum(s for s, _ in sizes), tracked_mib()
    for s, name in sizes[:8]:
        print(f"{s:7.1f} MiB  {name}")
    print(f".whl/: {carried:.1f} MiB; with the repository's tracked files ({repo:.1f} MiB): "
          f"{carried + repo:.1f} of {LIMIT_MIB} MiB per call")
    if carried + repo > LIMIT_MIB:
        print("over the limit: prepare again with --without bitsandbytes, and carry "
              "bitsandbytes alone for a second `--only qlora_nf4` call (README.md)")


if __name__ == "__main__":
    main()
