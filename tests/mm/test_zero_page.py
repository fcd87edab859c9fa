"""The 4K zero page and the huge zero folio: expected behaviours 21 and 22, and the __ro_after_init pointer."""

from __future__ import annotations

from rofolio.events import KernelWarning
from rofolio.mm.events import HugeZeroFolioAlloc, KernelOops, PageFree, ShrinkerRun
from rofolio.mm.fault import exit_mmap, folio_at, mm_alloc, user_read
from rofolio.mm.gfp import GFP_KERNEL, HPAGE_PMD_ORDER, Gfp
from rofolio.mm.invariants import readonly_pages_in_free_lists
from rofolio.mm.page_alloc import alloc_pages
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.shrinker import shrink_slab
from rofolio.mm.zero_page import (
    MMF_HUGE_ZERO_FOLIO,
    get_persistent_huge_zero_folio,
    largest_zero_folio,
    make_persistent_huge_zero_folio_readonly,
    mm_get_huge_zero_folio,
    mm_put_huge_zero_folio,
    put_huge_zero_folio,
    set_huge_zero_folio_pointer,
    shrink_huge_zero_folio_count,
)
from rofolio.units import MiB
from tests.mm.conftest import boot_mm, events_of

NORMAL_START = 0x100000


# 21 --------------------------------------------------------------------------------------------
def test_persistent_huge_zero_folio_is_allocated_once_at_initcall_time_without_a_shrinker() -> None:
    machine, mm = boot_mm(running=False, persistent_huge_zero_folio=True)
    assert machine.kernel.phase == "scheduling"  # thp_shrinker_init() ran from hugepage_init(), an initcall
    hz = get_persistent_huge_zero_folio(mm)
    assert hz is not None and hz.pfn == NORMAL_START and hz.order == 9 and not hz.large_rmappable
    assert [(e.pfn, e.ok) for e in events_of(machine, HugeZeroFolioAlloc)] == [(NORMAL_START, True)]
    assert mm.shrinkers == []  # no "thp-zero" shrinker
    assert mm.huge_zero.refcount == 0  # huge_zero_init() keeps no count: nothing ever puts the folio
    machine.finish_boot()
    procs = [mm_alloc(mm) for _ in range(3)]
    assert all(mm_get_huge_zero_folio(mm, p) is hz for p in procs)
    assert mm.huge_zero.refcount == 0 and all(MMF_HUGE_ZERO_FOLIO not in p.flags for p in procs)
    for p in procs:
        mm_put_huge_zero_folio(mm, p)
    assert mm.huge_zero.refcount == 0
    assert shrink_slab(mm) == 0 and machine.counters.extra["thp_zero_page_alloc"] == 1
    assert largest_zero_folio(mm) is hz


def test_persistent_allocation_failure_falls_back_to_the_4k_zero_page() -> None:
    machine, mm = boot_mm(persistent_huge_zero_folio=True, fail_page_alloc_min_order=HPAGE_PMD_ORDER)
    assert get_persistent_huge_zero_folio(mm) is None
    assert make_persistent_huge_zero_folio_readonly(mm) == -12  # the RFC's step has no folio to protect
    assert "Allocating persistent huge zero folio failed" in [e.text for e in events_of(machine, KernelWarning)]
    assert machine.counters.extra["thp_zero_page_alloc_failed"] == 1
    zero = largest_zero_folio(mm)
    assert zero is mm.zero_page and zero.order == 0
    assert zero.pfn == machine.kernel.image.empty_zero_page_bss >> 12  # .bss..page_aligned by default


def test_zero_page_placement_comes_from_the_arch_config() -> None:
    for in_rodata in (False, True):
        machine, mm = boot_mm(spec={"zero_page": "rodata" if in_rodata else "bss"})
        assert mm.zero_page is not None
        assert mm.zero_page.pfn == machine.kernel.image.zero_page(in_rodata) >> 12
        assert machine.kernel.direct_map_writable(mm.zero_page.pfn) is not in_rodata


