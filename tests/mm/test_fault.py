"""User faults on the huge zero folio and the writes that reach it: expected behaviours 23, 24 and 25."""

from __future__ import annotations

from rofolio.mm.direct_access import device_dma_write, kernel_write
from rofolio.mm.events import KernelOops, PageAlloc, PageAllocFail, UserFault
from rofolio.mm.fault import folio_at, handle_mm_fault, mm_alloc, user_read, user_write
from rofolio.mm.process import HugePmd, PteTable
from rofolio.units import PAGE_SIZE, MiB
from tests.mm.conftest import boot_mm, events_of


# 23 --------------------------------------------------------------------------------------------
def test_read_fault_maps_the_huge_zero_folio_with_one_special_read_only_pmd() -> None:
    machine, mm = boot_mm(persistent_huge_zero_folio=True)
    hz = mm.huge_zero.folio
    assert hz is not None
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    assert addr % (2 * MiB) == 0
    mark = len(machine.log.events)
    assert handle_mm_fault(mm, p, addr + 5 * PAGE_SIZE, write=False) == "huge_zero_pmd"
    allocs = events_of(machine, PageAlloc, mark)
    assert [(e.order, e.migratetype) for e in allocs] == [(0, "UNMOVABLE")]  # only the deposited page table
    assert p.pmds == {addr: HugePmd(hz.pfn, writable=False, special=True)}
    assert p.deposited[addr].pfn == allocs[0].pfn and p.nr_ptes == 1
    assert folio_at(mm, p, addr + 300 * PAGE_SIZE) is hz and user_read(mm, p, addr + 300 * PAGE_SIZE) == 0


