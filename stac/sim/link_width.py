"""The width of a value on the chip-host link, from the artifact (used by :mod:`stac.sim.pricing`).

A value crossing between a chip node and a host op is priced, by default, as one word of the
profile's ``host_link.bytes_per_value`` (``"word"``). Where the artifact bounds a value, the
cost model can price it at that width instead:

- *host -> chip, a graded encoder with onset drive* (full mode's
  :class:`~stac.ir.nodes.SignedIF`, ``onset_drive`` and no ``token_gain``): the encoder's
  T-step output is ``clip(floor(T x / theta + 1/2), -T K, T K)`` in units of its threshold
  (:func:`stac.sim.neurons.onset_quantiser`), and in full mode the host already divides each
  drive by its threshold ("host-scaled"). So the host can send that integer level, which the
  encoder turns into the same spikes: ``1 + ceil(log2(T K + 1))`` bits (sign and magnitude).
- *chip -> host, the accumulated sums of a linear map driven by such an encoder*: with
  integer weights ``q`` (the map's per-row ``quant.scale``) and payloads in units of the
  layer's smallest threshold (full mode's thresholds are power-of-two multiples of it), a
  row's sum over a token is at most ``T K sum_j |q_ij| theta_j / theta_min``: sign plus the
  bits of the largest row's bound. A bound above 32 bits gives no width narrower than the
  word, and the word is kept (said in the notes).
- *chip -> host, a* :class:`~stac.ir.nodes.Readout` (``stac compile --readout-bits``): its
  ``bits``, which it rounds and saturates every value to.
- anything else keeps the word, and the notes say why.

``"bytes"`` prices each value in the narrowest whole-byte integer (1, 2 or 4 bytes) that holds
its width -- an array of int8 / int16 / int32, no packing. ``"bits"`` prices a transfer as
``ceil(values x bits / 8)`` bytes: **the cost model's assumption of a bit-packed transfer**;
neither stac's runtime nor the bundle packs values (both move float32 arrays).
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np

from stac.ir.nodes import Readout, SignedIF

#: Link widths the cost model can price (see the module docstring).
WIDTHS = ("word", "bytes", "bits")
#: Widest value the link words hold (the profile's 4-byte word).
MAX_BITS = 32


def _encoder_bits(node: Any, steps: int) -> tuple[int | None, str]:
    if not isinstance(node, SignedIF) or not node.onset_drive or node.token_gain:
        return None, "its drive is not an onset-driven encoder's integer level"
    cap = steps * int(node.max_payload)
    return 1 + math.ceil(math.log2(cap + 1)), ""


def _sum_bits(lin: Any, enc: Any, steps: int) -> tuple[int | None, str]:
    if not isinstance(lin, nir.Linear) or isinstance(lin, nir.Affine):
        return None, "its source is not a linear map without bias"
    if not isinstance(enc, SignedIF) or not enc.onset_drive or enc.token_gain:
        return None, "the linear map is not driven by an onset-driven encoder"
    quant = (lin.metadata or {}).get("quant")
    scale = np.asarray(quant.get("scale") if isinstance(quant, dict) else None, dtype=np.float64)
    w = np.asarray(lin.weight, dtype=np.float64)
    if w.ndim != 2 or scale.shape != (w.shape[0],) or not np.all(scale > 0):
        return None, "the linear map has no per-row quantisation scale"
    theta = np.asarray(enc.threshold, dtype=np.float64)
    ratio = theta / theta.min()
    q = w / scale[:, None]
    if not np.allclose(ratio, np.rint(ratio)) or not np.allclose(q, np.rint(q), atol=1e-3):
        return None, "its weights or payload units are not integers"
    per_token = steps * int(enc.max_payload) * np.rint(ratio)
    bound = float((np.abs(np.rint(q)) @ per_token).max())
    bits = 1 + math.ceil(math.log2(bound + 1))
    if bits > MAX_BITS:
        return None, f"the artifact bounds its sums to {bits} bits, above {MAX_BITS}"
    return bits, ""


def value_bits(
    graph: nir.NIRGraph, src: str, dst: str, to_chip: bool, steps: int
) -> tuple[int | None, str]:
    """Bits a value of the edge ``src -> dst`` needs (``to_chip``: host -> chip), or None and
    the reason when the artifact gives no bound."""
    if to_chip:
        return _encoder_bits(graph.nodes[dst], steps)
    if isinstance(graph.nodes[src], Readout):
        return int(graph.nodes[src].bits), ""
    pre = [s for s, d in graph.edges if d == src]
    if len(pre) != 1:
        return None, "its source has more than one input"
    return _sum_bits(graph.nodes[src], graph.nodes[pre[0]], steps)


def value_bytes(values: int, bits: int | None, width: str, word: int) -> float:
    """Bytes of a transfer of ``values`` values of ``bits`` bits each (None: the word)."""
    if bits is None or width == "word":
        return float(values * word)
    if width == "bytes":
        fits = [b for b in (1, 2, 4) if 8 * b >= bits and b <= word]
        return float(values * (min(fits) if fits else word))
    return float(math.ceil(values * bits / 8))


__all__ = ["MAX_BITS", "WIDTHS", "value_bits", "value_bytes"]
