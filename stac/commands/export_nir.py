"""``stac export-nir``: a stac artifact directory, a stac IR file (``*.stac.json``) or a NIR
file -> standard NIR (one file), or with ``--split`` a directory of NIR parts plus
``manifest.json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import nir

from stac.errors import StacError


def load_source(source: str | Path, dt: float | None = None) -> nir.NIRGraph:
    """A graph from an artifact directory, a stac IR file or a NIR file."""
    from stac.artifact import load_artifact
    from stac.ir import IRFormatError, load
    from stac.ir.nir_io import read_nir
    from stac.limits import check_hdf5

    path = Path(source)
    if path.is_dir():
        return load_artifact(path).graph
    if not path.is_file():
        raise StacError(
            f"{path} does not exist (give an artifact directory, an IR file or a .nir file)"
        )
    if path.suffix == ".nir":
        check_hdf5(path, "NIR file")
        return read_nir(path, dt=dt or 1e-4)
    try:
        return load(path)
    except IRFormatError as exc:
        raise StacError(str(exc)) from None


def export_nir(
    source: str | Path, output: str | Path, split: bool = False, force: bool = False
) -> dict[str, Any]:
    """Export; return a summary (file(s) written, nodes)."""
    from stac.ir.nir_io import export_split, write_nir

    from stac.files import check_not_read, check_output_dir, check_writable

    output = Path(output)
    if split:
        check_output_dir(output, force, [source])
    else:
        check_not_read(output, [source])
        if output.exists() and not force:
            raise StacError(f"output {output} exists; pass --force to replace it")
        if output.exists() and not output.is_file():
            raise StacError(f"output {output} exists and is not a file")
        check_writable(output)
    graph = load_source(source)
    if split:
        manifest = export_split(graph, output, force=True, source=str(source))
        return {
            "output": str(output),
            "parts": [p["file"] for p in manifest["parts"]],
            "host_ops": len(manifest["host_ops"]),
        }
    names = write_nir(graph, output)
    return {"output": str(output), "nodes": len(names)}


def run(args: argparse.Namespace) -> int:
    done = export_nir(args.source, args.output, split=args.split, force=args.force)
    if args.split:
        print(
            f"wrote {len(done['parts'])} NIR part(s) and manifest.json to {done['output']} "
            f"({done['host_ops']} host op(s) join them)"
        )
    else:
        print(f"wrote {done['output']} ({done['nodes']} nodes)")
    return 0


__all__ = ["export_nir", "load_source", "run"]
