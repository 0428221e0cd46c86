"""``stac report``: one compiled artifact priced on several hardware profiles, side by side.

artifact -> check (artifact format, report schema, prompt) -> per neuromorphic target the
pipeline (:mod:`stac.pipeline`): the passes for that profile (quantise to its widths,
partition, place, legality), a simulation of the prompt on the network as placed there, the
cost model -> per dense target and the
baseline: the float model's roofline -> report.json, report.md and PNG plots, written
atomically. A target the network does not fit gets a row saying why.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from stac import __version__
from stac.artifact import artifact_profile_names, load_artifact
from stac.errors import StacError
from stac.files import check_output_dir, write_json, writing
from stac.ir.capabilities import check_capabilities
from stac.limits import MAX_T, MIN_T, check_finite_graph, model_context
from stac.profiles import Profile, load_profile, profile_names
from stac.reporting.schema import COMPILE_REPORT_VERSION, TARGETS_REPORT, TARGETS_REPORT_VERSION

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ("loihi2", "loihi1", "spinnaker2", "h100")
DEFAULT_BASELINE = "h100"


def parse_targets(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Comma-separated profile names (or profile file paths); every one must exist (a bundled
    profile, a file, or one of ``extra``: the profiles the artifact carries)."""
    names = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise StacError(f"--targets must be a comma-separated list of profile names, got {text!r}")
    if len(set(names)) != len(names):
        raise StacError(f"--targets names a profile twice: {text!r}")
    known = profile_names() + [e for e in extra if e not in profile_names()]
    for n in names:
        if n not in known and not Path(n).suffix == ".toml":
            raise StacError(f"unknown target {n!r}; known profiles: {', '.join(known)}")
    return names


def _artifact_report(path: Path) -> dict[str, Any]:
    """The artifact's own report.json, refused when written in another schema version."""
    file = path / "report.json"
    if not file.is_file():
        raise StacError(f"{path} has no report.json; recompile it with stac compile")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StacError(f"{file} is not readable JSON ({exc})") from None
    version = data.get("schema_version")
    if version != COMPILE_REPORT_VERSION:
        raise StacError(
            f"{file} has report schema version {version!r}; this stac ({__version__}) reads "
            f"version {COMPILE_REPORT_VERSION}: recompile the artifact"
        )
    return data


def _artifact_timesteps(config: dict[str, Any], path: Path) -> int:
    """The compile's T from ``config.json``'s ``conversion``, checked."""
    conversion = config.get("conversion")
    steps = conversion.get("timesteps") if isinstance(conversion, dict) else None
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_T <= steps <= MAX_T:
        raise StacError(
            f"{path}/config.json has no valid conversion.timesteps (an integer in "
            f"{MIN_T}..{MAX_T}); recompile the artifact"
        )
    return steps


#: Legality warnings copied into a target's notes (the rest are counted).
MAX_WARNINGS = 8


