"""The sparse page table: maximal runs, splits, collapses, table counts and the ptdump walk."""

from __future__ import annotations

import pytest

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
    with pytest.raises(ValueError):
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


def test_unmap_removes_whole_leaves_and_keeps_the_rest() -> None:
    pt = table_with_1g_leaves(3)
    removed = pt.unmap(BASE + GiB, BASE + 2 * GiB)
    assert [(r.start - BASE, r.level) for r in removed] == [(GiB, Level.PUD)]
    assert pt.lookup(BASE + GiB) is None and pt.lookup(BASE + 2 * GiB).level == Level.PUD
    with pytest.raises(ValueError):
        pt.unmap(BASE, BASE + MiB)
