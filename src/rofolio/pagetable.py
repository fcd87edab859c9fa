"""A sparse, arch-neutral kernel page table made of leaf *runs*.

The direct map of a 64 TiB machine has 2^34 4K pages, so the model never holds
one object per page (docs/architecture.md, "runs, not pages").  A ``Run`` is a maximal stretch of leaves that
share a level (page size), the same flag bits and consecutive pfns; the table
is a sorted map from run start to run.  Splitting a leaf cuts one run into at
most three plus the new lower-level run, so lookup, split and protection
change are O(log runs): time and memory follow what a workload changed, not
the size of RAM.

Only *leaves* are stored.  Which tables exist follows from them: a 2M region
holding 4K leaves has a PTE table, a 1G region holding 2M or 4K leaves has a PMD
table (the walk in ``lookup_address_in_pgd_attr()``, arch/x86/mm/pat/set_memory.c,
sees exactly this).  Entries that are *none* (holes) are simply absent;
entries that are present-but-invalid (``set_memory_np``) are runs whose flags
lack the present bit, because the kernel keeps them as entries too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

from rofolio.units import PAGE_SHIFT, PTRS_PER_TABLE, Level, align_down, align_up


@dataclass(frozen=True, slots=True)
class Run:
    """Leaves ``[start, end)`` at ``level`` with ``flags``; the first maps ``pfn``, the rest follow."""

    start: int
    end: int
    level: Level
    flags: int
    pfn: int

    def pfn_at(self, addr: int) -> int:
        return self.pfn + ((addr - self.start) >> PAGE_SHIFT)

    @property
    def leaves(self) -> int:
        return (self.end - self.start) // self.level.size

    def continues(self, other: Run) -> bool:
        """True if ``other`` starts where this run ends with the same kind of leaves."""
        return (
            self.end == other.start
            and self.level == other.level
            and self.flags == other.flags
            and self.pfn_at(self.end) == other.pfn
        )


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf entry: what lookup_address() returns (its level, flags and first pfn)."""

    start: int
    level: Level
    flags: int
    pfn: int

    @property
    def end(self) -> int:
        return self.start + self.level.size

    @property
    def size(self) -> int:
        return self.level.size


class EntryState:
    """What the walk finds in the entry for a region at a level (see ``PageTable.entry_state``)."""

    NONE = "none"
    LEAF = "leaf"
    TABLE = "table"
    ABOVE = "above"  # a larger leaf above covers the region: there is no entry at this level


