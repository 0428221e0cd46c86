"""The ``lava`` backend: a chip graph as real Lava processes, run bit-accurately on the CPU.

Converted transformers (graphs with SignedIF encoders) lower to integer blocks
(:mod:`stac.backends.lava.blocks`) and run token by token through
:class:`stac.backends.lava.host.ConvertedLowering`: each block as Lava processes
(:func:`run_block_lava`), the host ops in stac. Spike-driven NIR graphs: ``lower`` checks the
graph (every node it cannot emit is named, before anything runs), checks
that the profile's fixed-point widths are the ones Lava's bit-accurate models use, and turns
the graph into integer layers (:mod:`stac.backends.lava.plan`). ``run_spikes`` emits one Lava
process per layer (``RingBuffer`` for each Input, ``Dense`` with 8-bit weights and
``weight_exp``, ``LIF`` with fixed-point ``du``, ``dv``, ``vth`` and bias), runs them with
``Loihi2SimCfg(select_tag="fixed_pt")`` and ``RunSteps``, and reads every LIF's spikes, ``v``
and ``u`` back through ``Monitor`` processes. The same plan runs in stac's own fixed-point
steps with :func:`stac.backends.lava.plan.run_plan_fixed`; the two agree bit for bit
(tests/test_lava.py).

Lava is optional and imported only here (and by stac's own processes in
:mod:`stac.backends.lava.procs`, which only this module imports), lazily:
``scripts/setup_lava.sh`` installs it (lava-nc 0.10.0 declares Python < 3.11 and needs a small
patch on 3.11).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import scipy.sparse

from stac.backends.lava.blocks import (
    BlockTrace,
    ChannelGroup,
    DenseBlock,
    EncoderBlock,
    PART_PORTS,
    block_plan,
    readout_key,
)
from stac.backends.lava.config import WIDTH_FIELDS, LavaLimits
from stac.backends.lava.plan import LoihiPlan, check_emittable, plan_from_graph, spike_inputs
from stac.errors import StacError
from stac.ir.nodes import SignedIF
from stac.profiles import Profile
from stac.sim import fixed_point as fx
from stac.sim.semantics import NodeStats, RunContext

log = logging.getLogger(__name__)

#: Seconds to wait for Lava's runtime to acknowledge ``stop()`` after a finished run. A normal
#: stop takes well under a second; Lava 0.10's Python runtime can lose the stop handshake
#: between its runtime service and a process model and then wait forever (seen in CI).
STOP_TIMEOUT_S = 60.0

INSTALL_HINT = (
    "install it with `bash scripts/setup_lava.sh` (lava-nc 0.10.0 with "
    "--no-deps --ignore-requires-python, its needs, and a Python 3.11 patch), or "
    "`make test`, which runs it"
)


def lava_available() -> bool:
    """True when lava-nc imports (installed and patched)."""
    try:
        _lava()
    except StacError:
        return False
    return True


def _lava() -> dict[str, Any]:
    """Lava's classes by short name; a StacError saying how to install Lava if it is missing."""
    names = {
        "RingBuffer": "lava.proc.io.source",
        "Dense": "lava.proc.dense.process",
        "LIF": "lava.proc.lif.process",
        "Monitor": "lava.proc.monitor.process",
        "RunSteps": "lava.magma.core.run_conditions",
        "Sigma": "lava.proc.sdn.process",
        "Sparse": "lava.proc.sparse.process",
        "GradedSignedIF": "stac.backends.lava.procs",
        "Recorder": "stac.backends.lava.procs",
        "Loihi2SimCfg": "lava.magma.core.run_configs",
    }
    try:
        return {k: getattr(importlib.import_module(m), k) for k, m in names.items()}
    except ImportError:
        raise StacError(
            f"the lava backend needs Lava (lava-nc), which is not installed: {INSTALL_HINT}"
        ) from None
    except ValueError as exc:  # the unpatched lava-nc 0.10.0 on Python 3.11
        raise StacError(
            f"lava-nc is installed but fails to import ({str(exc).splitlines()[0]}); "
            f"run `.venv/bin/python scripts/patch_lava.py`, or {INSTALL_HINT}"
        ) from None


