"""Run a bundle: host stages on onnxruntime, chip parts on stac's step functions.

Needs only the bundle directory. The encoders and chip maps run through the reference
semantics of :mod:`stac.sim.semantics` (:class:`stac.ir.nodes.SignedIF`'s scan from
:mod:`stac.sim.neurons`, the affine map of :mod:`stac.sim.nir_neurons`), with the maps' weights
read back from the bundle's NIR files, so the chip parts compute exactly what stac's simulator
computes on the same input. It imports no model loader, no compiler pass and no transformers
(the tokenizer, for ``run-bundle``, is read with the ``tokenizers`` library).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from safetensors.numpy import load_file

from stac.bundle.manifest import load_manifest
from stac.errors import StacError
from stac.ir.graph import predecessors, topo_order
from stac.ir.nodes import SignedIF
from stac.sim.executor import total
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.signal import Signal

Cache = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class _Part:
    """A chip part read back from its NIR file."""

    graph: nir.NIRGraph
    order: list[str]
    pre: dict[str, list[str]]
    reads: dict[str, str]  # Input port -> the value it carries
    writes: dict[str, str]  # NIR name -> the value name it gives (ports and members)


@dataclass
class BundleRun:
    """What one call computed: the logits and every value by name (per-token means)."""

    logits: torch.Tensor  # [batch, tokens, vocab]
    values: dict[str, Signal] = field(default_factory=dict)


class Bundle:
    """A loaded bundle (manifest checked, ONNX sessions open, NIR parts read)."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise StacError(
                "running a bundle needs onnxruntime: pip install 'stac[bundle]'"
            ) from None
        self.path = Path(path)
        self.manifest = load_manifest(self.path)
        self.steps = int(self.manifest["timesteps"])
        self.vocab_size = int(self.manifest["vocab_size"])
        self._tensors: dict[int, torch.Tensor] = {}
        thresholds = load_file(str(self.path / "chip" / "encoders.safetensors"))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions: dict[int, Any] = {}
        self.encoders: dict[int, SignedIF] = {}
        self.parts: dict[int, _Part] = {}
        for i, step in enumerate(self.manifest["schedule"]):
            where = f"bundle {self.path}: schedule[{i}]"
            if step["run"] == "host":
                try:
                    self.sessions[i] = ort.InferenceSession(
                        str(self.path / step["file"]), options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own types)
                    raise StacError(f"{where}: {step['file']} does not load: {exc}") from None
            elif step["run"] == "encoder":
                for key in ("threshold", "dead_zone"):
                    if key in step and step[key] not in thresholds:
                        raise StacError(f"{where}: no {key} {step[key]!r} in the bundle")
                self.encoders[i] = SignedIF(
                    threshold=thresholds[step["threshold"]],
                    token_gain=step["token_gain"],
                    gain_ratio=step.get("gain_ratio", 1.0),
                    gain_floor=step.get("gain_floor", 1.0),
                    max_payload=step["max_payload"],
                    onset_drive=step["onset_drive"],
                    dead_zone=thresholds.get(step.get("dead_zone", "")),
                )
            else:
                self.parts[i] = self._read_part(step, where)
        last: dict[str, int] = {}
        for i, step in enumerate(self.manifest["schedule"]):
            reads = step["inputs"].values() if step["run"] == "chip" else step["inputs"]
            last.update({name: i for name in reads})
        kept = {self.manifest["logits"]["node"], *self.manifest["logits"]["inputs"]}
        self._last_read: dict[int, list[str]] = {}
        for name, i in last.items():
            if name not in kept:
                self._last_read.setdefault(i, []).append(name)

    def _read_part(self, step: dict[str, Any], where: str) -> _Part:
        try:
            graph = nir.read(self.path / step["file"])
        except Exception as exc:  # noqa: BLE001 (h5py / nir raise their own types)
            raise StacError(f"{where}: {step['file']} is not a readable NIR file ({exc})") from None
        writes = {nir_name: name for name, nir_name in step.get("nodes", {}).items()}
        writes.update({port: name for port, name in step["outputs"].items()})
        for port in list(step["inputs"]) + list(writes):
            if port not in graph.nodes:
                raise StacError(f"{where}: {step['file']} has no node {port!r}")
        bad = [
            n
            for n, v in graph.nodes.items()
            if not isinstance(v, (nir.Input, nir.Output, nir.Affine, nir.Linear))
        ]
        if bad:
            raise StacError(
                f"{where}: node {bad[0]!r} ({type(graph.nodes[bad[0]]).__name__}) of "
                f"{step['file']} is not a linear map; a bundle's chip parts are Affine/Linear"
            )
        return _Part(graph, topo_order(graph), predecessors(graph), dict(step["inputs"]), writes)

    def param(self, array: Any) -> torch.Tensor:
        """A stored array as a float32 tensor, cached (as the simulator's ``param``)."""
        key = id(array)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(np.asarray(array, dtype=np.float32))
        return self._tensors[key]

    def empty_cache(self, batch: int = 1) -> Cache:
        cache: Cache = {}
        for step in self.manifest["schedule"]:
            for name, c in step.get("caches", {}).items():
                shape = (batch, int(c["heads"]), 0, int(c["head_dim"]))
                cache[name] = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        return cache

    @torch.no_grad()
    def run(
        self,
        token_ids: Any,
        cache: Cache | None = None,
        positions: Any = None,
        keep_values: bool = False,
    ) -> tuple[BundleRun, Cache]:
        """Logits for new tokens ``[batch, tokens]`` after the ``cache`` (None: no past), and
        the cache with them appended. Positions default to continuing after the cache. With
        ``keep_values`` the result holds every value computed (otherwise each is dropped
        after its last reader)."""
        ids = torch.as_tensor(token_ids, dtype=torch.int64)
        if ids.ndim != 2:
            raise StacError(f"token ids must be [batch, tokens], got shape {tuple(ids.shape)}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.numel():
            raise StacError(
                f"token id {int(bad[0])} is outside the vocabulary 0..{self.vocab_size - 1}"
            )
        cache = dict(cache) if cache is not None else self.empty_cache(ids.shape[0])
        past = next((int(k.shape[2]) for k, _ in cache.values()), 0)
        if positions is None:
            positions = torch.arange(past, past + ids.shape[1]).expand_as(ids)
        positions = torch.as_tensor(positions, dtype=torch.int64)
        limit = int(self.manifest.get("max_positions") or 0)
        if limit and int(positions.max()) >= limit:
            raise StacError(f"position {int(positions.max())} is past the model's limit {limit}")
        ctx = self.context(ids, positions)
        values: dict[str, Signal] = {}
        for i in range(len(self.manifest["schedule"])):
            self.run_step(i, ctx, values, cache)
            if not keep_values:  # drop what no later step reads (the logits' inputs stay)
                for name in self._last_read.get(i, ()):
                    values.pop(name, None)
        logits = self.manifest["logits"]
        if logits["node"] in values:
            out = values[logits["node"]].mean()
        else:
            out = total([values[p] for p in logits["inputs"]]).mean()
        return BundleRun(out, values), cache

    def context(self, token_ids: torch.Tensor, positions: torch.Tensor) -> RunContext:
        """The run context the chip steps read (tokens, positions, T, parameters)."""
        return RunContext(token_ids, steps=self.steps, positions=positions, params=self.param)

    @torch.no_grad()
    def run_step(self, i: int, ctx: RunContext, values: dict[str, Signal], cache: Cache) -> None:
        """Schedule step ``i``: read its inputs from ``values``, write its outputs there (and,
        for a host stage with attention, its new cache into ``cache``)."""
        step = self.manifest["schedule"][i]
        if step["run"] == "host":
            self._host(i, step, ctx, values, cache)
        elif step["run"] == "encoder":
            inp = total([values[p] for p in step["inputs"]])
            node = self.encoders[i]
            values[step["name"]], _ = SEMANTICS[SignedIF](node, inp, ctx, step["name"], False)
        else:
            self._chip(self.parts[i], ctx, values)

    def _host(
        self,
        i: int,
        step: dict[str, Any],
        ctx: RunContext,
        values: dict[str, Signal],
        cache: Cache,
    ) -> None:
        feed: dict[str, np.ndarray] = {n: values[n].mean().numpy() for n in step["inputs"]}
        if "token_ids" in step["uses"]:
            feed["token_ids"] = ctx.token_ids.numpy()
        if "positions" in step["uses"] and ctx.positions is not None:
            feed["positions"] = ctx.positions.numpy()
        for name, c in step["caches"].items():
            feed[c["past_key"]], feed[c["past_value"]] = cache[name]
        session = self.sessions[i]
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, feed), strict=True))
        for name in step["outputs"]:
            values[name] = Signal(torch.from_numpy(got[name]), False)
        for name, c in step["caches"].items():
            cache[name] = (got[c["present_key"]], got[c["present_value"]])

    def _chip(self, part: _Part, ctx: RunContext, values: dict[str, Signal]) -> None:
        inside: dict[str, Signal] = {}
        for n in part.order:
            node = part.graph.nodes[n]
            if isinstance(node, nir.Input):
                inside[n] = values[part.reads[n]]
                continue
            inp = total([inside[p] for p in part.pre[n]])
            if isinstance(node, nir.Output):
                inside[n] = Signal(inp.mean(), False)
            else:
                inside[n], _ = SEMANTICS[type(node)](node, inp, ctx, n, False)
            if n in part.writes:
                values[part.writes[n]] = inside[n]


def generate(
    bundle: Bundle, prompt_ids: list[int], max_new_tokens: int
) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy generation: the prompt in one call, then one token per call with the KV cache.
    Returns the new ids and the last-position logits of every call."""
    if max_new_tokens < 1:
        raise StacError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompt_ids:
        raise StacError("the prompt has no tokens")
    feed, cache, new, seen = list(prompt_ids), None, [], []
    for _ in range(max_new_tokens):
        done, cache = bundle.run(torch.tensor([feed]), cache)
        last = done.logits[0, -1]
        seen.append(last)
        tok = int(last.argmax())
        new.append(tok)
        feed = [tok]
    return new, seen


__all__ = ["Bundle", "BundleRun", "generate"]
