"""stac's Python API: compile a causal LM, save and load it, price it, measure it, run it.

    import stac

    model = stac.compile("smollm2-135m", target="loihi2-sim", timesteps=16)
    model.save_pretrained("out/smollm2")
    model = stac.CompiledModel.from_pretrained("out/smollm2")
    figures = model.report(["loihi2", "h100"])  # the numbers `stac report` prints
    fidelity = model.evaluate(timesteps=[8, 16])  # the numbers `stac eval` prints
    logits = model.processor()([[1, 504, 3458]]).logits

Every call runs the code the command of the same name runs (:mod:`stac.commands.compile`,
:mod:`stac.commands.report`, :mod:`stac.commands.eval`): a compiled model is the artifact
directory ``stac compile`` writes, so the API and the CLI give the same figures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nir

from stac.errors import StacError

#: The conversion options :func:`compile` takes beyond ``timesteps`` and ``mode``.
OPTIONS = (
    "calibration_passages",
    "token_gain",
    "payload_bits",
    "weight_bits",
    "weight_rounding",
    "headroom",
    "cache_dir",
    "payload_scale",
    "readout_bits",
    "rotate",
    "rotate_clip",
)


@dataclass(frozen=True)
class TargetFigures:
    """One target's per-token estimate, as a row of ``stac report``'s table.

    ``error`` is set (and the figures are None) when the network does not fit the target.
    """

    target: str
    kind: str  # "neuromorphic" (the SNN on a chip plus its host) or "dense" (the float model)
    energy_j: float | None = None  # per token
    latency_s: float | None = None  # per token
    tokens_per_s: float | None = None
    chips: int | None = None
    cores: int | None = None  # neuromorphic only
    spike_rate: float | None = None  # neuromorphic only
    error: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TargetFigures:
        if "error" in row:
            return cls(row["target"], row["kind"], error=row["error"])
        t = row["total"]
        dense = row["kind"] == "dense"
        return cls(
            target=row["target"],
            kind=row["kind"],
            energy_j=t["energy_j"],
            latency_s=t["latency_s"],
            tokens_per_s=t["tokens_per_s"],
            chips=1 if dense else t["chips"],
            cores=None if dense else t["cores"],
            spike_rate=None if dense else t["spike_rate"],
        )


@dataclass(frozen=True)
class TargetsReport:
    """What :meth:`CompiledModel.report` returns: ``stac report``'s figures, typed.

    ``data`` is the whole report document (the ``report.json`` the command writes).
    """

    targets: tuple[TargetFigures, ...]
    baseline: str
    prompt_tokens: int
    data: dict[str, Any] = field(repr=False)

    def __getitem__(self, target: str) -> TargetFigures:
        for t in self.targets:
            if t.target == target:
                return t
        raise KeyError(target)

    def summary(self) -> str:
        """The table ``stac report`` prints."""
        from stac.reporting.targets import format_summary

        return format_summary(self.data)


@dataclass(frozen=True)
class FidelityReport:
    """What :meth:`CompiledModel.evaluate` returns: ``stac eval``'s figures, typed.

    One :class:`stac.eval.Fidelity` per T; ``data`` is the JSON document ``stac eval --json``
    writes.
    """

    results: tuple[Any, ...]  # stac.eval.Fidelity, one per T, ascending
    scored_tokens: int
    data: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        """The table ``stac eval`` prints."""
        from stac.reporting.fidelity import format_results

        return format_results(self.data)


class CompiledModel:
    """A compiled spiking model: the artifact directory ``stac compile`` writes, loaded.

    Build one with :func:`compile` or :meth:`from_pretrained`. ``graph`` is its IR (a
    ``nir.NIRGraph``), ``config`` the artifact's ``config.json``, ``compile_report`` the
    ``report.json`` written when it was compiled.
    """

    def __init__(self, path: str | Path, _owned: tempfile.TemporaryDirectory | None = None):
        from stac.artifact import load_artifact

        artifact = load_artifact(path)
        self.path: Path = artifact.path
        self.graph: nir.NIRGraph = artifact.graph
        self.config: dict[str, Any] = artifact.config
        self._artifact = artifact
        report = self.path / "report.json"
        self.compile_report: dict[str, Any] = (
            json.loads(report.read_text()) if report.is_file() else {}
        )
        if _owned is not None:  # a temporary artifact lives as long as this object
            weakref.finalize(self, _owned.cleanup)

    def __repr__(self) -> str:
        conv = self.config.get("conversion", {})
        return (
            f"CompiledModel({self.config.get('source_model')!r}, target="
            f"{self.config.get('target')!r}, timesteps={conv.get('timesteps')}, "
            f"mode={conv.get('mode')!r})"
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CompiledModel:
        """Load an artifact directory (written by ``save_pretrained`` or ``stac compile``)."""
        return cls(path)

    def save_pretrained(self, path: str | Path, force: bool = False) -> Path:
        """Write the artifact to ``path`` (atomically; ``force`` replaces an existing one)."""
        from stac.files import writing

        path = Path(path)
        if path.resolve() == self.path.resolve():
            raise StacError(f"{path} is this model's own artifact directory")
        with writing(path, force) as tmp:
            shutil.copytree(self.path, tmp, dirs_exist_ok=True)
        return path

    def tokenizer(self) -> Any:
        """The source model's tokenizer, saved in the artifact."""
        return self._artifact.tokenizer()

    def report(
        self,
        targets: Sequence[str] | None = None,
        output_dir: str | Path | None = None,
        prompt: str | None = None,
        baseline: str | None = None,
        force: bool = False,
        *,
        batch: int = 1,
        group: int = 1,
        host_nodes: Sequence[str] = (),
        link_width: str = "word",
        host_ops_on_chip: bool = False,
        host_op_types: str | None = None,
    ) -> TargetsReport:
        """Price the model on each target (``stac report``): per neuromorphic profile its
        passes, a simulation of ``prompt`` (default: the compile prompt) and the cost model;
        per dense profile the float model's roofline. Writes the report and plots to
        ``output_dir`` when given (else to a directory removed afterwards).

        The deployment levers, as ``stac report``'s options of the same names: ``batch``
        conversations in flight, in lockstep groups of ``group`` whose values cross the host
        link as one transfer; ``host_nodes`` kept on the host (e.g. ``lm_head_in``,
        ``lm_head``); ``link_width`` (``word``, ``bytes`` or ``bits``); ``host_ops_on_chip``
        (the host ops a profile's ``[capabilities]`` lists computed on the chip, only those of
        ``host_op_types``, comma-separated node types, when given)."""
        from stac.commands.report import DEFAULT_BASELINE, DEFAULT_TARGETS, report_artifact

        names = list(DEFAULT_TARGETS if targets is None else targets)
        base = DEFAULT_BASELINE if baseline is None else baseline
        with tempfile.TemporaryDirectory(prefix="stac-report-") as tmp:
            out = Path(tmp) / "report" if output_dir is None else Path(output_dir)
            data = report_artifact(
                self.path,
                names,
                out,
                prompt,
                base,
                force,
                batch=batch,
                host_nodes=list(host_nodes),
                group=group,
                link_width=link_width,
                host_ops_on_chip=host_ops_on_chip,
                host_op_types=host_op_types,
            )
        return TargetsReport(
            targets=tuple(TargetFigures.from_row(r) for r in data["targets"]),
            baseline=data["baseline"],
            prompt_tokens=data["prompt_tokens"],
            data=data,
        )

    def evaluate(
        self,
        text: str | None = None,
        timesteps: Sequence[int] | None = None,
        window: int | None = None,
        max_tokens: int | None = None,
        json_out: str | Path | None = None,
        plot_out: str | Path | None = None,
        force: bool = False,
    ) -> FidelityReport:
        """Perplexity and top-1 agreement against the float source model (``stac eval``) on
        ``text`` (default: the held-out plays), at each T in ``timesteps`` (default: the
        compiled T), in windows of ``window`` tokens up to ``max_tokens`` tokens."""
        from stac.commands.eval import DEFAULT_MAX_TOKENS, DEFAULT_WINDOW, run_eval
        from stac.eval import Fidelity

        steps = [int(self.config["conversion"]["timesteps"])] if timesteps is None else timesteps
        doc = run_eval(
            self.path,
            sorted(steps),
            json_out=None if json_out is None else Path(json_out),
            plot_out=None if plot_out is None else Path(plot_out),
            window=DEFAULT_WINDOW if window is None else window,
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            force=force,
            text=text,
        )
        return FidelityReport(
            results=tuple(Fidelity(**r) for r in doc["results"]),
            scored_tokens=doc["scored_tokens"],
            data=doc,
        )

    def processor(self, **options: Any) -> Any:
        """A :class:`stac.runtime.TemporalSpikeProcessor` on this model (``T``,
        ``max_context_length``, ``evict_fraction``, ``spiking`` as its constructor takes;
        the context defaults to 512 tokens or the model's position limit if that is less)."""
        from stac.runtime import TemporalSpikeProcessor

        limit = int(self.graph.metadata.get("max_positions", 0)) or 512
        options.setdefault("max_context_length", min(512, limit))
        return TemporalSpikeProcessor(self, **options)


