"""Where the tests' reference data lives: defined once, read by tests and benchmarks.

Tests import it as ``from paths import NIR_PAPER`` (pytest puts ``tests/`` on ``sys.path``);
benchmarks put ``tests/`` on ``sys.path`` first.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
NIR_PAPER = DATA / "nir_paper"  # the NIR paper's files (BSD-3), see its README.md
