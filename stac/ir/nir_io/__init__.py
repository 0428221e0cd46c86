"""NIR files in and out.

- :mod:`~stac.ir.nir_io.read`: ``read_nir`` (any NIR graph -> checked stac IR, every bad file
  one clear error) and ``check_graph`` (structure checks that allow cycles);
- :mod:`~stac.ir.nir_io.write`: ``write_nir`` / ``to_nir_graph`` (stac IR -> one standard NIR
  file, refused with the stac-only nodes listed);
- :mod:`~stac.ir.nir_io.split`: ``export_split`` (each NIR-expressible part to its own file,
  plus a manifest of how the host ops join them);
- :mod:`~stac.ir.nir_io.order`: ``execution_order`` of a possibly recurrent graph;
- :mod:`~stac.ir.nir_io.size`: declared sizes checked against a memory budget before reading;
- :mod:`~stac.ir.nir_io.supported`: the NIR node types stac handles and how they are grouped.
"""

from stac.ir.nir_io.order import execution_order
from stac.ir.nir_io.read import check_graph, read_nir
from stac.ir.nir_io.split import export_split
from stac.ir.nir_io.supported import (
    RECURRENT_BIAS,
    RECURRENT_BIASES,
    RESET_ORIGIN,
    RESETS,
    RESETTABLE,
    SPIKING,
    STATEFUL,
    SUPPORTED,
)
from stac.ir.nir_io.write import stac_only_nodes, to_nir_graph, write_nir

__all__ = [
    "RECURRENT_BIAS",
    "RECURRENT_BIASES",
    "RESET_ORIGIN",
    "RESETS",
    "RESETTABLE",
    "SPIKING",
    "STATEFUL",
    "SUPPORTED",
    "check_graph",
    "execution_order",
    "export_split",
    "read_nir",
    "stac_only_nodes",
    "to_nir_graph",
    "write_nir",
]
