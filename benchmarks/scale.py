"""Scale: compile a SmolLM2-1.7B-shaped model (random weights, no download) for Loihi 2.

Builds the model from a ``LlamaConfig`` with SmolLM2-1.7B's shape (hidden 2048, 24 layers,
32 heads, 32 KV heads, intermediate 8192, vocab 49152, tied embeddings) on the meta device,
then allocates it uninitialised and fills it with a small random init in place (no second
copy, no download). The torch model is dropped once lowered. Then the stac compile pipeline up
to the fit: calibration on one short window of
real text, lowering to the IR (float32 arrays), and the passes quantise -> partition -> place
-> legality for ``--profile``. It prints one table of time and peak memory (RSS) per stage,
the fit (chips, cores, utilisation), the same partition on the other neuromorphic profiles,
and the published packing beside it: a 370M-parameter MatMul-free LM on 24 Loihi 2 chips
(Abreu et al. 2025, embedding and LM head off chip; FACTS.md, 2nd-hand).

Goal (issue 5): under 5 minutes and under 16 GB on the 2-core CPU machine.

    .venv/bin/python benchmarks/scale.py [--layers 24] [--profile loihi2]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stac.frontend import ConversionConfig, convert  # noqa: E402
from stac.frontend.models import LoadedModel, materialise_bundled  # noqa: E402
from stac.ir.passes import legality_report, partition, place, quantise  # noqa: E402
from stac.reporting.fit import format_legality  # noqa: E402
from stac.ir.results import node_placement, partition_of, placement_of  # noqa: E402
from stac.profiles import load_profile, profile_names  # noqa: E402

from record import Record, recording  # noqa: E402

PUBLISHED = {
    "params": 370e6,
    "chips": 24,
    "source": "Abreu et al. 2025, MatMul-free LM on Loihi 2 (FACTS.md, 2nd-hand); "
    "embedding and LM head off chip",
}


def peak_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build(layers: int) -> LoadedModel:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(
        hidden_size=2048,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=8192,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=130000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        hidden_act="silu",
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu")  # float32: stac's calibration reads float32 tensors
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)  # its buffers were on meta
    model.tie_weights()
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(materialise_bundled())  # SmolLM2's tokenizer
    return LoadedModel(model, tokenizer, f"smollm2-1.7b-shape-{layers}l", "llama")


def main(record: Record, argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--profile", default="loihi2")
    ap.add_argument("-T", "--timesteps", type=int, default=16)
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)
    rows: list[tuple[str, float, float]] = []
    started = time.perf_counter()

    def stage(label: str, t0: float) -> None:
        rows.append((label, time.perf_counter() - t0, peak_gb()))

    t0 = time.perf_counter()
    loaded = build(args.layers)
    params = sum(p.numel() for p in loaded.model.parameters())
    stage("build model (meta -> empty, random init)", t0)
    t0 = time.perf_counter()
    graph = convert(
        loaded,
        ConversionConfig(
            timesteps=args.timesteps, calibration_passages=1, calibration_max_tokens=32
        ),
    )
    del loaded
    gc.collect()
    stage("calibrate (1 x 32 tokens) + lower", t0)
    t0 = time.perf_counter()
    graph = quantise(graph, profile)
    stage(f"quantise ({profile.name})", t0)
    t0 = time.perf_counter()
    graph = partition(graph, profile)
    stage("partition", t0)
    t0 = time.perf_counter()
    graph = place(graph, profile)
    stage("place", t0)
    t0 = time.perf_counter()
    report = legality_report(graph, profile).to_dict()
    stage("legality", t0)
    total = time.perf_counter() - started

    print(
        f"\nSmolLM2-1.7B shape, {args.layers} layers, {params / 1e9:.3f}B parameters "
        f"(random weights), T = {args.timesteps}, profile {profile.name}\n"
    )
    print(f"{'stage':<40} {'seconds':>9} {'peak RSS GiB':>13}")
    for label, sec, gb in rows:
        print(f"{label:<40} {sec:>9.1f} {gb:>13.2f}")
    print(f"{'total':<40} {total:>9.1f} {peak_gb():>13.2f}")
    print(
        f"goal: under 300 s and under 16 GB (14.9 GiB) -> "
        f"{'met' if total < 300 and peak_gb() < 16e9 / 2**30 else 'NOT met'}\n"
    )

    part, traffic = partition_of(graph).to_dict(), placement_of(graph).to_dict()["traffic"]
    u = part["utilisation"]
    chip_params = part["synapses"]
    head = node_placement(graph.nodes["lm_head"]).to_dict()
    head_in = node_placement(graph.nodes["lm_head_in"]).to_dict()
    head_cores = head.get("cores", 0) + head_in.get("cores", 0)
    cpc = profile.get("chip", "cores_per_chip")
    chips_wo_head = -(-(part["cores"] - head_cores) // cpc)
    print(
        f"fit on {profile.name}: {part['chips']} chips, {part['cores']} cores "
        f"({part['cores'] - head_cores} without the LM head and its encoder: "
        f"{chips_wo_head} chips)"
    )
    print(
        f"utilisation: synaptic memory {u['synaptic_memory']:.1%}, neuron slots "
        f"{u['neurons']:.1%}, cores of the chips {u['cores']:.1%}"
    )
    print(
        f"placement: {traffic['placed']['hops']:.4g} hop-messages and "
        f"{traffic['placed']['chip_crossings']:.4g} chip crossings per timestep at 1 spike per "
        f"channel per step (sequential: {traffic['sequential']['hops']:.4g} / "
        f"{traffic['sequential']['chip_crossings']:.4g}) over {traffic['routes']} routes"
    )
    print("\n".join(format_legality(report, limit=6)))

    print(f"\n{'packing':<44} {'params on chip':>15} {'chips':>6} {'params/chip':>12}")
    print(
        f"{'published (Abreu et al. 2025, 370M LM)':<44} {PUBLISHED['params'] / 1e6:>14.0f}M "
        f"{PUBLISHED['chips']:>6} {PUBLISHED['params'] / PUBLISHED['chips'] / 1e6:>11.1f}M"
    )
    wo_head = chip_params - head["synapses"]
    print(
        f"{'stac, all chip synapses':<44} {chip_params / 1e6:>14.0f}M {part['chips']:>6} "
        f"{chip_params / part['chips'] / 1e6:>11.1f}M"
    )
    print(
        f"{'stac, LM head off chip (as published)':<44} {wo_head / 1e6:>14.0f}M "
        f"{chips_wo_head:>6} {wo_head / chips_wo_head / 1e6:>11.1f}M"
    )
    print(f"published: {PUBLISHED['source']}")
    record.data["model"] = {"layers": args.layers, "params": params, "timesteps": args.timesteps}
    record.data["stages"] = [
        {"stage": label, "seconds": sec, "peak_rss_gib": gb} for label, sec, gb in rows
    ]
    record.data["total"] = {"seconds": total, "peak_rss_gib": peak_gb()}
    record.data["fit"] = {
        "profile": profile.name,
        "chips": part["chips"],
        "cores": part["cores"],
        "cores_without_head": part["cores"] - head_cores,
        "chips_without_head": chips_wo_head,
        "utilisation": u,
        "traffic": traffic,
    }
    record.data["packing"] = [
        {
            "packing": "published",
            "params_on_chip": PUBLISHED["params"],
            "chips": PUBLISHED["chips"],
        },
        {
            "packing": "stac, all chip synapses",
            "params_on_chip": chip_params,
            "chips": part["chips"],
        },
        {"packing": "stac, LM head off chip", "params_on_chip": wo_head, "chips": chips_wo_head},
    ]
    record.data["profiles"] = []

    others = [
        n for n in profile_names() if n != profile.name and load_profile(n).kind == "neuromorphic"
    ]
    print(
        f"\n{'profile':<12} {'chips':>7} {'cores':>8} {'max chips':>10} {'errors':>7}  first error"
    )
    for name in [profile.name] + others:
        p = load_profile(name)
        g = partition(graph, p) if name != profile.name else graph
        r = legality_report(g, p).to_dict() if name != profile.name else report
        first = next((i for i in r["issues"] if i["level"] == "error"), None)
        record.data["profiles"].append(
            {
                "profile": name,
                "chips": partition_of(g).chips,
                "cores": partition_of(g).cores,
                "max_chips": p.get("chip", "max_chips"),
                "errors": r["errors"],
                "first_error": first["message"] if first else None,
            }
        )
        print(
            f"{name:<12} {partition_of(g).chips:>7} "
            f"{partition_of(g).cores:>8} {p.get('chip', 'max_chips'):>10} "
            f"{r['errors']:>7}  "
            f"{(first['message'][:70] + ' [' + first['limit'] + ']') if first else '-'}"
        )
    print(
        "(other profiles: partition of the same quantised graph; their own quantise and place "
        "passes not run)"
    )
    return 0


if __name__ == "__main__":
    with recording("scale") as rec:
        code = main(rec)
    sys.exit(code)