def lava_format(profile: Profile) -> fx.LoihiFormat:
    """The profile's fixed-point format, refused where it differs from the widths Lava's
    bit-accurate models use (the profile's ``[lava]`` section, :class:`LavaLimits`)."""
    fmt = fx.LoihiFormat.from_profile(profile)
    limits = LavaLimits.from_profile(profile)
    wrong = [
        f"{name} = {getattr(fmt, name)} (Lava: {getattr(limits, name)})"
        for name in WIDTH_FIELDS
        if getattr(fmt, name) != getattr(limits, name)
    ]
    if wrong:
        raise StacError(
            f"profile {profile.name} does not match Lava's bit-accurate models: {', '.join(wrong)}"
        )
    return fmt


@dataclass
class LavaRun:
    """What one Lava run read back."""

    traces: dict[str, dict[str, np.ndarray]]  # LIF layer -> {"spikes", "v", "u"}: [T, size]
    outputs: dict[str, np.ndarray]  # Output node -> spikes [T, size]
    stats: dict[str, NodeStats]  # per layer: spikes, neuron updates, synaptic ops


def _emit(
    plan: LoihiPlan, xs: dict[str, np.ndarray], steps: int, lava: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any, Any]]]:
    """Lava processes for ``plan``, connected; and (v, u, spike) monitors per LIF layer."""
    procs: dict[str, Any] = {}
    for name, x in xs.items():  # a RingBuffer repeats its data: pad it to the run's length
        data = np.zeros((x.shape[1], steps), dtype=np.int64)
        data[:, : min(steps, x.shape[0])] = x[:steps].T
        procs[name] = lava["RingBuffer"](data=data)
    for name, layer in plan.neurons.items():
        procs[name] = lava["LIF"](
            shape=(layer.size,),
            du=layer.du,
            dv=layer.dv,
            vth=layer.vth,
            bias_mant=layer.bias_mant,
            bias_exp=layer.bias_exp,
            name=f"stac-lif:{name}",
        )
    for name, dense in plan.dense.items():
        procs[name] = lava["Dense"](
            weights=dense.weights,
            weight_exp=dense.weight_exp,
            num_weight_bits=plan.fmt.weight_bits,
            name=f"stac-dense:{name}",
        )
    for name, dense in plan.dense.items():
        procs[dense.source].s_out.connect(procs[name].s_in)
    for name, layer in plan.neurons.items():
        for d in layer.inputs:
            procs[d].a_out.connect(procs[name].a_in)
    monitors = {}
    for name in plan.neurons:
        mons = (lava["Monitor"](), lava["Monitor"](), lava["Monitor"]())
        mons[0].probe(procs[name].v, steps)
        mons[1].probe(procs[name].u, steps)
        mons[2].probe(procs[name].s_out, steps)
        monitors[name] = mons
    return procs, monitors


def run_plan_lava(plan: LoihiPlan, spikes: Any, steps: int | None = None) -> LavaRun:
    """Run ``plan`` in Lava (``Loihi2SimCfg(select_tag="fixed_pt")``, ``RunSteps``)."""
    lava = _lava()
    xs = spike_inputs(plan, spikes)
    steps = next(iter(xs.values())).shape[0] if steps is None else int(steps)
    if steps < 1:
        raise StacError(f"steps must be at least 1, got {steps}")
    procs, monitors = _emit(plan, xs, steps, lava)
    anchor = next(iter(procs.values()))
    log.info("lava: running %d processes for %d steps", len(procs) + 3 * len(monitors), steps)
    try:
        anchor.run(
            condition=lava["RunSteps"](num_steps=steps),
            run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt"),
        )
        traces = {}
        for name, (mv, mu, ms) in monitors.items():
            key = procs[name].name
            traces[name] = {
                "spikes": np.asarray(ms.get_data()[key]["s_out"]).astype(np.int64),
                "v": np.asarray(mv.get_data()[key]["v"]).astype(np.int64),
                "u": np.asarray(mu.get_data()[key]["u"]).astype(np.int64),
            }
    finally:
        anchor.stop()
    return LavaRun(
        traces,
        {o: traces[src]["spikes"] for o, src in plan.outputs.items()},
        plan_stats(plan, xs, traces),
    )


