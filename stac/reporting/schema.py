"""Every JSON document stac writes, with its schema version, in one place.

A reader refuses a document whose version it does not know (``stac report`` reads the
artifact's ``report.json``); bump the version here when a document's layout changes.
"""

from __future__ import annotations

#: ``report.json`` of ``stac compile`` (per token, per layer, per node; the fit).
COMPILE_REPORT_VERSION = 1
#: ``report.json`` of ``stac import-nir`` (per sample).
IMPORT_REPORT_VERSION = 1
#: ``report.json`` of ``stac report`` (several profiles side by side), and its ``schema`` name.
TARGETS_REPORT = "stac-report-targets"
TARGETS_REPORT_VERSION = 1
#: The JSON file ``stac eval --json`` writes.
EVAL_VERSION = 1

__all__ = [
    "COMPILE_REPORT_VERSION",
    "EVAL_VERSION",
    "IMPORT_REPORT_VERSION",
    "TARGETS_REPORT",
    "TARGETS_REPORT_VERSION",
]
