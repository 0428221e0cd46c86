"""Training spiking networks: surrogate gradients, trainable AdEx neurons, causal memory.

The step functions (the semantics) stay in :mod:`stac.sim`; this package wraps them in torch
modules whose parameters learn, and exports what was learnt as stac IR nodes.
"""