def run_block_lava(
    block: EncoderBlock, drive: np.ndarray, steps: int, fmt: fx.LoihiFormat
) -> BlockTrace:
    """Run one converted block in Lava: a ``RingBuffer`` with the host's drive, stac's
    :class:`~stac.backends.lava.procs.GradedSignedIF` encoder, one graded ``Dense`` and one
    ``Sigma`` readout per map; ``Loihi2SimCfg(select_tag="fixed_pt")`` for ``len(drive)`` steps
    (``RunSteps``). :class:`~stac.backends.lava.procs.Recorder` processes bring the encoder's
    ``v`` and payloads and every readout back."""
    lava = _lava()
    total = int(drive.shape[0])
    recorded: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="stac-lava-") as tmp:

        def record(port: Any, shape: tuple[int, ...], key: str) -> None:
            recorded[key] = Path(tmp) / f"{len(recorded)}.npy"
            rec = lava["Recorder"](shape=shape, steps=total, path=str(recorded[key]))
            port.connect(rec.a_in)

        source = lava["RingBuffer"](data=np.ascontiguousarray(drive.T))
        enc = lava["GradedSignedIF"](
            shape=(block.size,),
            theta=block.chip_theta,
            mult=block.mult(),
            max_payload=block.max_payload,
            reset_interval=steps,
            v_max=fmt.uv_max - 1,
            split_bits=block.split_bits,
            parts=block.parts,
            dead=block.dead,
            name=f"stac-enc:{block.name}",
        )
        source.s_out.connect(enc.a_in)
        record(enc.v_out, (block.size,), "v")
        ports = [getattr(enc, port) for port in PART_PORTS[: block.parts]]
        for j, port in enumerate(ports):
            record(port, (block.size,), f"part{j}")
        for dense in block.dense:
            for i, group in enumerate(block.groups):
                for j, port in enumerate(ports):
                    proc = _synapses(lava, dense, group, block, fmt)
                    sigma = lava["Sigma"](shape=(dense.out_features,))  # Sigma takes no name
                    port.connect(proc.s_in)
                    proc.a_out.connect(sigma.a_in)
                    record(sigma.s_out, (dense.out_features,), readout_key(dense.name, i, j))
        log.debug(
            "lava: block %s as %d processes for %d steps", block.name, block_processes(block), total
        )
        before = set(multiprocessing.active_children())
        try:
            enc.run(
                condition=lava["RunSteps"](num_steps=total),
                run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt"),
            )
        finally:
            _stop(enc, block.name, before)
        data = {k: np.load(p) for k, p in recorded.items()}
    payload = sum(data[f"part{j}"] << (j * block.split_bits) for j in range(block.parts))
    sigmas = {k: data[k] for k in recorded if k != "v" and not k.startswith("part")}
    return BlockTrace(data["v"], payload, sigmas)


def _stop(proc: Any, name: str, before: set[Any]) -> None:
    """``proc.stop()``, bounded: if Lava's runtime does not acknowledge within
    :data:`STOP_TIMEOUT_S`, end the processes this run started. The run's data are already on
    disk by then (each Recorder saves at the last step, before ``run`` returns), and a lost stop
    handshake must not hang the caller."""
    done = threading.Event()

    def stop() -> None:
        try:
            proc.stop()
        finally:
            done.set()

    threading.Thread(target=stop, name=f"lava-stop:{name}", daemon=True).start()
    if done.wait(STOP_TIMEOUT_S):
        return
    stuck = [p for p in multiprocessing.active_children() if p not in before]
    log.warning(
        "lava: block %s: the runtime did not stop within %g s (a lost stop handshake); "
        "terminating its %d processes",
        name,
        STOP_TIMEOUT_S,
        len(stuck),
    )
    for child in stuck:
        child.kill()
        child.join(5)


def block_processes(block: EncoderBlock) -> int:
    """Lava processes one block run uses: the drive, the encoder, a recorder for v and for each
    payload part, and synapses, a Sigma and a recorder per map, group and part."""
    return 3 + block.parts + 3 * len(block.dense) * len(block.groups) * block.parts


