"""The float model on a dense processor (a GPU, a CPU, a Jetson): a roofline estimate and,
where the profile has one, a calibrated figure from a published measurement.

Model ``dense-roofline-v1``, per token, batch 1 (token-by-token generation):

- FLOPs = 2 x the multiply-accumulates of every linear map and of attention at the prompt's
  context (the same census the conversion log prints);
- bytes = every weight read once (tied weights once), plus the keys and values of the context,
  at the profile's precision;
- time = max(FLOPs / peak, bytes / memory bandwidth); energy = board power x time.

Calibrated (``dense-calibrated-v1``, a profile's optional ``[calibrated]`` section): a
published measurement of a transformer LLM of similar size on that device with the best public
runtime found (energy per token and tokens/s during generation, one conversation at a time),
scaled to this model by the weights read per token (generation on these devices is memory
bound, so time and energy grow with the bytes read). Where a profile has it, it is the
baseline (``energy_j``, ``latency_s``, ``tokens_per_s``), and the roofline stands beside it
(``roofline_*``); the roofline is a lower bound no runtime reaches.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.analysis import op_census
from stac.ir.nodes import CausalSelfAttention, Embedding
from stac.profiles import Profile
from stac.sim.cost import need

MODEL = "dense-roofline-v1"
CALIBRATED_MODEL = "dense-calibrated-v1"
ASSUMPTIONS = [
    "roofline estimate at batch 1: time = max(FLOPs / peak, bytes / memory bandwidth), not a "
    "measurement",
    "energy = the profile's power figure (TDP) x that time; a real run below the roofline "
    "draws less power but for longer",
    "every weight is read from memory once per token; norms, softmax and activations "
    "(under 1 % of FLOPs) are not counted",
    "calibrated figure (where the profile has [calibrated]): a published measurement of a "
    "model of similar size on that device, scaled by the weights read per token; it is the "
    "baseline, the roofline beside it is a lower bound",
]
BYTES_PER_VALUE = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def _bytes_per_value(profile: Profile) -> int:
    if profile.precision not in BYTES_PER_VALUE:
        raise StacError(
            f"hardware profile {profile.name} ({profile.path}): field 'precision' is "
            f"{profile.precision!r}; the dense estimate needs one of {', '.join(BYTES_PER_VALUE)}"
        )
    return BYTES_PER_VALUE[profile.precision]


def weight_values(graph: nir.NIRGraph) -> int:
    """Values read per token: linear weights and biases (each array once), one embedding row."""
    seen: set[int] = set()
    total = 0
    for node in graph.nodes.values():
        arrays = []
        if isinstance(node, (nir.Linear, nir.Affine)):
            arrays = [node.weight] + ([node.bias] if isinstance(node, nir.Affine) else [])
        for a in arrays:
            if id(a) not in seen:
                seen.add(id(a))
                total += int(np.asarray(a).size)
        if isinstance(node, Embedding):
            total += int(np.asarray(node.weight).shape[1])
    return total


def dense_estimate(graph: nir.NIRGraph, profile: Profile, context: int) -> dict[str, Any]:
    """The float model's cost per token on ``profile`` (a ``host`` profile with ``[dense]``)."""
    if profile.kind != "host":
        raise StacError(
            f"profile {profile.name} is {profile.kind}; the dense estimate needs a host profile"
        )
    bpv = _bytes_per_value(profile)
    macs = sum(r.macs for r in op_census(graph, context))
    kv = sum(
        2 * context * n.kv_size for n in graph.nodes.values() if isinstance(n, CausalSelfAttention)
    )
    flops = 2.0 * macs
    moved = float((weight_values(graph) + kv) * bpv)
    compute_s = flops / (need(profile, "dense", "peak_tflops") * 1e12)
    memory_s = moved / (need(profile, "dense", "memory_bandwidth_gb_s") * 1e9)
    latency = max(compute_s, memory_s)
    energy = need(profile, "dense", "power_w") * latency
    out: dict[str, Any] = {
        "macs": float(macs),
        "flops": flops,
        "bytes": moved,
        "precision": profile.precision,
        "bound": "memory" if memory_s >= compute_s else "compute",
        "latency_s": latency,
        "tokens_per_s": 1.0 / latency if latency else 0.0,
        "energy_j": energy,
        "roofline_latency_s": latency,
        "roofline_tokens_per_s": 1.0 / latency if latency else 0.0,
        "roofline_energy_j": energy,
        "basis": "roofline",
    }
    calibrated = calibrated_estimate(graph, profile)
    if calibrated is not None:
        out.update(calibrated)
    return out


def calibrated_estimate(graph: nir.NIRGraph, profile: Profile) -> dict[str, Any] | None:
    """The profile's published measurement scaled to ``graph`` by the weights read per token,
    or None when the profile has no ``[calibrated]`` section."""
    if "calibrated" not in profile.values:
        return None
    measured_params = need(profile, "calibrated", "model_params_m") * 1e6
    scale = weight_values(graph) / measured_params
    tokens_per_s = need(profile, "calibrated", "tokens_per_s") / scale
    return {
        "basis": "calibrated",
        "energy_j": need(profile, "calibrated", "energy_mj_per_token") * 1e-3 * scale,
        "tokens_per_s": tokens_per_s,
        "latency_s": 1.0 / tokens_per_s,
        "calibration_scale": scale,
        "calibration_source": profile.sources["calibrated"]["energy_mj_per_token"],
    }
