"""lava-dl netx HDF5 files (``.net``) in: :func:`read_netx` (a netx network -> checked stac IR,
every bad or unsupported file one clear error) and :func:`netx_layers` (the per-layer
structure stac read, for reports); :mod:`~stac.ir.netx_io.weights` holds how netx fits dense
weights into Loihi's synapse."""

from stac.ir.netx_io.read import read_netx
from stac.ir.netx_io.summary import netx_layers

__all__ = ["netx_layers", "read_netx"]
