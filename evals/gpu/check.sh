#!/usr/bin/env bash
# The GPU check on a lent machine: install what travels, then run the Python entry point.
#   evals/gpu/check.sh OUT_DIR [python -m evals.gpu.check options]
# Wheels come from .whl/ (evals/gpu/prepare.py puts them there, with SmolLM2's tokenizer)
# into /tmp/site, as the device README says; ftagent itself is installed editable, since
# its packages are mapped from top-level folders (pyproject's package-dir) and a child
# process must import them as the trainer's jobs do.
set -uo pipefail
out=${1:?usage: evals/gpu/check.sh OUT_DIR [options]}
shift
cd "$(dirname "$0")/../.." || exit 2
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! python3 -c "import ftagent.tools.train.recipe" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 2
fi
mkdir -p "$out"
python3 -m evals.gpu.check "$out" "$@" 2>&1 | tee "$out/check.log"
