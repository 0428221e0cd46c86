"""What a rotation of each encoder's input would buy binary spikes: a proxy on the float model.

Binary full mode (``--payload-bits 1``) at T timesteps gives every value ``2 T + 1`` levels
(``clamp(floor(x / s + 1/2), -T, T) s``), with a static step ``s`` per channel. That is the
whole of its error (ratio 1.37 at T = 16 on SmolLM2). This script applies exactly that
rounding to the input of every linear map of the Hugging Face model, with weights left in
float so that only the activations' coding is measured, and compares it with two things stac
does not build:

- **a rotation**: ``x R`` for a random orthogonal ``R``, one per map input (q/k/v share one,
  gate/up share one). The map would hold ``W R`` instead of ``W``, so the output is unchanged
  up to rounding. A rotation spreads outlier channels over all channels (QuaRot, Ashkboos et
  al. 2024; SpinQuant, Liu et al. 2024).
- **a per-token step**: ``s = clip max_c |x_c| / T``, computed by the host for each token
  (``--clip``, default 1).

``--rotation hadamard`` draws each rotation as ``stac compile --rotate`` does
(:meth:`stac.ir.nodes.Rotation.random`: random signs, a Haar-random mix of the ``n / b`` rows
of a Sylvester Hadamard transform of order b); the default is a Haar-random orthogonal.

Static steps are searched per channel over the calibration windows (BOS rows included, as
binary full mode scores them): the clip ratio of conversion's own search
(:data:`stac.frontend.calibrate.CLIP_RATIOS`) with the least squared error, and the rounding
is conversion's (:func:`stac.frontend.calibrate.quantise_activation`).
Rows: ``static`` (stac's binary code), ``rotated static``, ``per-token``, ``rotated
per-token``. Held-out windows and reference as ``stac eval`` (the float model's logits).
Usage::

    python benchmarks/rotation_proxy.py [--timesteps 16] [--windows 16] [--calibration 16]
        [--rotation orthogonal|hadamard] [--clip 1.0] [--seed 0] [--only SUFFIX]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stac.eval import window_scores, windows
from stac.frontend import load_model
from stac.frontend.calibrate import CLIP_RATIOS, quantise_activation
from stac.frontend.text import calibration_windows, evaluation_text
from stac.ir.nodes import Rotation

log = logging.getLogger("rotation_proxy")

#: Maps that read the same input as an earlier one (their input is coded once, identically).
SHARED = {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"}
MODES = ("static", "rotated static", "per-token", "rotated per-token")


def orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random orthogonal ``[n, n]`` (Haar: QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def site_of(name: str) -> str:
    """The map whose input ``name``'s input is (itself unless it shares one)."""
    for tail, first in SHARED.items():
        if name.endswith(tail):
            return name[: -len(tail)] + first
    return name


