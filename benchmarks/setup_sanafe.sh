#!/usr/bin/env bash
# Install SANA-FE 2.2.9 (PyPI `sanafe`, GPL-3.0) into its own virtualenv.
#
# stac never imports SANA-FE: benchmarks/sanafe_validation.py runs the interpreter of this
# virtualenv as a separate program. The venv path is git-ignored.
#
# Usage: bash benchmarks/setup_sanafe.sh [VENV_DIR]   (default: benchmarks/.sanafe-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.sanafe-venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# [all]: numpy, pandas, matplotlib, which the shipped random-network generator imports
"$venv/bin/python" -m pip install --quiet "sanafe[all]==2.2.9" pyyaml
"$venv/bin/python" -c "import sanafe; print('sanafe', getattr(sanafe, '__version__', '2.2.9'), 'in', '$venv')"
