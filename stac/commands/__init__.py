"""The body of each ``stac`` command, one module per command, each calling the library.

``stac.cli`` parses the arguments and calls ``run(args)`` of the command's module here;
rendering (tables, Markdown, plots) is :mod:`stac.reporting`'s; the passes, the run and the
pricing are :mod:`stac.pipeline`'s.

- ``compile``: convert a model, fit, run and price it on a prompt, write the artifact
- ``eval``: fidelity of an artifact against its float model over T
- ``export_nir`` / ``import_nir``: NIR out; any NIR graph in, fitted, run and priced
- ``report``: one artifact priced on several profiles side by side
- ``chat``, ``verify``: the conversation runtime, interactively and checked
- ``targets``, ``profiles``: what ``--target`` accepts, and the profiles' key figures
"""
