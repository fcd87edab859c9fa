"""Migration and its users: compaction, NUMA, memory offline, longterm pins."""

from __future__ import annotations

import pytest

from rofolio.errors import AddressError
from rofolio.events import KernelWarning
from rofolio.mm.buddy import free_one_page
from rofolio.mm.compaction import compact_memory
from rofolio.mm.events import MemoryOffline, MigrateFolio
from rofolio.mm.fault import folio_at, mm_alloc, user_read, user_write
from rofolio.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp, MigrateType, ZoneType
from rofolio.mm.invariants import allocator_consistent
from rofolio.mm.longterm_pin import folio_is_longterm_pinnable, pin_folio, unpin_folio
from rofolio.mm.memory_hotplug import memory_block_range, offline_pages, online_pages
from rofolio.mm.migrate import migrate_folio_to, migrate_to_node, migration_target_gfp
from rofolio.mm.page_alloc import _leak, alloc_pages, prep_new_folio
from rofolio.units import GiB, MiB
from tests.mm.conftest import boot_mm, events_of


def _anon(mm, value: int = 0x42):  # type: ignore[no-untyped-def]
    p = mm_alloc(mm)
    addr = p.mmap_anon(64 * 1024)
    user_write(mm, p, addr, value)
    return p, addr


def _partly_used_pageblock_at_the_top(mm, zone):  # type: ignore[no-untyped-def]
    """The zone's highest free order-10 block with its first page in use: the pageblock above is wholly free
    (an order-9 buddy), the one holding the used page is free but for it (orders 0 to 8)."""
    top = max(b.pfn for b in zone.free.blocks(zone.start_pfn, zone.end_pfn) if b.order == 10)
    zone.free.remove(top, 10)
    prep_new_folio(mm, zone, top, 0, GFP_HIGHUSER_MOVABLE, MigrateType.MOVABLE, "in use")
    for order in range(10):
        free_one_page(zone, top + (1 << order), order, to_tail=False)
    return top


def test_compaction_moves_a_small_folio_into_a_partly_used_movable_pageblock_not_a_wholly_free_one() -> None:
    """suitable_migration_target(): the free scanner passes over a pageblock whose first page heads a free
    block of pageblock_order (compacting into it would only break it up) and takes the next one down;
    compaction_alloc() hands out its smallest isolated block that fits."""
    _machine, mm = boot_mm(mem=GiB, transparent_hugepage="never")
    dma32 = mm.zones[1]
    for order in range(10):  # take every smaller fragment, so the user page splits the lowest order-10 block
        while dma32.free.nonempty(order, MigrateType.MOVABLE):
            assert alloc_pages(mm, GFP_HIGHUSER_MOVABLE | (Gfp.COMP if order else Gfp(0)), order) is not None
    p, addr = _anon(mm)
    top = _partly_used_pageblock_at_the_top(mm, dma32)
    folio = folio_at(mm, p, addr)
    assert folio is not None and folio.order == 0 and folio.pfn < top
    assert compact_memory(mm) == (1, 0)
    moved = folio_at(mm, p, addr)
    assert moved is not None and moved.pfn == top + 1
    assert user_read(mm, p, addr) == 0x42 and allocator_consistent(mm) == []
    assert dma32.free.find_exact(top + 512, 9) is not None  # the wholly free pageblock was left alone


def test_compaction_never_isolates_a_pmd_sized_thp() -> None:
    """skip_isolation_on_order(): a folio of pageblock_order or more is skipped even by compact_memory."""
    machine, mm = boot_mm(mem=GiB)
    _partly_used_pageblock_at_the_top(mm, mm.zones[1])
    p = mm_alloc(mm)
    addr = p.mmap_anon(2 * MiB)
    user_write(mm, p, addr, 0x42)  # a write fault in a THP-eligible region: a PMD-sized anon folio
    folio = folio_at(mm, p, addr)
    assert folio is not None and folio.order == 9
    assert compact_memory(mm) == (0, 0) and folio_at(mm, p, addr) is folio
    assert not [e for e in events_of(machine, MigrateFolio) if e.src == folio.pfn]  # not even tried


def test_compaction_skips_pinned_anonymous_folios() -> None:
    machine, mm = boot_mm(mem=GiB)
    p, addr = _anon(mm)
    folio = folio_at(mm, p, addr)
    assert folio is not None and pin_folio(mm, folio, longterm=False) is folio
    assert compact_memory(mm) == (0, 0) and folio_at(mm, p, addr) is folio
    ret, _ = migrate_folio_to(mm, folio, lambda f: alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0), "test")
    # the pin took GUP_PIN_COUNTING_BIAS references
    assert ret == -11 and events_of(machine, MigrateFolio)[-1].why == "refcount 1025 != expected 1 (pinned)"
    unpin_folio(mm, folio)
    assert folio.refcount == 1 and folio.pincount == 0


