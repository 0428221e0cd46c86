"""A converted transformer on the lava backend: blocks in Lava, host ops in stac, glue between.

:class:`ConvertedLowering` runs a quantised converted graph token batch by token batch. The
host ops (embedding, norms, attention with its KV cache, activations, residual adds) run in
stac's reference semantics, on the host, as they would beside a chip. Every block (a SignedIF
encoder and the maps it feeds, :mod:`stac.backends.lava.blocks`) runs as real Lava processes
(:func:`stac.backends.lava.run_block_lava`) over all the batch's tokens, T steps each: the host
sends the encoder's integer drive and reads the readouts back at token boundaries. The same
block also runs in stac's bit-accurate steps, and the two must agree bit for bit in every
encoder potential, payload and readout, or the run stops with an error naming the block. The
float reference semantics of the block run too, to report how far the chip's integer
arithmetic moves each map's output from it (the drive's integer grid; nothing else).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np
import torch
from tqdm import tqdm

from stac.backends.lava.blocks import BlockPlan, BlockTrace
from stac.backends.lava.drive import decode, encode_drive
from stac.backends.lava.fixed import run_block_fixed, width_counts
from stac.errors import StacError
from stac.ir.nodes import SignedIF
from stac.sim import fixed_point as fx
from stac.sim.semantics import SEMANTICS, NodeStats, RunContext, Semantics
from stac.sim.signal import Signal
from stac.sim.simulator import Simulator

log = logging.getLogger(__name__)


@dataclass
class BlockRecord:
    """What one block's Lava run did, for the report."""

    encoder: str
    maps: list[str]
    tokens: int
    steps: int  # Lava timesteps run (tokens * T + 1)
    groups: int  # channel groups (one Dense or Sparse and Sigma per map and group)
    parts: int  # messages per spike (a payload split so that its readouts fit 32 bits)
    processes: int
    payload_bits: int
    spikes: int
    synops: int
    bit_exact: bool  # Lava equals stac's fixed point in v, payloads and readouts
    lava_seconds: float
    fixed_seconds: float
    rel_rms_vs_float: float  # the maps' outputs against the float reference semantics
    saturated_drives: int
    over_input_bits: int  # Dense outputs beyond the profile's input_bits
    over_state_bits: int  # readouts beyond the profile's state_bits


def first_difference(lava: BlockTrace, fixed: BlockTrace) -> str | None:
    """Where two runs of a block first differ, or None when they agree bit for bit."""
    pairs: list[tuple[str, np.ndarray | None, np.ndarray]] = [
        ("v", lava.v, fixed.v),
        ("payload", lava.payload, fixed.payload),
    ]
    pairs += [(f"readout {k}", lava.sigma.get(k), fixed.sigma[k]) for k in fixed.sigma]
    for what, a, b in pairs:
        if a is None or a.shape != b.shape:
            return f"{what}: shapes {None if a is None else a.shape} and {b.shape}"
        diff = np.argwhere(a != b)
        if len(diff):
            t, i = diff[0]
            return f"{what} at step {t + 1}, index {i}: Lava {a[t, i]}, stac {b[t, i]}"
    return None


