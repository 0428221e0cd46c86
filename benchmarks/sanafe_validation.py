"""stac's cost model against SANA-FE itself, on the same mapped networks with the same spikes.

    bash benchmarks/setup_sanafe.sh           # once: SANA-FE 2.2.9 in benchmarks/.sanafe-venv
    .venv/bin/python benchmarks/sanafe_validation.py [--quick] [--timing-model detailed]

SANA-FE (PyPI ``sanafe``, GPL-3.0, TCAD 2025) is never imported by stac: this script writes a
small driver program to a temporary directory and runs it with the SANA-FE virtualenv's own
interpreter, handing the network over as JSON + NumPy arrays and reading its results back.
The architecture is the ``loihi.yaml`` shipped in the sanafe package, read where pip put it
(its mesh is widened for networks that stac places on several chips).

Each network (benchmarks/sanafe_networks.py) is built in stac, run through stac's partition,
place and legality passes on the loihi1 profile and simulated by stac's stepper; the same
neurons, synapses, core assignment and mesh positions and the same input spike trains are
then simulated by SANA-FE (its default ``detailed`` timing model). Both fire the same spikes
(checked: fired neurons and synaptic operations are printed side by side), so the energy and
latency columns compare the cost models alone. Dynamic energy only: SANA-FE has no static
power. Results go to ``benchmarks/results/sanafe_validation.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac.ir import make_graph
from stac.ir.passes import PIPELINE
from stac.ir.results import NodePlacement, partition_of
from stac.profiles import load_profile
from stac.sim.cost import node_costs, summarise
from stac.sim.stepper import Stepper

import sanafe_networks as nets  # benchmarks/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
VENV = HERE / ".sanafe-venv"
RESULTS = HERE / "results" / "sanafe_validation.json"
ROOT = HERE.parent
CNN = ROOT / "tests" / "data" / "nir_paper" / "02_cnn" / "cnn_sinabs.nir"  # vendored, BSD-3

# The driver SANA-FE's interpreter runs: argv = spec.json arrays.npz result.json
DRIVER = r"""
import json, os, sys
import numpy as np
import sanafe
import yaml

spec = json.load(open(sys.argv[1]))
arrays = np.load(sys.argv[2])
shipped = os.path.join(os.path.dirname(sanafe.__file__), "examples", "loihi.yaml")
width, height = spec["mesh"]
arch_path = shipped
if (width, height) != (8, 4):  # the same chip description on a wider mesh
    desc = yaml.safe_load(open(shipped))
    desc["architecture"]["attributes"].update(width=width, height=height)
    desc["architecture"]["tile"][0]["name"] = f"loihi_tile[0..{width * height - 1}]"
    arch_path = os.path.join(os.path.dirname(sys.argv[3]), "arch.yaml")
    yaml.safe_dump(desc, open(arch_path, "w"))
arch = sanafe.load_arch(arch_path)
cores = arch.cores()
net = sanafe.Network()
groups = {}
for g in spec["groups"]:
    core_of = arrays[g["name"] + ".cores"]
    if g["kind"] == "input":
        grp = net.create_neuron_group(g["name"], g["size"])
        spikes = arrays[g["name"] + ".spikes"]
        used = {}
        for i, neuron in enumerate(grp):
            c = int(core_of[i])
            k = used[c] = used.get(c, -1) + 1
            neuron.set_attributes(soma_hw_name=f"loihi_inputs[{k}]",
                                  default_synapse_hw_name="loihi_dense_synapse",
                                  dendrite_hw_name="loihi_dendrites",
                                  model_attributes={"spikes": spikes[:, i].tolist()})
            neuron.map_to_core(cores[c])
    else:
        attrs = {"threshold": g["threshold"], "reset": 0.0, "leak_decay": 1.0,
                 "input_decay": 0.0}
        if g.get("force_update"):
            attrs["force_update"] = True
        grp = net.create_neuron_group(g["name"], g["size"], model_attributes=attrs,
                                      soma_hw_name="loihi_lif",
                                      default_synapse_hw_name="loihi_dense_synapse",
                                      default_dendrite_hw_name="loihi_dendrites")
        bias = arrays[g["name"] + ".bias"] if g["name"] + ".bias" in arrays.files else None
        for i, neuron in enumerate(grp):
            if bias is not None and bias[i]:
                neuron.set_attributes(model_attributes={"bias": float(bias[i])})
            neuron.map_to_core(cores[int(core_of[i])])
    groups[g["name"]] = grp
for e in spec["edges"]:
    pairs = [tuple(p) for p in arrays[e["key"] + ".pairs"].tolist()]
    groups[e["src"]].connect_neurons_sparse(
        groups[e["dst"]], {"weight": arrays[e["key"] + ".weights"].tolist()}, pairs)
