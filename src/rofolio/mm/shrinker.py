"""Shrinkers: objects the kernel frees under memory pressure (mm/shrinker.c).

A shrinker has ``count_objects`` (how much could be freed) and
``scan_objects`` (free it, return what was freed).  ``shrink_slab()`` asks
each registered shrinker to count and, if the count is non-zero, to scan;
``drop_caches``/memory pressure reach the huge zero folio's "thp-zero"
shrinker this way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rofolio.mm.events import ShrinkerRun

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = ["Shrinker", "shrink_slab", "shrinker_register"]


@dataclass(frozen=True, slots=True)
class Shrinker:
    name: str
    count_objects: Callable[[MMState], int]
    scan_objects: Callable[[MMState], int]


def shrinker_register(mm: MMState, shrinker: Shrinker) -> None:
    """shrinker_alloc() + shrinker_register()."""
    mm.shrinkers.append(shrinker)


def shrink_slab(mm: MMState) -> int:
    """Run every shrinker once; the number of objects freed."""
    freed = 0
    for shrinker in mm.shrinkers:
        counted = shrinker.count_objects(mm)
        got = shrinker.scan_objects(mm) if counted else 0
        mm.kernel.log.append(ShrinkerRun(shrinker.name, counted, got))
        freed += got
    return freed
