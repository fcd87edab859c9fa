"""The memory-management state of one machine: what the kernel keeps in mm globals.

``MMState`` holds the nodes and zones (``node_data[]``), the folios that are
allocated or reserved (``mem_map`` restricted to what is in use: sparse), page
contents, the huge zero folio globals of mm/huge_memory.c, the shrinkers, the
processes and the lifetime policy.  Everything an mm function changes is
here or in the arch kernel, so two machines run side by side.

``MMState`` is data: it is given its lifetime policy and huge zero folio
globals by ``rofolio.mm.mm_init.mm_core_init()`` and imports none of the code
that works on it (policies, zero page, allocator) at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from rofolio.arch import ArchKernel
from rofolio.kversion import DEFAULT_KERNEL, KernelVersion
from rofolio.mm.config import MMConfig
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import ZoneType
from rofolio.mm.zone import Node, Zone, build_nodes

if TYPE_CHECKING:
    from rofolio.mm.policy import LifetimePolicy
    from rofolio.mm.process import MmStruct
    from rofolio.mm.shrinker import Shrinker
    from rofolio.mm.zero_page import HugeZeroFolio

__all__ = ["MMState"]


class MMState:
    """All generic MM state of one machine."""

    def __init__(self, kernel: ArchKernel, config: MMConfig, policy: LifetimePolicy,
                 huge_zero: HugeZeroFolio) -> None:
        self.kernel = kernel
        self.config = config
        self.nodes: list[Node] = build_nodes(kernel.memory, config)
        self.zones: list[Zone] = sorted((z for n in self.nodes for z in n.zones), key=lambda z: z.start_pfn)
        self._zone_starts = [z.start_pfn for z in self.zones]
        self.folios: SortedDict = SortedDict()  # first pfn -> Folio (allocated or reserved)
        self.page_data: dict[int, int] = {}  # pfn -> non-zero content token
        self.policy = policy  # from the registry in rofolio.mm.policy, chosen by config.lifetime
        self.huge_zero = huge_zero
        self.shrinkers: list[Shrinker] = []
        self.processes: dict[int, MmStruct] = {}
        self.readonly_history: SortedDict = SortedDict()  # first pfn -> end pfn of every range made read-only
        self.leaked: list[Folio] = []
        self.next_mm_id = 1
        self.reserved: list[tuple[int, int, str]] = []
        self.zero_page: Folio | None = None
        self.initcalls_done = False
        self.thp_unsupported = False  # hugepage_init() found no has_transparent_hugepage()
        self.thp_flags_cleared = False  # hugepage_init() zeroed transparent_hugepage_flags (under 512 MiB)
        self.version: KernelVersion = DEFAULT_KERNEL  # the kernel release whose MM rules apply (mm_core_init())

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

    def zonelist(self, nid: int, highest: ZoneType, thisnode: bool = False,
                 nodemask: frozenset[int] | None = None) -> list[Zone]:
        """The fallback zonelist of ``nid`` up to ``highest``: own node's zones high to low, then the others;
        only the nodes of ``nodemask`` when one is given (for_next_zone_zonelist_nodemask())."""
        order = [nid] + ([] if thisnode else [n.nid for n in self.nodes if n.nid != nid])
        if nodemask is not None:
            order = [n for n in order if n in nodemask]
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
