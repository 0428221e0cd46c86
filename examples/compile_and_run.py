"""Convert the bundled SmolLM2, run a sentence through the SNN, and compare with the float model.

    .venv/bin/python examples/compile_and_run.py
"""

import torch

from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.text import with_bos
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator

loaded = load_model("smollm2-135m")
graph = convert(loaded, ConversionConfig(timesteps=16))
ids = with_bos(loaded.tokenizer, loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids[0])
sim = Simulator(graph)
snn_logits, stats = sim.run(RunContext(ids[None], steps=16))
float_logits, _ = sim.run(RunContext(ids[None], steps=16, spiking=False))
spikes = sum(s.spikes for s in stats.values())
print(f"spikes for {ids.numel()} tokens: {spikes:,}")
print("float next token:", loaded.tokenizer.decode(float_logits["output"][0, -1].argmax()))
print("SNN next token:  ", loaded.tokenizer.decode(snn_logits["output"][0, -1].argmax()))
print("logit correlation:", float(torch.corrcoef(torch.stack(
    [snn_logits["output"][0, -1], float_logits["output"][0, -1]]))[0, 1]))
