"""A dense, per-4K reference model of x86-64 CPA on one stretch of the direct map.

Kept in the tests only (docs/architecture.md, "runs, not pages"): it holds one level and one flags value per
4K page in numpy arrays and applies set_memory.c's rules page by page, the way
``__change_page_attr_set_clr()`` loops, with none of the sparse model's runs,
batching or merging.  It covers direct-map primary requests outside the kernel
image (no aliases, no static protections), which is what the stateful test
drives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from rofolio.prot import X86
from rofolio.prot import x86_4k_2_large as _4k_2_large
from rofolio.prot import x86_large_2_4k as _large_2_4k

PAGES = {1: 1, 2: 512, 3: 512 * 512}
CEILING = 33
MASK64 = (1 << 64) - 1


def _protnone(f: int) -> int:
    return f & ~X86.GLOBAL if not f & X86.PRESENT else f


@dataclass
class DenseCounters:
    direct_pages: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 3: 0})
    splits: dict[int, int] = field(default_factory=lambda: {2: 0, 3: 0})
    collapses: dict[int, int] = field(default_factory=lambda: {2: 0, 3: 0})
    pgtables_allocated: int = 0
    pgtables_freed: int = 0
    entries_written: int = 0
    flushes_all: int = 0
    flushes_pages: int = 0


class DenseX86:
    """Per-page state of ``npages`` direct-map pages starting at page ``base`` (a 1G boundary)."""

    def __init__(self, base: int, levels: np.ndarray, flags: np.ndarray, *, gbpages: bool, collapse: bool,
                 ro_clears_dirty: bool, kernel_4k_bit: bool, np_clears_dirty: bool = False) -> None:
        self.base = base
        self.level = levels.astype(np.int8)
        self.flags = flags.astype(np.uint64)
        self.gbpages = gbpages
        self.collapse_enabled = collapse
        self.ro_clears_dirty = ro_clears_dirty
        self.kernel_4k_bit = kernel_4k_bit
        self.np_clears_dirty = np_clears_dirty  # __set_pages_np() clears DIRTY too: c1fcf41cf37f
        self.c = DenseCounters()

    # -------------------------------------------------------------- requests
    def request(self, op: str, page: int, n: int) -> None:
        dirty = X86.DIRTY if self.ro_clears_dirty else 0
        table = {
            "ro": (0, X86.RW | dirty, False, False),
            "rw": (X86.RW, 0, False, False),
            "np": (0, X86.PRESENT, False, False),
            "p": (X86.PRESENT, 0, False, False),
            "nx": (X86.NX, 0, False, False),
            "x": (0, X86.NX, False, False),
            "4k": (X86.KERNEL_4K if self.kernel_4k_bit else 0, 0, True, False),
            "rox": (0, X86.RW | X86.NX | dirty, False, self.collapse_enabled),
            "dm_invalid": (0, X86.PRESENT | X86.RW | (X86.DIRTY if self.np_clears_dirty else 0), False, False),
            "dm_default": (X86.PRESENT | X86.RW, 0, False, False),
        }
        set_, clr, force, collapse = table[op]
        changed = self._cpa(page - self.base, n, set_, clr, force)
        if op.startswith("dm_") or not changed:
            return  # __set_pages_*() never flush; change_page_attr_set_clr() skips unchanged requests
        if n > CEILING:
            self.c.flushes_all += 1
        else:
            self.c.flushes_pages += 1
        if collapse:
            self._collapse_range(page - self.base, n)

    def _cpa(self, i: int, n: int, set_: int, clr: int, force: bool) -> bool:
        changed = False
        rem = n
        while rem:
            lv = int(self.level[i])
            if lv == 1 and rem == 1:  # one 4K PTE: the per-page step (benchmarks/cpa_scaling.py's single pages)
                old1 = int(self.flags[i])
                new1 = _protnone((old1 & ~clr) | set_)
                if new1 != old1:
                    self.flags[i] = np.uint64(new1)
                    self.c.entries_written += 1
                    changed = True
                i += 1
                rem -= 1
                continue
            if lv == 1:
                # the 4K PTEs from i up to the next large leaf, each on its own as __change_page_attr() takes them
                # (numpy does the per-page loop: one pte per page, one write per changed pte)
                span = self.level[i:i + rem] != 1
                j = i + (int(span.argmax()) if span.any() else rem)
                old = self.flags[i:j]
                new = (old & np.uint64(~clr & MASK64)) | np.uint64(set_)
                absent = (new & np.uint64(X86.PRESENT)) == 0
                new[absent] &= np.uint64(~X86.GLOBAL & MASK64)  # _protnone()
                written = int(np.count_nonzero(new != old))
                if written:
                    self.flags[i:j] = new
                    self.c.entries_written += written
                    changed = True
                rem -= j - i
                i = j
                continue
            size = PAGES[lv]
            lp = i - (i % size)
            num = min(rem, lp + size - i)
            if force:
                self._split(lp, lv)
                continue
            old = int(self.flags[lp])
            req = _protnone(_4k_2_large((_large_2_4k(old) & ~clr) | set_))
            if req & X86.PRESENT:
                req |= X86.PSE
            if req == old:
                i += num
                rem -= num
                continue
            if i != lp or num != size:
                self._split(lp, lv)
                continue
            self.flags[lp:lp + size] = np.uint64(req)
            self.c.entries_written += 1
            changed = True
            i += num
            rem -= num
        return changed

    def _split(self, lp: int, lv: int) -> None:
        size = PAGES[lv]
        old = int(self.flags[lp])
        child = _large_2_4k(old) if lv == 2 else (old if old & X86.PRESENT else old & ~X86.PSE)
        self.level[lp:lp + size] = lv - 1
        self.flags[lp:lp + size] = np.uint64(_protnone(child))
        self.c.pgtables_allocated += 1
        self.c.flushes_all += 1
        self.c.splits[lv] += 1
        self.c.direct_pages[lv] -= 1
        self.c.direct_pages[lv - 1] += 512

    def _collapse_range(self, i: int, n: int) -> None:
        start = i - (i % 512)
        collapsed = 0
        a = start
        while a < i + n:
            collapsed += self._collapse_at(a)
            a += 512
        if collapsed:
            self.c.flushes_all += 1

    def _collapse_at(self, a: int) -> int:
        gb = a - (a % PAGES[3])
        if (self.level[gb:gb + PAGES[3]] == 3).all():
            return 0  # PUD leaf
        if int(self.level[a]) != 1:
            return 0  # PMD leaf
        ptes = self.flags[a:a + 512]
        first = int(ptes[0])
        if first & X86.KERNEL_4K or not first & X86.PRESENT or not (ptes == ptes[0]).all():
            return 0
        self.level[a:a + 512] = 2
        self.flags[a:a + 512] = np.uint64(_4k_2_large(first) | X86.PSE)
        self.c.pgtables_freed += 1
        self.c.collapses[2] += 1
        self.c.direct_pages[2] += 1
        self.c.direct_pages[1] -= 512
        if not self.gbpages:
            return 1
        pmds_level = self.level[gb:gb + PAGES[3]]
        pmds = self.flags[gb:gb + PAGES[3]]
        if (pmds_level != 2).any() or not (pmds == pmds[0]).all() or not int(pmds[0]) & X86.PRESENT:
            return 1
        self.level[gb:gb + PAGES[3]] = 3
        self.c.pgtables_freed += 1
        self.c.collapses[3] += 1
        self.c.direct_pages[3] += 1
        self.c.direct_pages[2] -= 512
        return 2

    # --------------------------------------------------------------- queries
    def runs(self) -> list[tuple[int, int, int, int]]:
        """Maximal (start_page, end_page, level, flags) stretches, in absolute pages."""
        change = np.flatnonzero((np.diff(self.level) != 0) | (np.diff(self.flags) != 0)) + 1
        bounds = [0, *change.tolist(), len(self.level)]
        return [(self.base + s, self.base + e, int(self.level[s]), int(self.flags[s]))
                for s, e in pairwise(bounds)]
