"""The per-layer structure of a graph read from a netx file: for each netx layer its synapse
and neuron types, output shape, neurons, inputs, stored weights and synaptic connections."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from stac.ir.graph import input_shape, output_shape


def _taps(n: int, k: int, s: int, p: int, d: int) -> int:
    """Over every output position of one axis, how many kernel taps land inside the input."""
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    pos = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
    return int(np.count_nonzero((pos >= 0) & (pos < n)))


def _pairs(value: Any) -> tuple[int, int]:
    arr = np.broadcast_to(np.asarray(value).reshape(-1), (2,))
    return int(arr[0]), int(arr[1])


def synapse_count(node: Any) -> int:
    """Synaptic connections (input neuron, output neuron) of a Linear, Conv2d or SumPool2d,
    padding excluded; 0 for anything else."""
    if isinstance(node, (nir.Linear, nir.Affine)):
        return int(np.asarray(node.weight).size)
    if isinstance(node, (nir.Conv2d, nir.SumPool2d)):
        c, h, w = input_shape(node)
        if isinstance(node, nir.Conv2d):
            wt = np.asarray(node.weight)
            k, d = wt.shape[2:], _pairs(node.dilation)
            per_out_channel = wt.shape[1]
            channels_out = wt.shape[0]
        else:
            k, d = _pairs(node.kernel_size), (1, 1)
            per_out_channel, channels_out = 1, c
        s, p = _pairs(node.stride), _pairs(node.padding)
        taps = _taps(h, k[0], s[0], p[0], d[0]) * _taps(w, k[1], s[1], p[1], d[1])
        return int(taps * per_out_channel * channels_out)
    return 0


def netx_layers(graph: nir.NIRGraph) -> list[dict[str, Any]]:
    """One row per netx layer, in file order: ``layer``, ``type`` (the netx layer type),
    ``synapse`` and ``neuron`` (IR node types, "-" when absent), ``role`` (of an SDNN neuron),
    ``shape``, ``neurons``, ``inputs`` (values arriving per step), ``weights`` (stored
    synaptic parameters) and ``synapses`` (connections)."""
    rows: dict[int, dict[str, Any]] = {}
    for name, node in graph.nodes.items():
        netx = (node.metadata or {}).get("netx")
        if not netx:
            continue
        row = rows.setdefault(
            int(netx["layer"]),
            {
                "layer": int(netx["layer"]),
                "type": netx.get("type", "input"),
                "synapse": "-",
                "neuron": "-",
                "role": "-",
                "shape": list(output_shape(node)),
                "neurons": 0,
                "inputs": int(np.prod(input_shape(node))),
                "weights": 0,
                "synapses": 0,
                "nodes": [],
            },
        )
        row["nodes"].append(name)
        if "neuron" in netx:
            row.update(
                neuron=type(node).__name__,
                role=netx["role"],
                neurons=int(np.prod(output_shape(node))),
                shape=list(output_shape(node)),
            )
        elif netx.get("type") in ("conv", "pool", "dense"):
            row.update(
                synapse=type(node).__name__,
                type=netx["type"],
                inputs=int(np.prod(input_shape(node))),
                synapses=synapse_count(node),
                weights=1 if netx["type"] == "pool" else int(np.asarray(node.weight).size),
            )
        elif netx.get("type") == "flatten":
            row.update(synapse="Flatten", shape=list(output_shape(node)))
    return [rows[k] for k in sorted(rows)]


def format_netx_layers(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    cols = (
        "layer",
        "type",
        "synapse",
        "neuron",
        "role",
        "shape",
        "neurons",
        "inputs",
        "weights",
        "synapses",
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['type']} | {r['synapse']} | {r['neuron']} | "
            f"{r['role']} | {'x'.join(map(str, r['shape']))} | {r['neurons']} | "
            f"{r['inputs']} | {r['weights']} | {r['synapses']} |"
        )
    total = {k: sum(r[k] for r in rows) for k in ("neurons", "weights", "synapses")}
    lines.append(
        f"| total | | | | | | {total['neurons']} | | {total['weights']} | {total['synapses']} |"
    )
    return "\n".join(lines)


__all__ = ["format_netx_layers", "netx_layers", "synapse_count"]
