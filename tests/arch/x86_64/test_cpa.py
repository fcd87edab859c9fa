"""x86-64 change_page_attr (arch/x86/mm/pat/set_memory.c): splits, aliases and flushes, with exact figures.

Each test boots a machine to SYSTEM_RUNNING (like loading a test module into a
live kernel) and calls the modelled set_memory_*() on a direct-map address
outside the kernel image, unless it says otherwise.
"""

from __future__ import annotations

from rofolio.errors import Errno
from rofolio.events import Collapse, Flush, FlushKind, KernelWarning, PteCheck, Split
from rofolio.machine import Machine
from rofolio.prot import X86
from rofolio.units import PAGE_SIZE, GiB, Level, MiB
from tests.conftest import boot_running

CPUS = 8  # the fixtures' machines have 8 CPUs: every global flush sends 7 IPIs


def _in_1g_leaf(machine: Machine) -> int:
    """A direct-map address at 6 GiB, inside a 1G leaf of an 8 GiB QEMU machine."""
    va = machine.kernel.va(6 * GiB)
    assert machine.kernel.lookup_address(va).level == Level.PUD
    return va


# 1 ---------------------------------------------------------------------------------------------
def test_2m_ro_inside_1g_leaf_splits_pud_once_and_flushes_twice(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine)
    step = gb_machine.step("ro", lambda: k.set_memory_ro(va, 512))
    d = step.delta()
    assert step.ret == 0
    assert d["splits_1g"] == 1 and "splits_2m" not in d
    assert d["pgtables_allocated"] == 1
    assert d["DirectMap1G"] == -1048576 and d["DirectMap2M"] == 1048576 and "DirectMap4k" not in d
    # one flush inside the split, one in cpa_flush because 512 > 33
    assert d["flushes_all"] == 2 and "flushes_pages" not in d
    assert d["ipis"] == 2 * (CPUS - 1)
    target = k.lookup_address(va)
    assert target.level == Level.PMD and not target.flags & (X86.RW | X86.DIRTY)
    for other in (va + 2 * MiB, va + GiB - 2 * MiB):
        leaf = k.lookup_address(other)
        assert leaf.level == Level.PMD and leaf.flags & X86.RW and leaf.flags & X86.DIRTY
    assert d["entries_written"] == 1  # the target PMD, updated in place
    assert not [e for e in step.events if isinstance(e, Collapse)]


# 2 ---------------------------------------------------------------------------------------------
def test_2m_ro_on_a_2m_leaf_needs_no_split_and_one_flush(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    va = k.va(6 * GiB)
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(va, 512))
    d = step.delta()
    assert step.ret == 0
    assert d == {"entries_written": 1, "flushes": 1, "flushes_all": 1, "ipis": CPUS - 1}


# 3 ---------------------------------------------------------------------------------------------
def test_2m_ro_on_4k_ptes_writes_512_entries_and_flushes_once() -> None:
    # before c1fcf41cf37f (v6.15) the free pages __kernel_map_pages() unmapped keep DIRTY, which RO clears
    machine = boot_running(debug_pagealloc=True, kernel="6.14")
    k = machine.kernel
    va = k.va(6 * GiB)
    assert k.lookup_address(va).level == Level.PTE
    step = machine.step("ro", lambda: k.set_memory_ro(va, 512))
    d = step.delta()
    assert d == {"entries_written": 512, "flushes": 1, "flushes_all": 1, "ipis": CPUS - 1}
    assert sum(e.count for e in step.events if isinstance(e, PteCheck)) == 512  # 512 loop iterations
    assert machine.counters.cpa_stats()["4K pages set-checked"] >= 512


# 4 ---------------------------------------------------------------------------------------------
def test_4k_ro_inside_1g_leaf_splits_twice_and_flushes_per_page(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine) + 7 * PAGE_SIZE
    step = gb_machine.step("ro", lambda: k.set_memory_ro(va, 1))
    d = step.delta()
    assert d["splits_1g"] == 1 and d["splits_2m"] == 1
    assert d["pgtables_allocated"] == 2
    assert d["DirectMap1G"] == -1048576
    assert d["DirectMap2M"] == 1048576 - 2048
    assert d["DirectMap4k"] == 2048
    assert d["flushes_all"] == 2  # one per split
    flushes = [e for e in step.events if isinstance(e, Flush)]
    assert flushes[-1].flush is FlushKind.PAGES and flushes[-1].pages == 1 and flushes[-1].cpus == CPUS
    assert d["ipis"] == 3 * (CPUS - 1)
    assert k.lookup_address(va).level == Level.PTE
    assert k.lookup_address(va + PAGE_SIZE).flags & X86.RW