chip = sanafe.SpikingChip(arch)
chip.load(net)
r = chip.sim(spec["steps"], timing_model=spec["timing_model"], perf_trace=True)
perf = r["perf_trace"]
json.dump({"energy": r["energy"], "sim_time": r["sim_time"], "synops": r["spikes"],
           "messages": r["packets_sent"], "neurons_updated": r["neurons_updated"],
           "fired": r["neurons_fired"], "hops": float(sum(perf["hops"])),
           "tiles": len({int(c) // 4 for g in spec["groups"]
                         for c in arrays[g["name"] + ".cores"]})},
          open(sys.argv[3], "w"))
"""


def sanafe_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["bash", str(HERE / "setup_sanafe.sh"), str(VENV)], check=True)
    return python


def run_sanafe(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run SANA-FE, as a separate program, on one network description."""
    with tempfile.TemporaryDirectory(prefix="stac-sanafe-") as tmp:
        t = Path(tmp)
        (t / "driver.py").write_text(DRIVER)
        (t / "spec.json").write_text(json.dumps(spec))
        np.savez(t / "arrays.npz", **arrays)
        proc = subprocess.run(
            [
                str(sanafe_python()),
                str(t / "driver.py"),
                str(t / "spec.json"),
                str(t / "arrays.npz"),
                str(t / "result.json"),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f"SANA-FE failed on {spec.get('name')}:\n{proc.stderr[-3000:]}")
        return json.loads((t / "result.json").read_text())


def _price(graph: nir.NIRGraph, stats: dict, case: nets.Case, cores: int) -> dict[str, Any]:
    chip = load_profile("loihi1")
    steps = len(case.x)
    rows = node_costs(graph, stats, chip, load_profile(chip.host), steps, tokens=1)
    t = summarise(rows, chip, chips=1, cores=cores)["total"]
    keep = (
        "spikes",
        "synops",
        "messages",
        "messages_in",
        "hops",
        "synop_energy_j",
        "update_energy_j",
        "spike_energy_j",
        "message_energy_j",
        "mesh_energy_j",
    )
    # chip time only: SANA-FE models no host, so the chip-host link is left out
    chip_s = sum(r.latency_s - r.link_latency_s for r in rows if r.unit == "chip")
    return {
        **{k: float(t[k]) for k in keep},
        "energy_j": float(t["chip_dynamic_energy_j"]),
        "latency_s": chip_s * steps / (steps + case.depth),
    }


def _cores(graph: nir.NIRGraph) -> int:
    part = partition_of(graph)
    assert part is not None, "run the partition pass first"
    return part.cores


def stac_feedforward(case: nets.Case) -> tuple[dict[str, Any], nir.NIRGraph]:
    """stac's passes (weights are already integers: quantise is skipped), stepper, cost."""
    chip = load_profile("loihi1")
    graph = case.graph
    for name, fn in PIPELINE:
        if name != "quantise":
            graph = fn(graph, chip)
    stats = Stepper(graph).run(case.x).stats
    stats[nets.RELAY].neuron_updates = 0  # SANA-FE's input neurons do no soma work
    return _price(graph, stats, case, _cores(graph)), graph


def stac_random(case: nets.Case) -> dict[str, Any]:
    """The random network placed by hand as SANA-FE maps it: neuron i on core i // n; each
    neuron's messages and hops from its own destination cores, weighted by its spikes."""
    sp = case.sparse
    cores, n = sp["cores"], sp["n"]
    res = Stepper(case.graph).run(case.x, record=["pop"])
    fired = res.traces["pop"][:, 0].sum(0).numpy()
    src, dst = sp["src"], sp["dst"]
    pairs = np.unique(np.stack([src, dst // n], 1), axis=0)  # (neuron, destination core)
    xy = np.array([nets.tile_of(c, 4, 4) for c in range(cores)])
    hops = np.abs(xy[pairs[:, 0] // n] - xy[pairs[:, 1]]).sum(1)
    spikes = fired.sum()
    route = {
        "dest_cores_per_spike": float(fired[pairs[:, 0]].sum() / spikes),
        "hops_per_spike": float((fired[pairs[:, 0]] * hops).sum() / spikes),
        "chip_crossings_per_spike": 0.0,
    }
    place = {"unit": "chip", "cores": cores, "neurons": cores * n, "synapse_bytes": 0}
    g = case.graph
    nodes = dict(g.nodes)
    nodes["pop"] = nir.IF(
        r=g.nodes["pop"].r,
        v_threshold=g.nodes["pop"].v_threshold,
        v_reset=g.nodes["pop"].v_reset,
        metadata={"placement": NodePlacement(**place, **route)},
    )
    nodes["syn"] = nir.Linear(
        weight=g.nodes["syn"].weight,
        metadata={
            "placement": NodePlacement(
                **{**place, "neurons": 0}, col_blocks=1, dest_cores_per_spike=0.0
            )
        },
    )
    graph = make_graph(nodes, g.edges, g.metadata)
    stats = res.stats
    stats["syn"].synops = int(np.bincount(src, minlength=len(fired)) @ fired)  # sparse
    return _price(graph, stats, case, cores)


def compare(case: nets.Case, stac: dict[str, Any], sf: dict[str, Any]) -> dict[str, Any]:
    steps = len(case.x)
    e_s, e_f = stac["energy_j"] / steps, sf["energy"]["total"] / steps
    l_s, l_f = stac["latency_s"] / steps, sf["sim_time"] / steps
    return {
        "network": case.name,
        "note": case.note,
        "steps": steps,
        "stac": stac,
        "sanafe": sf,
        "energy_per_step_j": {"stac": e_s, "sanafe": e_f, "error": e_s / e_f - 1},
        "latency_per_step_s": {"stac": l_s, "sanafe": l_f, "error": l_s / l_f - 1},
        "messages_per_step": {"stac": stac["messages"] / steps, "sanafe": sf["messages"] / steps},
    }


def cases(quick: bool) -> list[tuple[nets.Case, str]]:
    steps = 30 if quick else 100
    out = [(nets.dense_chain([200, 300, 200, 10], r, steps), "ff") for r in (0.05, 0.25)]
    out.append((nets.paper_cnn(CNN, 0.1, 20 if quick else 40), "ff"))
    configs = [
        (1, 1024, 1, 16, 10),
        (4, 256, 4, 8, 50),
        (8, 512, 8, 1, 100),
        (16, 256, 16, 4, 25),
        (32, 128, 4, 16, 50),
    ]
    out += [(nets.random_network(*c, steps=steps), "random") for c in configs[: 2 if quick else 5]]
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'network':<42} {'fired st/sf':>15} {'synops st/sf':>17} {'msgs/step st/sf':>17}"
        f" {'nJ/step st':>10} {'sf':>8} {'err':>6} {'us/step st':>10} {'sf':>7} {'err':>6}"
    )
    lines = [head]
    for r in rows:
        s, f = r["stac"], r["sanafe"]
        e, lat, m = r["energy_per_step_j"], r["latency_per_step_s"], r["messages_per_step"]
        lines.append(
            f"{r['network']:<42} {s['spikes']:>7.0f}/{f['fired']:<7.0f} "
            f"{s['synops']:>8.0f}/{f['synops']:<8.0f} {m['stac']:>8.1f}/{m['sanafe']:<8.1f} "
            f"{e['stac'] * 1e9:>10.2f} {e['sanafe'] * 1e9:>8.2f} {e['error']:>+6.0%} "
            f"{lat['stac'] * 1e6:>10.3f} {lat['sanafe'] * 1e6:>7.3f} {lat['error']:>+6.0%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps and networks")
    parser.add_argument(
        "--timing-model",
        default="detailed",
        choices=("simple", "detailed"),
        help="SANA-FE's timing model (default: its own default, detailed)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--only", default="", help="run only networks whose name contains this")
    args = parser.parse_args()
    rows = []
    for case, kind in cases(args.quick):
        if args.only not in case.name:
            continue
        if kind == "ff":
            stac, graph = stac_feedforward(case)
            spec, arrays = nets.feedforward_spec(graph, load_profile("loihi1"), case)
        else:
            stac = stac_random(case)
            spec, arrays = nets.random_spec(case)
        sf = run_sanafe({**spec, "name": case.name, "timing_model": args.timing_model}, arrays)
        rows.append(compare(case, stac, sf))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rows))
    errors = np.array(
        [[r["energy_per_step_j"]["error"], r["latency_per_step_s"]["error"]] for r in rows]
    )
    print(
        f"\nenergy error {errors[:, 0].min():+.0%} to {errors[:, 0].max():+.0%}, latency "
        f"error {errors[:, 1].min():+.0%} to {errors[:, 1].max():+.0%} (stac / SANA-FE - 1, "
        f"SANA-FE 2.2.9 timing model '{args.timing_model}', loihi1 profile)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "sanafe": "2.2.9",
                "profile": "loihi1",
                "timing_model": args.timing_model,
                "rows": rows,
            },
            indent=1,
            default=float,
        )
    )
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
