#!/usr/bin/env bash
# Paper-scale speed of fdpkit on one GPU, bounded to 8 minutes (see benchmarks/gpu_check.py).
#
#   benchmarks/gpu_check.sh [--smoke] [--out FILE] [--budget-s S] [--released PATH/fdp.py]
#
# Needs only a Python with PyTorch: fdpkit runs from this checkout (PYTHONPATH), einops comes from
# benchmarks/wheels/ when missing. The released code's fdp.py (github:CYF-cuber/FDP) is read from
# --released or $FDP_RELEASED_PY at run time and never committed. PYTHON picks the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "gpu_check: no $python on PATH (set PYTHON=...)" >&2; exit 2; }
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
cd "$repo"
# the script stops itself within its budget (450 s); this is the hard stop at 8 minutes
exec timeout --kill-after=5 480 "$python" "$here/gpu_check.py" "$@"