def compile(
    model: str,
    target: str = "loihi2-sim",
    timesteps: int = 16,
    mode: str = "simplified",
    output_dir: str | Path | None = None,
    prompt: str | None = None,
    force: bool = False,
    **options: Any,
) -> CompiledModel:
    """Convert ``model`` (``smollm2-135m``, a local Hugging Face directory or a hub id) into a
    spiking network for ``target`` at ``timesteps`` per token, as ``stac compile`` does.

    ``mode``: ``simplified`` (binary rate code, float weights) or ``full`` (graded
    onset-driven encoders, quantised weights). ``options``: ``calibration_passages``,
    ``token_gain``, and for full mode ``payload_bits``, ``weight_bits``, ``weight_rounding``,
    ``headroom``, ``payload_scale``, ``readout_bits``, ``rotate``, ``rotate_clip``;
    ``cache_dir`` (a directory, or True for
    ``$STAC_CACHE/calibration``) reuses calibration statistics and GPTQ weights across
    compiles of the same model. The artifact is written to ``output_dir`` when given
    (``force`` replaces an existing one), else to a temporary directory that lives as long as
    the returned model.
    """
    from stac.commands.compile import compile_model, compile_request

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise StacError(
            f"stac.compile got unknown option(s) {', '.join(unknown)}; it takes "
            f"{', '.join(OPTIONS)}"
        )
    owned = None
    if output_dir is None:
        owned = tempfile.TemporaryDirectory(prefix="stac-compiled-")
        output_dir = Path(owned.name) / "artifact"
    req = compile_request(
        model,
        target,
        Path(output_dir),
        timesteps=timesteps,
        mode=mode,
        prompt=prompt,
        force=force,
        **options,
    )
    try:
        compile_model(req)
    except BaseException:
        if owned is not None:
            owned.cleanup()
        raise
    return CompiledModel(req.output_dir, owned)


__all__ = [
    "CompiledModel",
    "FidelityReport",
    "TargetFigures",
    "TargetsReport",
    "compile",
]