def test_before_6_13_a_write_fault_splits_to_512_zero_ptes_and_cows_only_the_written_page() -> None:
    machine, mm = boot_mm(spec={"kernel": "6.12"})
    zero = mm.zero_page
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    assert zero is not None and mm.huge_zero.refcount == 2  # the shrinker's and this mm's
    table = p.deposited[addr]
    mark = len(machine.log.events)
    user_write(mm, p, addr + 7 * PAGE_SIZE, 0x99)
    allocs = events_of(machine, PageAlloc, mark)
    assert [(e.order, e.migratetype, e.gfp) for e in allocs] == [(0, "MOVABLE", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO")]
    assert [e.handling for e in events_of(machine, UserFault, mark)] == ["cow_zero_page"]
    entry = p.pmds[addr]
    assert isinstance(entry, PteTable) and entry.page is table and not p.deposited  # the deposited table, reused
    assert entry.present() == 512
    ptes = [entry.get(i) for i in range(512)]
    assert sum(1 for pte in ptes if pte and pte.pfn == zero.pfn and pte.special and not pte.writable) == 511
    assert ptes[7] is not None and ptes[7].pfn == allocs[0].pfn and ptes[7].writable
    assert user_read(mm, p, addr + 7 * PAGE_SIZE) == 0x99
    assert user_read(mm, p, addr + 8 * PAGE_SIZE) == 0 and folio_at(mm, p, addr + 8 * PAGE_SIZE) is zero
    assert mm.huge_zero.refcount == 2  # the split took nothing from the huge zero folio


def test_from_6_13_a_write_fault_maps_a_new_zeroed_thp_in_place_of_the_huge_zero_pmd() -> None:
    """do_huge_zero_wp_pmd() (1ced09e0331f): one PMD-sized folio, zeroed, mapped writable; the table stays on
    deposit and the mm keeps its huge zero reference."""
    machine, mm = boot_mm(persistent_huge_zero_folio=True, spec={"kernel": "6.13"})
    zero = mm.zero_page
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    table = p.deposited[addr]
    mark = len(machine.log.events)
    user_write(mm, p, addr + 7 * PAGE_SIZE, 0x99)
    allocs = events_of(machine, PageAlloc, mark)
    assert [(e.order, e.migratetype) for e in allocs] == [(9, "MOVABLE")]
    assert [e.handling for e in events_of(machine, UserFault, mark)] == ["huge_zero_wp_thp"]
    assert p.pmds[addr] == HugePmd(allocs[0].pfn, writable=True, special=False)
    assert p.deposited[addr] is table
    thp = folio_at(mm, p, addr + 8 * PAGE_SIZE)
    assert thp is not None and thp.order == 9 and thp is not zero and thp.mapcount == 1
    assert user_read(mm, p, addr + 7 * PAGE_SIZE) == 0x99 and user_read(mm, p, addr + 8 * PAGE_SIZE) == 0


def test_from_6_13_the_write_fault_falls_back_to_the_split_when_no_thp_can_be_allocated() -> None:
    machine, mm = boot_mm(persistent_huge_zero_folio=True, spec={"kernel": "7.2"})
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    mm.config = mm.config.with_options(fail_page_alloc_min_order=9)  # fail_page_alloc, after the boot
    mark = len(machine.log.events)
    user_write(mm, p, addr + 7 * PAGE_SIZE, 0x99)
    assert [e.order for e in events_of(machine, PageAllocFail, mark)] == [9]  # the THP was tried first
    assert [(e.order, e.gfp) for e in events_of(machine, PageAlloc, mark)] == [(0, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO")]
    assert [e.handling for e in events_of(machine, UserFault, mark)] == ["cow_zero_page"]
    assert isinstance(p.pmds[addr], PteTable) and not p.deposited


# 24 --------------------------------------------------------------------------------------------
def _two_mappings(readonly: bool):  # type: ignore[no-untyped-def]
    machine, mm = boot_mm(persistent_huge_zero_folio=True, readonly_huge_zero_folio=readonly, lifetime="model1")
    procs = []
    for _ in range(2):
        p = mm_alloc(mm)
        addr = p.mmap_anon(2 * MiB)
        user_read(mm, p, addr)
        procs.append((p, addr))
    return machine, mm, procs


def test_huge_dirty_cow_write_faults_when_the_folio_is_read_only() -> None:
    machine, mm, procs = _two_mappings(readonly=True)
    hz = mm.huge_zero.folio
    assert hz is not None and hz.readonly
    mark = len(machine.log.events)
    # the kernel writes through the direct map into the page GUP returned (/proc/self/mem on a buggy kernel)
    assert kernel_write(mm, hz.pfn + 3, 1, 0x41, "gup FOLL_FORCE|FOLL_WRITE") == -14
    oops = events_of(machine, KernelOops, mark)
    assert [(e.pfn, e.path) for e in oops] == [(hz.pfn + 3, "gup FOLL_FORCE|FOLL_WRITE")]
    assert oops[0].text.splitlines()[1] == "#PF: supervisor write access in kernel mode"
    p2, addr2 = procs[1]
    assert user_read(mm, p2, addr2 + 3 * PAGE_SIZE) == 0  # LTP thp04: the second mapping still reads 0


def test_huge_dirty_cow_write_corrupts_every_mapping_when_writable() -> None:
    machine, mm, procs = _two_mappings(readonly=False)
    hz = mm.huge_zero.folio
    assert hz is not None and not hz.readonly
    assert kernel_write(mm, hz.pfn + 3, 1, 0x41, "gup FOLL_FORCE|FOLL_WRITE") == 0
    assert machine.counters.faults == 0
    assert [user_read(mm, p, addr + 3 * PAGE_SIZE) for p, addr in procs] == [0x41, 0x41]
    fresh = mm_alloc(mm)
    addr = fresh.mmap_anon(2 * MiB)
    assert user_read(mm, fresh, addr + 3 * PAGE_SIZE) == 0x41  # even a process that maps it later


# 25 --------------------------------------------------------------------------------------------
def test_device_dma_into_the_read_only_folio_is_not_stopped() -> None:
    machine, mm, procs = _two_mappings(readonly=True)
    hz = mm.huge_zero.folio
    assert hz is not None and hz.readonly
    assert device_dma_write(mm, hz.pfn, 1, 0xD0) == 0
    assert machine.counters.faults == 0
    assert [user_read(mm, p, addr) for p, addr in procs] == [0xD0, 0xD0]


def test_when_zeroing_the_new_thp_faults_the_task_dies_and_stores_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """folio_zero_user() oopses in do_huge_zero_wp_pmd(): the huge zero PMD stays and the user store never
    happens (it went into the huge zero folio every process reads)."""
    import rofolio.mm.fault as fault

    _machine, mm = boot_mm(persistent_huge_zero_folio=True, readonly_huge_zero_folio=False)
    hz = mm.huge_zero.folio
    p, q = mm_alloc(mm), mm_alloc(mm)
    addr, other = p.mmap_anon(2 * MiB), q.mmap_anon(2 * MiB)
    user_read(mm, p, addr)
    user_read(mm, q, other)
    monkeypatch.setattr(fault, "direct_map_write", lambda *args: -14)
    assert user_write(mm, p, addr, 0x99) == -14
    assert isinstance(p.pmds[addr], HugePmd) and p.pmds[addr].pfn == hz.pfn
    assert user_read(mm, q, other) == 0
