"""Convert the bundled SmolLM2, run a sentence through the SNN, compare with the float model,
then fit it to Loihi 2 and price it there (the pipeline every stac command runs).

    .venv/bin/python examples/compile_and_run.py
"""

import torch

from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.text import with_bos
from stac.pipeline import REFERENCE, fit_run_price
from stac.profiles import load_profile
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator

loaded = load_model("smollm2-135m")
graph = convert(loaded, ConversionConfig(timesteps=16))
ids = with_bos(
    loaded.tokenizer, loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids[0]
)
sim = Simulator(graph)
snn_logits, stats = sim.run(RunContext(ids[None], steps=16))
float_logits, _ = sim.run(RunContext(ids[None], steps=16, spiking=False))
spikes = sum(s.spikes for s in stats.values())
print(f"spikes for {ids.numel()} tokens: {spikes:,}")
print("float next token:", loaded.tokenizer.decode(float_logits["output"][0, -1].argmax()))
print("SNN next token:  ", loaded.tokenizer.decode(snn_logits["output"][0, -1].argmax()))
print(
    "logit correlation:",
    float(
        torch.corrcoef(torch.stack([snn_logits["output"][0, -1], float_logits["output"][0, -1]]))[
            0, 1
        ]
    ),
)

# fit (quantise, partition, place, legality) -> lower -> run -> price, on the simulator
with torch.no_grad():
    done = fit_run_price(graph, load_profile("loihi2"), REFERENCE, RunContext(ids[None], steps=16))
t = done.summary["total"]
print(
    f"on loihi2 (an estimate from operation counts): {t['energy_j']:.3g} J per token, "
    f"{t['latency_s'] * 1e3:.3g} ms per token, {t['cores']} cores on {t['chips']} chip(s)"
)
