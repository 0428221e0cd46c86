"""GPTQ weight rounding (full mode's default): against rounding to nearest on a real layer, and
against an independent implementation, llmcompressor's GPTQ core, on the same layers."""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from stac.frontend.calibrate import input_hessians
from stac.frontend.text import calibration_windows
from stac.quant import quantise_weight, quantise_weight_gptq


def test_with_uncorrelated_inputs_gptq_is_rounding_to_nearest():
    """With ``X^T X = I`` no error has anywhere to go, so every weight rounds to nearest."""
    w = np.random.default_rng(0).normal(size=(16, 32))
    q_rtn, s_rtn = quantise_weight(w, 8)
    q, s = quantise_weight_gptq(w, np.eye(32), 8)
    assert np.array_equal(q, q_rtn) and np.array_equal(s, s_rtn)


@pytest.fixture(scope="module")
def layers(smollm2) -> tuple[dict[str, torch.nn.Module], dict[str, torch.Tensor]]:
    """SmolLM2's maps in layers 0-5 (q, o, gate and down projections) and their Hessians
    ``X^T X`` from the 16 calibration windows full mode uses (two comedies)."""
    from stac.frontend.llama import neuron_inputs

    modules = {
        n: m
        for n, m in neuron_inputs(smollm2.model).items()
        if n.startswith(tuple(f"layer{i}_" for i in range(6)))
    }
    hessians = input_hessians(
        smollm2.model, modules, calibration_windows(smollm2.tokenizer, 16, 128)
    )
    return modules, hessians


def test_gptq_keeps_real_layers_outputs_closer_on_held_out_text(smollm2, layers, hamlet_ids):
    """The error of ``W x`` measured on 256 tokens of Hamlet, which the rounding never saw.
    (Measured on all 120 maps: median error 0.63x rounding to nearest's, worse on 1.)"""
    modules, hessians = layers
    seen: dict[str, np.ndarray] = {}
    handles = [
        m.register_forward_pre_hook(
            lambda _mod, a, n=n: seen.__setitem__(n, a[0][0].detach().to(torch.float64).numpy())
        )
        for n, m in modules.items()
    ]
    with torch.no_grad():
        smollm2.model(hamlet_ids[1000:1256][None])
    for h in handles:
        h.remove()
    ratios = []
    for name, module in modules.items():
        w = module.weight.detach().to(torch.float64).numpy()
        q_rtn, scale = quantise_weight(w, 8)
        q_gptq, scale_gptq = quantise_weight_gptq(w, hessians[name], 8)
        assert np.array_equal(scale, scale_gptq)  # same grid: only the rounding differs
        assert np.abs(q_gptq).max() <= 127
        assert 0.01 < np.mean(q_gptq != q_rtn) < 0.9  # a share of weights round the other way
        err = [
            np.linalg.norm((w - q * scale[:, None].astype(np.float64)) @ seen[name].T)
            for q in (q_rtn, q_gptq)
        ]
        ratios.append(err[1] / err[0])
    assert len(ratios) == 24
    assert np.median(ratios) < 0.8, ratios
    assert sum(r < 1 for r in ratios) >= 22, ratios


# --- against llmcompressor ---------------------------------------------------------------------


@functools.cache
def llmcompressor_gptq() -> Callable[..., Any]:
    """``quantize_weight`` of llmcompressor 0.14.0.1 (``modifiers/gptq/gptq_quantize.py``).

    llmcompressor is installed without its dependencies (scripts/setup.sh: it pins
    transformers <= 5.17 and pulls datasets, auto-round, ...), and its package ``__init__``
    imports its whole pipeline. Its GPTQ core needs only torch and compressed-tensors, so the
    parent packages are registered here as empty namespaces and only ``gptq_quantize`` and
    its ``helpers`` run.
    """
    spec = importlib.util.find_spec("llmcompressor")
    assert spec is not None and spec.submodule_search_locations, (
        "llmcompressor is not installed: bash scripts/setup.sh"
    )
    root = Path(spec.submodule_search_locations[0])
    for name, sub in (
        ("llmcompressor", ""),
        ("llmcompressor.modifiers", "modifiers"),
        ("llmcompressor.modifiers.gptq", "modifiers/gptq"),
    ):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root / sub)]
            sys.modules[name] = package
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    return quantize_weight


