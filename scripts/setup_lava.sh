#!/usr/bin/env bash
# Install Lava (lava-nc 0.10.0, and lava-dl 0.6.0 for netx export) into a virtual environment
# for stac's `lava` backend, and say what it changed. Both declare Python < 3.11, so they are
# installed without dependency resolution (--no-deps --ignore-requires-python; never
# --ignore-requires-python with resolution, which then tries to build scipy from source) and
# their real needs are installed by name (netx also needs torch, which stac installs first).
# scripts/patch_lava.py then fixes the Python 3.11 incompatibility, makes lava-dl's
# object-detection import optional, and removes the top-level `tests` package the wheels
# install. Safe to run again: a stamp file skips the work when this script and the patch
# script are unchanged.
#
#   bash scripts/setup_lava.sh              # into .venv/
#   VENV=/tmp/lavavenv bash scripts/setup_lava.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp=$VENV/.stac-lava-$(cat scripts/setup_lava.sh scripts/patch_lava.py | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# Lava's declared needs (lava-nc 0.10.0 METADATA), installed with normal resolution.
"${pip[@]}" "numpy>=1.24.4,<2" "scipy>=1.10.1,<2" "networkx<=2.8.7" "asteval>=0.9.31,<0.10" \
    "scikit-learn>=1.5,<2"
echo "setup_lava: installing lava-nc 0.10.0 with --no-deps --ignore-requires-python (it declares Python < 3.11)"
"${pip[@]}" --no-deps --ignore-requires-python lava-nc==0.10.0
# lava-dl for netx export. It declares Python < 3.11, torch < 2.4, torchvision, opencv,
# pytest < 8 and pillow < 11; netx needs only lava-nc, torch (stac's pin), h5py and matplotlib,
# all installed by stac itself.
echo "setup_lava: installing lava-dl 0.6.0 with --no-deps --ignore-requires-python (netx only)"
"${pip[@]}" --no-deps --ignore-requires-python lava-dl==0.6.0
"$VENV/bin/python" scripts/patch_lava.py
"$VENV/bin/python" -c "from lava.magma.core.run_configs import Loihi2SimCfg; from lava.proc.lif.process import LIF" \
    || { echo "setup_lava: lava-nc still fails to import after the patch" >&2; exit 1; }
rm -f "$VENV"/.stac-lava-*
touch "$stamp"
echo "setup_lava: lava-nc $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("lava-nc"))') ready in $VENV"
