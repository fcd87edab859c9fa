"""A sparse, arch-neutral kernel page table made of leaf *runs*.

The direct map of a 64 TiB machine has 2^34 4K pages, so the model never holds
one object per page (docs/architecture.md, "runs, not pages").  A ``Run`` is a maximal stretch of leaves that
share a level (page size), the same flag bits and consecutive pfns; the table
is a sorted sequence of runs.  Splitting a leaf cuts one run into at
most three plus the new lower-level run, so lookup, split and protection
change are O(log runs): time and memory follow what a workload changed, not
the size of RAM.

Only *leaves* are stored.  Which tables exist follows from them: a 2M region
holding 4K leaves has a PTE table, a 1G region holding 2M or 4K leaves has a PMD
table (the walk in ``lookup_address_in_pgd_attr()``, arch/x86/mm/pat/set_memory.c,
sees exactly this).  Entries that are *none* (holes) are simply absent;
entries that are present-but-invalid (``set_memory_np``) are runs whose flags
lack the present bit, because the kernel keeps them as entries too.

Storage: runs are packed, not objects.  The table partitions the address space into *segments*, each a run or a
hole, and keeps where each segment starts and its *kind*: an index into the table's list of distinct
(level, flags, pfn - start page) triples, 0 for a hole.  A segment ends where the next one starts; two adjacent
segments never have the same kind (the leaves of one run share all three, and consecutive pfns keep
``pfn - page`` constant, so "same kind, adjacent" is "one run").  The boundaries are kept in chunks of up to
``CHUNK_RUNS``, each two arrays of machine integers: 12 bytes a segment.  A ``Run`` is built only when one is
asked for.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from rofolio.units import PAGE_SHIFT, PTRS_PER_TABLE, Level, align_down, align_up

CHUNK_RUNS = 1024  # a chunk with more runs is cut in two


class Run(NamedTuple):
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


_new_run = tuple.__new__  # Run(...) without NamedTuple's keyword handling: runs are built on every lookup


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


class _Chunk:
    """Consecutive segments in address order: where each starts and its kind (0: a hole)."""

    __slots__ = ("kinds", "starts")

    def __init__(self, starts: array, kinds: array) -> None:
        self.starts = starts
        self.kinds = kinds


HOLE = 0  # the kind of a segment that holds no leaf
TOP = 1 << 64  # where the last segment ends


class PageTable:
    """The leaves of one kernel page table (init_mm), kept as sorted maximal runs."""

    def __init__(self) -> None:
        self._chunks = [_Chunk(array("Q", [0]), array("I", [HOLE]))]  # one hole over everything
        self._firsts = [0]  # the start of each chunk's first segment
        self._count = 0  # segments that are runs, not holes
        self._version = 0  # every write goes through _assign(), which bumps it: runs() and _hint notice
        # (version, start, end, chunk, index) of the run run_at() found last: a write that follows a lookup of the
        # same run (CPA's set_flags() after its run_at()) finds its place without searching again
        self._hint = (-1, 0, 0, 0, 0)
        self._kinds: list[tuple[Level, int, int]] = [(Level.PTE, 0, 0)]  # kind -> (level, flags, pfn - start page)
        self._kind_of: dict[tuple[int, int, int], int] = {}  # the other way round

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        """Number of runs (the model's size, not the number of leaves)."""
        return self._count

    def run_at(self, addr: int) -> Run | None:
        """The run holding ``addr``, or None for a hole (_position() and _run() in one: every CPA step asks)."""
        c = bisect_right(self._firsts, addr) - 1
        chunk = self._chunks[c]
        starts = chunk.starts
        i = bisect_right(starts, addr) - 1
        kind = chunk.kinds[i]
        if kind == HOLE:
            return None
        start = starts[i]
        end = starts[i + 1] if i + 1 < len(starts) else self._end(c, i)
        self._hint = (self._version, start, end, c, i)
        level, flags, offset = self._kinds[kind]
        return _new_run(Run, (start, end, level, flags, (start >> PAGE_SHIFT) + offset))

    def lookup(self, addr: int) -> Leaf | None:
        """The leaf mapping ``addr`` (lookup_address()), or None if the entry is none."""
        run = self.run_at(addr)
        if run is None:
            return None
        start = addr & run.level.mask
        return Leaf(start, run.level, run.flags, run.pfn_at(start))

    def runs(self, start: int | None = None, end: int | None = None) -> Iterator[Run]:
        """Runs that intersect ``[start, end)``, in address order (all runs by default)."""
        c, i = self._position(0 if start is None else start)
        version = self._version
        while c < len(self._chunks):
            chunk = self._chunks[c]
            if i >= len(chunk.starts):
                c, i = c + 1, 0
                continue
            if end is not None and chunk.starts[i] >= end:
                return
            if chunk.kinds[i] != HOLE:
                run = self._run(c, i)
                yield run
                if self._version != version:  # the caller changed the table: go on after this run
                    version = self._version
                    c, i = self._position(run.end - 1)
            i += 1

    def first_run_from(self, addr: int) -> Run | None:
        """The run holding ``addr`` or, if ``addr`` is in a hole, the next run after it."""
        return next(self.runs(addr), None)

    def run_before(self, addr: int) -> Run | None:
        """The last run that starts below ``addr``."""
        if addr <= 0:
            return None
        c, i = self._position(addr - 1)
        if self._chunks[c].kinds[i] == HOLE:  # the segment before a hole is a run, if there is one
            if i == 0 and c == 0:
                return None
            c, i = (c, i - 1) if i > 0 else (c - 1, len(self._chunks[c - 1].starts) - 1)
        return self._run(c, i)

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
            for run in self.runs():
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
        c, i = self._position(start)
        self._assign(c, i, start, end, self._kind(level, flags, pfn - (start >> PAGE_SHIFT)))

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
        runs = list(self.runs(start, end))
        for run in runs:  # all or nothing
            if (run.start < start and not start % run.level.size == 0) or (
                run.end > end and not end % run.level.size == 0
            ):
                raise ValueError(f"unmap [{start:#x}, {end:#x}) cuts a {run.level.leaf_name} leaf")
        for run in runs:
            lo, hi = max(run.start, start), min(run.end, end)
            removed.append(Run(lo, hi, run.level, run.flags, run.pfn_at(lo)))
            c, i = self._position(lo)
            self._assign(c, i, lo, hi, HOLE)
        return removed

    def set_flags(self, start: int, end: int, flags: int) -> None:
        """Rewrite the flags of the whole leaves in ``[start, end)``, which lie in one run."""
        c, i = self._position(start)
        kind = self._chunks[c].kinds[i]
        if kind == HOLE or end > self._end(c, i) or end <= start:
            raise ValueError(f"set_flags [{start:#x}, {end:#x}) is not inside one run")
        level, old, offset = self._kinds[kind]
        _check_aligned(start, end, level)
        if old != flags:
            self._assign(c, i, start, end, self._kind(level, flags, offset))

    def split(self, addr: int, child_flags: int) -> Leaf:
        """Replace the large leaf holding ``addr`` with 512 leaves one level down.

        The children map the same pfns with ``child_flags`` (the caller converts
        the flags, e.g. x86 pgprot_large_2_4k()).  Returns the leaf that was split.
        """
        run = self.run_at(addr)
        if run is None or run.level == Level.PTE:
            raise ValueError(f"no large leaf to split at {addr:#x}")
        start = addr & run.level.mask
        c, i = self._position(addr)
        child = self._kind(Level(run.level - 1), child_flags, run.pfn - (run.start >> PAGE_SHIFT))
        self._assign(c, i, start, start + run.level.size, child)
        return Leaf(start, run.level, run.flags, run.pfn_at(start))

    def collapse(self, start: int, level: Level, flags: int) -> None:
        """Replace the 512 leaves of ``[start, start + level.size)`` (one run) by one leaf."""
        run = self.run_at(start)
        end = start + level.size
        if run is None or run.level != level - 1 or run.end < end or start % level.size:
            raise ValueError(f"cannot collapse at {start:#x}: not one run of {PTRS_PER_TABLE} leaves")
        c, i = self._position(start)
        self._assign(c, i, start, end, self._kind(level, flags, run.pfn - (run.start >> PAGE_SHIFT)))

    # ---------------------------------------------------------------- internals
    def _position(self, addr: int) -> tuple[int, int]:
        """(chunk, index) of the segment holding ``addr``."""
        version, start, end, c, i = self._hint
        if version == self._version and start <= addr < end:
            return c, i
        c = bisect_right(self._firsts, addr) - 1
        return c, bisect_right(self._chunks[c].starts, addr) - 1

    def _end(self, c: int, i: int) -> int:
        """Where segment ``i`` of chunk ``c`` ends: where the next one starts."""
        starts = self._chunks[c].starts
        if i + 1 < len(starts):
            return starts[i + 1]
        return self._firsts[c + 1] if c + 1 < len(self._firsts) else TOP

    def _run(self, c: int, i: int) -> Run:
        """Segment ``i`` of chunk ``c``, which is not a hole, as a Run."""
        starts = self._chunks[c].starts
        start = starts[i]
        end = starts[i + 1] if i + 1 < len(starts) else self._end(c, i)
        level, flags, offset = self._kinds[self._chunks[c].kinds[i]]
        return _new_run(Run, (start, end, level, flags, (start >> PAGE_SHIFT) + offset))

    def _kind(self, level: Level, flags: int, offset: int) -> int:
        """The index of (level, flags, pfn - start page) in the list of kinds, added if new."""
        key = (level, flags, offset)
        kind = self._kind_of.get(key)
        if kind is None:
            kind = self._kind_of[key] = len(self._kinds)
            self._kinds.append((Level(level), flags, offset))
        return kind

    def _assign(self, c: int, i: int, start: int, end: int, kind: int) -> None:
        """Give ``[start, end)``, inside segment ``i`` of chunk ``c``, another ``kind``.

        What is left of the segment on either side keeps its kind; the new segment merges with a
        neighbour of the same kind, so that no two adjacent segments share one.
        """
        chunk = self._chunks[c]
        starts, kinds = chunk.starts, chunk.kinds
        old = kinds[i]
        self._version += 1
        # the right-hand side first: it does not move segment i
        if end < self._end(c, i):
            starts.insert(i + 1, end)
            kinds.insert(i + 1, old)
            self._count += old != HOLE
        elif self._kind_after(c, i) == kind:  # the next segment continues the new one: one segment
            self._remove(*((c, i + 1) if i + 1 < len(starts) else (c + 1, 0)))
        if starts[i] < start:
            starts.insert(i + 1, start)
            kinds.insert(i + 1, kind)
            self._count += kind != HOLE
        else:
            kinds[i] = kind
            self._count += (kind != HOLE) - (old != HOLE)
            if self._kind_before(c, i) == kind:  # the new segment continues the previous one
                self._remove(c, i)
                return
        if len(starts) > CHUNK_RUNS:  # its first boundary stayed: only its length can need settling
            self._settle(c)

    def _kind_after(self, c: int, i: int) -> int | None:
        if i + 1 < len(self._chunks[c].kinds):
            return self._chunks[c].kinds[i + 1]
        return self._chunks[c + 1].kinds[0] if c + 1 < len(self._chunks) else None

    def _kind_before(self, c: int, i: int) -> int | None:
        if i > 0:
            return self._chunks[c].kinds[i - 1]
        return self._chunks[c - 1].kinds[-1] if c > 0 else None

    def _remove(self, c: int, i: int) -> None:
        """Drop the boundary where segment ``i`` of chunk ``c`` starts: the segment before takes its place."""
        chunk = self._chunks[c]
        self._count -= chunk.kinds[i] != HOLE
        del chunk.starts[i], chunk.kinds[i]
        self._settle(c)

    def _settle(self, c: int) -> None:
        """After chunk ``c`` changed: drop it if empty, cut it in two if too long, note its first start."""
        chunk = self._chunks[c]
        n = len(chunk.starts)
        if not n:
            del self._chunks[c], self._firsts[c]
            return
        if n > CHUNK_RUNS:
            half = n // 2
            tail = _Chunk(chunk.starts[half:], chunk.kinds[half:])
            del chunk.starts[half:], chunk.kinds[half:]
            self._chunks.insert(c + 1, tail)
            self._firsts.insert(c + 1, tail.starts[0])
        self._firsts[c] = chunk.starts[0]


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
