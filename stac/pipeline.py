"""The pipeline after the frontend, as one ordered list of named steps.

    fit    graph -> graph           the passes for the profile: quantise, partition, place,
                                    legality (``stac.ir.passes.PIPELINE``), checked between
    lower  graph -> lowered         the backend's executable form (``Backend.lower``)
    run    lowered -> counts        outputs and per-node operation counts (``Backend.run``)
    price  counts -> summary        the cost model on the profile and its host: energy,
                                    latency, cores per token (or per sample)

``stac compile`` and ``stac report`` go through all four (:func:`fit_run_price`); ``stac
import-nir`` fits, runs a drive step by step (:func:`run_steps`: the simulator's stepper, or
the netx runner for a lava-dl netx graph; the Backend interface runs tokens) and prices;
``stac eval`` lowers and runs on the reference simulator only (:func:`simulate`), at each T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from stac.backends.base import Backend
from stac.backends.sim import SimBackend
from stac.errors import StacError
from stac.ir.graph import topo_order
from stac.ir.passes import run_passes
from stac.ir.results import partition_of
from stac.profiles import Profile, host_profile
from stac.sim.cost import node_costs, summarise
from stac.sim.semantics import NodeStats, RunContext
from stac.sim.stepper import StepResult, Stepper

#: The reference executor, which every other backend is checked against.
REFERENCE = SimBackend()
#: The steps, in order (each a function of this module).
STEPS = ("fit", "lower", "run", "price")


@dataclass(frozen=True)
class Run:
    """What one trip down the pipeline produced."""

    graph: nir.NIRGraph  # as fitted to the profile
    outputs: dict[str, Any]  # by Output-node name
    stats: dict[str, NodeStats]  # per node, summed over the run
    summary: dict[str, Any]  # the cost model's totals, layers, nodes and notes
    backend_run: dict[str, Any] | None  # what a backend that runs elsewhere did (Backend.summary)


def is_recurrent(graph: nir.NIRGraph) -> bool:
    try:
        topo_order(graph)
    except ValueError:
        return True
    return False


def fit(graph: nir.NIRGraph, profile: Profile, source: Any = "<graph>") -> nir.NIRGraph:
    """The passes for ``profile``, the IR verifier between them; a recurrent graph (NIR with
    cycles, which the verifier refuses) is checked by NIR's cycle-tolerant check instead,
    whose errors name ``source``."""
    if not is_recurrent(graph):
        return run_passes(graph, profile)
    from stac.ir.nir_io import check_graph

    return run_passes(graph, profile, check=lambda g, _: check_graph(g, source))


def lower(graph: nir.NIRGraph, profile: Profile, backend: Backend) -> Any:
    return backend.lower(graph, profile)


def run(
    backend: Backend, lowered: Any, ctx: RunContext
) -> tuple[dict[str, Any], dict[str, NodeStats]]:
    return backend.run(lowered, ctx)


def price(
    graph: nir.NIRGraph,
    stats: dict[str, NodeStats],
    profile: Profile,
    steps: int,
    samples: int,
    link_width: str = "word",
    group: int = 1,
) -> dict[str, Any]:
    """The cost model on the fitted graph's counts (summed over ``samples`` tokens or samples):
    figures per token (sample), per layer and per node, and notes. ``link_width``: how values
    cross the host link (:data:`stac.sim.link_width.WIDTHS`); ``group``: conversations per
    lockstep group in the batch sweep (:func:`stac.sim.pricing.batch_figures`)."""
    part = partition_of(graph)
    if part is None:
        raise StacError("the graph was not partitioned for a profile; run the passes first")
    rows = node_costs(graph, stats, profile, host_profile(profile), steps, samples, link_width)
    return summarise(rows, profile, part.chips, part.cores, group)


def fit_run_price(
    graph: nir.NIRGraph,
    profile: Profile,
    backend: Backend,
    ctx: RunContext,
    link_width: str = "word",
    group: int = 1,
) -> Run:
    """fit -> lower -> run -> price on tokens: the whole pipeline for a converted model."""
    graph = fit(graph, profile)
    lowered = lower(graph, profile, backend)
    outputs, stats = run(backend, lowered, ctx)
    summary = price(graph, stats, profile, ctx.steps, ctx.tokens, link_width, group)
    return Run(graph, outputs, stats, summary, backend.summary(lowered))


def simulate(graph: nir.NIRGraph) -> Any:
    """The graph lowered for the reference simulator, to :func:`run` with :data:`REFERENCE`
    (it needs no profile: the simulator's semantics are the graph's own)."""
    from stac.sim.simulator import Simulator

    return Simulator(graph)


def run_steps(
    graph: nir.NIRGraph, drive: np.ndarray, steps: int | None, profile: Profile
) -> StepResult:
    """A spike-driven graph run step by step on a drive ``[T, B, *input]``: a graph read from
    lava-dl netx (``metadata["netx"]``) on its bit-accurate runner with the profile's widths,
    any other (NIR) graph on the simulator's stepper (the reference for NIR semantics)."""
    if "netx" in graph.metadata:
        from stac.sim.netx_fixed import NetxRunner

        return NetxRunner(graph, profile).run(drive, steps=steps)
    return Stepper(graph).run(drive, steps=steps)


__all__ = [
    "REFERENCE",
    "Run",
    "STEPS",
    "fit",
    "fit_run_price",
    "is_recurrent",
    "lower",
    "price",
    "run",
    "run_steps",
    "simulate",
]
