"""``stac export ART --bundle DIR``: a compiled artifact as a deployable bundle (chip parts as
NIR, host parts as ONNX, a manifest with the per-token schedule; docs/bundle.md)."""

from __future__ import annotations

import argparse

from stac.errors import StacError


def run(args: argparse.Namespace) -> int:
    try:
        from stac.bundle.export import export_bundle
    except ImportError as exc:
        raise StacError(
            f"stac export --bundle needs onnx ({exc}): pip install 'stac[bundle]'"
        ) from None
    manifest = export_bundle(args.artifact, args.bundle, force=args.force)
    schedule = manifest["schedule"]
    count = {kind: sum(s["run"] == kind for s in schedule) for kind in ("host", "encoder", "chip")}
    print(
        f"wrote bundle {args.bundle}: {count['host']} ONNX host stage(s) (opset "
        f"{manifest['onnx_opset']}), {count['encoder']} encoder(s), {count['chip']} NIR chip "
        f"part(s), manifest.json"
    )
    return 0


__all__ = ["run"]
