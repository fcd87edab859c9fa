"""A dense, per-4K reference model of riscv64 linear-map permission changes (tests only).

It holds one leaf level and one entry value (the bits below the PFN) per 4K page of RAM in numpy arrays and
applies the rules of arch/riscv/mm/pageattr.c (7.2) the way the kernel's loops run: split_linear_mapping()
entry by entry at the pud and pmd levels with its "whole entry in range" test written out, the pageattr walk
leaf by leaf, __set_memory()'s second walk of a linear range, one flush_tlb_all() per call.  It knows nothing
of rofolio's code: the bits are spelled out here from asm/pgtable-bits.h.

Scope: runtime changes on RAM of a Sv39 or Sv48 machine whose RAM starts on a 1G boundary (so a page index's
alignment is its linear-map address's), without holes; the initial state is given (the boot layout has its own
tests); vmalloc areas are lists of pages whose linear alias the calls change.
"""

from __future__ import annotations

import numpy as np

from tests.reference.linear import DenseCounters

V, R, W, X, U, G, A, D = (1 << i for i in range(8))
LEAF_BITS = R | W | X
PAGE_KERNEL = R | W | V | A | D | G

PTE, PMD, PUD = 1, 2, 3
PAGES = {PTE: 1, PMD: 512, PUD: 512 * 512}
ENOMEM = 12


class ReferenceOops(RuntimeError):
    """The kernel would follow a pointer it never set (a table read through a non-present pud leaf)."""


def present(level: int, v: int) -> bool:
    """The software p?d_present(): a PTE counts G (_PAGE_PROT_NONE), a PMD also R/W/X, a PUD only V."""
    if level == PTE:
        return bool(v & (V | G))
    if level == PMD:
        return bool(v & (V | G | LEAF_BITS))
    return bool(v & V)


def leaf(level: int, v: int) -> bool:
    return present(level, v) and bool(v & LEAF_BITS)


