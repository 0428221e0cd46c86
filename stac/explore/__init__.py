"""``stac explore``: a design-space sweep over T, mode, payload and weight bits, batch and
targets; each point converted, scored on held-out text and priced (:mod:`.point`), run on Ray
or in-process and recorded resumably (:mod:`.runner`), summarised as Pareto fronts
(:mod:`.pareto`)."""

from stac.explore.grid import Point, expand
from stac.explore.pareto import choose, dominates, front
from stac.explore.point import Settings, run_point, run_point_safe
from stac.explore.runner import load_records, run_sweep

__all__ = [
    "Point",
    "Settings",
    "choose",
    "dominates",
    "expand",
    "front",
    "load_records",
    "run_point",
    "run_point_safe",
    "run_sweep",
]