def best_steps(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Per channel of ``x`` ``[rows, channels]``, the step of least squared rounding error."""
    peak = x.abs().amax(0).clamp_min(1e-12)
    best_err = best = None
    for clip in CLIP_RATIOS:
        s = clip * peak / levels
        err = ((quantise_activation(x, s, levels) - x) ** 2).sum(0)
        if best_err is None or best is None:
            best_err, best = err, s
        else:
            better = err < best_err
            best_err, best = torch.where(better, err, best_err), torch.where(better, s, best)
    assert best is not None
    return best


class Coder:
    """Forward pre-hooks that code every linear map's input as the current mode says."""

    def __init__(
        self,
        model: Any,
        levels: int,
        seed: int,
        only: str | None = None,
        rotation: str = "orthogonal",
        clip: float = 1.0,
    ) -> None:
        self.levels, self.mode, self.only, self.clip = levels, "float", only, clip
        rng = np.random.default_rng(seed)
        self.collect: dict[str, list[torch.Tensor]] | None = None
        self.steps: dict[str, torch.Tensor] = {}
        gen = torch.Generator().manual_seed(seed)
        self.rotation: dict[str, torch.Tensor] = {}
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and ("layers." in name or name == "lm_head"):
                site = site_of(name)
                if site not in self.rotation:
                    self.rotation[site] = (
                        orthogonal(mod.in_features, gen)
                        if rotation == "orthogonal"
                        else torch.from_numpy(
                            Rotation.random(mod.in_features, rng).matrix().astype(np.float32)
                        )
                    )
                mod.register_forward_pre_hook(self._hook(name, site))

    def _hook(self, name: str, site: str) -> Callable[[Any, tuple[Any, ...]], Any]:
        def code(_mod: Any, args: tuple[Any, ...]) -> Any:
            if self.mode == "float":
                return None
            x = args[0]
            mode = self.mode if self.only is None or site.endswith(self.only) else "static"
            rot = self.rotation[site] if mode.startswith("rotated") else None
            z = x @ rot if rot is not None else x
            if self.collect is not None:
                if name == site:
                    self.collect.setdefault(site, []).append(z.reshape(-1, z.shape[-1]))
                return None
            if mode.endswith("per-token"):
                s = self.clip * z.abs().amax(-1, keepdim=True).clamp_min(1e-12) / self.levels
            else:
                s = self.steps[site]
            zq = quantise_activation(z, s, self.levels)
            return (zq @ rot.T if rot is not None else zq,)

        return code

    @torch.no_grad()
    def calibrate(self, model: Any, chunks: list[torch.Tensor]) -> None:
        """Static steps for the current mode from ``chunks`` (per-token sites ignore theirs)."""
        self.collect = {}
        for c in chunks:
            model(c[None])
        found, self.collect = self.collect, None
        self.steps = {site: best_steps(torch.cat(xs), self.levels) for site, xs in found.items()}


@torch.no_grad()
def fidelity(model: Any, chunks: list[torch.Tensor], refs: list[torch.Tensor]) -> dict[str, float]:
    """Perplexity ratio, top-1 agreement and KL against ``refs``, as ``stac eval`` counts them."""
    sums = [
        window_scores(chunk, ref, model(chunk[None]).logits[0].float())
        for chunk, ref in zip(chunks, refs, strict=True)
    ]
    nll_f, nll_s, kl, agree = (sum(column) for column in zip(*sums, strict=True))
    scored = sum(c.numel() - 1 for c in chunks)
    return {
        "perplexity_ratio": math.exp((nll_s - nll_f) / scored),
        "top1_agreement": agree / sum(c.numel() for c in chunks),
        "mean_kl": kl / scored,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--timesteps", type=int, default=16, help="T: 2 T + 1 levels per value")
    ap.add_argument("--windows", type=int, default=16, help="held-out windows of --window")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--calibration", type=int, default=16, help="calibration windows")
    ap.add_argument("--seed", type=int, default=0, help="seed of the rotations")
    ap.add_argument(
        "--rotation",
        choices=("orthogonal", "hadamard"),
        default="orthogonal",
        help="Haar-random orthogonal, or a randomised Hadamard as stac compile --rotate builds",
    )
    ap.add_argument(
        "--clip", type=float, default=1.0, help="per-token step: clip x max |x| / T (1)"
    )
    ap.add_argument(
        "--only",
        default=None,
        metavar="SUFFIX",
        help="apply the rows' coding only to the maps whose name ends so (e.g. down_proj); "
        "the others keep static steps",
    )
    ap.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated rows to run (default all: {', '.join(MODES)})",
    )
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/rotation_proxy.json"))
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",")]
    if unknown := sorted(set(modes) - set(MODES)):
        ap.error(f"unknown --modes {', '.join(unknown)}; choose from {', '.join(MODES)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_model(args.model)
    model, tok = loaded.model.eval(), loaded.tokenizer
    ids = tok(evaluation_text(), return_tensors="pt").input_ids[0]
    chunks = windows(tok, ids, args.window, args.windows)
    cal = calibration_windows(tok, args.calibration, args.window)
    with torch.no_grad():
        refs = [model(c[None]).logits[0].float() for c in chunks]
    coder = Coder(model, args.timesteps, args.seed, args.only, args.rotation, args.clip)
    rows = []
    for mode in modes:
        started = time.perf_counter()
        coder.mode = mode
        coder.calibrate(model, cal)
        rows.append({"mode": mode, **fidelity(model, chunks, refs)})
        log.info("%s: %.1f s", mode, time.perf_counter() - started)
    levels = 2 * args.timesteps + 1
    print(
        f"\n{args.model}, every linear map's input coded at {levels} levels (binary, T = "
        f"{args.timesteps}), float weights; {sum(c.numel() - 1 for c in chunks)} held-out tokens"
    )
    if args.only:
        print(f"the rows' coding applies to the inputs of *{args.only} only; the rest: static")
    print(f"rotations: {args.rotation} (seed {args.seed}); per-token step clip {args.clip:g}")
    print(f"{'coding':<20} {'ratio':>8} {'top-1':>8} {'KL':>8}")
    for r in rows:
        print(
            f"{r['mode']:<20} {r['perplexity_ratio']:>8.4f} {r['top1_agreement']:>8.2%} "
            f"{r['mean_kl']:>8.4f}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"model": args.model, "timesteps": args.timesteps, "levels": levels, "rows": rows}
    doc |= {"windows": args.windows, "window": args.window, "calibration": args.calibration}
    doc |= {"only": args.only, "rotation": args.rotation, "clip": args.clip, "seed": args.seed}
    args.output.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