# 5 ---------------------------------------------------------------------------------------------
def test_request_matching_current_prot_keeps_large_page_without_flush(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    va = k.va(6 * GiB)
    k.set_memory_ro(va, 512)
    sameprot = nogb_machine.counters.cpa_stats()["2M pages sameprot"]
    for offset, pages in ((0, 512), (PAGE_SIZE, 3), (100 * PAGE_SIZE, 1), (0, 1)):
        step = nogb_machine.step("ro again", lambda o=offset, n=pages: k.set_memory_ro(va + o, n))
        assert step.ret == 0
        assert step.delta() == {}, (offset, pages)
    assert k.lookup_address(va).level == Level.PMD
    assert nogb_machine.counters.cpa_stats()["2M pages sameprot"] == sameprot + 4


# 6 ---------------------------------------------------------------------------------------------
def test_misaligned_2m_range_splits_both_2m_leaves(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    va = k.va(6 * GiB) + PAGE_SIZE
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(va, 512))
    d = step.delta()
    assert d["splits_2m"] == 2 and d["pgtables_allocated"] == 2
    assert d["DirectMap2M"] == -4096 and d["DirectMap4k"] == 4096
    assert d["flushes_all"] == 3  # one per split, then the final one (512 > 33)
    assert d["entries_written"] == 512


# 7 ---------------------------------------------------------------------------------------------
def test_split_at_initcall_time_changes_meminfo_but_not_vmstat() -> None:
    machine = Machine.boot(boot_running().spec)  # stopped at SYSTEM_SCHEDULING: initcalls run now
    k = machine.kernel
    va = k.va(6 * GiB)
    step = machine.step("ro", lambda: k.set_memory_ro(va, 512))
    d = step.delta()
    assert d["DirectMap1G"] == -1048576 and "direct_map_level3_splits" not in d
    machine.finish_boot()
    step = machine.step("ro running", lambda: k.set_memory_ro(va + 2 * MiB + PAGE_SIZE, 1))
    assert step.delta()["direct_map_level2_splits"] == 1


# 8 ---------------------------------------------------------------------------------------------
def test_2m_round_trip_never_reforms_the_1g_page_even_with_collapse() -> None:
    machine = boot_running(kernel="6.18")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    before = machine.counters.meminfo_kb()
    k.set_memory_ro(va, 512)
    step = machine.step("rw", lambda: k.set_memory_rw(va, 512))
    assert not [e for e in step.events if isinstance(e, Collapse)]
    after = machine.counters.meminfo_kb()
    assert after["DirectMap1G"] == before["DirectMap1G"] - 1048576
    assert k.lookup_address(va).level == Level.PMD


def test_rox_collapses_a_pte_table_then_its_pud_on_6_15() -> None:
    machine = boot_running(kernel="6.15")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    k.set_memory_rox(va, 1)  # 1G -> 2M -> 4K, one page ROX
    assert k.lookup_address(va).level == Level.PTE
    step = machine.step("rox 1G", lambda: k.set_memory_rox(va, 262144))
    collapses = [e for e in step.events if isinstance(e, Collapse)]
    assert [e.level for e in collapses] == [Level.PMD, Level.PUD]
    assert k.lookup_address(va).level == Level.PUD
    d = step.delta()
    assert d["DirectMap4k"] == -2048 and d["DirectMap1G"] == 1048576
    assert d["pgtables_freed"] == 2
    assert d["direct_map_level2_collapses"] == 1 and d["direct_map_level3_collapses"] == 1


def test_rox_does_not_collapse_before_6_15() -> None:
    machine = boot_running(kernel="6.6")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    k.set_memory_rox(va, 1)
    step = machine.step("rox 1G", lambda: k.set_memory_rox(va, 262144))
    assert not [e for e in step.events if isinstance(e, Collapse)]
    assert k.lookup_address(va).level == Level.PTE


def test_rox_never_collapses_a_pte_table_of_non_present_pages() -> None:
    """collapse_pmd_page(): every PTE after the first must be present with the first one's flags, so 512 alike
    non-present PTEs (set_memory_rox() clears RW, DIRTY and NX but leaves _PAGE_PRESENT as it was) stay a PTE table."""
    machine = boot_running(kernel="6.15")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    k.set_memory_rox(va, 1)  # 1G -> 2M -> 4K
    k.set_memory_np(va, 512)
    step = machine.step("rox np", lambda: k.set_memory_rox(va, 512))  # now 512 alike PTEs, none present
    assert step.ret == 0 and not [e for e in step.events if isinstance(e, Collapse)]
    assert k.lookup_address(va).level == Level.PTE and not k.lookup_address(va).present
    assert "direct_map_level2_collapses" not in step.delta()


def test_set_memory_4k_pages_never_collapse_on_6_15() -> None:
    machine = boot_running(kernel="6.15")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    k.set_memory_4k(va, 512)
    assert k.lookup_address(va).flags & X86.KERNEL_4K
    step = machine.step("rox", lambda: k.set_memory_rox(va, 512))
    assert not [e for e in step.events if isinstance(e, Collapse)]


# 9 ---------------------------------------------------------------------------------------------
def test_set_memory_rw_does_not_restore_dirty(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine)
    k.set_memory_ro(va, 1)
    k.set_memory_rw(va, 1)
    page, neighbour = k.lookup_address(va), k.lookup_address(va + PAGE_SIZE)
    assert page.flags & X86.RW and not page.flags & X86.DIRTY
    assert neighbour.flags == page.flags | X86.DIRTY


def test_6_1_set_memory_ro_keeps_dirty_so_a_round_trip_restores_the_entry() -> None:
    machine = boot_running(kernel="6.1")
    k = machine.kernel
    va = _in_1g_leaf(machine)
    k.set_memory_ro(va, 1)
    assert k.lookup_address(va).flags & X86.DIRTY and not k.lookup_address(va).flags & X86.RW
    k.set_memory_rw(va, 1)
    assert k.lookup_address(va).flags == k.lookup_address(va + PAGE_SIZE).flags


# 10 --------------------------------------------------------------------------------------------
def test_direct_map_primary_outside_the_image_touches_no_alias(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine)
    k.set_memory_ro(va, 1)  # split first
    step = gb_machine.step("rw", lambda: k.set_memory_rw(va, 1))
    flushes = [e for e in step.events if isinstance(e, Flush)]
    assert [f.flush for f in flushes] == [FlushKind.PAGES]  # no force_flush_all


def test_vmalloc_primary_changes_the_direct_map_alias_and_flushes_all(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    pfn = (6 * GiB) >> 12
    vaddr = k.vmap([pfn])
    step = gb_machine.step("ro", lambda: k.set_memory_ro(vaddr, 1))
    assert not k.lookup_address(vaddr).writable
    alias = k.lookup_address(k.page_address(pfn))
    assert alias.level == Level.PTE and not alias.writable  # the 1G alias was split to reach it
    d = step.delta()
    assert d["splits_1g"] == 1 and d["splits_2m"] == 1
    flushes = [e for e in step.events if isinstance(e, Flush)]
    assert flushes[-1].flush is FlushKind.ALL  # force_flush_all, although only one page


def test_high_map_primary_changes_the_direct_map_alias(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    data_pa = k.image.sdata + 16 * PAGE_SIZE  # a .data page
    step = gb_machine.step("ro", lambda: k.set_memory_ro(k.highmap_va(data_pa), 1))
    assert not k.lookup_address(k.highmap_va(data_pa)).writable
    assert not k.lookup_address(k.va(data_pa)).writable
    assert [e for e in step.events if isinstance(e, Flush)][-1].flush is FlushKind.ALL


# 11 --------------------------------------------------------------------------------------------
def test_pgtable_allocation_failure_returns_enomem_and_leaves_the_folio_writable(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine)
    k.pgtable_alloc_fail = True
    step = gb_machine.step("ro", lambda: k.set_memory_ro(va, 512))
    assert step.ret == -Errno.ENOMEM
    assert k.lookup_address(va).writable and k.lookup_address(va).level == Level.PUD
    # nothing changed before the failure: CPA_FLUSHTLB never set, so not even cpa_flush_all runs
    assert step.delta() == {"pgtable_alloc_failures": 1}


def test_pgtable_failure_after_a_change_flushes_everything(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    va = k.va(6 * GiB)
    k.pgtable_alloc_fail = True
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(va, 513))  # a whole 2M leaf, then one page
    assert step.ret == -Errno.ENOMEM
    assert not k.lookup_address(va).writable  # the first leaf was changed in place
    flushes = [e for e in step.events if isinstance(e, Flush)]
    assert [(f.flush, f.reason) for f in flushes] == [(FlushKind.ALL, "cpa_flush_all")]


# 12 --------------------------------------------------------------------------------------------
def test_set_direct_map_noflush_helpers_flush_only_inside_splits(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    pfn = (6 * GiB) >> 12
    step = nogb_machine.step("invalid", lambda: k.set_direct_map_invalid_noflush(pfn))
    assert [e.reason for e in step.events if isinstance(e, Flush)] == ["split"]
    assert not k.kernel_page_present(pfn)
    step = nogb_machine.step("default", lambda: k.set_direct_map_default_noflush(pfn))
    assert not [e for e in step.events if isinstance(e, Flush)]
    assert k.kernel_page_present(pfn) and k.lookup_address(k.page_address(pfn)).writable


def test_set_direct_map_valid_noflush_unmaps_a_2m_folio_in_place_and_flushes_nothing(nogb_machine: Machine) -> None:
    # execmem_set_direct_map_valid(): one call per compound page, __set_pages_np()/__set_pages_p() over all of it
    k = nogb_machine.kernel
    pfn = (6 * GiB) >> 12
    step = nogb_machine.step("invalid", lambda: k.set_direct_map_valid_noflush(pfn, 512, False))
    assert step.ret == 0 and not [e for e in step.events if isinstance(e, (Flush, Split))]
    leaf = k.lookup_address(k.page_address(pfn))
    assert leaf.level == Level.PMD and not leaf.present and not leaf.flags & X86.DIRTY
    assert k.kernel_page_present(pfn - 1) and k.kernel_page_present(pfn + 512)
    step = nogb_machine.step("valid", lambda: k.set_direct_map_valid_noflush(pfn, 512, True))
    assert step.ret == 0 and not [e for e in step.events if isinstance(e, Flush)]
    assert k.lookup_address(k.page_address(pfn + 511)).writable


# 13 is the cpa-test.c port in test_cpa_selftest.py -----------------------------------------------


# 14 --------------------------------------------------------------------------------------------
def test_rodata_alias_cannot_be_made_writable(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    pa = k.image.start_rodata + 4 * PAGE_SIZE
    alias = k.va(pa)
    assert not k.lookup_address(alias).writable
    step = gb_machine.step("rw", lambda: k.set_memory_rw(alias, 1))
    assert step.ret == 0
    assert not k.lookup_address(alias).writable
    warnings = [e.text for e in step.events if isinstance(e, KernelWarning)]
    assert any("Rodata RO" in w and w.startswith("CPA  protect") for w in warnings)


def test_const_empty_zero_page_is_read_only_in_the_direct_map() -> None:
    for in_rodata, writable in ((True, False), (False, True)):
        machine = boot_running(zero_page="rodata" if in_rodata else "bss")
        k = machine.kernel
        zero = k.va(k.image.zero_page(in_rodata))
        assert k.lookup_address(zero).writable is writable
        k.set_memory_rw(zero, 1)
        assert k.lookup_address(zero).writable is not in_rodata


def test_splits_are_events_and_counters_follow_them(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    va = _in_1g_leaf(gb_machine)
    step = gb_machine.step("ro", lambda: k.set_memory_ro(va, 1))
    splits = [e for e in step.events if isinstance(e, Split)]
    assert [(e.level, e.direct, e.vmstat) for e in splits] == [(Level.PUD, True, True), (Level.PMD, True, True)]