def library_codes(
    w: np.ndarray,
    hessian: torch.Tensor,
    scale: np.ndarray,
    damp: float = 0.1,
    actorder: str | None = "weight",
) -> np.ndarray:
    """llmcompressor's GPTQ integer codes for ``w`` on stac's grid: symmetric 8-bit, one
    scale per output row (passed in, as llmcompressor's observer would), columns in order of
    decreasing ``diag(hessian)`` ("weight" act-order), blocks of 128, ``damp`` times the
    mean diagonal added."""
    from compressed_tensors.quantization import QuantizationArgs

    args = QuantizationArgs(
        num_bits=8, type="int", symmetric=True, strategy="channel", actorder=actorder
    )
    s = torch.as_tensor(scale, dtype=torch.float32)[None, :, None]
    # quantize_weight works in place on its inputs: give it copies
    dequantised, _, fallback = llmcompressor_gptq()(
        torch.tensor(w, dtype=torch.float32)[None],
        hessian.to(torch.float32)[None].clone(),
        s,
        torch.zeros_like(s),
        None,
        args,
        blocksize=128,
        percdamp=damp,
    )
    assert not bool(fallback[0]), "llmcompressor fell back to rounding to nearest"
    codes = torch.round(dequantised[0].double() / s[0].double())
    return codes.numpy().astype(np.int32)


def output_error(w: np.ndarray, q: np.ndarray, scale: np.ndarray, hessian: torch.Tensor) -> float:
    """``||(W - Q) X^T||`` over the calibration inputs, from ``X^T X`` alone."""
    q_w = torch.as_tensor(q * scale[:, None].astype(np.float64))
    e = torch.as_tensor(w, dtype=torch.float64) - q_w
    return float(((e @ hessian) * e).sum().sqrt())


@pytest.mark.parametrize("name", ["layer0_qkv_in", "layer0_down_in"])
def test_gptq_agrees_with_llmcompressor_on_a_real_layer(layers, name):
    """Same layer, Hessian, grid, scales, damping (0.1), act-order and block size. Measured
    (qkv / down): 0.12 % / 0.12 % of the codes differ, in 10 / 16 of 576 rows; 7 / 13 of those
    rows are where llmcompressor used the code -128, which compressed-tensors' 8-bit grid has
    and stac's symmetric one (-127..127) does not, after which that row's error feedback
    differs; the other 3 / 3 rows are most likely a rounding tie resolved the other way by
    llmcompressor's float32 Cholesky (stac factorises in float64; not isolated further). The
    output errors ``||(W - Q) X^T||`` agree within 3.5e-5 / 7.2e-4 of each other, while
    rounding to nearest is 2.8x / 3.0x worse. The bounds sit a few times above."""
    modules, hessians = layers
    w = modules[name].weight.detach().to(torch.float32).numpy()
    h = hessians[name]
    q_stac, scale = quantise_weight_gptq(w, h, 8)
    q_lib = library_codes(w, h, scale)
    differ = q_stac != q_lib
    assert differ.mean() < 0.003 and differ.any(axis=1).mean() < 0.05, differ.mean()
    err_stac, err_lib = output_error(w, q_stac, scale, h), output_error(w, q_lib, scale, h)
    assert abs(err_stac - err_lib) < 0.002 * err_lib, (err_stac, err_lib)
    assert output_error(w, quantise_weight(w, 8)[0], scale, h) > 2.5 * err_lib
    # the comparison can fail: another damping (0.01) or no act-order changes 17 % to 32 % of
    # the codes (measured)
    for damp, actorder in ((0.01, "weight"), (0.1, None)):
        assert np.mean(library_codes(w, h, scale, damp, actorder) != q_stac) > 0.1
