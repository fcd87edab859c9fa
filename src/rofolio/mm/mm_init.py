"""mm/mm_init.c: ``mm_core_init()``, the hand-over from memblock to the buddy allocator.

Call it on a machine booted to SYSTEM_SCHEDULING, then
``rofolio.mm.zero_page.hugepage_init()`` for the initcalls, then finish the
boot.  It sits above ``rofolio.mm.state``: it builds the ``MMState`` and gives
it its lifetime policy and huge zero folio, so the state never imports the
code that works on it.
"""

from __future__ import annotations

from dataclasses import replace

from rofolio.arch import ArchKernel
from rofolio.kversion import RESERVED_PAGEBLOCKS_MOVABLE, KernelVersion
from rofolio.mm import bootmem
from rofolio.mm.buddy import free_pages_memory
from rofolio.mm.config import MMConfig
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import MigrateType, ZoneType
from rofolio.mm.pageblock import PAGEBLOCK_NR_PAGES
from rofolio.mm.policy import make_policy
from rofolio.mm.state import MMState
from rofolio.mm.zero_page import HugeZeroFolio
from rofolio.mm.zone import _ram_pfns
from rofolio.physmem import SECTION_SIZE
from rofolio.units import PAGE_SHIFT, align_up

__all__ = ["DEFERRED_STRUCT_PAGE_INIT", "first_deferred_pfn", "mm_core_init"]


def mm_core_init(kernel: ArchKernel, config: MMConfig | None = None, cpus: int = 1,
                 version: KernelVersion | None = None) -> MMState:
    """mm_core_init() → memblock_free_all(): build zones, reserve boot memory, free the rest to the buddy.

    With DEBUG_PAGEALLOC every page freed to the buddy is unmapped from the
    direct map (free_pages_prepare() → debug_pagealloc_unmap_pages()).  ``cpus`` sizes the per-CPU first
    chunk; ``version`` (the kernel release, the default kernel's if None) decides the migratetype of reserved
    pageblocks and the MM rules that changed with the kernel (``MMState.version``).
    """
    # DEBUG_PAGEALLOC is the arch's direct map's to decide (it maps RAM with 4K pages for it)
    config = replace(config or MMConfig(), debug_pagealloc=kernel.debug_pagealloc)
    mm = MMState(kernel, config, make_policy(config.lifetime),
                 HugeZeroFolio(persistent=config.persistent_huge_zero_folio))
    ram = _ram_pfns(kernel.memory)
    movable = next((z.start_pfn for z in mm.zones if z.type == ZoneType.MOVABLE), None)
    mm.reserved = bootmem.reserved_ranges(kernel, ram, mm.nodes, movable, cpus)
    if version is not None:
        mm.version = version
    if not RESERVED_PAGEBLOCKS_MOVABLE.applies(mm.version):
        _unmovable_reserved_pageblocks(mm, ram)
    for start, end in bootmem.free_ranges(ram, mm.reserved):
        free_pages_memory(mm.zone_of, start, end)
        if mm.config.debug_pagealloc:
            kernel.kernel_map_pages(start, end - start, False)
    zero_pfn = bootmem.empty_zero_page_pfn(kernel)
    if zero_pfn is None:  # arch-neutral fallback: a reserved page at the end of the kernel image or low memory
        image = bootmem.kernel_image_range(kernel)
        zero_pfn = image[1] - 1 if image else mm.reserved[0][1] - 1
    mm.zero_page = Folio(zero_pfn, 0, refcount=1, reserved=True, label="empty_zero_page",
                         zone=z.name if (z := mm.zone_of(zero_pfn)) else "")
    mm.folios[zero_pfn] = mm.zero_page
    return mm


# CONFIG_DEFERRED_STRUCT_PAGE_INIT=y in the modelled builds (Debian's 6.1 and 7.2 amd64 configs)
DEFERRED_STRUCT_PAGE_INIT = True


def first_deferred_pfn(zone_start: int, range_start: int, range_end: int) -> int | None:
    """defer_init() (mm/mm_init.c; mm/page_alloc.c before v6.4) for the memblock range that ends the node:
    memmap_init_range() initialises one section's worth of its pages, then defers from the next section
    boundary on; None if the range ends first."""
    section = SECTION_SIZE >> PAGE_SHIFT
    start = max(zone_start, range_start)
    pfn = align_up(start + section, section)  # nr_initialised > PAGES_PER_SECTION, at a section boundary
    return pfn if pfn < range_end else None


def _unmovable_reserved_pageblocks(mm: MMState, ram: list[tuple[int, int]]) -> None:
    """Before 98b7beba1ee6 (v6.13): memmap_init_range() marks every pageblock it initialises MIGRATE_MOVABLE,
    and deferred_init_memmap() does the same only for the free ranges it frees (deferred_free_range());
    a pageblock of the deferred part whose first page is reserved is initialised by init_reserved_page(),
    which sets no migratetype, so it stays 0, MIGRATE_UNMOVABLE: what memblock frees in it goes to the
    unmovable free lists."""
    if not DEFERRED_STRUCT_PAGE_INIT:
        return
    for node in mm.nodes:
        last = max((z for z in node.zones if z.present_pages), key=lambda z: z.start_pfn, default=None)
        node_ram = [(max(s, node.start_pfn), min(e, node.end_pfn)) for s, e in ram]
        node_ram = [(s, e) for s, e in node_ram if s < e]
        if last is None or not node_ram or node_ram[-1][1] != last.end_pfn:
            continue
        deferred = first_deferred_pfn(last.start_pfn, *node_ram[-1])
        if deferred is None:
            continue
        for start, end, _ in mm.reserved:  # the pageblocks whose first page lies in [start, end)
            first, stop = align_up(max(start, deferred), PAGEBLOCK_NR_PAGES), min(end, last.end_pfn)
            if first < stop:
                last.pageblocks.set_range(first, stop, MigrateType.UNMOVABLE)
