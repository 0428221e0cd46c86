"""Rendering only: every report stac writes, as terminal text, Markdown and plots.

- ``compile``: ``stac compile``'s conversion log, per-layer table and report.md
- ``targets``, ``plots``: ``stac report``'s tables, report.md and PNG plots
- ``nir``: ``stac import-nir``'s line and report.md
- ``fidelity``: ``stac eval``'s table and plot
- ``checks``: ``stac verify``'s table; ``profiles``: ``stac profiles``' list
- ``fit``, ``lava``: sections shared by these (the passes' fit and legality; a Lava run)
- ``tables``: number formatting and tables; ``schema``: every JSON document's version
- ``dense``: the float model's roofline estimate on a dense processor (the comparison row)
"""
