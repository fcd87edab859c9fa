"""GFP flags, zones and migratetypes: what an allocation request asks for.

The names and the composite masks are those of ``include/linux/gfp_types.h``
and the zone/migratetype choice is ``gfp_zone()`` / ``gfp_migratetype()`` of
``include/linux/gfp.h``.  Bit values follow the order of the enum in
gfp_types.h; only the names matter to the model (a ``%pGg``-style string is
what reports print).
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "FALLBACKS", "GFP_HIGHUSER", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL", "GFP_PGTABLE_USER", "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT", "GFP_USER", "HPAGE_PMD_NR", "HPAGE_PMD_ORDER", "HUGE_ZERO_FOLIO_GFP", "MAX_PAGE_ORDER",
    "PAGEBLOCK_ORDER", "RECLAIM", "Gfp", "MigrateType", "ZoneType", "gfp_migratetype", "gfp_text", "gfp_zone",
    "want_init_on_alloc",
]

MAX_PAGE_ORDER = 10  # include/linux/mmzone.h: MAX_PAGE_ORDER (CONFIG_ARCH_FORCE_MAX_ORDER default)
PAGEBLOCK_ORDER = 9  # include/linux/pageblock-flags.h: pageblock_order = HPAGE_PMD_ORDER on x86-64/arm64 4K
HPAGE_PMD_ORDER = 9  # include/linux/huge_mm.h
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER


class Gfp(IntFlag):
    """__GFP_* bits (include/linux/gfp_types.h)."""

    DMA = 1 << 0
    HIGHMEM = 1 << 1
    DMA32 = 1 << 2
    MOVABLE = 1 << 3
    RECLAIMABLE = 1 << 4
    HIGH = 1 << 5
    IO = 1 << 6
    FS = 1 << 7
    ZERO = 1 << 8
    DIRECT_RECLAIM = 1 << 10
    KSWAPD_RECLAIM = 1 << 11
    WRITE = 1 << 12
    NOWARN = 1 << 13
    RETRY_MAYFAIL = 1 << 14
    NOFAIL = 1 << 15
    NORETRY = 1 << 16
    MEMALLOC = 1 << 17
    COMP = 1 << 18
    NOMEMALLOC = 1 << 19
    HARDWALL = 1 << 20
    THISNODE = 1 << 21
    ACCOUNT = 1 << 22
    ZEROTAGS = 1 << 23


RECLAIM = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM
GFP_KERNEL = RECLAIM | Gfp.IO | Gfp.FS
GFP_USER = RECLAIM | Gfp.IO | Gfp.FS | Gfp.HARDWALL
GFP_HIGHUSER = GFP_USER | Gfp.HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | Gfp.MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | Gfp.COMP | Gfp.NOMEMALLOC | Gfp.NOWARN) & ~RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | Gfp.DIRECT_RECLAIM
GFP_PGTABLE_KERNEL = GFP_KERNEL | Gfp.ZERO  # include/asm-generic/pgalloc.h
GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | Gfp.ACCOUNT

# mm/huge_memory.c get_huge_zero_folio(): unmovable on purpose, zeroed, MTE tags zeroed
HUGE_ZERO_FOLIO_GFP = (GFP_TRANSHUGE | Gfp.ZERO | Gfp.ZEROTAGS) & ~Gfp.MOVABLE

_COMPOSITES = (
    ("GFP_TRANSHUGE", GFP_TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL", GFP_KERNEL),
)


class ZoneType(IntEnum):
    """enum zone_type (include/linux/mmzone.h) on x86-64 / arm64 without highmem or device zones."""

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    MOVABLE = 3

    @property
    def label(self) -> str:
        return {0: "DMA", 1: "DMA32", 2: "Normal", 3: "Movable"}[int(self)]


class MigrateType(IntEnum):
    """enum migratetype (include/linux/mmzone.h); CMA and HIGHATOMIC are not modelled."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    ISOLATE = 4  # MIGRATE_ISOLATE: pageblocks being offlined

    @property
    def mergeable(self) -> bool:
        """migratetype_is_mergeable(): the three PCP types may merge across pageblocks."""
        return self < 3


# mm/page_alloc.c fallbacks[]: the order in which foreign free lists are tried
FALLBACKS: dict[MigrateType, tuple[MigrateType, MigrateType]] = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}


def gfp_migratetype(gfp: Gfp) -> MigrateType:
    """gfp_migratetype() (include/linux/gfp.h): __GFP_MOVABLE / __GFP_RECLAIMABLE pick the list."""
    if gfp & Gfp.MOVABLE:
        return MigrateType.MOVABLE
    if gfp & Gfp.RECLAIMABLE:
        return MigrateType.RECLAIMABLE
    return MigrateType.UNMOVABLE


def gfp_zone(gfp: Gfp) -> ZoneType:
    """gfp_zone() (include/linux/gfp.h GFP_ZONE_TABLE) on 64-bit: HIGHMEM means Normal, HIGHMEM|MOVABLE Movable."""
    if gfp & Gfp.DMA:
        return ZoneType.DMA
    if gfp & Gfp.DMA32:
        return ZoneType.DMA32
    if gfp & Gfp.MOVABLE and gfp & Gfp.HIGHMEM:
        return ZoneType.MOVABLE
    return ZoneType.NORMAL


def gfp_text(gfp: Gfp) -> str:
    """A %pGg-like rendering: the largest named composite, then the remaining __GFP_ bits."""
    rest = Gfp(gfp)
    parts: list[str] = []
    for name, mask in _COMPOSITES:
        if rest & mask == mask:
            parts.append(name)
            rest &= ~mask
            break
    parts.extend(f"__GFP_{flag.name}" for flag in Gfp if flag & rest)
    return "|".join(parts) if parts else "0"


def want_init_on_alloc(gfp: Gfp, init_on_alloc: bool) -> bool:
    """want_init_on_alloc() (include/linux/mm.h): the init_on_alloc key, or __GFP_ZERO."""
    return init_on_alloc or bool(gfp & Gfp.ZERO)