def test_numa_migration_moves_a_folio_to_the_other_node() -> None:
    _, mm = boot_mm(nodes=2)
    assert [(n.nid, n.start_pfn, n.end_pfn) for n in mm.nodes] == [(0, 0, 0x148000), (1, 0x148000, 0x240000)]
    p, addr = _anon(mm)
    folio = folio_at(mm, p, addr)
    assert folio is not None and folio.nid == 0
    ret, dst = migrate_to_node(mm, folio, 1)
    assert ret == 0 and dst is not None and dst.nid == 1 and folio_at(mm, p, addr) is dst
    assert user_read(mm, p, addr) == 0x42


def test_kernel_allocations_cannot_migrate() -> None:
    machine, mm = boot_mm()
    folio = alloc_pages(mm, GFP_KERNEL, 0)
    assert folio is not None
    ret, _ = migrate_folio_to(mm, folio, lambda f: alloc_pages(mm, GFP_KERNEL, 0), "test")
    assert ret == -16
    assert events_of(machine, MigrateFolio)[-1].why == "not on the LRU and no movable_ops: cannot be isolated"


def test_movable_ops_folios_migrate_through_their_callback() -> None:
    _, mm = boot_mm()
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0)
    assert folio is not None
    folio.movable_ops = True  # a balloon/zsmalloc page: not on the LRU, but movable
    ret, dst = migrate_folio_to(mm, folio, lambda f: alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0), "test")
    assert ret == 0 and dst is not None and dst.movable_ops


def test_offline_fails_with_ebusy_on_an_unmovable_page() -> None:
    machine, mm = boot_mm(persistent_huge_zero_folio=True)
    hz = mm.huge_zero.folio
    assert hz is not None
    start, end = memory_block_range(mm, hz.pfn << 12)
    assert (start, end) == (0x100000, 0x108000)
    assert offline_pages(mm, start, end) == -16
    assert events_of(machine, MemoryOffline)[-1].reason == "failure to isolate range"
    texts = [e.text for e in events_of(machine, KernelWarning)]
    assert "memory offlining [mem 0x100000000-0x107ffffff] failed due to failure to isolate range" in texts
    assert mm.zones[2].pageblocks.get(start + 4096) != "ISOLATE" and allocator_consistent(mm) == []


def test_offline_of_a_zone_movable_block_migrates_its_folios_out() -> None:
    _machine, mm = boot_mm(movablecore=GiB)
    movable = mm.zones[-1]
    # [8G, 9G): movablecore from the top of RAM; the memmap went below it
    assert movable.type == ZoneType.MOVABLE and (movable.start_pfn, movable.end_pfn) == (0x200000, 0x240000)
    p, addr = _anon(mm)
    folio = folio_at(mm, p, addr)
    assert folio is not None and folio.zone == "Movable"  # GFP_HIGHUSER_MOVABLE prefers ZONE_MOVABLE
    start, end = memory_block_range(mm, folio.pfn << 12)
    free_before = mm.free_pages
    assert offline_pages(mm, start, end) == 0
    moved = folio_at(mm, p, addr)
    assert moved is not None and not start <= moved.pfn < end and moved.zone == "Movable"
    assert user_read(mm, p, addr) == 0x42
    assert mm.free_pages == free_before - (end - start) and allocator_consistent(mm) == []
    assert online_pages(mm, start, end) == 0 and mm.free_pages == free_before and allocator_consistent(mm) == []


def test_offline_of_a_range_across_two_zones_is_einval() -> None:
    """test_pages_in_a_zone(): the range must lie in one zone ([15M, 17M) crosses ZONE_DMA's 16M end)."""
    machine, mm = boot_mm()
    assert offline_pages(mm, 0xF00, 0x1100) == -22
    event = events_of(machine, MemoryOffline)[-1]
    assert (event.ret, event.reason) == (-22, "range not in one zone")


def test_offline_of_a_block_with_reserved_memory_is_ebusy_and_names_it() -> None:
    """Memory memblock kept (here the per-CPU first chunk) is PageReserved: has_unmovable_pages() refuses it."""
    machine, mm = boot_mm()
    start, end = memory_block_range(mm, 0x230000 << 12)
    assert offline_pages(mm, start, end) == -16
    texts = [e.text for e in events_of(machine, KernelWarning)]
    assert "page dumped because: unmovable page: reserved memory (per-CPU first chunk, unit 0)" in texts
    assert events_of(machine, MemoryOffline)[-1].ret == -16


