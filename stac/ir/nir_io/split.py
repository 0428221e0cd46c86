"""Split export: each maximal NIR-expressible part of a stac graph as its own NIR file, and a
``manifest.json`` that says how the host (stac-only) ops join the parts.

For a converted transformer the parts are its linear maps (projections, MLP maps, LM head):
stac's SignedIF encoders that drive them cannot be written in NIR (signed spikes from one
membrane, firing at half threshold, reset by subtracting the threshold; NIR 1.0's neurons emit
0/1 spikes and reset to ``v_reset``), so they are host ops of the manifest that run per step,
and every other stac node (norms, attention, activations, residual adds, embeddings) a host op
that runs once per token. :data:`SCHEDULE` states the rules a runtime follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac.files import writing
from stac.ir.analysis import SPIKING_TYPES, connected_groups
from stac.ir.graph import input_shape, output_shape, predecessors, successors
from stac.ir.nir_io.supported import STATEFUL, nir_expressible
from stac.ir.nir_io.write import (
    align_shapes,
    clean_node,
    export_metadata,
    nir_graph,
    valid_names,
    write_checked,
)


#: How a runtime joins the parts and host ops, written into every manifest.
SCHEDULE = [
    "NIR edges sum at their destination; every value below is per sample (batch element).",
    "Each token is processed in `timesteps` steps (T). A part runs step by step: its Input "
    "'in_X' receives the value of node X at that step, its Output 'out_Y' gives the value of "
    "its node Y at that step. Parts with no neurons are stateless; a part's neurons start "
    "each token from zero state.",
    "A host op with runs = 'per_step' is a spiking neuron NIR cannot express (its `doc` and "
    "`params` say which): from a zero membrane at the start of each token it runs at every "
    "step on its summed input of that step and emits its spike value at that step (for "
    "SignedIF: threshold x spike in {-1, 0, +1}).",
    "A host op with runs = 'per_token' runs once per token on the mean over the T steps of its "
    "summed inputs, and its output holds that value at every step of the token (for the "
    "linear ones, such as Residual, this equals running them per step).",
    "A graph input gives the token id (and position) of the token; a graph output is read as "
    "the mean over the T steps of its input.",
]


@dataclass
class _Part:
    """One part file: its members (original names), their NIR names, and its ports."""

    file: str
    members: list[str]
    names: dict[str, str]  # original name (and in_X / out_Y port names) -> NIR name
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # Input port -> from/to
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # Output port -> from/to
    graph: nir.NIRGraph | None = None

    def port(self, kind: str, node: str) -> str:
        """The NIR name of the Input (``kind="in"``) or Output (``"out"``) port for ``node``."""
        return self.names[f"{kind}_{node}"]

    def entry(self, graph: nir.NIRGraph) -> dict[str, Any]:
        nodes = [graph.nodes[n] for n in self.members]
        return {
            "file": self.file,
            "nodes": {n: self.names[n] for n in self.members},
            "types": sorted({type(v).__name__ for v in nodes}),
            "neurons": [n for n in self.members if isinstance(graph.nodes[n], STATEFUL)],
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


def _components(graph: nir.NIRGraph) -> list[list[str]]:
    """Maximal weakly connected sets of NIR-expressible nodes, in graph order."""
    return connected_groups(graph, {n for n, v in graph.nodes.items() if nir_expressible(v)})


def _build_part(
    graph: nir.NIRGraph,
    k: int,
    comp: list[str],
    pre: dict[str, list[str]],
    post: dict[str, list[str]],
) -> _Part:
    """The NIR graph of one component: its nodes, one Input ``in_<X>`` per outside producer X
    that feeds it, one Output ``out_<Y>`` per member Y that feeds something outside."""
    members = set(comp)
    in_srcs = sorted({p for n in comp for p in pre[n] if p not in members})
    out_srcs = sorted({n for n in comp for c in post[n] if c not in members})
    part = _Part(
        f"part_{k}.nir",
        comp,
        valid_names(list(comp) + [f"in_{p}" for p in in_srcs] + [f"out_{n}" for n in out_srcs]),
    )
    names = part.names
    nodes = {names[n]: clean_node(graph.nodes[n]) for n in comp}
    edges = [(names[s], names[d]) for s, d in graph.edges if s in members and d in members]
    for p in in_srcs:
        fed = [n for n in comp if p in pre[n]]
        nodes[part.port("in", p)] = nir.Input(
            input_type={"input": np.array(output_shape(graph.nodes[p]))}
        )
        edges.extend((part.port("in", p), names[n]) for n in fed)
        part.inputs[part.port("in", p)] = {"from": p, "to": fed}
    for n in out_srcs:
        nodes[part.port("out", n)] = nir.Output(
            output_type={"output": np.array(output_shape(graph.nodes[n]))}
        )
        edges.append((names[n], part.port("out", n)))
        part.outputs[part.port("out", n)] = {
            "from": n,
            "to": [c for c in post[n] if c not in members],
        }
    align_shapes(nodes, edges, names)
    part.graph = nir_graph(nodes, edges, export_metadata(graph) | {"part": k})
    return part


def _host_ops(
    graph: nir.NIRGraph,
    where: dict[str, _Part],
    pre: dict[str, list[str]],
    post: dict[str, list[str]],
) -> dict[str, dict[str, Any]]:
    """Each stac-only node: its type, shapes, and where its inputs come from and its output
    goes, as ``{"part", "port"}``, ``{"host_op"}``, ``{"graph_input"}`` or
    ``{"graph_output"}``."""

    def source(p: str) -> dict[str, str]:
        if not nir_expressible(graph.nodes[p]):
            return {"host_op": p}
        if p in where:
            return {"part": where[p].file, "port": where[p].port("out", p)}
        return {"graph_input": p}

    def sink(n: str, c: str) -> dict[str, str]:
        if c in where:
            return {"part": where[c].file, "port": where[c].port("in", n)}
        if isinstance(graph.nodes[c], nir.Output):
            return {"graph_output": c}
        return {"host_op": c}

    return {
        n: {
            "type": type(v).__name__,
            "inputs": [source(p) for p in pre[n]],
            "consumers": [sink(n, c) for c in post[n]],
            "input_shape": list(input_shape(v)),
            "output_shape": list(output_shape(v)),
            "runs": "per_step" if isinstance(v, SPIKING_TYPES) else "per_token",
            "doc": (type(v).__doc__ or "").strip().splitlines()[0],
        }
        for n, v in graph.nodes.items()
        if not nir_expressible(v)
    }


def export_split(
    graph: nir.NIRGraph, out_dir: str | Path, force: bool = False, source: str | None = None
) -> dict[str, Any]:
    """Write each maximal NIR-expressible connected subgraph as ``part_<k>.nir`` in
    ``out_dir`` and a ``manifest.json`` describing how host (stac-only) ops join them.

    Each part gets one NIR ``Input`` per outside producer that feeds it (named
    ``in_<producer>``) and one ``Output`` per inside node that feeds something outside (named
    ``out_<node>``). The manifest lists, per part, its file, its node-name map, and where each
    Input's value comes from and where each Output's value goes; and per host op its type and
    its inputs and consumers as ``{"part": file, "port": name}`` or ``{"host_op": name}``,
    whether it runs per step (spiking neurons) or per token, and the first line of its type's
    docstring; the host ops' parameters stay in the stac IR (``source``) under the same names.
    ``schedule`` (:data:`SCHEDULE`) and ``timesteps`` say how a runtime runs the pieces.
    Parts with no compute node (a lone graph Input feeding a host op) are not written; the
    manifest lists them under ``graph_inputs``/``graph_outputs``. The directory is written
    atomically; an existing one is replaced only with ``force``.
    """
    pre, post = predecessors(graph), successors(graph)
    comps = [
        c
        for c in _components(graph)
        if any(not isinstance(graph.nodes[n], (nir.Input, nir.Output)) for n in c)
    ]
    parts = [_build_part(graph, k, comp, pre, post) for k, comp in enumerate(comps)]
    where = {n: part for part in parts for n in part.members}
    manifest = {
        "format": "stac-nir-split",
        "version": 1,
        "semantics": "NIR edges sum at the destination; each part's Input 'in_X' carries the "
        "value of host op or node X, each Output 'out_Y' the value of node Y",
        "schedule": SCHEDULE,
        "timesteps": (graph.metadata.get("conversion") or {}).get("timesteps"),
        "dt": graph.metadata.get("dt"),
        "host_op_parameters": f"the stac IR {source or '(the graph exported)'}, under the node "
        "names used here",
        "parts": [part.entry(graph) for part in parts],
        "host_ops": _host_ops(graph, where, pre, post),
        "graph_inputs": {
            n: list(post[n])
            for n, v in graph.nodes.items()
            if isinstance(v, nir.Input) and n not in where
        },
        "graph_outputs": {
            n: list(pre[n])
            for n, v in graph.nodes.items()
            if isinstance(v, nir.Output) and n not in where
        },
    }
    with writing(Path(out_dir), force) as tmp:
        for part in parts:
            write_checked(part.graph, tmp / part.file)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


__all__ = ["SCHEDULE", "export_split"]
