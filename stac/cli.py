"""The ``stac`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stac import __version__
from stac.errors import StacError


def _timesteps(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"T must be an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stac", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stac {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="convert a causal LM to a spiking network and report")
    c.add_argument("--model", default="smollm2-135m",
                   help="smollm2-135m (bundled, default), a local HF directory, or a hub id")
    c.add_argument("--target", default="loihi2-sim", help="<profile>-<backend>, e.g. loihi2-sim")
    c.add_argument("-T", "--timesteps", type=_timesteps, default=16, help="timesteps per token")
    c.add_argument("--mode", default="simplified", help="conversion mode (simplified)")
    c.add_argument("--output-dir", type=Path, default=None,
                   help="artifact directory (default: out/<model>-<target>)")
    c.add_argument("--prompt", default=None, help="text the report is measured on")
    c.add_argument("--calibration-passages", type=int, default=16)
    c.add_argument("--force", action="store_true", help="replace an existing output directory")

    sub.add_parser("targets", help="list valid --target names")
    return parser


def _compile(args: argparse.Namespace) -> int:
    from stac.compile import DEFAULT_PROMPT, CompileRequest, compile_model, format_table
    from stac.frontend import ConversionConfig

    out = args.output_dir or Path("out") / f"{Path(args.model).name}-{args.target}"
    req = CompileRequest(
        model=args.model,
        target=args.target,
        output_dir=out,
        conversion=ConversionConfig(
            timesteps=args.timesteps, mode=args.mode,
            calibration_passages=args.calibration_passages,
        ),
        prompt=DEFAULT_PROMPT if args.prompt is None else args.prompt,
        force=args.force,
    )
    report = compile_model(req)
    print(format_table(report))
    print(f"\nartifact: {out} (compiled in {report['compile_seconds']:.1f} s)")
    return 0


def _targets(args: argparse.Namespace) -> int:
    from stac.backends import targets

    for name, (profile, backend) in sorted(targets().items()):
        print(f"{name:<20} profile {profile}, backend {backend}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return {"compile": _compile, "targets": _targets}[args.command](args)
    except StacError as exc:
        print(f"stac: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stac: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