class DenseRiscv64:
    """Per-page linear-map state of ``len(level)`` pages of RAM starting at a 1G boundary."""

    def __init__(self, level: np.ndarray, flags: np.ndarray, *, debug_pagealloc: bool) -> None:
        self.level = level.astype(np.int8)
        self.flags = flags.astype(np.uint64)
        self.npages = len(level)
        self.debug_pagealloc = debug_pagealloc
        self.alloc_fails = False
        self.c = DenseCounters()

    def _f(self, i: int) -> int:
        return int(self.flags[i])

    # ---------------------------------------------------------- splitting
    def _split(self, i: int, lvl: int) -> int:
        """The ``lvl`` leaf holding page ``i`` into 512 children with its bits."""
        if self.alloc_fails:
            return -ENOMEM
        first = i - i % PAGES[lvl]
        self.level[first:first + PAGES[lvl]] = lvl - 1
        self.c.pgtables_allocated += 1
        self.c.splits[lvl] += 1
        return 0

    def _split_pmd(self, vaddr: int, end: int) -> int:
        while True:  # do { ... } while (vaddr != end), pmd entries
            nxt = min(vaddr - vaddr % PAGES[PMD] + PAGES[PMD], end)
            whole = nxt - vaddr >= PAGES[PMD] and vaddr <= vaddr - vaddr % PAGES[PMD] and end >= nxt
            if not whole:
                if self.level[vaddr] == PUD:  # the pud above is a leaf pud_leaf() rejected: its pfn as a table
                    raise ReferenceOops(f"pmd entry of page {vaddr} read through a non-present pud leaf")
                if self.level[vaddr] == PMD and leaf(PMD, self._f(vaddr)):
                    ret = self._split(vaddr, PMD)
                    if ret:
                        return ret
            vaddr = nxt
            if vaddr == end:
                return 0

    def split_linear_mapping(self, vaddr: int, end: int) -> int:
        while True:  # pud entries (Sv39: the pgd's own)
            nxt = min(vaddr - vaddr % PAGES[PUD] + PAGES[PUD], end)
            whole = nxt - vaddr >= PAGES[PUD] and vaddr <= vaddr - vaddr % PAGES[PUD] and end >= nxt
            if not whole:
                if self.level[vaddr] == PUD and leaf(PUD, self._f(vaddr)):
                    ret = self._split(vaddr, PUD)
                    if ret:
                        return ret
                ret = self._split_pmd(vaddr, nxt)
                if ret:
                    return ret
            vaddr = nxt
            if vaddr == end:
                return 0

    # --------------------------------------------------------------- walk
    def walk(self, lo: int, hi: int, set_mask: int, clear_mask: int) -> None:
        """walk_kernel_page_table_range() with pageattr_ops over pages [lo, hi)."""
        i = lo
        while i < hi:
            lvl = int(self.level[i])
            size = PAGES[lvl]
            first = i - i % size
            if lvl == PTE:  # every PTE in range: the stretch of PTEs from i at once
                others = np.flatnonzero(self.level[i:hi] != PTE)
                j = i + int(others[0]) if others.size else hi
                self.flags[i:j] = (self.flags[i:j] & np.uint64(~clear_mask & 0xFFFFFFFFFFFFFFFF)) | np.uint64(set_mask)
                self.c.entries_written += j - i
                i = j
                continue
            v = self._f(first)
            if leaf(lvl, v):  # the whole huge entry
                self.flags[first:first + size] = np.uint64((v & ~clear_mask) | set_mask)
                self.c.entries_written += 1
            i = first + size

    def set_memory(self, first: int, n: int, set_mask: int, clear_mask: int) -> int:
        """__set_memory() of a linear-map range: split, walk, walk again, flush_tlb_all()."""
        if not n:
            return 0
        ret = self.split_linear_mapping(first, first + n)
        if not ret:
            self.walk(first, first + n, set_mask, clear_mask)
            self.walk(first, first + n, set_mask, clear_mask)
        self.c.flushes_all += 1
        return ret

    def set_memory_image(self, first: int, n: int, set_mask: int, clear_mask: int) -> int:
        """__set_memory() of a kernel-image range whose linear alias is pages [first, first + n): the alias split
        and walked once, then the image's own mapping (outside these arrays, and not held by the model
        either), then flush_tlb_all()."""
        if not n:
            return 0
        ret = self.split_linear_mapping(first, first + n)
        if not ret:
            self.walk(first, first + n, set_mask, clear_mask)
        self.c.flushes_all += 1
        return ret

    def set_memory_alias(self, pages: list[int], set_mask: int, clear_mask: int) -> int:
        """__set_memory() of a vmalloc range backed by ``pages``: per page its alias split and walked, then the
        vmalloc PTEs (one entry each, outside these arrays), then flush_tlb_all()."""
        ret = 0
        for p in pages:
            ret = self.split_linear_mapping(p, p + 1)
            if ret:
                break
            self.walk(p, p + 1, set_mask, clear_mask)
        else:
            self.c.entries_written += len(pages)
        self.c.flushes_all += 1
        return ret

    # ------------------------------------------------------------- the API
    def set_memory_ro(self, first: int, n: int) -> int:
        return self.set_memory(first, n, R, W)

    def set_memory_rw(self, first: int, n: int) -> int:
        return self.set_memory(first, n, R | W, 0)

    def set_memory_x(self, first: int, n: int) -> int:
        return self.set_memory(first, n, X, 0)

    def set_memory_nx(self, first: int, n: int) -> int:
        return self.set_memory(first, n, 0, X)

    def set_direct_map_invalid_noflush(self, first: int) -> int:
        return self.set_memory(first, 1, 0, V)

    def set_direct_map_default_noflush(self, first: int) -> int:
        return self.set_memory(first, 1, PAGE_KERNEL, X)

    def set_direct_map_valid_noflush(self, first: int, n: int, valid: bool) -> int:
        return self.set_memory(first, n, PAGE_KERNEL, X) if valid else self.set_memory(first, n, 0, V)

    def kernel_map_pages(self, first: int, n: int, enable: bool) -> None:
        """__kernel_map_pages(): V toggled on each existing PTE (the map is all 4K), then a ranged flush."""
        if not self.debug_pagealloc:
            return
        if enable:
            self.flags[first:first + n] |= np.uint64(V)
        else:
            self.flags[first:first + n] &= np.uint64(~V & 0xFFFFFFFFFFFFFFFF)
        self.c.entries_written += n
        self.c.flushes_range += 1
        self.c.flushed_pages += n

    def kernel_page_present(self, i: int) -> bool:
        return present(int(self.level[i]), self._f(i))

    def cpu_writable(self, i: int) -> bool:
        """What a CPU store through the linear map does: V and W."""
        v = self._f(i)
        return bool(v & V) and bool(v & W)
