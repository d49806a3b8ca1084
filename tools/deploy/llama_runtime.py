"""The llama.cpp that runs exported GGUF files, and the converter that writes them.

Both come from one pinned source distribution, llama-cpp-python's (it vendors llama.cpp):
- the runtime: the `llama_cpp` binding, built once with cmake into a wheel kept in a cache
  folder outside the virtual environment, so a second install (`make clean test`, another
  checkout on the same machine) reuses it instead of compiling for minutes again;
- the converter: llama.cpp's `convert_hf_to_gguf.py` with its `conversion/` package and its
  own `gguf-py`, copied from the same sdist into the cache. The wheel installs neither, and
  the `gguf` release on PyPI lags the vendored one (same version number, older tables), so
  the converter runs with the gguf-py it was written with, and always matches the runtime.

`python -m ftagent.tools.deploy.llama_runtime install` does it (the Makefile calls it).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python; its vendored llama.cpp is the converter's too
PACKAGE = "llama-cpp-python"
# CPU only, no multimodal library (mtmd: not needed to run text models, and a third of the
# build). On x86-64, GGML_NATIVE=OFF builds for AVX2/FMA/F16C/BMI2 (ggml turns these on
# when native is off), which every x86 CI runner and desktop since 2013 has: a wheel in a
# shared or restored cache never meets a CPU that lacks an instruction it uses, as a
# -march=native build could. Elsewhere (arm64) ggml's native default is kept.
CMAKE_ARGS = ["-DLLAVA_BUILD=OFF"] + (
    ["-DGGML_NATIVE=OFF"] if platform.machine() in ("x86_64", "AMD64") else [])
# The converter's files in the sdist, under vendor/llama.cpp/.
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")


def cache_dir() -> Path:
    """Where the built wheel and the converter are kept: `FTAGENT_LLAMA_CPP_CACHE`, else the
    user cache (not FTAGENT_HOME: tests move that to a temp dir, and a build is not state)."""
    if os.environ.get("FTAGENT_LLAMA_CPP_CACHE"):
        return Path(os.environ["FTAGENT_LLAMA_CPP_CACHE"])
    import platformdirs

    return (Path(platformdirs.user_cache_dir("ftagent"))
            / f"llama-cpp-python-{VERSION}-{platform.machine()}")


def converter_script() -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py pinned with the runtime, if installed."""
    script = cache_dir() / "convert" / "convert_hf_to_gguf.py"
    return script if script.is_file() else None


def runtime_version() -> str | None:
    """The installed llama-cpp-python's version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return None


def missing() -> list[str]:
    """What is not installed as pinned (empty when the runtime and converter are ready)."""
    problems = []
    have = runtime_version()
    if have != VERSION:
        problems.append(f"{PACKAGE} {have or 'is not installed'}"
                        + (f" (ftagent pins {VERSION})" if have else ""))
    if converter_script() is None:
        problems.append(f"llama.cpp's converter is not in {cache_dir() / 'convert'}")
    return problems


def install_hint() -> str:
    return f"install it with: {sys.executable} -m ftagent.tools.deploy.llama_runtime install"


def _pip(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def _wheel(cache: Path) -> Path | None:
    found = sorted(cache.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    return found[0] if found else None


def _extract_converter(sdist: Path, dest: Path) -> None:
    root = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(root)
                   and m.name[len(root):].startswith(CONVERTER_PARTS) and (m.isfile()
                                                                           or m.isdir())]
        for m in members:
            m.name = m.name[len(root):]
        tar.extractall(tmp, members=members, filter="data")
    if not (tmp / "convert_hf_to_gguf.py").is_file():
        raise RuntimeError(f"{sdist} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def install(constraints: str | None = None) -> dict:
    """Build the wheel (once per cache) and the converter, then install the wheel into this
    interpreter's environment. Returns what was done and how long each step took."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    done: dict = {"cache": str(cache), "cmake_args": " ".join(CMAKE_ARGS), "seconds": {}}
    wheel, converter = _wheel(cache), cache / "convert"
    if wheel is None or not (converter / "convert_hf_to_gguf.py").is_file():
        t0 = time.perf_counter()
        sdists = cache / "sdist"
        _pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", str(sdists),
             f"{PACKAGE}=={VERSION}")
        sdist = next(sdists.glob(f"llama_cpp_python-{VERSION}.tar.gz"))
        done["seconds"]["download"] = round(time.perf_counter() - t0, 1)
        if wheel is None:
            t0 = time.perf_counter()
            env = {**os.environ, "CMAKE_ARGS": " ".join(CMAKE_ARGS),
                   "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
            _pip("wheel", "--quiet", "--no-deps", "-w", str(cache), str(sdist), env=env)
            wheel = _wheel(cache)
            done["seconds"]["build"] = round(time.perf_counter() - t0, 1)
        _extract_converter(sdist, converter)
        shutil.rmtree(sdists)  # 76 MB; the wheel and the converter are all that is used
    done["wheel"] = str(wheel)
    t0 = time.perf_counter()
    _pip("install", "--quiet", *(["-c", constraints] if constraints else []), str(wheel))
    done["seconds"]["install"] = round(time.perf_counter() - t0, 1)
    done["converter"] = str(converter / "convert_hf_to_gguf.py")
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install"]:
        constraints = args[args.index("-c") + 1] if "-c" in args else None
        done = install(constraints)
        print(f"llama.cpp runtime {PACKAGE} {VERSION} ({done['cmake_args']}) from "
              f"{done['wheel']}; converter {done['converter']}; seconds {done['seconds']}")
        return 0
    if args[:1] == ["check"]:
        problems = missing()
        print("; ".join(problems) + f"; {install_hint()}" if problems else
              f"{PACKAGE} {VERSION} and its converter at {converter_script()}")
        return 1 if problems else 0
    print("usage: python -m ftagent.tools.deploy.llama_runtime install [-c CONSTRAINTS] | check")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
