"""The sparse page table: maximal runs, splits, collapses, table counts and the ptdump walk."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rofolio import pagetable
from rofolio.pagetable import EntryState, PageTable, walk_entries
from rofolio.units import PAGE_SIZE, GiB, Level, MiB

BASE = 0xFFFF888000000000
RW, RO = 0x63, 0x61


def table_with_1g_leaves(n: int = 4) -> PageTable:
    pt = PageTable()
    pt.map(BASE, BASE + n * GiB, Level.PUD, RW | 0x80, 0)
    return pt


def test_a_fresh_map_is_one_run_per_uniform_stretch() -> None:
    pt = table_with_1g_leaves()
    assert len(pt) == 1
    leaf = pt.lookup(BASE + 3 * GiB + 5 * PAGE_SIZE)
    assert (leaf.start, leaf.level, leaf.pfn) == (BASE + 3 * GiB, Level.PUD, (3 * GiB) >> 12)


def test_splitting_a_1g_leaf_cuts_one_run_into_three() -> None:
    pt = table_with_1g_leaves()
    pt.split(BASE + GiB + 7 * PAGE_SIZE, RW | 0x80)
    assert [(r.start - BASE, r.end - BASE, r.level) for r in pt.runs()] == [
        (0, GiB, Level.PUD), (GiB, 2 * GiB, Level.PMD), (2 * GiB, 4 * GiB, Level.PUD)]
    assert pt.lookup(BASE + GiB + 3 * MiB).pfn == (GiB + 2 * MiB) >> 12


def test_changing_leaves_back_merges_runs_again() -> None:
    pt = table_with_1g_leaves()
    pt.split(BASE, RW)
    pt.set_flags(BASE + 2 * MiB, BASE + 4 * MiB, RO)
    assert len(pt) == 4
    pt.set_flags(BASE + 2 * MiB, BASE + 4 * MiB, RW)
    assert len(pt) == 2  # the PMD run and the remaining 1G leaves


def test_runs_with_different_pfn_offsets_do_not_merge() -> None:
    pt = PageTable()
    va = 0xFFFFC90000000000
    pt.map(va, va + PAGE_SIZE, Level.PTE, RW, 100)
    pt.map(va + PAGE_SIZE, va + 2 * PAGE_SIZE, Level.PTE, RW, 500)
    pt.map(va + 2 * PAGE_SIZE, va + 3 * PAGE_SIZE, Level.PTE, RW, 501)
    assert len(pt) == 2


def test_collapse_needs_one_run_covering_the_region() -> None:
    pt = table_with_1g_leaves(1)
    pt.split(BASE, RW | 0x80)
    pt.split(BASE, RW)
    pt.collapse(BASE, Level.PMD, RW | 0x80)
    pt.collapse(BASE, Level.PUD, RW | 0x80)
    assert len(pt) == 1 and pt.lookup(BASE).level == Level.PUD
    pt.split(BASE, RW | 0x80)
    pt.split(BASE, RW)
    pt.set_flags(BASE, BASE + PAGE_SIZE, RO)
    with pytest.raises(ValueError, match="cannot collapse at 0xffff888000000000: not one run of 512 leaves"):
        pt.collapse(BASE, Level.PMD, RW | 0x80)


def test_entry_state_and_table_pages_follow_the_leaves() -> None:
    pt = table_with_1g_leaves(2)
    pt.split(BASE + GiB, RW | 0x80)
    pt.split(BASE + GiB + 4 * MiB, RW)
    assert pt.entry_state(BASE, Level.PUD) == EntryState.LEAF
    assert pt.entry_state(BASE + GiB, Level.PUD) == EntryState.TABLE
    assert pt.entry_state(BASE + GiB + 4 * MiB, Level.PMD) == EntryState.TABLE
    assert pt.entry_state(BASE + 3 * GiB, Level.PUD) == EntryState.NONE
    assert pt.entry_state(BASE + 10 * PAGE_SIZE, Level.PMD) == EntryState.ABOVE
    tables = pt.table_pages()
    assert tables[Level.PTE] == 1 and tables[Level.PMD] == 1 and tables[Level.PUD] == 1


def test_walk_reports_holes_at_the_highest_empty_level() -> None:
    pt = PageTable()
    pt.map(BASE, BASE + 1 * MiB, Level.PTE, RW, 0)  # the ISA range: half a PTE table
    pt.map(BASE + GiB, BASE + 2 * GiB, Level.PUD, RW | 0x80, GiB >> 12)
    levels = (Level.P4D, Level.PUD, Level.PMD, Level.PTE)
    got = [(s - BASE, e - BASE, lv, fl) for s, e, lv, fl in walk_entries(pt, BASE, BASE + 512 * GiB, levels)]
    assert got == [
        (0, MiB, Level.PTE, RW),
        (MiB, 2 * MiB, Level.PTE, None),     # none PTEs in the same table
        (2 * MiB, GiB, Level.PMD, None),     # none PMDs in the same PMD table
        (GiB, 2 * GiB, Level.PUD, RW | 0x80),
        (2 * GiB, 512 * GiB, Level.PUD, None),
    ]


def test_a_table_that_starts_at_address_zero() -> None:
    """Nothing lies below address 0: the run before it is none, and a walk from 0 starts with the hole above."""
    pt = PageTable()
    pt.map(0, PAGE_SIZE, Level.PTE, RW, 0)
    pt.map(4 * MiB, 5 * MiB, Level.PTE, RO, 5)
    assert pt.run_before(0) is None and pt.run_before(1).start == 0 and pt.run_before(4 * MiB + 1).start == 4 * MiB
    levels = (Level.PUD, Level.PMD, Level.PTE)
    assert list(walk_entries(pt, 0, 2 * GiB, levels)) == [
        (0, PAGE_SIZE, Level.PTE, RW), (PAGE_SIZE, 2 * MiB, Level.PTE, None),
        (2 * MiB, 4 * MiB, Level.PMD, None),  # a 2M region with no leaf: one none PMD
        (4 * MiB, 5 * MiB, Level.PTE, RO), (5 * MiB, 6 * MiB, Level.PTE, None), (6 * MiB, GiB, Level.PMD, None),
        (GiB, 2 * GiB, Level.PUD, None)]
    # tables: a PTE table for each of the two 2M regions with 4K leaves, one PMD table, one PUD table
    assert pt.table_pages() == {Level.PTE: 2, Level.PMD: 1, Level.PUD: 1}
    assert pt.empty_regions(0, 8 * MiB, Level.PMD) == 2  # [2M, 4M) and [6M, 8M) would each need a PTE table
    empty = PageTable()
    assert empty.run_before(1) is None
    assert list(walk_entries(empty, 0, 2 * GiB, levels)) == [(0, 2 * GiB, Level.PUD, None)]


def test_unmap_removes_whole_leaves_and_keeps_the_rest() -> None:
    pt = table_with_1g_leaves(3)
    removed = pt.unmap(BASE + GiB, BASE + 2 * GiB)
    assert [(r.start - BASE, r.level) for r in removed] == [(GiB, Level.PUD)]
    assert pt.lookup(BASE + GiB) is None and pt.lookup(BASE + 2 * GiB).level == Level.PUD
    with pytest.raises(ValueError, match=r"unmap \[0xffff888000000000, 0xffff888000100000\) cuts a 1G leaf"):
        pt.unmap(BASE, BASE + MiB)


# ------------------------------------------------------------------ against a per-page model
REGIONS = 4  # 2M regions in the window the state machine works on
WINDOW_PAGES = REGIONS * 512
FLAGS = [RW, RO, RW | 0x80, 0x8000000000000063]
WALK_LEVELS = (Level.P4D, Level.PUD, Level.PMD, Level.PTE)


class PageTableAgainstPages(RuleBasedStateMachine):
    """Random maps, flag changes, splits, collapses and unmaps: the runs against a dict of pages.

    Chunks hold 3 segments here, so that merges and cuts cross chunk boundaries all the time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.saved = pagetable.CHUNK_RUNS
        pagetable.CHUNK_RUNS = 3
        self.pt = PageTable()
        self.pages: dict[int, tuple[Level, int, int]] = {}  # page index -> (level, flags, pfn)

    def teardown(self) -> None:
        pagetable.CHUNK_RUNS = self.saved

    def _empty(self, first: int, n: int) -> bool:
        return not any(p in self.pages for p in range(first, first + n))

    @rule(first=st.integers(0, WINDOW_PAGES - 1), n=st.integers(1, 40), flags=st.sampled_from(FLAGS),
          pfn=st.integers(0, 3000))
    def map_ptes(self, first: int, n: int, flags: int, pfn: int) -> None:
        n = min(n, WINDOW_PAGES - first)
        if not self._empty(first, n):
            with pytest.raises(ValueError):
                self.pt.map(BASE + first * PAGE_SIZE, BASE + (first + n) * PAGE_SIZE, Level.PTE, flags, pfn)
            return
        self.pt.map(BASE + first * PAGE_SIZE, BASE + (first + n) * PAGE_SIZE, Level.PTE, flags, pfn)
        for j in range(n):
            self.pages[first + j] = (Level.PTE, flags, pfn + j)

    @rule(first=st.integers(0, WINDOW_PAGES - 1), pfn=st.integers(0, 3000), flags=st.sampled_from(FLAGS),
          steps=st.lists(st.sampled_from([1, 1, 1, -1, 0, 2, 700]), max_size=30))
    def map_pfns(self, first: int, pfn: int, flags: int, steps: list[int]) -> None:
        """vmap(): one 4K leaf per pfn, as given (stretches up, down, repeated or apart)."""
        pfns = [pfn]
        for step in steps:
            pfns.append(max(pfns[-1] + step, 0))
        pfns = pfns[:WINDOW_PAGES - first]
        if self._empty(first, len(pfns)):
            self.pt.map_pfns(BASE + first * PAGE_SIZE, pfns, flags)
            for j, p in enumerate(pfns):
                self.pages[first + j] = (Level.PTE, flags, p)

    @rule(region=st.integers(0, REGIONS - 1), flags=st.sampled_from(FLAGS),
          pfn=st.integers(0, 4).map(lambda i: i * 512))
    def map_pmd(self, region: int, flags: int, pfn: int) -> None:
        first = region * 512
        if self._empty(first, 512):
            self.pt.map(BASE + first * PAGE_SIZE, BASE + (first + 512) * PAGE_SIZE, Level.PMD, flags, pfn)
            for j in range(512):
                self.pages[first + j] = (Level.PMD, flags, pfn + j)

    @rule(page=st.integers(0, WINDOW_PAGES - 1), n=st.integers(1, 600), flags=st.sampled_from(FLAGS))
    def set_flags(self, page: int, n: int, flags: int) -> None:
        run = self.pt.run_at(BASE + page * PAGE_SIZE)
        if run is None:
            return
        leaf = run.level.size
        start = max(run.start, (BASE + page * PAGE_SIZE) & run.level.mask)
        end = min(run.end, start + n * leaf)
        self.pt.set_flags(start, end, flags)
        for p in range((start - BASE) // PAGE_SIZE, (end - BASE) // PAGE_SIZE):
            level, _, pfn = self.pages[p]
            self.pages[p] = (level, flags, pfn)

    @rule(page=st.integers(0, WINDOW_PAGES - 1), flags=st.sampled_from(FLAGS))
    def split(self, page: int, flags: int) -> None:
        found = self.pages.get(page)
        if found is None or found[0] != Level.PMD:
            return
        self.pt.split(BASE + page * PAGE_SIZE, flags)
        first = page - page % 512
        for p in range(first, first + 512):
            self.pages[p] = (Level.PTE, flags, self.pages[p][2])

    @rule(region=st.integers(0, REGIONS - 1), flags=st.sampled_from(FLAGS))
    def collapse(self, region: int, flags: int) -> None:
        first = region * 512
        leaves = [self.pages.get(p) for p in range(first, first + 512)]
        one_run = all(leaf is not None and leaf[0] == Level.PTE and leaf[1] == leaves[0][1]
                      and leaf[2] == leaves[0][2] + j for j, leaf in enumerate(leaves))  # type: ignore[index]
        if not one_run:
            with pytest.raises(ValueError):
                self.pt.collapse(BASE + first * PAGE_SIZE, Level.PMD, flags)
            return
        self.pt.collapse(BASE + first * PAGE_SIZE, Level.PMD, flags)
        for j in range(512):
            self.pages[first + j] = (Level.PMD, flags, leaves[0][2] + j)  # type: ignore[index]

    @rule(first=st.integers(0, WINDOW_PAGES - 1), n=st.integers(1, 700))
    def unmap(self, first: int, n: int) -> None:
        n = min(n, WINDOW_PAGES - first)
        def in_pmd(page: int) -> bool:
            return self.pages.get(page, (Level.PTE,))[0] == Level.PMD

        cuts = (in_pmd(first) and first % 512) or (in_pmd(first + n - 1) and (first + n) % 512)
        if cuts:
            with pytest.raises(ValueError):
                self.pt.unmap(BASE + first * PAGE_SIZE, BASE + (first + n) * PAGE_SIZE)
            return
        removed = self.pt.unmap(BASE + first * PAGE_SIZE, BASE + (first + n) * PAGE_SIZE)
        gone = [p for p in range(first, first + n) if p in self.pages]
        assert sum((r.end - r.start) // PAGE_SIZE for r in removed) == len(gone)
        for r in removed:  # what was there, page by page
            first_page = (r.start - BASE) // PAGE_SIZE
            for j in range((r.end - r.start) // PAGE_SIZE):
                assert (r.level, r.flags, r.pfn + j) == self.pages[first_page + j]
        for p in gone:
            del self.pages[p]

    def stretches(self) -> list[list[int]]:
        """The pages as maximal runs: [start page, end page, level, flags, first pfn]."""
        expected: list[list[int]] = []
        for p in sorted(self.pages):
            level, flags, pfn = self.pages[p]
            last = expected[-1] if expected else None
            if last and last[1] == p and last[2] == level and last[3] == flags and last[4] + p - last[0] == pfn:
                last[1] = p + 1
            else:
                expected.append([p, p + 1, level, flags, pfn])
        return expected

    @invariant()
    def runs_are_the_maximal_stretches_of_pages(self) -> None:
        expected = self.stretches()
        got = [[(r.start - BASE) // PAGE_SIZE, (r.end - BASE) // PAGE_SIZE, r.level, r.flags, r.pfn]
               for r in self.pt.runs()]
        assert got == expected
        assert len(self.pt) == len(expected)

    @invariant()
    def lookups_agree_with_the_pages(self) -> None:
        for p in (0, 1, 511, 512, 513, WINDOW_PAGES // 2, WINDOW_PAGES - 1):
            run = self.pt.run_at(BASE + p * PAGE_SIZE)
            assert (run is None) == (p not in self.pages)
            before = self.pt.run_before(BASE + p * PAGE_SIZE)
            below = [q for q in self.pages if q < p]
            assert (before is None) == (not below)
            if below:
                assert before is not None and before.start <= BASE + max(below) * PAGE_SIZE < before.end
            after = self.pt.first_run_from(BASE + p * PAGE_SIZE)
            above = [q for q in self.pages if q >= p]
            assert (after is None) == (not above)
            if above:
                assert after is not None and after.start <= BASE + min(above) * PAGE_SIZE < after.end
            leaf = self.pt.lookup(BASE + p * PAGE_SIZE + 5)
            if p in self.pages:
                level, flags, pfn = self.pages[p]
                first = p - p % level.pages
                assert leaf == pagetable.Leaf(BASE + first * PAGE_SIZE, level, flags, pfn - p % level.pages)
            else:
                assert leaf is None
        # one byte into a page: the run that starts below it is the page's own, or the one before its hole
        for p in (1, 513, WINDOW_PAGES - 1):
            before = self.pt.run_before(BASE + p * PAGE_SIZE + 1)
            below = [q for q in self.pages if q <= p]
            assert (before is None) == (not below)
            if below:
                assert before is not None and before.start <= BASE + max(below) * PAGE_SIZE < before.end

    @invariant()
    def the_walk_sees_each_leaf_and_each_hole_at_its_highest_empty_level(self) -> None:
        gib = GiB // PAGE_SIZE  # the window's 1G region ends here and the next, always empty, begins
        for first, end in ((0, WINDOW_PAGES + 512), (gib - 512, gib + 512), (1, WINDOW_PAGES - 1), (513, 1030)):
            got = [((s - BASE) // PAGE_SIZE, (e - BASE) // PAGE_SIZE, lv, fl)
                   for s, e, lv, fl in walk_entries(self.pt, BASE + first * PAGE_SIZE, BASE + end * PAGE_SIZE,
                                                    WALK_LEVELS)]
            assert got == self.walk_by_regions(first, end)

    def walk_by_regions(self, first: int, end: int) -> list[tuple[int, int, Level, int | None]]:
        """What a ptdump walk of pages [first, end) shows, from the pages alone: a leaf as it is, a none entry at
        the highest level whose whole aligned region holds no page; alike neighbours merged."""
        mapped = sorted(self.pages)

        def empty(lo: int, hi: int) -> bool:
            i = bisect_left(mapped, lo)
            return i == len(mapped) or mapped[i] >= hi

        pieces: list[list] = []
        p = first
        for start, stop, level, flags, _ in [*self.stretches(), [end, end, None, None, None]]:
            while p < min(start, end):  # the hole before this stretch, region by region
                hole = next(lv for lv in WALK_LEVELS if empty(p - p % lv.pages, p - p % lv.pages + lv.pages))
                # one region at a time; a none PTE's table holds a leaf, so its neighbours are none PTEs too
                region = Level.PMD.pages if hole == Level.PTE else hole.pages
                q = min(start, end, p - p % region + region)
                pieces.append([p, q, hole, None])
                p = q
            if stop > p:
                pieces.append([max(start, p), min(stop, end), level, flags])
                p = min(stop, end)
            if p >= end:
                break
        out: list[list] = []
        for piece in pieces:
            if out and out[-1][1] == piece[0] and out[-1][2:] == piece[2:]:
                out[-1][1] = piece[1]
            elif piece[1] > piece[0]:
                out.append(piece)
        return [tuple(x) for x in out]  # type: ignore[misc]


TestPageTableAgainstPages = PageTableAgainstPages.TestCase