class PageTable:
    """The leaves of one kernel page table (init_mm), kept as sorted maximal runs."""

    def __init__(self) -> None:
        self._runs: SortedDict = SortedDict()
        self._hint: Run | None = None

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        """Number of runs (the model's size, not the number of leaves)."""
        return len(self._runs)

    def run_at(self, addr: int) -> Run | None:
        """The run holding ``addr``, or None for a hole."""
        hint = self._hint
        if hint is not None and hint.start <= addr < hint.end:
            return hint
        runs = self._runs
        i = runs.bisect_right(addr) - 1
        if i < 0:
            return None
        run: Run = runs.peekitem(i)[1]
        if addr < run.end:
            self._hint = run
            return run
        return None

    def lookup(self, addr: int) -> Leaf | None:
        """The leaf mapping ``addr`` (lookup_address()), or None if the entry is none."""
        run = self.run_at(addr)
        if run is None:
            return None
        start = addr & run.level.mask
        return Leaf(start, run.level, run.flags, run.pfn_at(start))

    def runs(self, start: int | None = None, end: int | None = None) -> Iterator[Run]:
        """Runs that intersect ``[start, end)``, in address order (all runs by default)."""
        runs = self._runs
        if start is None:
            yield from runs.values()
            return
        i = max(runs.bisect_right(start) - 1, 0)
        keys = runs.keys()
        while i < len(keys):
            run: Run = runs[keys[i]]
            if end is not None and run.start >= end:
                return
            if run.end > start:
                yield run
            i += 1

    def first_run_from(self, addr: int) -> Run | None:
        """The run holding ``addr`` or, if ``addr`` is in a hole, the next run after it."""
        run = self.run_at(addr)
        if run is not None:
            return run
        runs = self._runs
        i = runs.bisect_right(addr)
        return runs.peekitem(i)[1] if i < len(runs) else None

    def run_before(self, addr: int) -> Run | None:
        """The last run that starts below ``addr``."""
        runs = self._runs
        i = runs.bisect_left(addr) - 1
        return runs.peekitem(i)[1] if i >= 0 else None

    def occupied(self, start: int, end: int) -> bool:
        """True if any leaf lies in ``[start, end)``."""
        run = self.first_run_from(start)
        return run is not None and run.start < end

    def empty_regions(self, start: int, end: int, level: Level) -> int:
        """How many ``level``-sized regions meeting ``[start, end)`` hold no leaf yet.

        Mapping the range allocates one table below ``level`` for each of them.
        """
        size, n = level.size, 0
        addr = start & level.mask
        while addr < end:
            n += not self.occupied(addr, addr + size)
            addr += size
        return n

    def entry_state(self, addr: int, level: Level) -> str:
        """What the walk finds at ``level`` for ``addr``, assuming the levels above are tables."""
        base = addr & level.mask
        run = self.run_at(base)
        if run is not None:
            if run.level == level:
                return EntryState.LEAF
            if run.level > level:
                return EntryState.ABOVE
            return EntryState.TABLE
        return EntryState.TABLE if self.occupied(base, base + level.size) else EntryState.NONE

    def table_pages(self, top: Level = Level.P4D) -> dict[Level, int]:
        """Table pages the leaves imply, per level of the entries they hold, below ``top``.

        A region of size ``L.size`` that holds any leaf below ``L`` needs one table
        of ``L - 1`` entries; regions are counted once however many runs touch them.
        """
        counts = {lv: 0 for lv in Level if lv < top}
        for table_level in counts:
            region = Level(table_level + 1).size
            last = -1  # index of the last region counted at this level
            for run in self._runs.values():
                if run.level > table_level:
                    continue
                first = run.start // region
                final = (run.end - 1) // region
                if first <= last:
                    first = last + 1
                if final >= first:
                    counts[table_level] += final - first + 1
                    last = final
        return counts

    # --------------------------------------------------------------- mutations
    def map(self, start: int, end: int, level: Level, flags: int, pfn: int) -> None:
        """Install leaves over a hole (boot-time mapping)."""
        _check_aligned(start, end, level)
        if self.occupied(start, end):
            raise ValueError(f"map over existing leaves at [{start:#x}, {end:#x})")
        self._insert([Run(start, end, level, flags, pfn)])

    def map_pfns(self, start: int, pfns: list[int], flags: int) -> None:
        """Install 4K leaves from ``start`` for ``pfns`` in order (vmap()), one run per consecutive stretch."""
        i = 0
        while i < len(pfns):
            j = i + 1
            while j < len(pfns) and pfns[j] == pfns[j - 1] + 1:
                j += 1
            self.map(start + (i << PAGE_SHIFT), start + (j << PAGE_SHIFT), Level.PTE, flags, pfns[i])
            i = j

    def unmap(self, start: int, end: int) -> list[Run]:
        """Clear every entry in ``[start, end)`` (pte_clear/pmd_clear); returns what was removed."""
        removed: list[Run] = []
        for run in list(self.runs(start, end)):
            if (run.start < start and not start % run.level.size == 0) or (
                run.end > end and not end % run.level.size == 0
            ):
                raise ValueError(f"unmap [{start:#x}, {end:#x}) cuts a {run.level.leaf_name} leaf")
            self._delete(run)
            keep = []
            if run.start < start:
                keep.append(Run(run.start, start, run.level, run.flags, run.pfn))
            if run.end > end:
                keep.append(Run(end, run.end, run.level, run.flags, run.pfn_at(end)))
            cut = Run(max(run.start, start), min(run.end, end), run.level, run.flags,
                      run.pfn_at(max(run.start, start)))
            removed.append(cut)
            if keep:
                self._insert(keep)
        return removed

    def set_flags(self, start: int, end: int, flags: int) -> Run:
        """Rewrite the flags of the whole leaves in ``[start, end)``, which lie in one run.

        Returns the run as it was before the change.
        """
        run = self.run_at(start)
        if run is None or end > run.end or end <= start:
            raise ValueError(f"set_flags [{start:#x}, {end:#x}) is not inside one run")
        _check_aligned(start, end, run.level)
        if run.flags == flags:
            return run
        self._splice(run, Run(start, end, run.level, flags, run.pfn_at(start)))
        return run

    def split(self, addr: int, child_flags: int) -> Leaf:
        """Replace the large leaf holding ``addr`` with 512 leaves one level down.

        The children map the same pfns with ``child_flags`` (the caller converts
        the flags, e.g. x86 pgprot_large_2_4k()).  Returns the leaf that was split.
        """
        run = self.run_at(addr)
        if run is None or run.level == Level.PTE:
            raise ValueError(f"no large leaf to split at {addr:#x}")
        size = run.level.size
        start = addr & run.level.mask
        self._splice(run, Run(start, start + size, Level(run.level - 1), child_flags, run.pfn_at(start)))
        return Leaf(start, run.level, run.flags, run.pfn_at(start))

    def collapse(self, start: int, level: Level, flags: int) -> None:
        """Replace the 512 leaves of ``[start, start + level.size)`` (one run) by one leaf."""
        run = self.run_at(start)
        end = start + level.size
        if run is None or run.level != level - 1 or run.end < end or start % level.size:
            raise ValueError(f"cannot collapse at {start:#x}: not one run of {PTRS_PER_TABLE} leaves")
        self._splice(run, Run(start, end, level, flags, run.pfn_at(start)))

    # ---------------------------------------------------------------- internals
    def _splice(self, run: Run, middle: Run) -> None:
        """Replace ``run`` by ``middle`` (which lies inside it) and what is left of ``run`` on either side."""
        pieces = []
        if run.start < middle.start:
            pieces.append(Run(run.start, middle.start, run.level, run.flags, run.pfn))
        pieces.append(middle)
        if middle.end < run.end:
            pieces.append(Run(middle.end, run.end, run.level, run.flags, run.pfn_at(middle.end)))
        self._delete(run)
        self._insert(pieces)

    def _delete(self, run: Run) -> None:
        del self._runs[run.start]
        self._hint = None

    def _insert(self, pieces: list[Run]) -> None:
        """Insert adjacent pieces and merge them with their neighbours into maximal runs."""
        runs = self._runs
        self._hint = None
        first = pieces[0]
        i = runs.bisect_left(first.start)
        if i > 0:
            left: Run = runs.peekitem(i - 1)[1]
            if left.continues(first):
                del runs[left.start]
                pieces[0] = Run(left.start, first.end, first.level, first.flags, left.pfn)
        last = pieces[-1]
        nxt = runs.get(last.end)
        if nxt is not None and last.continues(nxt):
            del runs[nxt.start]
            pieces[-1] = Run(last.start, nxt.end, last.level, last.flags, last.pfn)
        merged: list[Run] = []
        for piece in pieces:
            if merged and merged[-1].continues(piece):
                prev = merged.pop()
                piece = Run(prev.start, piece.end, piece.level, piece.flags, prev.pfn)
            merged.append(piece)
        for piece in merged:
            runs[piece.start] = piece


