"""Fine-tuning a converted artifact: distillation from its float model through the spiking forward.

Loss per batch of windows (BOS + ``seq_len - 1`` tokens of the training text)::

    KL(float || snn) per position                       the float model's logits, the teacher
    + hidden_match * sum_r |h_r - h_r*|^2 / |h_r*|^2    each Residual node's value against the
                                                        same network's non-spiking run
    + spike_l1 * spikes / (neurons * tokens)            nonzero spikes per encoder neuron, token

through :class:`stac.train.graphnet.GraphNet` (stac's forward, surrogate backward, weights
fake-quantised to their grid). Adam; checkpoints in safetensors (parameters, optimiser state,
the data sampler's and torch's random state), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
import os
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from stac.errors import StacError
from stac.files import file_mode
from stac.frontend.text import with_bos
from stac.train.graphnet import GraphNet, spike_rate, spikes_per_token

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 100
    lr: float = 1e-5  # weights and biases
    threshold_lr: float = 1e-2  # log-thresholds (relative steps; see Trainer)
    batch: int = 2
    seq_len: int = 128  # tokens per window, BOS included
    spike_l1: float = 0.0
    hidden_match: float = 0.0
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "cpu"
    slope: float = 2.0  # surrogate slope per quantiser level
    timesteps: int | None = None  # default: the artifact's T
    dead_zone_lr: float = 0.0  # log-dead-zones (relative steps); 0: not learnt
    dead_zone_init: float | None = None  # per-layer quantile of |T x| (stac.train.deadzone)
    dead_zone_batches: int = 4  # batches of the training text the quantile is taken over
    dead_zone_score: str = "drive"  # "drive": |T x|; "output": |T x| ||W_{:,j}||
    dead_zone_init_for: tuple[tuple[str, float], ...] = ()  # (name part, quantile) overrides

    def learned(self) -> tuple[str, ...]:
        """The parameter kinds this run trains (:class:`GraphNet`'s ``learn``): a rate of 0
        freezes its kind."""
        rates = {
            "weights": self.lr,
            "thresholds": self.threshold_lr,
            "dead_zones": self.dead_zone_lr,
        }
        return tuple(kind for kind, rate in rates.items() if rate > 0)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise StacError("--steps must be >= 0 (0: only set the dead zones and export)")
        for key in ("batch", "checkpoint_every", "dead_zone_batches"):
            if getattr(self, key) < 1:
                raise StacError(f"--{key.replace('_', '-')} must be at least 1")
        if self.dead_zone_lr < 0:
            raise StacError(f"--dead-zone-lr must be >= 0, got {self.dead_zone_lr}")
        if self.dead_zone_init is not None and not 0 <= self.dead_zone_init < 1:
            raise StacError(f"--dead-zone-init must be in [0, 1), got {self.dead_zone_init}")
        if self.seq_len < 2:
            raise StacError(f"--seq-len must be at least 2 tokens, got {self.seq_len}")
        if self.lr < 0 or self.threshold_lr < 0:
            raise StacError(
                f"--lr and --threshold-lr must be >= 0 (0: not learnt), got {self.lr}, "
                f"{self.threshold_lr}"
            )
        if not self.learned():
            raise StacError("nothing to train: --lr, --threshold-lr and --dead-zone-lr are all 0")
        if self.spike_l1 < 0 or self.hidden_match < 0:
            raise StacError("--spike-l1 and --hidden-match must be >= 0")


def text_windows(tokenizer: Any, text: str, seq_len: int) -> torch.Tensor:
    """Non-overlapping windows ``[count, seq_len]`` of the text, each BOS first."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    count = ids.numel() // (seq_len - 1)
    if count < 1:
        raise StacError(f"the training text has {ids.numel()} tokens; a window needs {seq_len - 1}")
    chunks = ids[: count * (seq_len - 1)].reshape(count, seq_len - 1)
    return torch.stack([with_bos(tokenizer, c) for c in chunks])


@dataclass
class State:
    step: int
    history: list[dict[str, float]]


class Trainer:
    """One fine-tuning run: the student, its teacher, the data, the optimiser."""

    def __init__(
        self, net: GraphNet, teacher: Any, data: torch.Tensor, cfg: FinetuneConfig, steps: int
    ) -> None:
        self.cfg, self.steps = cfg, steps
        self.device = torch.device(cfg.device)
        self.net = net.to(self.device)
        self.teacher = teacher.to(self.device) if teacher is not None else None
        self.data = data
        self.named = [(k, p) for k, p in self.net.params.items() if p.requires_grad]
        if not self.named:
            raise StacError("nothing to train: every parameter is frozen")
        # Adam moves each parameter by about lr per step: a weight by lr in its own units, a
        # log-threshold (or log-dead-zone) by lr in relative terms, so they get larger rates.
        logs = ("log_threshold", "log_dead_zone")
        weights = [p for k, p in self.named if not k.endswith(logs)]
        thresholds = [p for k, p in self.named if k.endswith("log_threshold")]
        zones = [p for k, p in self.named if k.endswith("log_dead_zone")]
        rates = ((weights, cfg.lr), (thresholds, cfg.threshold_lr), (zones, cfg.dead_zone_lr))
        groups: list[dict[str, Any]] = [{"params": ps, "lr": lr} for ps, lr in rates if ps]
        self.opt = torch.optim.Adam(groups)
        order = [id(p) for ps in (weights, thresholds, zones) for p in ps]
        self.named.sort(key=lambda kp: order.index(id(kp[1])))  # the optimiser's own order
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.state = State(0, [])

    def batch(self) -> torch.Tensor:
        pick = torch.randint(0, self.data.shape[0], (self.cfg.batch,), generator=self.sampler)
        return self.data[pick].to(self.device)

    def loss(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        record = self.net.residuals() if cfg.hidden_match > 0 else ()
        logits, out = self.net(ids, self.steps, record=record)
        ls = F.log_softmax(logits.float(), -1)
        with torch.no_grad():
            ref = self.teacher(ids).logits.float() if self.teacher is not None else logits
            lf = F.log_softmax(ref, -1)
        kl = (lf.exp() * (lf - ls)).sum(-1).mean()
        total = kl
        parts = {"kl": float(kl.detach())}
        if record:
            with torch.no_grad():
                _, target = self.net(ids, self.steps, spiking=False, record=record)
            hm = sum(
                ((out.hidden[r] - target.hidden[r]) ** 2).mean()
                / target.hidden[r].pow(2).mean().clamp_min(1e-12)
                for r in record
            ) / len(record)
            total = total + cfg.hidden_match * hm
            parts["hidden"] = float(hm.detach())
        tokens = ids.numel()
        spikes = sum(c.sum() for c in out.counts.values())
        l1 = spikes / max(out.neurons * tokens, 1)
        if cfg.spike_l1 > 0:
            total = total + cfg.spike_l1 * l1
        parts.update(
            l1=float(l1.detach()),
            spikes_per_token=spikes_per_token(out.counts, tokens),
            spike_rate=spike_rate(out.counts, out.neurons, tokens, self.steps),
            loss=float(total.detach()),
        )
        return total, parts

    def step(self) -> dict[str, float]:
        started = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        total, parts = self.loss(self.batch())
        total.backward()
        self.opt.step()
        self.state.step += 1
        parts["step"] = self.state.step
        parts["seconds"] = time.perf_counter() - started
        self.state.history.append(parts)
        return parts

    def run(self, until: int, out_dir: Path) -> None:
        bar = tqdm(total=until, initial=self.state.step, desc="finetune", unit="step")
        while self.state.step < until:
            parts = self.step()
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", spk=f"{parts['spikes_per_token']:.0f}")
            if self.state.step % self.cfg.checkpoint_every == 0 or self.state.step == until:
                self.save(out_dir / CHECKPOINTS)
        bar.close()

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        opt_state = self.opt.state_dict()["state"]
        for i, (key, p) in enumerate(self.named):
            tensors[f"param/{key}"] = p.detach().cpu().contiguous()
            for name, value in opt_state.get(i, {}).items():
                tensors[f"adam/{key}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        for key, buf in self.net.named_buffers():
            if key.endswith("dead_zone0"):  # set from the data at the start, not learnt
                tensors[f"buffer/{key}"] = buf.detach().cpu().contiguous()
        tensors["rng/sampler"] = self.sampler.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        stem = folder / f"step-{self.state.step:07d}"
        meta = {"step": self.state.step, "config": asdict(self.cfg), "history": self.state.history}
        # each file under a temporary name, then renamed: a run killed mid-write leaves no
        # half checkpoint for --resume to find; normal permissions (safetensors writes 0600)
        for suffix, write in (
            (".safetensors", lambda p: save_file(tensors, str(p))),
            (".json", lambda p: p.write_text(json.dumps(meta, indent=1) + "\n")),
        ):
            final = stem.with_suffix(suffix)
            tmp = folder / f".{final.name}.partial-{os.getpid()}"
            try:
                write(tmp)
                os.chmod(tmp, file_mode())
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        for old in sorted(folder.glob("step-*.safetensors"))[:-2]:  # keep the last two
            old.unlink()
            old.with_suffix(".json").unlink(missing_ok=True)
        log.info("checkpoint %s", stem)
        return stem.with_suffix(".safetensors")

    def load(self, path: Path) -> None:
        if path.is_dir():
            found = sorted((path / CHECKPOINTS).glob("step-*.safetensors")) or sorted(
                path.glob("step-*.safetensors")
            )
            if not found:
                raise StacError(f"{path} holds no checkpoint (step-*.safetensors)")
            path = found[-1]
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise StacError(f"checkpoint {path} or its {meta_path.name} is missing")
        tensors = load_file(str(path))
        meta = json.loads(meta_path.read_text())
        state: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad():
            for i, (key, p) in enumerate(self.named):
                if f"param/{key}" not in tensors:
                    raise StacError(f"checkpoint {path} has no parameter {key}")
                p.copy_(tensors[f"param/{key}"])
                prefix = f"adam/{key}/"
                adam = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                if adam:
                    state[i] = {k: v.to(self.device) if k != "step" else v for k, v in adam.items()}
            for key, buf in self.net.named_buffers():
                if f"buffer/{key}" in tensors:
                    buf.copy_(tensors[f"buffer/{key}"])
        groups = self.opt.state_dict()["param_groups"]
        self.opt.load_state_dict({"state": state, "param_groups": groups})
        self.sampler.set_state(tensors["rng/sampler"])
        torch.set_rng_state(tensors["rng/torch"])
        self.state = State(int(meta["step"]), list(meta["history"]))


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss (total and KL) and spike rate against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(steps, [h["loss"] for h in history], label="loss")
    a.plot(steps, [h["kl"] for h in history], label="KL(float || snn)")
    a.set_xlabel("step")
    a.set_yscale("log")
    a.legend()
    b.plot(steps, [h["spike_rate"] for h in history], color="tab:red")
    b.set_xlabel("step")
    b.set_ylabel("spikes per neuron-step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["CHECKPOINTS", "FinetuneConfig", "State", "Trainer", "plot_curves", "text_windows"]
