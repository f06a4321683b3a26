#!/usr/bin/env bash
# Concrete ML 1.9 baseline for BENCHMARKS.md (TFHE section), on the same data sets, splits
# and model shapes as models/breast-cancer-lr and models/digits-mlp-he.
#
# Creates its own virtual environment under ${CLOISTER_CACHE:-$HOME/.cache/cloister}/concrete-ml
# (concrete-ml pulls torch with several GB of CUDA packages, so this is NOT part of the test
# command) and runs scripts/bench-concrete-ml.py. Records the machine load with the figures.
#
#   scripts/bench-concrete-ml.sh            # ROWS=10 encrypted rows per model
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CLOISTER_CACHE:-$HOME/.cache/cloister}/concrete-ml"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "concrete-ml==1.9.*"
fi
echo "load before: $(uptime)"
"$venv/bin/python" "$here/bench-concrete-ml.py"
echo "load after: $(uptime)"