def test_online_of_a_block_not_offlined_is_refused() -> None:
    _machine, mm = boot_mm(movablecore=GiB)
    start, end = memory_block_range(mm, 8 * GiB)
    with pytest.raises(AddressError, match="is not an offlined memory block") as err:
        online_pages(mm, start, end)
    assert err.value.hint == "online only what offline_pages() took out"


def test_with_debug_pagealloc_an_onlined_block_is_freed_unmapped() -> None:
    """online_pages_range() maps the range, frees it to the buddy, and the free path unmaps it again."""
    machine, mm = boot_mm(movablecore=GiB, spec={"debug_pagealloc": True})
    start, end = memory_block_range(mm, 8 * GiB)
    assert offline_pages(mm, start, end) == 0 and online_pages(mm, start, end) == 0
    assert not machine.kernel.kernel_page_present(start) and not machine.kernel.kernel_page_present(end - 1)
    assert mm.is_free(start) and allocator_consistent(mm) == []


def test_a_migration_target_may_come_from_highmem_only_for_a_zone_movable_source() -> None:
    """alloc_migration_target(): __GFP_HIGHMEM (so ZONE_MOVABLE) only when the source is in ZONE_MOVABLE."""
    _machine, mm = boot_mm(movablecore=GiB)
    kernel, user = alloc_pages(mm, GFP_KERNEL, 0), alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0)
    assert kernel is not None and user is not None and (kernel.zone, user.zone) == ("Normal", "Movable")
    assert not migration_target_gfp(mm, kernel, GFP_KERNEL) & Gfp.HIGHMEM
    assert migration_target_gfp(mm, user, GFP_KERNEL) & Gfp.HIGHMEM


def test_offline_migrates_to_another_node_when_one_has_memory() -> None:
    """do_migrate_range(): the node mask is N_MEMORY less the source folio's node."""
    _machine, mm = boot_mm(nodes=2, movablecore=GiB)
    p, addr = _anon(mm)
    folio = folio_at(mm, p, addr)
    assert folio is not None and folio.zone == "Movable"
    start, end = memory_block_range(mm, folio.pfn << 12)
    assert offline_pages(mm, start, end) == 0
    moved = folio_at(mm, p, addr)
    assert moved is not None and moved.nid != folio.nid and user_read(mm, p, addr) == 0x42


def test_offline_of_zone_movable_loops_to_a_signal_on_a_page_in_use_that_cannot_move() -> None:
    """has_unmovable_pages() passes ZONE_MOVABLE, but test_pages_isolated() needs every page free: a page in
    use that is neither on the LRU nor movable keeps offline_pages() looping until a signal (-EINTR)."""
    machine, mm = boot_mm(movablecore=GiB)
    stuck = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0, label="never on the LRU")
    assert stuck is not None and stuck.zone == "Movable"
    start, end = memory_block_range(mm, stuck.pfn << 12)
    assert offline_pages(mm, start, end) == -4
    assert events_of(machine, MemoryOffline)[-1].reason == "signal backoff"
    assert mm.folio_of(stuck.pfn) is stuck and allocator_consistent(mm) == []


def test_offline_loops_to_a_signal_on_a_page_an_oops_leaked() -> None:
    """A leaked page is neither free nor movable: test_pages_isolated() never passes in ZONE_MOVABLE, and
    has_unmovable_pages() refuses it elsewhere."""
    machine, mm = boot_mm(movablecore=GiB)
    for gfp in (GFP_HIGHUSER_MOVABLE, GFP_KERNEL):
        folio = alloc_pages(mm, gfp, 0, label="leaked")
        assert folio is not None
        _leak(mm, folio)  # what an oops does to the page its task was filling
        start, end = memory_block_range(mm, folio.pfn << 12)
        expected = (-4, "signal backoff") if folio.zone == "Movable" else (-16, "failure to isolate range")
        assert (offline_pages(mm, start, end), events_of(machine, MemoryOffline)[-1].reason) == expected


def test_longterm_pin_migrates_out_of_zone_movable() -> None:
    _machine, mm = boot_mm(movablecore=GiB)
    p, addr = _anon(mm)
    folio = folio_at(mm, p, addr)
    assert folio is not None and not folio_is_longterm_pinnable(mm, folio)
    pinned = pin_folio(mm, folio, longterm=True)
    assert pinned is not None and pinned is not folio and pinned.zone == "Normal"
    assert folio_is_longterm_pinnable(mm, pinned) and pinned.pincount == 1
    assert folio_at(mm, p, addr) is pinned and user_read(mm, p, addr) == 0x42
    assert folio_is_longterm_pinnable(mm, mm.zero_page)
