"""What the dense per-page references of the linear-map architectures (arm64, riscv64) share: the counters
they keep, and the per-page picture of a sparse model they start from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rofolio.units import PAGE_SHIFT

PTE, PMD, PUD = 1, 2, 3


@dataclass
class DenseCounters:
    entries_written: int = 0
    pgtables_allocated: int = 0
    splits: dict[int, int] = field(default_factory=lambda: {PMD: 0, PUD: 0})
    flushes_all: int = 0
    flushes_range: int = 0
    flushed_pages: int = 0


def pages_of(k: Any, ram: int, size: int, mask: int = (1 << 64) - 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-page leaf level and entry bits (``& mask``) of [ram, ram + size), read from the sparse model's runs."""
    level = np.zeros(size >> PAGE_SHIFT, dtype=np.int8)
    flags = np.zeros(size >> PAGE_SHIFT, dtype=np.uint64)
    lo = k.va(ram)
    for r in k.pt.runs(lo, lo + size):
        a, b = (max(r.start, lo) - lo) >> PAGE_SHIFT, (min(r.end, lo + size) - lo) >> PAGE_SHIFT
        level[a:b] = int(r.level)
        flags[a:b] = r.flags & mask
    return level, flags
