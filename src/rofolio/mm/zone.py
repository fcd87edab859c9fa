"""Nodes and zones built from the machine's physical memory map.

``free_area_init()`` (mm/mm_init.c) sizes each node's zones from the
architecture's limits: on x86-64 ZONE_DMA ends at 16 MiB (MAX_DMA_PFN),
ZONE_DMA32 at 4 GiB (MAX_DMA32_PFN), ZONE_NORMAL takes the rest.  With
``movablecore=`` the top of each node's RAM becomes ZONE_MOVABLE, the amount
spread evenly over the nodes (find_zone_movable_pfns_for_nodes() turns
movablecore into a kernelcore requirement and spreads that evenly).  Two NUMA nodes
split RAM in halves at a memory-section boundary, like an SRAT that gives
each node one contiguous half.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rofolio.errors import ConfigError
from rofolio.mm.config import SECTION_SIZE, MMConfig
from rofolio.mm.free_area import FreeArea
from rofolio.mm.gfp import ZoneType
from rofolio.mm.pageblock import PageblockMap
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, GiB, MiB, align_down, align_up, approx_size, format_size

__all__ = ["Node", "Zone", "build_nodes", "node_boundaries"]

DMA_LIMIT = 16 * MiB  # MAX_DMA_PFN (arch/x86/include/asm/dma.h)
DMA32_LIMIT = 4 * GiB  # MAX_DMA32_PFN


@dataclass
class Zone:
    """struct zone: the pfns it spans, its free lists and its pageblock migratetypes."""

    nid: int
    type: ZoneType
    start_pfn: int
    end_pfn: int
    present_pages: int  # RAM pages inside the span
    free: FreeArea = field(default_factory=FreeArea)
    pageblocks: PageblockMap = field(default_factory=PageblockMap)
    managed_pages: int = 0  # pages handed to the buddy allocator (__free_pages_core)
    offline_pages: int = 0

    @property
    def name(self) -> str:
        return self.type.label

    def spans(self, pfn: int) -> bool:
        """zone_spans_pfn()."""
        return self.start_pfn <= pfn < self.end_pfn

    def describe(self) -> str:
        return (f"Node {self.nid}, zone {self.name:>8}: [pfn {self.start_pfn:#x}-{self.end_pfn:#x}) "
                f"present {self.present_pages} managed {self.managed_pages} free {self.free.free_pages}")


@dataclass
class Node:
    """pg_data_t: one NUMA node and its zones, lowest zone first."""

    nid: int
    start_pfn: int
    end_pfn: int
    zones: list[Zone]

    def zone(self, zone_type: ZoneType) -> Zone | None:
        for z in self.zones:
            if z.type == zone_type:
                return z
        return None


def _ram_pfns(memory: MemoryMap) -> list[tuple[int, int]]:
    return [(align_up(r.start, 1 << PAGE_SHIFT) >> PAGE_SHIFT, align_down(r.end, 1 << PAGE_SHIFT) >> PAGE_SHIFT)
            for r in memory.ram if align_down(r.end, 1 << PAGE_SHIFT) > align_up(r.start, 1 << PAGE_SHIFT)]


def _present(ram: list[tuple[int, int]], start: int, end: int) -> tuple[int, int, int]:
    """(first RAM pfn, one past the last, RAM pages) inside [start, end); (0, 0, 0) if none."""
    lo, hi, pages = None, None, 0
    for s, e in ram:
        s, e = max(s, start), min(e, end)
        if s < e:
            lo = s if lo is None else lo
            hi = e
            pages += e - s
    return (lo, hi, pages) if lo is not None and hi is not None else (0, 0, 0)


def node_boundaries(memory: MemoryMap, nodes: int) -> list[tuple[int, int]]:
    """pfn spans of the nodes: one node, or two halves of RAM split at a section boundary."""
    ram = _ram_pfns(memory)
    first, last = ram[0][0], ram[-1][1]
    if nodes == 1:
        return [(first, last)]
    half = sum(e - s for s, e in ram) // 2
    seen = 0
    split = last
    for s, e in ram:
        if seen + (e - s) >= half:
            split = s + (half - seen)
            break
        seen += e - s
    section = SECTION_SIZE >> PAGE_SHIFT
    split = align_up(split, section)
    if not first < split < last:
        raise ConfigError(f"{format_size(memory.total_ram)} of RAM cannot be split into two nodes",
                          "give the machine more memory or use nodes=1")
    return [(first, split), (split, last)]


def build_nodes(memory: MemoryMap, config: MMConfig) -> list[Node]:
    """free_area_init(): each node's zones from the zone limits, the node spans and movablecore."""
    ram = _ram_pfns(memory)
    spans = node_boundaries(memory, config.nodes)
    limits = [(ZoneType.DMA, 0, DMA_LIMIT >> PAGE_SHIFT),
              (ZoneType.DMA32, DMA_LIMIT >> PAGE_SHIFT, DMA32_LIMIT >> PAGE_SHIFT),
              (ZoneType.NORMAL, DMA32_LIMIT >> PAGE_SHIFT, 1 << 52)]
    nodes: list[Node] = []
    for nid, (nstart, nend) in enumerate(spans):
        node_ram = [(max(s, nstart), min(e, nend)) for s, e in ram if max(s, nstart) < min(e, nend)]
        movable_start = _movable_start(node_ram, config.movablecore // len(spans), nid if len(spans) > 1 else None)
        zones: list[Zone] = []
        for zone_type, zlo, zhi in limits:
            hi = zhi if zone_type != ZoneType.NORMAL else min(zhi, movable_start)
            lo, end, pages = _present(ram, max(nstart, zlo), min(nend, hi))
            if pages:
                zones.append(Zone(nid, zone_type, lo, end, pages))
        if config.movablecore:
            lo, end, pages = _present(ram, max(nstart, movable_start), nend)
            if pages:
                zones.append(Zone(nid, ZoneType.MOVABLE, lo, end, pages))
        nodes.append(Node(nid, nstart, nend, zones))
    return nodes


def _movable_start(ram: list[tuple[int, int]], movablecore: int, node: int | None = None) -> int:
    """The first pfn of ZONE_MOVABLE: movablecore bytes of RAM taken from the top, inside ZONE_NORMAL (``node``:
    the node whose share of movablecore this is, on a machine of several)."""
    if not movablecore:
        return 1 << 52
    want = movablecore >> PAGE_SHIFT
    for s, e in reversed(ram):
        if e - s >= want:
            start = e - want
            break
        want -= e - s
    else:
        start = 0
    if start < DMA32_LIMIT >> PAGE_SHIFT:
        what = (f"node {node}'s share of movablecore, {format_size(movablecore)}," if node is not None else
                f"movablecore={format_size(movablecore)}")
        total = sum(e - s for s, e in ram) << PAGE_SHIFT
        where = f"is more than the {approx_size(total)} of RAM {'the node' if node is not None else 'the machine'} " \
            "has" if movablecore > total else "reaches below 4 GiB"
        raise ConfigError(f"{what} {where}", "ZONE_MOVABLE is taken from ZONE_NORMAL; give a smaller movablecore")
    return start
