"""A dense, per-4K reference model of arm64 linear-map permission changes (tests only).

It holds one leaf level and one descriptor value per 4K page of RAM in numpy
arrays (the value of the leaf that maps the page; PTE_CONT is a bit of it) and
applies the rules of arch/arm64/mm/pageattr.c and mmu.c (v6.18, with the v7.0
present-invalid delta as an option) page by page and leaf by leaf, as the
kernel's walkers do, with none of the sparse model's runs.  It knows nothing of
rofolio's code: bits are spelled out here from pgtable-hwdef.h/pgtable-prot.h.

Scope: runtime changes on RAM of a machine whose RAM starts on a 1G boundary
(so page index alignment is linear-map VA alignment); the initial state is
given (the boot layout has its own tests); no KFENCE pool, no holes, 4K granule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tests.reference.linear import DenseCounters as LinearCounters

VALID = 1 << 0
TYPE_MASK = 3
SECT = 1
PAGE = 3
RDONLY = 1 << 7
NG = 1 << 11
WRITE = 1 << 51
CONT = 1 << 52
PRESENT_INVALID = NG

PTE, PMD, PUD = 1, 2, 3
PAGES = {PTE: 1, PMD: 512, PUD: 512 * 512}
CONT_PTE_PAGES = 16
CONT_PMD_PAGES = 16 * 512
PGDIR_PAGES = 512 * 512 * 512
PAGE_OFFSET = 0xFFFF000000000000
EINVAL, ENOMEM, EOPNOTSUPP = 22, 12, 95
MAX_DVM_PAGES = 512
MAX_TLBI_RANGE_PAGES = 32 << 16


@dataclass
class DenseCounters(LinearCounters):
    warnings: int = 0
    cont_cleared: dict[int, int] = field(default_factory=lambda: {PTE: 0, PMD: 0})


def _present(v: int) -> bool:
    return bool(v & VALID) or (v & (VALID | PRESENT_INVALID)) == PRESENT_INVALID


def _ffs(x: int) -> int:
    return (x & -x).bit_length() - 1


class DenseArm64:
    """Per-page linear-map state of ``len(level)`` pages of RAM starting at a 1G boundary."""

    def __init__(self, level: np.ndarray, flags: np.ndarray, *, can_set_direct_map: bool,
                 split_possible: bool, present_invalid: bool, ng: bool, tlb_range: bool) -> None:
        self.level = level.astype(np.int8)
        self.flags = flags.astype(np.uint64)
        self.npages = len(level)
        self.can_set = can_set_direct_map
        self.split_possible = split_possible
        self.v7 = present_invalid
        self.maybe_ng = NG if ng else 0
        self.tlb_range = tlb_range
        self.alloc_fails = False
        self.c = DenseCounters()
        self._warned: set[str] = set()

    # ------------------------------------------------------------- helpers
    def _va(self, i: int) -> int:
        return PAGE_OFFSET + i * 4096

    def _f(self, i: int) -> int:
        return int(self.flags[i])

    def _warn_once(self, key: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.c.warnings += 1

    def _flush(self, npages: int) -> None:
        if (not self.tlb_range and npages >= MAX_DVM_PAGES) or npages > MAX_TLBI_RANGE_PAGES:
            self.c.flushes_all += 1
        else:
            self.c.flushes_range += 1
            self.c.flushed_pages += npages

    def _decont(self, first: int, npages: int, lvl: int) -> None:
        """Clear CONT on every ``lvl`` leaf of the group [first, first + npages)."""
        size = PAGES[lvl]
        for leaf in range(first, first + npages, size):
            if self.level[leaf] == lvl:
                self.flags[leaf:leaf + size] &= np.uint64(~CONT & (2**64 - 1))
                self.c.entries_written += 1
                self.c.cont_cleared[lvl] += 1

    def _split(self, i: int, lvl: int) -> int:
        """Split the ``lvl`` leaf holding page i into 512 CONT children one level down."""
        if self.alloc_fails:
            return -ENOMEM
        size = PAGES[lvl]
        first = i - i % size
        child_type = SECT if lvl == PUD else PAGE
        old = self._f(first)
        new = (old & ~TYPE_MASK) | child_type | CONT
        if self.v7 and not old & VALID:  # 15bfba1ad77f: the children of an invalid block stay invalid
            new = (new & ~VALID) | PRESENT_INVALID
        self.level[first:first + size] = lvl - 1
        self.flags[first:first + size] = np.uint64(new)
        self.c.pgtables_allocated += 1
        self.c.splits[lvl] += 1
        return 0

    # ---------------------------------------------------------- splitting
    def _split_at(self, i: int) -> int:
        """Make page boundary i a leaf boundary (split_kernel_leaf_mapping_locked())."""
        if i % PGDIR_PAGES == 0 or i % PAGES[PUD] == 0 or i >= self.npages:
            return 0
        if self.level[i] == PUD:
            if not _present(self._f(i)):
                return 0
            ret = self._split(i, PUD)
            if ret:
                return ret
        if i % CONT_PMD_PAGES == 0:
            return 0
        if self.level[i] == PMD:
            if not _present(self._f(i)):
                return 0
            if self._f(i) & CONT:
                self._decont(i - i % CONT_PMD_PAGES, CONT_PMD_PAGES, PMD)
            if i % PAGES[PMD] == 0:
                return 0
            ret = self._split(i, PMD)
            if ret:
                return ret
        if i % CONT_PTE_PAGES == 0:
            return 0
        if self.level[i] == PTE and _present(self._f(i)) and self._f(i) & CONT:
            self._decont(i - i % CONT_PTE_PAGES, CONT_PTE_PAGES, PTE)
        return 0

    def _split_range(self, s: int, e: int) -> int:
        if not self.split_possible:
            return 0
        if e - s == 1:
            return self._split_at(s if _ffs(self._va(s)) < _ffs(self._va(e)) else e)
        ret = self._split_at(s)
        return ret if ret else self._split_at(e)

    # --------------------------------------------------------------- walk
    def _walk(self, s: int, e: int, set_mask: int, clear_mask: int) -> int:
        i = s
        while i < e:
            lvl = int(self.level[i])
            if lvl == PTE:
                j = i + 1
                while j < e and self.level[j] == PTE:
                    j += 1
                seg = self.flags[i:j]
                self.flags[i:j] = (seg & np.uint64(~clear_mask & (2**64 - 1))) | np.uint64(set_mask)
                self.c.entries_written += j - i
                i = j
                continue
            size = PAGES[lvl]
            first = i - i % size
            v = self._f(i)
            leaf = (_present(v) and v & TYPE_MASK != 3) if self.v7 else v & TYPE_MASK == SECT
            if not leaf:
                i = min(e, first + size)
                continue
            if first != i or first + size > e:
                self._warn_once(f"pageattr_{lvl}")
                return -EINVAL
            self.flags[first:first + size] = np.uint64((v & ~clear_mask) | set_mask)
            self.c.entries_written += 1
            i = first + size
        return 0

    def _update(self, s: int, e: int, set_mask: int, clear_mask: int) -> int:
        ret = self._split_range(s, e)
        if ret:
            self._warn_once("update_range_prot")
            return ret
        return self._walk(s, e, set_mask, clear_mask)

    def _change(self, s: int, e: int, set_mask: int, clear_mask: int) -> int:
        ret = self._update(s, e, set_mask, clear_mask)
        valid_only = ((set_mask == self.maybe_ng | VALID and clear_mask == PRESENT_INVALID) if self.v7
                      else (set_mask == VALID and clear_mask == 0))
        if not valid_only:
            self._flush(e - s)
        return ret

    # -------------------------------------------------------- entry points
    def make_linear_range_readonly(self, first: int, npages: int) -> int:
        if not self.can_set:
            return -EOPNOTSUPP
        return self._change(first, first + npages, RDONLY, WRITE)

    def set_memory_valid(self, first: int, npages: int, enable: bool) -> int:
        if self.v7:
            on, off = self.maybe_ng | VALID, PRESENT_INVALID
        else:
            on, off = VALID, 0
        if enable:
            return self._change(first, first + npages, on, off)
        return self._change(first, first + npages, off, on) if self.v7 else self._change(
            first, first + npages, 0, VALID)

    def set_direct_map_invalid_noflush(self, page: int) -> int:
        if not self.can_set:
            return 0
        if self.v7:
            return self._update(page, page + 1, PRESENT_INVALID, self.maybe_ng | VALID)
        return self._update(page, page + 1, 0, VALID)

    def set_direct_map_default_noflush(self, page: int) -> int:
        if not self.can_set:
            return 0
        if self.v7:
            return self._update(page, page + 1, self.maybe_ng | VALID | WRITE, PRESENT_INVALID | RDONLY)
        return self._update(page, page + 1, VALID | WRITE, RDONLY)

    def set_direct_map_valid_noflush(self, page: int, nr: int, valid: bool) -> int:
        if not self.can_set:
            return 0
        return self.set_memory_valid(page, nr, valid)

    def kernel_page_present(self, page: int) -> bool:
        v = self._f(page)
        if self.level[page] == PTE:
            return bool(v & VALID)
        return bool(v & VALID) if self.v7 else v & TYPE_MASK == SECT