class ConvertedLowering:
    """A converted graph lowered for the lava backend (see the module docstring)."""

    def __init__(
        self, graph: nir.NIRGraph, plan: BlockPlan, run_block: Any, block_processes: Any
    ) -> None:
        self.graph, self.plan, self._run_block = graph, plan, run_block
        self._processes = block_processes
        overrides: dict[str, Semantics] = {name: self._encoder for name in plan.blocks}
        overrides.update({name: self._map for name in plan.owner})
        self.sim = Simulator(graph, overrides)
        self.records: list[BlockRecord] = []
        self._outputs: dict[str, tuple[torch.Tensor, NodeStats]] = {}
        self._bar: Any = None

    @property
    def fmt(self) -> fx.LoihiFormat:
        return self.plan.fmt

    def run(self, ctx: RunContext) -> tuple[dict[str, Any], dict[str, NodeStats]]:
        if ctx.spiking:
            self.records = []
            self._bar = tqdm(
                total=len(self.plan.blocks), desc="lava blocks", unit="block", leave=False
            )
        try:
            return self.sim.run(ctx)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _encoder(
        self, node: SignedIF, inp: Signal, ctx: RunContext, name: str, need: bool
    ) -> tuple[Signal, NodeStats]:
        reference, ref_stats = SEMANTICS[SignedIF](node, inp, ctx, name, need)
        if not ctx.spiking:  # the float ANN: nothing spikes, nothing runs on the chip
            return reference, ref_stats
        if inp.per_step:
            raise StacError(f"{name}: the lava backend takes one drive per token, not per step")
        block, steps = self.plan.blocks[name], ctx.steps
        x = inp.mean()
        lead = x.shape[:-1]
        tokens = int(np.prod(lead))
        drive = encode_drive(block, x.reshape(tokens, -1).numpy(), steps, self.fmt)
        t0 = time.perf_counter()
        lava = self._run_block(block, drive.steps, steps, self.fmt)
        t1 = time.perf_counter()
        fixed = run_block_fixed(block, drive.steps, steps, self.fmt)
        t2 = time.perf_counter()
        where = first_difference(lava, fixed)
        if where is not None:
            raise StacError(f"{name}: Lava and stac's fixed-point model disagree ({where})")
        spikes = int(np.count_nonzero(lava.payload))
        errs = []
        for dense in block.dense:
            y = torch.from_numpy(decode(block, dense, lava, tokens, drive.gain, steps))
            y = y.reshape(*lead, dense.out_features)
            y_float, _ = SEMANTICS[type(self.graph.nodes[dense.name])](
                self.graph.nodes[dense.name], reference, ctx, dense.name, False
            )
            ref = y_float.mean()
            errs.append(
                float(torch.linalg.norm(y - ref) / max(float(torch.linalg.norm(ref)), 1e-30))
            )
            self._outputs[dense.name] = (
                y,
                NodeStats(
                    synops=spikes * dense.out_features,
                    neuron_updates=steps * tokens * dense.out_features,
                ),
            )
        record = BlockRecord(
            name,
            [d.name for d in block.dense],
            tokens,
            int(drive.steps.shape[0]),
            len(block.groups),
            block.parts,
            self._processes(block),
            block.payload_bits,
            spikes,
            spikes * sum(d.out_features for d in block.dense),
            True,
            t1 - t0,
            t2 - t1,
            max(errs),
            drive.saturated,
            *width_counts(lava, self.fmt),
        )
        self.records.append(record)
        log.debug("lava block %s: %s", name, record)
        if self._bar is not None:
            self._bar.update(1)
        stats = NodeStats(
            spikes=spikes,
            spike_bits=spikes * block.payload_bits * block.parts,
            neuron_updates=steps * tokens * block.size,
        )
        return reference, stats

    def _map(
        self, node: Any, inp: Signal, ctx: RunContext, name: str, need: bool
    ) -> tuple[Signal, NodeStats]:
        if not ctx.spiking:
            return SEMANTICS[type(node)](node, inp, ctx, name, need)
        if need:
            raise StacError(
                f"{name}: a consumer needs its per-step output, which the lava "
                "backend does not read back"
            )
        y, stats = self._outputs.pop(name)
        return Signal(y, False), stats

    def summary(self) -> dict[str, Any]:
        """The Lava runs of the last token run, for ``report.json["backend_run"]``."""
        recs = self.records
        return {
            "backend": "lava",
            "run_config": "Loihi2SimCfg(select_tag='fixed_pt'), RunSteps",
            "custom_process_models": [
                "GradedSignedIF (stac.backends.lava.procs): the graded signed IF encoder",
                "Recorder (stac.backends.lava.procs): host-side sink that reads results back",
            ],
            "lava_processes": ["RingBuffer", "Dense / Sparse (graded, 8-bit weights)", "Sigma"],
            "blocks_run": len(recs),
            "bit_exact": all(r.bit_exact for r in recs),
            "lava_seconds": sum(r.lava_seconds for r in recs),
            "fixed_seconds": sum(r.fixed_seconds for r in recs),
            "processes": sum(r.processes for r in recs),
            "max_rel_rms_vs_float": max((r.rel_rms_vs_float for r in recs), default=0.0),
            "saturated_drives": sum(r.saturated_drives for r in recs),
            "over_input_bits": sum(r.over_input_bits for r in recs),
            "over_state_bits": sum(r.over_state_bits for r in recs),
            "input_bits": self.fmt.input_bits,
            "state_bits": self.fmt.state_bits,
            "blocks": [asdict(r) for r in recs],
        }


__all__ = ["BlockRecord", "ConvertedLowering", "first_difference"]