def _chip_row(
    graph: Any, profile: Profile, ids: Any, steps: int, link: tuple[str, int] = ("word", 1)
) -> dict[str, Any]:
    """The pipeline for ``profile``: its passes (which re-quantise the weights to its widths),
    a simulation of the network as placed there, and the cost model."""
    import torch

    from stac.ir.results import legality_of
    from stac.pipeline import REFERENCE, fit_run_price
    from stac.sim.semantics import RunContext

    with torch.no_grad():
        done = fit_run_price(
            graph,
            profile,
            REFERENCE,
            RunContext(ids, steps=steps),
            link_width=link[0],
            group=link[1],
        )
    summary = done.summary
    legality = legality_of(done.graph)
    issues = legality.issues if legality else ()
    warnings = [i.message for i in issues if i.level == "warning"]
    summary["notes"] += [f"warning: {w}" for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        summary["notes"].append(f"... and {len(warnings) - MAX_WARNINGS} more legality warnings")
    return {
        "target": profile.name,
        "kind": "neuromorphic",
        "host_profile": profile.host,
        "description": profile.description,
        "legality": {k: getattr(legality, k, 0) for k in ("errors", "warnings", "notes")},
        **summary,
    }


def _profile(name: str, carried: dict[str, Profile]) -> Profile:
    """The artifact's own copy of a profile it carries, else the bundled profile or file."""
    return carried[name] if name in carried else load_profile(name)


def _row(
    name: str,
    graph: Any,
    ids: Any,
    steps: int,
    host_nodes: list[str],
    carried: dict[str, Profile] | None = None,
    link: tuple[str, int] = ("word", 1),
    host_ops_on_chip: bool = False,
    host_op_types: str | None = None,
) -> dict[str, Any]:
    """One target's figures, or the reason it has none (a network that does not fit);
    ``link``: the link width and the lockstep group of the batch sweep; ``host_ops_on_chip``:
    the host ops the profile's ``[capabilities]`` lists (cut to ``host_op_types`` when given)
    run on the chip."""
    from stac.sim.dense import dense_estimate

    profile = _profile(name, carried or {})
    if profile.kind == "host":
        return {
            "target": profile.name,
            "kind": "dense",
            "description": profile.description,
            "total": dense_estimate(graph, profile, context=int(ids.numel())),
        }
    try:
        if host_nodes:
            from stac.ir.passes.partition import keep_on_host

            graph = keep_on_host(graph, host_nodes)
        if host_ops_on_chip:
            from stac.ir.passes.onchip import move_host_ops

            graph = move_host_ops(graph, profile.only_capabilities(host_op_types))
        return _chip_row(graph, profile, ids, steps, link)
    except StacError as exc:
        return {"target": profile.name, "kind": "neuromorphic", "error": str(exc)}


def report_artifact(
    artifact: str | Path,
    targets: list[str],
    output_dir: str | Path,
    prompt: str | None = None,
    baseline: str = DEFAULT_BASELINE,
    force: bool = False,
    batch: int = 1,
    host_nodes: list[str] | None = None,
    group: int = 1,
    link_width: str = "word",
    host_ops_on_chip: bool = False,
    host_op_types: str | None = None,
) -> dict[str, Any]:
    """Estimate the artifact on every target; write the report; return it. ``host_ops_on_chip``:
    each chip target computes the host ops its ``[capabilities]`` lists (the artifact's own
    copy of a profile is used when it carries one), only those of ``host_op_types``
    (comma-separated node types) when given; a target whose profile does not list one of
    them gets an error row. ``group``:
    conversations per lockstep group, whose values cross the host link as one transfer per
    boundary (``batch`` a multiple of it); ``link_width``: how values cross the link
    (:data:`stac.sim.link_width.WIDTHS`)."""
    from stac.frontend.text import check_utf8, with_bos
    from stac.reporting.plots import write_plots
    from stac.reporting.targets import to_markdown
    from stac.sim.cost import ASSUMPTIONS, MODEL
    from stac.sim.dense import (
        ASSUMPTIONS as DENSE_ASSUMPTIONS,
        CALIBRATED_MODEL,
        MODEL as DENSE_MODEL,
    )
    from stac.sim.link_width import WIDTHS
    from stac.sim.pricing import batch_figures

    started = time.perf_counter()
    output_dir = Path(output_dir)
    if batch < 1:
        raise StacError(f"--batch must be a positive integer, got {batch}")
    if group < 1 or batch % group:
        raise StacError(
            f"--group must be a positive integer dividing --batch ({batch}), got {group}"
        )
    if link_width not in WIDTHS:
        raise StacError(f"--link-width must be one of {', '.join(WIDTHS)}, got {link_width!r}")
    parse_targets(",".join(targets), artifact_profile_names(artifact))
    if load_profile(baseline).kind != "host":
        raise StacError(
            f"--baseline {baseline!r} is a neuromorphic profile; the comparison row "
            "is the float model on a host profile (h100, host-cpu, ...)"
        )
    names = targets + [b for b in [baseline] if b not in targets]
    check_output_dir(output_dir, force, [artifact])
    art = load_artifact(artifact)
    if host_nodes:  # every name a node of the graph, before any work
        from stac.ir.passes.partition import keep_on_host

        keep_on_host(art.graph, list(host_nodes))
    carried = {p.name: p for p in (art.profile, art.host) if p is not None}
    for name in names:  # every profile readable (and its [ops] known) before any work
        check_capabilities(_profile(name, carried))
    check_finite_graph(art.graph, str(art.path))
    steps = _artifact_timesteps(art.config, art.path)
    compiled = _artifact_report(art.path)
    text = compiled.get("prompt") if prompt is None else prompt
    if not isinstance(text, str) or not check_utf8("--prompt", text).strip():
        raise StacError("the prompt is empty")
    tokenizer = art.tokenizer()
    ids = with_bos(tokenizer, tokenizer(text, return_tensors="pt").input_ids[0])[None]
    context = model_context(art.graph.metadata)
    if context is not None and ids.shape[1] > context:
        raise StacError(
            f"the prompt has {ids.shape[1]} tokens, past the model's context of {context}"
        )
    tokens = int(ids.numel())

    rows = [
        _row(
            n,
            art.graph,
            ids,
            steps,
            list(host_nodes or []),
            carried,
            (link_width, group),
            host_ops_on_chip,
            host_op_types,
        )
        for n in tqdm(names, desc="targets", unit="target", leave=False)
    ]
    for row in rows:  # the figures at --batch beside those of one token alone
        if row["kind"] == "neuromorphic" and "error" not in row:
            t = row["total"]
            row["total"]["at_batch"] = batch_figures(t, t["static_power_w"], batch, group)
    report = {
        "schema": TARGETS_REPORT,
        "schema_version": TARGETS_REPORT_VERSION,
        "stac_version": __version__,
        "artifact": str(art.path),
        "model": art.config.get("source_model", "?"),
        "family": art.config.get("family"),
        "timesteps": steps,
        "mode": art.config["conversion"].get("mode"),
        "prompt": text,
        "prompt_tokens": tokens,
        "baseline": load_profile(baseline).name,
        "batch": batch,
        "group": group,
        "link_width": link_width,
        "host_ops_on_chip": host_ops_on_chip,
        "host_op_types": host_op_types,
        "host_nodes": sorted(host_nodes or []),
        "estimate": {
            "chip": {"model": MODEL, "assumptions": ASSUMPTIONS},
            "dense": {
                "model": DENSE_MODEL,
                "calibrated_model": CALIBRATED_MODEL,
                "assumptions": DENSE_ASSUMPTIONS,
            },
        },
        "targets": rows,
    }
    with writing(output_dir, force, [artifact]) as tmp:
        write_plots(report, tmp)
        report["seconds"] = time.perf_counter() - started
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(to_markdown(report))
    log.info("wrote %s in %.1f s", output_dir, report["seconds"])
    return report


def run(args: argparse.Namespace) -> int:
    from stac.reporting.targets import format_summary

    out = args.output_dir or Path(f"{Path(args.artifact).resolve()}-report")
    report = report_artifact(
        args.artifact,
        parse_targets(args.targets, artifact_profile_names(args.artifact)),
        out,
        args.prompt,
        args.baseline,
        args.force,
        batch=getattr(args, "batch", 1),
        host_nodes=[n for n in (getattr(args, "host_nodes", None) or "").split(",") if n],
        group=getattr(args, "group", 1),
        link_width=getattr(args, "link_width", "word"),
        host_ops_on_chip=getattr(args, "host_ops_on_chip", False),
        host_op_types=getattr(args, "host_op_types", None),
    )
    print(format_summary(report))
    print(f"report: {out}/report.md, report.json, 3 plots")
    return 0


__all__ = ["DEFAULT_BASELINE", "DEFAULT_TARGETS", "parse_targets", "report_artifact", "run"]