def _check_aligned(start: int, end: int, level: Level) -> None:
    size = level.size
    if start % size or end % size or end <= start:
        raise ValueError(f"[{start:#x}, {end:#x}) is not a whole number of {level.leaf_name} leaves")


def walk_entries(
    table: PageTable, start: int, end: int, levels: tuple[Level, ...]
) -> Iterator[tuple[int, int, Level, int | None]]:
    """Yield what a kernel page-table walker sees over ``[start, end)``, coalesced.

    Each item is ``(start, end, level, flags)``; ``flags`` is None for entries
    that are none (holes), which the walker reports at the highest level whose
    whole region is empty, as ``walk_pud_level()`` and friends do in the kernel's
    ptdump.  ``levels`` lists the walk levels from the top, e.g. (P4D, PUD, PMD, PTE)
    where P4D stands for the top-level entry (PGD in 4-level paging).
    Consecutive items with the same level and flags are merged.
    """
    pending: list[int | Level | None] | None = None
    for item in _raw_entries(table, start, end, levels):
        s, e, lv, fl = item
        if pending is not None and pending[1] == s and pending[2] == lv and pending[3] == fl:
            pending[1] = e
            continue
        if pending is not None:
            yield (pending[0], pending[1], pending[2], pending[3])  # type: ignore[misc]
        pending = [s, e, lv, fl]
    if pending is not None:
        yield (pending[0], pending[1], pending[2], pending[3])  # type: ignore[misc]


def _raw_entries(
    table: PageTable, start: int, end: int, levels: tuple[Level, ...]
) -> Iterator[tuple[int, int, Level, int | None]]:
    addr = start
    for run in table.runs(start, end):
        lo, hi = max(run.start, start), min(run.end, end)
        if lo > addr:
            yield from _hole_entries(table, addr, lo, levels)
        yield (lo, hi, run.level, run.flags)
        addr = hi
    if addr < end:
        yield from _hole_entries(table, addr, end, levels)


def _hole_entries(
    table: PageTable, start: int, end: int, levels: tuple[Level, ...]
) -> Iterator[tuple[int, int, Level, None]]:
    """Decompose an empty ``[start, end)`` into none entries at the highest empty level.

    A walker reports a none entry at the first level (from the top) whose whole
    region holds no leaf.  Such a region must lie inside the maximal hole around
    ``[start, end)``, which may be wider than the range being walked.
    """
    before = table.run_before(start)
    hole_lo = before.end if before is not None else 0
    after = table.first_run_from(start)
    hole_hi = after.start if after is not None else 1 << 64
    addr = start
    while addr < end:
        i = next(i for i, lv in enumerate(levels)
                 if (addr & lv.mask) >= hole_lo and (addr & lv.mask) + lv.size <= hole_hi)
        level = levels[i]
        # consecutive regions stay none at this level up to the parent's boundary
        limit = align_down(hole_hi, level.size)
        if i > 0:
            limit = min(limit, align_up(addr + 1, levels[i - 1].size))
        chunk_end = min(end, limit)
        yield (addr, chunk_end, level, None)
        addr = chunk_end


__all__ = ["EntryState", "Leaf", "PageTable", "Run", "walk_entries"]
