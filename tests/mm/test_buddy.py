"""The buddy allocator: zones, placement, orders, migratetypes, failure, and content writes through the direct map."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rofolio.events import Flush, FlushKind, KernelWarning
from rofolio.machine import Machine, MachineSpec
from rofolio.mm import MMConfig, mm_core_init
from rofolio.mm.events import ContentWrite, KernelOops, PageAllocFail
from rofolio.mm.gfp import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    HUGE_ZERO_FOLIO_GFP,
    MAX_PAGE_ORDER,
    Gfp,
    MigrateType,
    ZoneType,
    gfp_text,
)
from rofolio.mm.invariants import allocator_consistent
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.units import PAGE_SHIFT, GiB, TiB
from tests.mm.conftest import boot_mm, events_of

NORMAL_START = (4 * GiB) >> PAGE_SHIFT  # 0x100000: ZONE_NORMAL of a QEMU machine starts at 4 GiB


def _image_pfns(machine: Machine) -> tuple[int, int]:
    image = machine.kernel.image
    return image.text >> PAGE_SHIFT, (image.end + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT


def test_zones_of_an_8g_qemu_machine() -> None:
    machine, mm = boot_mm(initcalls=False)
    text, end = _image_pfns(machine)
    spans = [(z.type, z.start_pfn, z.end_pfn, z.present_pages, z.managed_pages) for z in mm.zones]
    # DMA < 16M (managed: [1M, 16M)), DMA32 < 4G without the kernel image, Normal without memblock's top-down
    # allocations: NODE_DATA(0) (43 pages), then the memmap (64 sections hold RAM, [0, 3G) and [4G, 9G), each
    # with 512 pages of struct page) in one 2M-aligned buffer below it, then the per-CPU first chunk in one 2M
    # atom below that: 8 units of 64 pages (8 CPUs), each keeping 62 (s217088 + r8192 + d28672)
    node_data = 0x240000 - 43
    memmap = (node_data - 64 * 512) & ~511
    assert spans == [(ZoneType.DMA, 0, 0x1000, 3999, 3840),
                     (ZoneType.DMA32, 0x1000, 0xBFFE0, 782304, 782304 - (end - text)),
                     (ZoneType.NORMAL, NORMAL_START, 0x240000, 1310720, 1310720 - 43 - 64 * 512 - 8 * 62)]
    percpu = memmap - 512
    assert [(s, e, what) for s, e, what in mm.reserved] == [
        (0, 0x100, "low memory"), (text, end, "kernel image"),
        *[(percpu + 64 * i, percpu + 64 * i + 62, f"per-CPU first chunk, unit {i}") for i in range(8)],
        (memmap, memmap + 64 * 512, "memmap node 0"), (node_data, 0x240000, "NODE_DATA(0)")]


def test_boot_memory_is_freed_to_the_tail_in_ascending_order() -> None:
    _, mm = boot_mm(initcalls=False)
    normal = mm.zones[2]
    order10 = normal.free.list_order(MAX_PAGE_ORDER, MigrateType.MOVABLE)
    assert order10[:3] == [0x100000, 0x100400, 0x100800]
    assert order10 == sorted(order10) and len(order10) == 1247
    # the smaller blocks are what memblock's top-down allocations left free: the tail of each per-CPU unit
    # (pcpu_fc_free(), two pages each) and the gap between the memmap buffer and NODE_DATA(0)
    small = {o: normal.free.list_order(o, MigrateType.MOVABLE) for o in range(MAX_PAGE_ORDER)}
    assert {o: pfns for o, pfns in small.items() if pfns} == {
        0: [0x23FFD4], 1: [0x237C3E + 64 * i for i in range(8)], 2: [0x23FFD0], 4: [0x23FFC0], 6: [0x23FF80],
        7: [0x23FF00], 8: [0x23FE00]}


def test_fresh_allocator_serves_lowest_address_first_in_the_highest_zone() -> None:
    machine, mm = boot_mm(initcalls=False)
    zero = alloc_pages(mm, HUGE_ZERO_FOLIO_GFP, 9)
    thp = alloc_pages(mm, GFP_HIGHUSER_MOVABLE | Gfp.COMP, 9)
    table = alloc_pages(mm, GFP_KERNEL, 0)
    anon = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0)
    dma32 = alloc_pages(mm, GFP_KERNEL | Gfp.DMA32, 0)
    assert zero and thp and table and anon and dma32
    # the unmovable order-9 request claims the first order-10 block, the movable one takes the next;
    # expand() put the upper halves at the heads of the order-9 lists, which the unmovable order-0 request
    # splits; the movable order-0 one takes the smallest movable block, the page memblock left below NODE_DATA(0)
    assert [f.pfn for f in (zero, thp, table, anon)] == [0x100000, 0x100400, 0x100200, 0x23FFD4]
    # an unmovable request with no unmovable free block claims the *largest* foreign block first
    # (__rmqueue_claim), the first order-10 block after the kernel image, not the small pieces at its end
    end = _image_pfns(machine)[1]
    assert dma32.zone == "DMA32" and dma32.pfn == (end + 1023) // 1024 * 1024
    normal = mm.zones[2]
    assert normal.pageblocks.runs()[:3] == [(0, MigrateType.MOVABLE), (0x100000, MigrateType.UNMOVABLE),
                                            (0x100400, MigrateType.MOVABLE)]
    assert normal.free.list_order(0, MigrateType.UNMOVABLE) == [0x100201]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_PAGE_ORDER), st.booleans()), min_size=1, max_size=12))
def test_every_block_is_naturally_aligned_and_frees_merge_back(requests: list[tuple[int, bool]]) -> None:
    machine = Machine.boot(MachineSpec.build(mem=GiB))
    mm = mm_core_init(machine.kernel, MMConfig())
    free_before = mm.free_pages
    folios = []
    for order, movable in requests:
        folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE if movable else GFP_KERNEL, order)
        assert folio is not None and folio.pfn % (1 << order) == 0
        folios.append(folio)
    assert allocator_consistent(mm) == []
    for folio in folios:
        folio_put(mm, folio)
    assert mm.free_pages == free_before and allocator_consistent(mm) == []


def test_allocation_failure_when_the_zonelist_is_exhausted() -> None:
    machine, mm = boot_mm(initcalls=False)
    got = 0
    while alloc_pages(mm, GFP_KERNEL | Gfp.DMA | Gfp.NOWARN, MAX_PAGE_ORDER) is not None:
        got += 1
    assert got == 3  # [1M, 16M) holds three naturally aligned 4 MiB blocks: 4M, 8M, 12M
    assert events_of(machine, PageAllocFail)[-1].reason == "no free block in the zonelist"
    mark = len(machine.log.events)
    assert alloc_pages(mm, GFP_KERNEL | Gfp.DMA, MAX_PAGE_ORDER) is None
    warnings = [e.text for e in events_of(machine, KernelWarning, mark)]
    assert warnings == [f"page allocation failure: order:10, mode:{int(GFP_KERNEL | Gfp.DMA):#x}(GFP_KERNEL|__GFP_DMA)"]
    assert alloc_pages(mm, GFP_KERNEL, MAX_PAGE_ORDER + 1) is None


def test_gfp_text_names_the_composite_masks() -> None:
    # the huge zero folio's mask is GFP_TRANSHUGE without __GFP_MOVABLE: no composite matches any more
    assert gfp_text(HUGE_ZERO_FOLIO_GFP) == ("__GFP_HIGHMEM|__GFP_IO|__GFP_FS|__GFP_ZERO|__GFP_DIRECT_RECLAIM|"
                                             "__GFP_NOWARN|__GFP_COMP|__GFP_NOMEMALLOC|__GFP_HARDWALL|__GFP_ZEROTAGS")
    assert gfp_text(GFP_KERNEL | Gfp.ZERO) == "GFP_KERNEL|__GFP_ZERO"
    assert gfp_text(GFP_HIGHUSER_MOVABLE | Gfp.ZERO) == "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"


def test_the_allocator_stays_sparse_on_a_64_tib_machine() -> None:
    _, mm = boot_mm(mem=64 * TiB, initcalls=False)
    normal = mm.zones[2]
    assert normal.end_pfn == (64 * TiB) >> PAGE_SHIFT  # RAM above MAX_PHYSMEM_BITS (46) is dropped
    # one run of 16514051 order-10 blocks (the memmap takes the top 1 GiB, the per-CPU first chunk the 2 MiB
    # below it, NODE_DATA(0) the top pages), not 16 million entries, then the pieces memblock left free there
    runs = [(r.pfn, r.order, r.count) for r in normal.free.runs()]
    assert runs[0] == (NORMAL_START, 10, 16514051) and len(runs) == 15
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0)
    assert folio is not None and folio.pfn >= NORMAL_START


def test_gfp_zero_into_a_read_only_free_block_oopses_instead_of_writing() -> None:
    machine, mm = boot_mm(initcalls=False)
    k = machine.kernel
    k.set_memory_ro(k.page_address(NORMAL_START), 1)  # a free page made read-only behind the allocator's back
    mark = len(machine.log.events)
    assert alloc_pages(mm, GFP_KERNEL | Gfp.ZERO, 0) is None  # an unmovable page: the first block of Normal
    oops = events_of(machine, KernelOops, mark)
    assert len(oops) == 1 and oops[0].pfn == NORMAL_START and oops[0].path == "__GFP_ZERO"
    assert oops[0].text.splitlines()[:3] == [
        f"BUG: unable to handle page fault for address: {k.page_address(NORMAL_START):016x}",
        "#PF: supervisor write access in kernel mode",
        "#PF: error_code(0x0003) - permissions violation",
    ]
    assert machine.counters.faults == 1
    assert [f.pfn for f in mm.leaked] == [NORMAL_START]  # the oopsing task took the page with it


def test_init_on_free_zeroes_at_free_and_skips_gfp_zero_at_allocation() -> None:
    machine, mm = boot_mm(initcalls=False, init_on_free=True)
    mark = len(machine.log.events)
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE | Gfp.ZERO, 0)
    assert folio is not None and not events_of(machine, ContentWrite, mark)  # post_alloc_hook: !want_init_on_free()
    folio_put(mm, folio)
    assert [(e.pfn, e.path) for e in events_of(machine, ContentWrite, mark)] == [(folio.pfn, "init_on_free")]


def test_page_poisoning_takes_precedence_over_init_on_free() -> None:
    machine, mm = boot_mm(initcalls=False, init_on_free=True, page_poisoning=True)
    folio = alloc_pages(mm, GFP_KERNEL, 1)
    assert folio is not None
    mark = len(machine.log.events)
    folio_put(mm, folio)
    assert [e.path for e in events_of(machine, ContentWrite, mark)] == ["page_poison"]
    assert mm.page_data[folio.pfn] == 0xAA


def test_debug_pagealloc_unmaps_free_pages_and_maps_them_on_allocation() -> None:
    machine, mm = boot_mm(initcalls=False, spec={"debug_pagealloc": True})
    k = machine.kernel
    assert mm.config.debug_pagealloc
    assert not k.direct_map_present(NORMAL_START)  # freed to the buddy at boot: unmapped
    mark = len(machine.log.events)
    folio = alloc_pages(mm, GFP_KERNEL, 2)
    assert folio is not None and folio.pfn == NORMAL_START
    assert all(k.direct_map_writable(p) for p in range(folio.pfn, folio.end))
    assert [e.flush for e in events_of(machine, Flush, mark)] == [FlushKind.LOCAL_ALL]
    folio_put(mm, folio)
    assert not k.direct_map_present(NORMAL_START)
