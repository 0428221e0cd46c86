"""The one executor core under every graph stac runs: order, inputs, dispatch, freeing.

A run sweeps the nodes in an order; each node gets the values of its predecessors (this
sweep's, or, over a *back edge*, the previous sweep's: how a recurrent edge or a synaptic delay
is expressed), a step function looked up by the node's type in a table computes its value, and
with ``free`` a value is dropped once its last forward consumer has read it. The executors
differ only in what one sweep covers and in their tables:

* :class:`stac.sim.simulator.Simulator`: one sweep over all T steps at once (values are
  :class:`stac.sim.signal.Signal`), table :data:`stac.sim.semantics.SEMANTICS`;
* :class:`stac.sim.stepper.Stepper`: one sweep per timestep, recurrent edges as back edges,
  table :data:`stac.sim.nir_neurons.STEPS`;
* the Lava backend's bit-accurate runs (:mod:`stac.backends.lava.fixed`): a plan of Dense +
  LIF layers one sweep per timestep, each Dense -> LIF edge a back edge (Lava's one-step
  synaptic delay), and a converted block in one sweep over all its steps;
* :class:`stac.sim.netx_fixed.NetxRunner`: a lava-dl netx chain, one sweep per timestep,
  table :data:`stac.sim.netx_fixed.NETX_STEPS`.

A node whose type the table lacks is refused with a :class:`StacError` naming the node and its
type (:func:`check_supported`, :func:`lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

from stac.errors import StacError

V = TypeVar("V")


def check_supported(
    nodes: Mapping[str, Any], table: Iterable[type], what: str, supported: str | None = None
) -> None:
    """Refuse, naming every one, the nodes whose type is not in ``table``."""
    known = set(table)
    unknown = [
        f"{name} ({type(node).__name__})" for name, node in nodes.items() if type(node) not in known
    ]
    if unknown:
        names = supported or ", ".join(sorted(t.__name__ for t in known))
        raise StacError(
            f"{what} has no semantics for node(s) {', '.join(unknown)}; supported types: {names}"
        )


def lookup(table: Mapping[type, V], name: str, node: Any, what: str) -> V:
    """``table[type(node)]``, or a StacError naming the node and its type."""
    try:
        return table[type(node)]
    except KeyError:
        raise StacError(
            f"{what} has no semantics for node {name!r} ({type(node).__name__}); "
            f"supported types: {', '.join(sorted(t.__name__ for t in table))}"
        ) from None


def total(inputs: list[Any], empty: Any = None) -> Any:
    """The sum of a node's inputs (NIR: incoming edges are summed), ``empty`` without any."""
    if not inputs:
        return empty
    out = inputs[0]
    for extra in inputs[1:]:
        out = out + extra
    return out


@dataclass
class Executor:
    """Nodes by name, the order they run in, their predecessors, and the back edges."""

    nodes: Mapping[str, Any]
    order: list[str]
    pre: Mapping[str, list[str]]
    back: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def from_edges(
        cls,
        nodes: Mapping[str, Any],
        edges: Iterable[tuple[str, str]],
        order: list[str],
        back: Iterable[tuple[str, str]] = (),
    ) -> "Executor":
        pre: dict[str, list[str]] = {n: [] for n in nodes}
        for src, dst in edges:
            pre[dst].append(src)
        return cls(nodes, order, pre, frozenset(back))

    def sweep(
        self,
        run: Callable[[str, Any, list[V]], V],
        prev: Mapping[str, V] | None = None,
        free: bool = False,
    ) -> dict[str, V]:
        """One pass: ``run(name, node, inputs)`` for every node in order, ``inputs`` being the
        predecessors' values (from ``prev`` over a back edge). Returns every value still held
        (with ``free``, those nobody read: the graph's sinks)."""
        left: dict[str, int] = {}
        if free:
            for name in self.order:
                for p in self.pre[name]:
                    if (p, name) not in self.back:
                        left[p] = left.get(p, 0) + 1
        values: dict[str, V] = {}
        for name in self.order:
            inputs = [
                prev[p] if (p, name) in self.back else values[p]  # type: ignore[index]
                for p in self.pre[name]
            ]
            values[name] = run(name, self.nodes[name], inputs)
            if free:
                for p in self.pre[name]:
                    if (p, name) in self.back:
                        continue
                    left[p] -= 1
                    if left[p] == 0:
                        del values[p]
        return values


__all__ = ["Executor", "check_supported", "lookup", "total"]
