"""``stac export ART --bundle DIR``: a compiled artifact as a deployable bundle.

The graph is cut into *stages*. Host stage s holds the host ops (norms, attention, RoPE,
activations, embeddings, residual adds) whose inputs come from host stages <= s and from chip
blocks of stages < s; chip stage s holds the encoders (stac's SignedIF) fed by host stage s
and the chip parts (linear maps) they feed. A token batch runs host stage 0, chip stage 0,
host stage 1, ... in order. Each host stage is one ONNX graph (:mod:`stac.bundle.onnx_ops`)
with its weights; each chip part is a NIR file written by ``export-nir --split``'s code
(:func:`stac.ir.nir_io.split.export_split`); the encoders' thresholds go to
``chip/encoders.safetensors``. ``manifest.json`` (:mod:`stac.bundle.manifest`) lists the steps
in order with the tensors each reads and writes.

Anything the bundle cannot express is a :class:`StacError` naming the node: a node type with
no ONNX builder and no chip form, a chip part holding more than linear maps, a chip map whose
consumer needs its per-step values, an encoder fed per step.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import nir
import numpy as np
import onnx
from safetensors.numpy import save_file

from stac import __version__
from stac.bundle.manifest import FORMAT, MANIFEST, VERSION, schedule_text
from stac.bundle.onnx_ops import BUILDERS, OPSET, POSITIONS, TOKEN_IDS, GraphBuilder, cache_names
from stac.errors import StacError
from stac.files import writing
from stac.ir.graph import output_shape, predecessors, successors, topo_order
from stac.ir.nir_io.split import export_split
from stac.ir.nodes import CausalSelfAttention, Embedding, SignedIF
from stac.sim.semantics import LINEAR_TYPES, STEPPED_INPUT

log = logging.getLogger(__name__)

CHIP_MAPS: tuple[type, ...] = (nir.Affine, nir.Linear)
LAVA_NOTE = (
    "no Lava/netx form is written: lava-dl netx describes chains of Dense + CUBA-LIF layers "
    "(stac.backends.lava.netx), and a converted transformer's chip blocks are graded signed-IF "
    "encoders feeding Dense + Sigma readouts, which netx cannot hold; stac's Lava backend "
    "builds them as processes at run time (stac.backends.lava.backend)"
)

CHIP_NOTE = (
    "the encoders and maps compute what stac's reference simulator computes (stac.sim."
    "semantics, float32); the simulator targets (<profile>-sim) run exactly this. A Lava "
    "target runs the integer form of the same blocks (stac.backends.lava.blocks), which "
    "differs from it by the drive's integer grid (stac compile reports it per block as "
    "rel_rms_vs_float)"
)


def _kind(name: str, node: Any) -> str:
    """'input', 'output', 'host', 'encoder' or 'chip'; a StacError for anything else."""
    if isinstance(node, nir.Input):
        return "input"
    if isinstance(node, nir.Output):
        return "output"
    if isinstance(node, SignedIF):
        return "encoder"
    if isinstance(node, CHIP_MAPS):
        return "chip"
    if type(node) in BUILDERS:
        return "host"
    raise StacError(
        f"node {name!r} ({type(node).__name__}) cannot be expressed in a bundle: it has no "
        f"ONNX form (host ops: {', '.join(sorted(t.__name__ for t in BUILDERS))}) and no chip "
        "form (SignedIF encoders feeding Affine/Linear maps)"
    )


def _need_steps(graph: nir.NIRGraph, order: list[str], post: dict[str, list[str]]) -> set[str]:
    """Nodes whose consumers need their per-step values (the simulator's rule)."""
    need: set[str] = set()
    for name in reversed(order):
        for s in post[name]:
            node = graph.nodes[s]
            if isinstance(node, STEPPED_INPUT) or (isinstance(node, LINEAR_TYPES) and s in need):
                need.add(name)
    return need


def plan_stages(graph: nir.NIRGraph) -> tuple[dict[str, str], dict[str, int]]:
    """Each node's kind and stage (see the module docstring); StacError on what cannot be
    expressed."""
    order = topo_order(graph)
    pre, post = predecessors(graph), successors(graph)
    kinds = {n: _kind(n, graph.nodes[n]) for n in order}
    need = _need_steps(graph, order, post)
    stage: dict[str, int] = {}
    for n in order:
        kind = kinds[n]
        if kind == "input":
            bad = [c for c in post[n] if not isinstance(graph.nodes[c], Embedding)]
            if bad:
                raise StacError(
                    f"graph input {n!r} feeds {bad[0]!r} ({type(graph.nodes[bad[0]]).__name__}): "
                    "a bundle's graph input is token ids, read only by Embedding nodes"
                )
            stage[n] = 0
            continue
        if kind == "encoder":
            chip_fed = [p for p in pre[n] if kinds[p] in ("encoder", "chip")]
            if chip_fed:
                raise StacError(
                    f"encoder {n!r} (SignedIF) is fed per step by chip node {chip_fed[0]!r}: a "
                    "bundle's encoders take one drive per token from the host"
                )
        if kind == "chip" and n in need:
            raise StacError(
                f"chip map {n!r} ({type(graph.nodes[n]).__name__}) feeds a consumer that needs "
                "its per-step values: a bundle reads chip maps once per token"
            )
        stage[n] = max(
            (stage[p] + (1 if kind == "host" and kinds[p] in ("encoder", "chip") else 0))
            for p in pre[n]
        )
    return kinds, stage


def _host_stage(
    graph: nir.NIRGraph, ops: list[str], pre: dict[str, list[str]], post: dict[str, list[str]]
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """One host stage as an ONNX model, and its manifest entry (minus the file)."""
    b = GraphBuilder(steps=int((graph.metadata.get("conversion") or {}).get("timesteps") or 0))
    inside: dict[str, str] = {}
    members = set(ops)
    for n in ops:
        node = graph.nodes[n]
        if isinstance(node, Embedding):
            x = ""
        else:
            terms = []
            for p in pre[n]:
                if p in members:
                    terms.append(inside[p])
                else:
                    terms.append(
                        b.float_input(p, ["batch", "tokens", *output_shape(graph.nodes[p])])
                    )
            x = terms[0]
            for t in terms[1:]:  # NIR edges sum, in the order the simulator adds them
                x = b.op("Add", [x, t], n)
        inside[n] = BUILDERS[type(node)](b, n, node, x)
    outputs = [n for n in ops if any(c not in members for c in post[n])]
    for n in outputs:
        b.output(inside[n], n, ["batch", "tokens", *output_shape(graph.nodes[n])])
    caches = {n: cache_names(n) for n in ops if isinstance(graph.nodes[n], CausalSelfAttention)}
    entry = {
        "run": "host",
        "ops": {n: type(graph.nodes[n]).__name__ for n in ops},
        "inputs": [i for i in b.inputs if i not in (TOKEN_IDS, POSITIONS) and "." not in i],
        "uses": [i for i in (TOKEN_IDS, POSITIONS) if i in b.inputs],
        "outputs": outputs,
        "caches": {
            n: {
                "heads": graph.nodes[n].num_kv_heads,
                "head_dim": graph.nodes[n].head_dim,
                **names,
            }
            for n, names in caches.items()
        },
    }
    return b.model("host_stage", "a stac host stage"), entry


def _encoder_entry(name: str, node: SignedIF, pre: list[str]) -> dict[str, Any]:
    extra = {} if node.dead_zone is None else {"dead_zone": f"{name}.dead_zone"}
    return {
        "run": "encoder",
        "name": name,
        "inputs": list(pre),
        "threshold": f"{name}.threshold",
        "size": int(node.threshold.shape[0]),
        "token_gain": bool(node.token_gain),
        "gain_ratio": float(node.gain_ratio),
        "gain_floor": float(node.gain_floor),
        "max_payload": int(node.max_payload),
        "onset_drive": bool(node.onset_drive),
        **extra,
    }


def _chip_entry(part: dict[str, Any], graph: nir.NIRGraph) -> dict[str, Any]:
    bad = [
        n
        for n in part["nodes"]
        if not isinstance(graph.nodes[n], (*CHIP_MAPS, nir.Input, nir.Output))
    ]
    if bad:
        raise StacError(
            f"chip part {part['file']} holds node {bad[0]!r} "
            f"({type(graph.nodes[bad[0]]).__name__}): a bundle's chip parts are linear maps "
            "(Affine/Linear) fed by stac's encoders"
        )
    return {
        "run": "chip",
        "file": f"chip/{part['file']}",
        "nodes": part["nodes"],
        "inputs": {port: io["from"] for port, io in part["inputs"].items()},
        "outputs": {port: io["from"] for port, io in part["outputs"].items()},
    }


def export_bundle(artifact: str | Path, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the bundle of a compiled artifact to ``out_dir`` (atomically); return the
    manifest."""
    from stac.artifact import load_artifact

    art = load_artifact(artifact)
    graph, config = art.graph, art.config
    kinds, stage = plan_stages(graph)
    pre, post = predecessors(graph), successors(graph)
    order = topo_order(graph)
    steps_total = (graph.metadata.get("conversion") or {}).get("timesteps")
    if not steps_total:
        raise StacError(f"{artifact}: the graph's metadata has no conversion.timesteps (T)")
    outputs = [n for n in order if kinds[n] == "output"]
    if len(outputs) != 1:
        raise StacError(f"a bundle needs one graph Output, the graph has {outputs}")
    out_dir = Path(out_dir)
    with writing(out_dir, force) as tmp:
        split = export_split(
            graph,
            tmp / "chip",
            force=True,
            source="(not shipped; the host ops are host/stage_*.onnx)",
        )
        (tmp / "chip" / "manifest.json").rename(tmp / "chip" / "split_manifest.json")
        parts_by_stage: dict[int, list[dict[str, Any]]] = {}
        for part in split["parts"]:
            entry = _chip_entry(part, graph)
            parts_by_stage.setdefault(max(stage[n] for n in part["nodes"]), []).append(entry)
        thresholds = {
            f"{n}.threshold": np.ascontiguousarray(graph.nodes[n].threshold, dtype=np.float32)
            for n in order
            if kinds[n] == "encoder"
        }
        thresholds.update(
            {
                f"{n}.dead_zone": np.ascontiguousarray(graph.nodes[n].dead_zone, np.float32)
                for n in order
                if kinds[n] == "encoder" and graph.nodes[n].dead_zone is not None
            }
        )
        save_file(thresholds, str(tmp / "chip" / "encoders.safetensors"))
        (tmp / "host").mkdir()
        schedule: list[dict[str, Any]] = []
        last = max(stage.values())
        for s in range(last + 1):
            ops = [n for n in order if kinds[n] == "host" and stage[n] == s]
            if ops:
                model, entry = _host_stage(graph, ops, pre, post)
                entry["file"] = f"host/stage_{s}.onnx"
                onnx.save(model, str(tmp / entry["file"]))
                schedule.append({"stage": s, **entry})
            for n in order:
                if kinds[n] == "encoder" and stage[n] == s:
                    schedule.append({"stage": s, **_encoder_entry(n, graph.nodes[n], pre[n])})
            schedule += [{"stage": s, **e} for e in parts_by_stage.get(s, [])]
        logits = outputs[0]
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "stac_version": __version__,
            "source": {
                "model": config.get("source_model"),
                "family": config.get("family"),
                "target": config.get("target"),
                "profile": config.get("profile"),
                "conversion": config.get("conversion"),
            },
            "timesteps": int(steps_total),
            "vocab_size": int(graph.metadata["vocab_size"]),
            "max_positions": int(graph.metadata.get("max_positions", 0)),
            "onnx_opset": OPSET,
            "spiking": True,
            "chip_semantics": CHIP_NOTE,
            "lava": {"netx": None, "note": LAVA_NOTE},
            "rules": schedule_text(),
            "graph_input": {
                "token_ids": "[batch, tokens] int64",
                "positions": "[batch, tokens] int64",
            },
            "logits": {
                "node": logits,
                "inputs": list(pre[logits]),
                "shape": ["batch", "tokens", graph.metadata["vocab_size"]],
            },
            "schedule": schedule,
        }
        if (art.tokenizer_dir).is_dir():
            shutil.copytree(art.tokenizer_dir, tmp / "tokenizer")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("bundle %s: %d steps", out_dir, len(schedule))
    return manifest


__all__ = ["LAVA_NOTE", "export_bundle", "plan_stages"]
