"""The memory-management state of one machine: what the kernel keeps in mm globals.

``MMState`` holds the nodes and zones (``node_data[]``), the folios that are
allocated or reserved (``mem_map`` restricted to what is in use: sparse), page
contents, the huge zero folio globals of mm/huge_memory.c, the shrinkers, the
processes and the lifetime policy.  Everything an mm function changes is
here or in the arch kernel, so two machines run side by side.

``mm_core_init()`` is the hand-over from memblock to the buddy allocator
(mm_core_init() → memblock_free_all()); call it on a machine booted to
SYSTEM_SCHEDULING, then ``rofolio.mm.zero_page.hugepage_init()`` for the
initcalls, then finish the boot.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from rofolio.arch import ArchKernel
from rofolio.mm import bootmem
from rofolio.mm.buddy import free_pages_memory
from rofolio.mm.config import MMConfig
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import ZoneType
from rofolio.mm.zone import Node, Zone, _ram_pfns, build_nodes

if TYPE_CHECKING:
    from rofolio.mm.policy import LifetimePolicy
    from rofolio.mm.process import MmStruct
    from rofolio.mm.shrinker import Shrinker
    from rofolio.mm.zero_page import HugeZeroFolio


class MMState:
    """All generic MM state of one machine."""

    def __init__(self, kernel: ArchKernel, config: MMConfig) -> None:
        from rofolio.mm.policy import make_policy
        from rofolio.mm.zero_page import HugeZeroFolio

        self.kernel = kernel
        self.config = config
        self.nodes: list[Node] = build_nodes(kernel.memory, config)
        self.zones: list[Zone] = sorted((z for n in self.nodes for z in n.zones), key=lambda z: z.start_pfn)
        self._zone_starts = [z.start_pfn for z in self.zones]
        self.folios: SortedDict = SortedDict()  # first pfn -> Folio (allocated or reserved)
        self.page_data: dict[int, int] = {}  # pfn -> non-zero content token
        self.policy: LifetimePolicy = make_policy(config.lifetime)
        self.huge_zero: HugeZeroFolio = HugeZeroFolio(persistent=config.persistent_huge_zero_folio)
        self.shrinkers: list[Shrinker] = []
        self.processes: dict[int, MmStruct] = {}
        self.readonly_history: SortedDict = SortedDict()  # first pfn -> end pfn of every range made read-only
        self.leaked: list[Folio] = []
        self.next_mm_id = 1
        self.reserved: list[tuple[int, int, str]] = []
        self.zero_page: Folio | None = None
        self.initcalls_done = False

    # ----------------------------------------------------------------- lookups
    def zone_of(self, pfn: int) -> Zone | None:
        """page_zone(): the zone whose span holds ``pfn``."""
        index = bisect_right(self._zone_starts, pfn) - 1
        if index < 0:
            return None
        zone = self.zones[index]
        return zone if zone.spans(pfn) else None

    def folio_of(self, pfn: int) -> Folio | None:
        """page_folio() for an allocated or reserved page, else None."""
        index = self.folios.bisect_right(pfn) - 1
        if index < 0:
            return None
        folio: Folio = self.folios.values()[index]
        return folio if folio.contains(pfn) else None

    def folios_in(self, start: int, end: int) -> list[Folio]:
        """Allocated folios whose first pfn lies in [start, end), by pfn."""
        return [self.folios[p] for p in self.folios.irange(start, end - 1)]

    def movable_pages(self, start: int, end: int) -> int:
        """Pages of LRU or movable_ops folios in [start, end) (prep_move_freepages_block's count)."""
        return sum(f.nr_pages for f in self.folios_in(start, end) if f.lru or f.movable_ops)

    def zonelist(self, nid: int, highest: ZoneType, thisnode: bool = False) -> list[Zone]:
        """The fallback zonelist of ``nid`` up to ``highest``: own node's zones high to low, then the others."""
        order = [nid] + ([] if thisnode else [n.nid for n in self.nodes if n.nid != nid])
        out: list[Zone] = []
        for n in order:
            out.extend(z for z in reversed(self.nodes[n].zones) if z.type <= highest)
        return out

    def is_free(self, pfn: int) -> bool:
        zone = self.zone_of(pfn)
        return zone is not None and zone.free.find(pfn) is not None

    @property
    def free_pages(self) -> int:
        return sum(z.free.free_pages for z in self.zones)

    def record_readonly(self, pfn: int, nr_pages: int) -> None:
        """Remember a range made read-only, so invariants can check it wherever it ends up."""
        end = max(self.readonly_history.get(pfn, pfn), pfn + nr_pages)
        self.readonly_history[pfn] = end

    def describe(self) -> list[str]:
        return [z.describe() for z in self.zones]


def bisect_right(values: list[int], x: int) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < values[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def mm_core_init(kernel: ArchKernel, config: MMConfig | None = None) -> MMState:
    """mm_core_init() → memblock_free_all(): build zones, reserve boot memory, free the rest to the buddy.

    With DEBUG_PAGEALLOC every page freed to the buddy is unmapped from the
    direct map (free_pages_prepare() → debug_pagealloc_unmap_pages()).
    """
    # DEBUG_PAGEALLOC is the arch's direct map's to decide (it maps RAM with 4K pages for it)
    mm = MMState(kernel, replace(config or MMConfig(), debug_pagealloc=kernel.debug_pagealloc))
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
