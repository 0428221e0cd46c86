"""Quantise pass: weights and neuron parameters of every chip node to the profile's widths.

Weights (Linear, Affine, Conv): signed ``chip.weight_bits`` integers with one scale per output
row (``stac.quant.quantise_weight``, the quantiser full-mode conversion uses). A row's scale is
the unit of its neuron's input; the chip's neuron holds its own threshold in that unit, so the
per-row factor costs nothing on the chip. Beside it each layer gets Loihi's shared
power-of-two exponent ``weight_exp``: the right shift that keeps the largest one-step input of
any row inside the synaptic input register (``fixed_point.input_bits``), clipped to
``fixed_point.weight_exp_min .. weight_exp_max``. The stored weight becomes the dequantised
value, so the simulator runs the quantised network; the accumulator shift is reported, not
simulated.

On a chip whose spikes carry no payload (``spikes.graded = false``) a SignedIF's spike value
(its threshold) cannot ride on the spike, so it is folded into the synapses: the matrix that
must fit ``weight_bits`` is ``W diag(theta)``, and that is what is quantised and measured.

A node already quantised (``metadata["quant"]``, as full-mode conversion writes) is carried when
its integers fit the profile's bits and its scale; otherwise it is re-quantised and the report
says so.

Neuron parameters (any type in ``SPIKING_TYPES``, and the leaky integrators): thresholds on one
unsigned grid per layer of ``fixed_point.threshold_bits`` (fewer when the neuron's drive comes
straight from the host and must fit ``input_bits``, or its spike value must fit a graded
payload); ``v_leak`` in Loihi's bias format (``bias_mantissa_bits`` x 2^``bias_exp_bits``) and
``v_reset`` on the same grid; decays ``dt / tau`` to ``fixed_point.decay_bits`` fractional bits.
Errors are recorded per layer in ``graph.metadata["quantise"]["layers"]``.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np

from stac.ir.graph import predecessors
from stac.ir.nodes import SignedIF
from stac.ir.passes.common import (
    WEIGHTED_TYPES,
    chip_assignment,
    is_neuron,
    issue,
    rebuild,
    replace_fields,
)
from stac.errors import StacError
from stac.ir.results import Issue
from stac.profiles import Profile
from stac.quant import (
    dequantise,
    error_stats,
    mantissa_exponent,
    quantise_uniform,
    quantise_weight,
    shift_to_fit,
    stats_from_sums,
)
from stac.sim.neurons import dead_zone_levels, snap_dead_zone

THRESHOLD_FIELDS = ("threshold", "v_threshold")
TAU_FIELDS = ("tau", "tau_mem", "tau_syn")
#: A layer whose weights move by more than this relative RMS error is warned about.
WARN_REL_RMS = 0.05
#: A threshold held in fewer integer levels than this is warned about.
COARSE_LEVELS = 16


def _spike_values(node: Any) -> np.ndarray | None:
    """Per-channel value a spike of ``node`` stands for, when it is not 1."""
    return np.asarray(node.threshold, dtype=np.float64) if isinstance(node, SignedIF) else None


def _carried(
    node: Any, bits: int, values: list[np.ndarray | None] | None = None
) -> dict[str, Any] | None:
    """The node's existing quantisation, if its weights sit on a grid of at most ``bits``.

    A full-mode weight (``quant["folded"]``) sits on the grid once its single input's spike
    values are folded in: ``W diag(theta)`` is integers times the row scale.
    """
    quant = (node.metadata or {}).get("quant")
    if not isinstance(quant, dict) or int(quant.get("bits", 99)) > bits:
        return None
    w = np.asarray(node.weight, dtype=np.float64).reshape(node.weight.shape[0], -1)
    if quant.get("folded"):
        if not values or len(values) != 1 or values[0] is None or values[0].shape[0] != w.shape[1]:
            return None
        w = w * values[0][None, :]
    scale = np.asarray(quant.get("scale"), dtype=np.float64).reshape(-1)
    if scale.shape != (w.shape[0],) or not np.all(scale > 0):
        return None
    q = w / scale[:, None]
    if not np.allclose(q, np.rint(q), atol=1e-3) or np.abs(np.rint(q)).max() > 2 ** (bits - 1) - 1:
        return None
    return quant


#: Elements per chunk when quantising a matrix row block by row block (bounds the float64
#: temporaries of ``quantise_weight`` on large matrices such as an LM head).
CHUNK_ELEMENTS = 1 << 22


def _row_chunks(w: np.ndarray):
    rows = max(1, CHUNK_ELEMENTS // max(w.shape[1], 1))
    for r0 in range(0, w.shape[0], rows):
        yield r0, w[r0 : r0 + rows]


def _quantise_rows(
    w: np.ndarray, fold: np.ndarray | None, bits: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int]:
    """Per-row quantisation of ``w diag(fold)`` in row chunks (identical to one call, since
    every row has its own scale). Returns the stored weight (folded back), the scales, the error
    of the quantised matrix, and the largest row sum of integer magnitudes."""
    f = fold.astype(np.float32)[None, :] if fold is not None else None
    out = np.empty_like(w)
    scales = np.empty(w.shape[0], np.float32)
    signal = noise = max_abs = 0.0
    zeroed = worst = 0
    for r0, blk in _row_chunks(w):
        eff = blk * f if f is not None else blk
        q, s = quantise_weight(eff, bits, per_channel=True)
        deq = dequantise(q, s)
        diff = deq - eff
        signal += float(np.sum(np.square(eff), dtype=np.float64))
        noise += float(np.sum(np.square(diff), dtype=np.float64))
        max_abs = max(max_abs, float(np.abs(diff).max()))
        zeroed += int(np.count_nonzero((q == 0) & (eff != 0)))
        worst = max(worst, int(np.abs(q).sum(axis=1, dtype=np.int64).max()))
        out[r0 : r0 + len(blk)] = deq / f if f is not None else deq
        scales[r0 : r0 + len(blk)] = s
    stats = {**stats_from_sums(signal, noise, max_abs), "zeroed": zeroed / max(w.size, 1)}
    return out, scales, stats, worst


def _weights(
    name: str, node: Any, pre: list[Any], profile: Profile, issues: list[Issue]
) -> tuple[Any, dict[str, Any]]:
    fx = profile.values["fixed_point"]
    bits = int(profile.get("chip", "weight_bits"))
    graded = bool(profile.get("spikes", "graded"))
    shape = node.weight.shape
    w = np.asarray(node.weight, dtype=np.float32).reshape(shape[0], -1)
    values = [_spike_values(p) for p in pre]
    fold = None
    if (
        not graded
        and any(v is not None for v in values)
        and len(pre) == 1
        and values[0] is not None
        and values[0].shape[0] == w.shape[1]
    ):
        fold = values[0]
    elif not graded and any(v is not None for v in values):
        issues.append(
            issue(
                "error",
                name,
                "spikes.graded",
                f"{name}: spike values of its inputs cannot be folded into a "
                f"{tuple(shape)} kernel on {profile.name}, whose spikes carry no "
                "payload",
            )
        )
    existing = _carried(node, bits, values) if fold is None else None
    record: dict[str, Any] = {"kind": "weights", "bits": bits, "scheme": "per-channel"}
    if existing is not None:
        scale = np.asarray(existing["scale"], np.float32).reshape(-1)
        worst = max(
            (
                int(np.abs(np.rint(blk / scale[r0 : r0 + len(blk), None])).sum(axis=1).max())
                for r0, blk in _row_chunks(w)
            ),
            default=0,
        )
        record.update(
            status="carried",
            bits=int(existing["bits"]),
            rel_rms=existing.get("rel_rms", existing.get("relative_error")),
            max_abs=existing.get("max_abs"),
            sqnr_db=existing.get("sqnr_db"),
        )
        new_w = node.weight
    else:
        wq, scale, stats, worst = _quantise_rows(w, fold, bits)
        record.update(stats)
        new_w = wq.reshape(shape).astype(node.weight.dtype, copy=False)
        del wq
        status = "requantised" if "quant" in (node.metadata or {}) else "quantised"
        record["status"] = status
        if status == "requantised":
            issues.append(
                issue(
                    "note",
                    name,
                    "chip.weight_bits",
                    f"{name}: its earlier quantisation does not fit {profile.name}"
                    f" ({bits}-bit weights"
                    f"{', spike values folded' if fold is not None else ''}); re-quantised",
                )
            )
        if fold is not None:
            record["folded_spike_values"] = True
            spread = float(fold.max() / fold.min())
            issues.append(
                issue(
                    "note",
                    name,
                    "spikes.graded",
                    f"{name}: binary spikes carry no value, so the encoder's "
                    f"thresholds (max/min {spread:.3g}) are folded into its "
                    f"{bits}-bit synapses",
                )
            )
        if record["rel_rms"] > WARN_REL_RMS:
            issues.append(
                issue(
                    "warning",
                    name,
                    "chip.weight_bits",
                    f"{name}: {bits}-bit weights move it by {record['rel_rms']:.1%} "
                    f"relative RMS (SQNR {record['sqnr_db']:.1f} dB)",
                )
            )
    shift = shift_to_fit(worst, int(fx["input_bits"]))
    weight_exp = max(-shift, int(fx["weight_exp_min"]))
    if -shift < int(fx["weight_exp_min"]):
        issues.append(
            issue(
                "warning",
                name,
                "fixed_point.weight_exp_min",
                f"{name}: the worst-case one-step input needs a right shift of "
                f"{shift} bits, beyond weight_exp_min = {fx['weight_exp_min']}: "
                f"the {fx['input_bits']}-bit input register can overflow",
            )
        )
    record.update(weight_exp=weight_exp, accumulator_shift=shift)
    fields: dict[str, Any] = {"weight": new_w}
    if isinstance(node, nir.Affine) and existing is None:
        fields["bias"], bias_rec = _bias(name, node.bias, scale, profile, issues)
        record.update(bias_rec)
    quant_meta = {
        **(existing or {}),
        "bits": record["bits"],
        "scale": scale,
        "scheme": (existing or {}).get("scheme", "per-channel"),
        "weight_exp": weight_exp,
        "profile": profile.name,
        **{k: record[k] for k in ("rel_rms", "max_abs", "sqnr_db")},
    }
    if existing is None:  # the same key full mode writes, for readers of either
        quant_meta["relative_error"] = record["rel_rms"]
    return replace_fields(
        node, **fields, metadata={**(node.metadata or {}), "quant": quant_meta}
    ), record


def _bias(
    name: str, bias: np.ndarray, scale: np.ndarray, profile: Profile, issues: list[Issue]
) -> tuple[np.ndarray, dict[str, Any]]:
    """An Affine bias in Loihi's mantissa/exponent format, in units of each row's scale."""
    fx = profile.values["fixed_point"]
    b = np.asarray(bias, dtype=np.float64)
    unit = np.asarray(scale, np.float64).reshape(-1)
    mant, exp, sat = mantissa_exponent(
        b / unit, int(fx["bias_mantissa_bits"]), int(fx["bias_exp_bits"])
    )
    bq = mant * 2.0**exp * unit
    if sat.any():
        issues.append(
            issue(
                "warning",
                name,
                "fixed_point.bias_mantissa_bits",
                f"{name}: {int(sat.sum())} bias value(s) exceed the "
                f"{fx['bias_mantissa_bits']}-bit mantissa x 2^{2 ** int(fx['bias_exp_bits']) - 1}"
                " and saturate",
            )
        )
    stats = error_stats(b, bq)
    return bq.astype(np.asarray(bias).dtype), {
        "bias_rel_rms": stats["rel_rms"],
        "bias_saturated": int(sat.sum()),
    }


def _check_payload(
    name: str, node: Any, profile: Profile, record: dict[str, Any], issues: list[Issue]
) -> None:
    """A graded encoder (``max_payload`` K > 1) needs graded spikes wide enough for its values."""
    k = int(getattr(node, "max_payload", 1))
    if k == 1 or not hasattr(node, "bits_per_spike"):
        return
    need = int(node.bits_per_spike())
    record["payload_bits_needed"] = need
    spikes = profile.values["spikes"]
    if not spikes["graded"]:
        issues.append(
            issue(
                "error",
                name,
                "spikes.graded",
                f"{name}: a graded encoder (up to {k} per spike, {need} bits) on "
                f"{profile.name}, whose spikes carry no payload",
            )
        )
    elif need > int(spikes["payload_bits"]):
        issues.append(
            issue(
                "error",
                name,
                "spikes.payload_bits",
                f"{name}: its spikes need {need} payload bits, more than "
                f"{profile.name}'s {spikes['payload_bits']}",
            )
        )
    if getattr(node, "per_channel_payload", False):
        # Per-channel payload scale: the channels' powers of two live in the synapses, one
        # weight exponent per group of channels sharing a threshold, so their spread must fit
        # the weight exponent's range.
        fx = profile.values["fixed_point"]
        theta = np.asarray(node.threshold, dtype=np.float64)
        ratio = theta / theta.min()
        exps = np.log2(ratio)
        span = int(fx["weight_exp_max"]) - int(fx["weight_exp_min"])
        record["payload_exponent_span"] = float(exps.max())
        if not np.allclose(exps, np.rint(exps), rtol=0, atol=1e-6):
            issues.append(
                issue(
                    "error",
                    name,
                    "fixed_point.weight_exp_min",
                    f"{name}: a per-channel payload scale needs thresholds that are powers of "
                    f"two of each other (max/min {ratio.max():.4g} is not)",
                )
            )
        elif exps.max() > span:
            issues.append(
                issue(
                    "error",
                    name,
                    "fixed_point.weight_exp_min",
                    f"{name}: a per-channel payload scale puts its thresholds' spread "
                    f"(2^{int(round(exps.max()))}) in the weight exponents, beyond "
                    f"{profile.name}'s range of {span} (weight_exp_min..weight_exp_max)",
                )
            )


def _dead_zone_carried(name: str, node: Any, record: dict[str, Any], issues: list[Issue]) -> None:
    """Full mode's chip neuron has threshold 1 and counts its potential in thresholds, so a
    dead zone is representable when it is ``(D - 1/2) theta_c`` for an integer D >= 1
    (:func:`stac.sim.neurons.dead_zone_levels`); an error naming the node otherwise."""
    if getattr(node, "dead_zone", None) is None:
        return
    try:
        levels = dead_zone_levels(node.dead_zone, node.threshold, name)
    except StacError as exc:
        issues.append(issue("error", name, "spikes.graded", str(exc)))
        return
    record["dead_zone_levels_max"] = int(levels.max())


def _threshold_bits(node: Any, host_driven: bool, profile: Profile) -> int:
    fx, spikes = profile.values["fixed_point"], profile.values["spikes"]
    bits = int(fx["threshold_bits"])
    if host_driven:  # the drive (up to the threshold) enters through the input register
        bits = min(bits, int(fx["input_bits"]) - 1)
    if _spike_values(node) is not None and spikes["graded"]:  # the spike value is the payload
        bits = min(bits, int(spikes["payload_bits"]) - 1)
    return max(bits, 1)


def _neuron(
    name: str,
    node: Any,
    host_driven: bool,
    dt: float | None,
    profile: Profile,
    issues: list[Issue],
) -> tuple[Any, dict[str, Any]]:
    fx = profile.values["fixed_point"]
    record: dict[str, Any] = {"kind": "neuron"}
    _check_payload(name, node, profile, record, issues)
    if (node.metadata or {}).get("quant", {}).get("scheme") == "netx":
        # Imported from lava-dl netx: the file's integers are the chip's own; nothing to round.
        record.update(status="carried")
        return node, record
    if host_driven and (node.metadata or {}).get("quant", {}).get("scheme") == "host-scaled":
        # Full mode: the host sends the drive already divided by each threshold, so the chip
        # neuron's threshold is one unit and the per-channel values live in the host's
        # scaling and in the folded synapses; nothing here is rounded.
        record.update(status="carried", threshold_bits=0, threshold_rel_max=0.0)
        _dead_zone_carried(name, node, record, issues)
        return node, record
    fields: dict[str, Any] = {}
    unit = None
    for key in THRESHOLD_FIELDS:
        if not hasattr(node, key):
            continue
        theta = np.asarray(getattr(node, key), dtype=np.float64)
        bits = _threshold_bits(node, host_driven, profile)
        q, unit = quantise_uniform(np.abs(theta), bits, signed=False)
        q = np.maximum(q, 1)  # a threshold never rounds to zero
        fields[key] = (np.sign(theta) * q * unit).astype(np.asarray(getattr(node, key)).dtype)
        rel = np.abs(fields[key] - theta) / np.maximum(np.abs(theta), 1e-300)
        levels = int(q.min())
        record.update(
            threshold_bits=bits, threshold_rel_max=float(rel.max()), threshold_levels_min=levels
        )
        if levels < COARSE_LEVELS:
            issues.append(
                issue(
                    "warning",
                    name,
                    "fixed_point.threshold_bits",
                    f"{name}: on a {bits}-bit threshold grid its smallest threshold "
                    f"is {levels} level(s) (largest/smallest "
                    f"{np.abs(theta).max() / max(np.abs(theta).min(), 1e-300):.3g}); "
                    f"relative error up to {rel.max():.1%}",
                )
            )
    if unit is not None and getattr(node, "dead_zone", None) is not None:
        # the potential counts in the threshold grid's unit: d = (D - 1/2) unit, D integer
        fields["dead_zone"] = snap_dead_zone(node.dead_zone, unit).astype(np.float32)
        record["dead_zone_levels_max"] = int(round(float(fields["dead_zone"].max()) / unit + 0.5))
    if unit is not None:
        for key in ("v_leak", "v_reset"):
            if hasattr(node, key):
                fields[key], rec = _level(name, key, getattr(node, key), unit, profile, issues)
                record.update(rec)
    taus = [k for k in TAU_FIELDS if hasattr(node, k)]
    if taus and dt is None:
        issues.append(
            issue(
                "note",
                name,
                "fixed_point.decay_bits",
                f"{name}: the graph has no dt, so its decays are left float",
            )
        )
    elif taus and dt is not None:
        for key in taus:
            value = _decay(name, key, getattr(node, key), dt, int(fx["decay_bits"]), issues)
            if value is not None:
                fields[key], record[f"{key}_rel_max"] = value
    if not fields:
        issues.append(
            issue(
                "note",
                name,
                "-",
                f"{name} ({type(node).__name__}): no fixed-point "
                "parameters known for this neuron type; left float",
            )
        )
    return (replace_fields(node, **fields) if fields else node), record


def _level(
    name: str, key: str, value: Any, unit: float, profile: Profile, issues: list[Issue]
) -> tuple[np.ndarray, dict[str, Any]]:
    """``v_leak`` in the bias format, ``v_reset`` on the state grid, both in ``unit``."""
    fx = profile.values["fixed_point"]
    v = np.asarray(value, dtype=np.float64)
    if key == "v_leak":
        mant, exp, sat = mantissa_exponent(
            v / unit, int(fx["bias_mantissa_bits"]), int(fx["bias_exp_bits"])
        )
        vq = mant * 2.0**exp * unit
        limit = "fixed_point.bias_mantissa_bits"
    else:
        smax = 2 ** (int(fx["state_bits"]) - 1) - 1
        sat = np.abs(np.rint(v / unit)) > smax
        vq = np.clip(np.rint(v / unit), -smax, smax) * unit
        limit = "fixed_point.state_bits"
    if sat.any():
        issues.append(
            issue(
                "warning",
                name,
                limit,
                f"{name}: {int(sat.sum())} {key} value(s) do not fit and saturate",
            )
        )
    return vq.astype(np.asarray(value).dtype), {f"{key}_rel_rms": error_stats(v, vq)["rel_rms"]}


def decay_levels(dt: float, tau: Any, decay_bits: int) -> np.ndarray:
    """The integer decay per step of a time constant: ``rint(2**decay_bits * dt / tau)``
    (Loihi's ``dv``, and ``du`` before Lava's ``ds_offset``), as floats. The one place a
    decay is rounded: the backends read their integers from it."""
    return np.rint(dt / np.asarray(tau, dtype=np.float64) * 2**decay_bits)


def _decay(
    name: str, key: str, tau: Any, dt: float, decay_bits: int, issues: list[Issue]
) -> tuple[np.ndarray, float] | None:
    """``tau`` whose decay ``dt / tau`` sits on a grid of ``2**-decay_bits``, or None if left."""
    t = np.asarray(tau, dtype=np.float64)
    d = dt / t
    if decay_bits == 0:
        if np.all(np.isin(d, (0.0, 1.0))):
            return None
        issues.append(
            issue(
                "error",
                name,
                "fixed_point.decay_bits",
                f"{name}: needs a multiplicative decay dt/{key} = {float(d.min()):.3g}"
                " but the chip has none (decay_bits = 0)",
            )
        )
        return None
    levels = decay_levels(dt, t, decay_bits)
    if np.any(levels == 0):
        issues.append(
            issue(
                "warning",
                name,
                "fixed_point.decay_bits",
                f"{name}: decay dt/{key} = {float(d.min()):.3g} is below one step of "
                f"the {decay_bits}-bit decay and would vanish; left float",
            )
        )
        return None
    tq = dt / (levels / 2**decay_bits)
    rel = float(np.max(np.abs(tq - t) / t))
    return tq.astype(np.asarray(tau).dtype), rel


def quantise(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    """Quantise every chip node to ``profile``; the input graph is left untouched."""
    on_chip = chip_assignment(graph, profile)
    pre = predecessors(graph)
    dt = graph.metadata.get("dt")
    dt = float(dt) if dt is not None and math.isfinite(float(dt)) else None
    issues: list[Issue] = []
    layers: dict[str, dict[str, Any]] = {}
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():  # neurons first: weights may fold their spike values
        if on_chip[name] and is_neuron(node):
            host_driven = not any(on_chip[p] for p in pre[name])
            nodes[name], layers[name] = _neuron(name, node, host_driven, dt, profile, issues)
    for name, node in graph.nodes.items():
        if on_chip[name] and isinstance(node, WEIGHTED_TYPES):
            inputs = [nodes[p] for p in pre[name]]
            nodes[name], layers[name] = _weights(name, node, inputs, profile, issues)
    summary = {
        "profile": profile.name,
        "weight_bits": int(profile.get("chip", "weight_bits")),
        "layers": layers,
    }
    return rebuild(graph, nodes, "quantise", issues, quantise=summary)


__all__ = ["decay_levels", "quantise"]
