"""Running the points of a sweep: in-process or on Ray, resumable through a JSON-lines file.

Each finished point (a success or a recorded failure) is appended to the results file as one
JSON line as soon as it finishes; a later run with the same file skips every point whose key
(its parameters, :attr:`~stac.explore.grid.Point.key`) is already there (failures too, unless
``retry_failed``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stac.errors import StacError
from stac.explore.grid import Point
from stac.explore.point import Settings, run_point_safe

log = logging.getLogger(__name__)

PointFn = Callable[[Point, Settings], dict[str, Any]]


def load_records(path: Path) -> dict[str, dict[str, Any]]:
    """The records already in ``path`` by key (a missing file: none). A torn last line (a run
    killed while writing) is ignored; any other unreadable line is an error."""
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                log.warning("%s: ignoring a torn last line", path)
                continue
            raise StacError(
                f"{path} line {i} is not JSON; it is not a stac explore results file"
            ) from None
        if "key" not in rec:
            raise StacError(f"{path} line {i} has no 'key'; not a stac explore results file")
        out[rec["key"]] = rec
    return out


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pending(
    points: list[Point], done: dict[str, dict[str, Any]], retry_failed: bool
) -> list[Point]:
    return [
        p
        for p in points
        if p.key not in done or (retry_failed and done[p.key].get("status") == "error")
    ]


def run_sweep(
    points: list[Point],
    settings: Settings,
    results: Path,
    use_ray: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    memory_gb: float | None = None,
    retry_failed: bool = False,
    point_fn: PointFn = run_point_safe,
) -> list[dict[str, Any]]:
    """Run every point not yet in ``results``; return the records of all ``points`` in order.

    With ``use_ray`` each point is a Ray task needing ``settings.threads`` CPUs and, when
    ``memory_gb`` is given, that much of Ray's ``memory`` resource (so Ray never schedules more
    points on a node than its memory holds); ``address`` joins an existing cluster, otherwise a
    local Ray is started with ``num_cpus`` (default: all of this machine's).
    """
    results.parent.mkdir(parents=True, exist_ok=True)
    done = load_records(results)
    todo = pending(points, done, retry_failed)
    skipped = len(points) - len(todo)
    log.info("%d point(s), %d already done, %d to run", len(points), skipped, len(todo))
    bar = tqdm(total=len(points), initial=skipped, desc="points", unit="point")
    try:
        if todo and use_ray:
            _on_ray(todo, settings, address, num_cpus, memory_gb, point_fn, results, done, bar)
        else:
            for p in todo:
                rec = point_fn(p, settings)
                _append(results, rec)
                done[p.key] = rec
                bar.update()
    finally:
        bar.close()
    return [done[p.key] for p in points if p.key in done]


def _on_ray(
    todo: list[Point],
    settings: Settings,
    address: str | None,
    num_cpus: int | None,
    memory_gb: float | None,
    point_fn: PointFn,
    results: Path,
    done: dict[str, dict[str, Any]],
    bar: Any,
) -> None:
    try:
        import ray
    except ImportError:
        raise StacError(
            "stac explore runs points on Ray: pip install 'stac[explore]' (or pass --no-ray)"
        ) from None
    started = not ray.is_initialized()
    if started:
        # Workers import stac the way this process does.
        env = {"PYTHONPATH": os.pathsep.join(p for p in [os.environ.get("PYTHONPATH")] if p)}
        runtime_env = {"env_vars": env} if env["PYTHONPATH"] else None
        if address is not None:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
            )
    try:
        options: dict[str, Any] = {"num_cpus": settings.threads, "max_retries": 0}
        if memory_gb is not None:
            options["memory"] = int(memory_gb * 2**30)
        task = ray.remote(point_fn).options(**options)
        refs = {task.remote(p, settings): p for p in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                point = refs.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker killed (memory) or lost
                    rec = {
                        "key": point.key,
                        "point": point.as_dict(),
                        "label": point.label,
                        "status": "error",
                        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                    }
                _append(results, rec)
                done[point.key] = rec
                bar.update()
    finally:
        if started:
            ray.shutdown()


__all__ = ["load_records", "pending", "run_sweep"]