def _synapses(
    lava: dict[str, Any],
    dense: DenseBlock,
    group: ChannelGroup,
    block: EncoderBlock,
    fmt: fx.LoihiFormat,
) -> Any:
    """A graded ``Dense`` for a one-group block; otherwise a ``Sparse`` holding only the
    group's columns (the encoder is one process; each group has its own readout)."""
    common = {
        "weight_exp": dense.weight_exp,
        "num_weight_bits": fmt.weight_bits,
        "num_message_bits": min(block.payload_bits, 31),
    }
    if len(block.groups) == 1:
        return lava["Dense"](weights=dense.weights, name=f"stac-dense:{dense.name}", **common)
    sub = dense.weights[:, group.index]  # only the group's columns are copied
    rows, cols = np.nonzero(sub)
    weights = scipy.sparse.csr_matrix(
        (sub[rows, cols], (rows, group.index[cols])), shape=dense.weights.shape
    )
    return lava["Sparse"](weights=weights, **common)


def plan_stats(
    plan: LoihiPlan, xs: dict[str, np.ndarray], traces: dict[str, dict[str, Any]]
) -> dict[str, NodeStats]:
    """Operation counts of a run for stac's report: spikes and neuron updates per LIF layer,
    synaptic ops (input spikes x fan-out) per Dense."""
    stats = {}
    for name, tr in traces.items():
        s = np.asarray(tr["spikes"])
        n = int(np.count_nonzero(s))
        stats[name] = NodeStats(spikes=n, spike_bits=n, neuron_updates=int(s.size))
    for name, layer in plan.dense.items():
        src = xs[layer.source] if layer.source in xs else traces[layer.source]["spikes"]
        stats[name] = NodeStats(synops=int(np.count_nonzero(src)) * layer.weights.shape[0])
    return stats


class LavaBackend:
    """``<profile>-lava``: emits Lava processes for spike-driven chip graphs (NIR Dense + LIF /
    CubaLIF) and for the blocks of converted transformers (with their host ops run in stac)."""

    name = "lava"

    def lower(self, graph: nir.NIRGraph, profile: Profile) -> Any:
        """Integer layers (a spike-driven graph) or integer blocks (a converted graph, one with
        SignedIF encoders) for ``graph``; refuses unsupported nodes, a profile whose widths are
        not Lava's, and a machine without Lava, in that order, before anything runs."""
        if any(isinstance(node, SignedIF) for node in graph.nodes.values()):
            from stac.backends.lava.host import ConvertedLowering

            fmt = lava_format(profile)
            steps = int(graph.metadata.get("conversion", {}).get("timesteps", 16))
            payload = (
                int(profile.get("spikes", "payload_bits")) if profile.get("spikes", "graded") else 1
            )
            plan = block_plan(
                graph, fmt, steps, LavaLimits.from_profile(profile), payload_bits=payload
            )
            _lava()
            return ConvertedLowering(graph, plan, run_block_lava, block_processes)
        check_emittable(graph, target=f"{profile.name}-lava")
        fmt = lava_format(profile)
        _lava()
        return plan_from_graph(graph, fmt)

    def summary(self, lowered: Any) -> dict[str, Any] | None:
        """What the last token run did in Lava (a converted graph's
        :meth:`~stac.backends.lava.host.ConvertedLowering.summary`, for
        ``report.json["backend_run"]``); None for a spike-driven plan, which runs on spikes."""
        from stac.backends.lava.host import ConvertedLowering

        return lowered.summary() if isinstance(lowered, ConvertedLowering) else None

    def run_spikes(self, lowered: LoihiPlan, spikes: Any, steps: int | None = None) -> LavaRun:
        """Run the lowered graph in Lava on binary input spikes ``[T, n]`` (or a dict of them by
        Input name)."""
        return run_plan_lava(lowered, spikes, steps)

    def run(self, lowered: Any, ctx: RunContext) -> tuple[dict[str, Any], dict[str, NodeStats]]:
        """Tokens through a converted graph: its blocks in Lava, its host ops in stac
        (:class:`stac.backends.lava.host.ConvertedLowering`). A spike-driven graph runs on
        spikes instead (:meth:`run_spikes`)."""
        if isinstance(lowered, LoihiPlan):
            raise StacError(
                "a spike-driven graph runs on input spikes (LavaBackend.run_spikes), not on tokens"
            )
        return lowered.run(ctx)


__all__ = [
    "INSTALL_HINT",
    "LavaBackend",
    "LavaRun",
    "lava_available",
    "lava_format",
    "plan_stats",
    "run_block_lava",
    "run_plan_lava",
]
