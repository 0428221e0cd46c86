"""Every benchmark leaves its results as JSON in ``benchmarks/results/<name>.json``.

``recording(name)`` wraps a benchmark's ``main()``: it copies what the benchmark prints (its
tables) into the JSON beside the run's conditions (command line, stac version, date, cores,
load), and a benchmark with structured rows adds them with ``record.data[...] = ...``. The file
is written only when the benchmark finishes, so a failed run leaves the last good one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Record:
    name: str
    data: dict[str, Any] = field(default_factory=dict)  # structured results, if any


class _Tee(io.TextIOBase):
    def __init__(self, out: Any) -> None:
        self.out, self.buffer = out, io.StringIO()

    def write(self, text: str) -> int:
        self.buffer.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def recording(name: str, output: Path | None = None) -> Iterator[Record]:
    """Run the block with stdout copied; then write ``results/<name>.json`` (or ``output``)."""
    from stac import __version__

    record = Record(name)
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        yield record
    path = output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": f"benchmarks/{name}.py",
        "command": " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]]),
        "stac_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "printed": tee.buffer.getvalue().splitlines(),
        **record.data,
    }
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    print(f"results: {path}")


__all__ = ["RESULTS", "Record", "recording"]