# 22 --------------------------------------------------------------------------------------------
def test_lazy_huge_zero_folio_refcount_per_mm_and_shrinker() -> None:
    machine, mm = boot_mm()
    assert [s.name for s in mm.shrinkers] == ["thp-zero"] and mm.huge_zero.folio is None
    procs = []
    for expected in (2, 3, 4):
        p = mm_alloc(mm)
        addr = p.mmap_anon(4 * MiB)
        user_read(mm, p, addr)
        user_read(mm, p, addr + 2 * MiB)  # a second huge zero PMD in the same mm takes no reference
        assert mm.huge_zero.refcount == expected and MMF_HUGE_ZERO_FOLIO in p.flags
        procs.append(p)
    first = mm.huge_zero.folio
    assert first is not None and first.pfn == NORMAL_START + 512  # the deposited table claimed the block first
    assert shrink_huge_zero_folio_count(mm) == 0 and shrink_slab(mm) == 0
    for p in procs:
        exit_mmap(mm, p)
    assert mm.huge_zero.refcount == 1 and shrink_huge_zero_folio_count(mm) == 512
    mark = len(machine.log.events)
    assert shrink_slab(mm) == 512
    assert [(e.name, e.counted, e.freed) for e in events_of(machine, ShrinkerRun, mark)] == [("thp-zero", 512, 512)]
    assert [(e.pfn, e.order, e.path) for e in events_of(machine, PageFree, mark)] == [
        (first.pfn, 9, "shrink_huge_zero_folio_scan")]
    assert mm.huge_zero.folio is None and mm.huge_zero.pfn == -1 and mm.huge_zero.refcount == 0
    # the page tables went too, so the 4 MiB unmovable block merged back; two unmovable order-9 users take it
    blockers = [alloc_pages(mm, GFP_KERNEL, HPAGE_PMD_ORDER) for _ in range(2)]
    assert [b.pfn for b in blockers if b] == [NORMAL_START, first.pfn]
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    again = folio_at(mm, p, addr)
    assert again is mm.huge_zero.folio and again is not None
    # the new page table claims the next 4 MiB block, the folio takes its upper half
    assert again.pfn == NORMAL_START + 1024 + 512 and again.pfn != first.pfn
    assert machine.counters.extra["thp_zero_page_alloc"] == 2 and mm.huge_zero.refcount == 2


def test_a_put_of_the_last_huge_zero_reference_warns_and_drops_it() -> None:
    """put_huge_zero_folio(): WARN_ON_ONCE(atomic_dec_and_test()); only the shrinker may put the last one."""
    machine, mm = boot_mm()
    p = mm_alloc(mm)
    user_read(mm, p, p.mmap_anon(2 * MiB))
    assert mm.huge_zero.refcount == 2
    put_huge_zero_folio(mm)
    assert not events_of(machine, KernelWarning)
    put_huge_zero_folio(mm)
    assert mm.huge_zero.refcount == 0
    [warning] = events_of(machine, KernelWarning)
    assert "WARNING: CPU: 0 PID: 1 at mm/huge_memory.c put_huge_zero_folio()" in warning.text
    # the folio is still installed: the next get allocates, finds it there, frees its own and counts 0 -> 1
    hz = mm.huge_zero.folio
    q = mm_alloc(mm)
    user_read(mm, q, q.mmap_anon(2 * MiB))
    assert mm.huge_zero.folio is hz and mm.huge_zero.refcount == 1
    assert machine.counters.extra["thp_zero_page_alloc"] == 1
    mark = len(machine.log.events)
    put_huge_zero_folio(mm)
    assert mm.huge_zero.refcount == 0 and not events_of(machine, KernelWarning, mark)  # WARN_ON_ONCE


def test_one_time_readonly_of_the_lazy_folio_is_unsound() -> None:
    machine, mm = boot_mm(lifetime="none")
    p = mm_alloc(mm)
    user_read(mm, p, p.mmap_anon(2 * MiB))
    hz = mm.huge_zero.folio
    assert hz is not None and arch_make_folio_readonly(mm, hz, "once") == 0
    exit_mmap(mm, p)
    assert shrink_slab(mm) == 512  # freed while read-only: nothing restored it
    assert readonly_pages_in_free_lists(mm) == [  # merged with its buddy and the freed page table's block
        f"pfn {hz.pfn:#x} is free (order-10 block {NORMAL_START:#x}) but read-only in the direct map"]
    mark = len(machine.log.events)
    # an unmovable order-10 request with __GFP_ZERO gets the block back and faults on its first read-only page
    assert alloc_pages(mm, GFP_KERNEL | Gfp.ZERO, 10) is None
    assert [(e.pfn, e.path) for e in events_of(machine, KernelOops, mark)] == [(hz.pfn, "__GFP_ZERO")]


# the pointer -------------------------------------------------------------------------------------
def test_huge_zero_folio_pointer_is_read_only_after_init() -> None:
    machine, mm = boot_mm(running=False, persistent_huge_zero_folio=True)
    hz = mm.huge_zero.folio
    assert mm.huge_zero.pointer_ro_after_init
    assert set_huge_zero_folio_pointer(mm, hz) == 0  # still init time: .data..ro_after_init is writable
    machine.finish_boot()  # mark_rodata_ro()
    mark = len(machine.log.events)
    assert set_huge_zero_folio_pointer(mm, None) == -14
    oops = events_of(machine, KernelOops, mark)
    assert len(oops) == 1 and oops[0].path == "huge_zero_folio pointer (__ro_after_init)"
    assert oops[0].text.splitlines()[2] == "#PF: error_code(0x0003) - permissions violation"
    assert mm.huge_zero.folio is hz


def test_pointer_stays_read_mostly_without_the_readonly_feature() -> None:
    _, mm = boot_mm(persistent_huge_zero_folio=True, readonly_huge_zero_folio=False)
    assert not mm.huge_zero.pointer_ro_after_init
    hz = mm.huge_zero.folio
    assert hz is not None and not hz.readonly
    assert set_huge_zero_folio_pointer(mm, hz) == 0
