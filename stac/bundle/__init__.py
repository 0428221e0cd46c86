"""Deployable bundles: a compiled artifact's chip parts as NIR, its host parts as ONNX, and a
manifest with the per-token schedule (:mod:`stac.bundle.export`), run by
:mod:`stac.bundle.runner` on onnxruntime and stac's step functions. See docs/bundle.md.

Import the submodules directly: the exporter needs ``onnx``, the runner ``onnxruntime``
(both in the ``bundle`` extra).
"""
