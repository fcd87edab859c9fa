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
from rofolio.mm import bootmem
from rofolio.mm.buddy import free_pages_memory
from rofolio.mm.config import MMConfig
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import ZoneType
from rofolio.mm.policy import make_policy
from rofolio.mm.state import MMState
from rofolio.mm.zero_page import HugeZeroFolio
from rofolio.mm.zone import _ram_pfns

__all__ = ["mm_core_init"]


def mm_core_init(kernel: ArchKernel, config: MMConfig | None = None) -> MMState:
    """mm_core_init() → memblock_free_all(): build zones, reserve boot memory, free the rest to the buddy.

    With DEBUG_PAGEALLOC every page freed to the buddy is unmapped from the
    direct map (free_pages_prepare() → debug_pagealloc_unmap_pages()).
    """
    # DEBUG_PAGEALLOC is the arch's direct map's to decide (it maps RAM with 4K pages for it)
    config = replace(config or MMConfig(), debug_pagealloc=kernel.debug_pagealloc)
    mm = MMState(kernel, config, make_policy(config.lifetime),
                 HugeZeroFolio(persistent=config.persistent_huge_zero_folio))
    ram = _ram_pfns(kernel.memory)
    movable = next((z.start_pfn for z in mm.zones if z.type == ZoneType.MOVABLE), None)
    mm.reserved = bootmem.reserved_ranges(kernel, ram, mm.nodes, movable)
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
