"""Memory compaction (mm/compaction.c), as ``echo 1 > /proc/sys/vm/compact_memory`` runs it.

``compact_zone()`` with two scanners: the migration scanner walks the zone
from the bottom and isolates folios that can move (isolate_migratepages_block():
PG_lru or movable_ops; a non-LRU compound page such as the huge zero folio
is skipped; an anonymous folio with more references than mappings is pinned
and skipped), the free scanner walks down from the top one pageblock at a
time and isolates the free blocks of suitable pageblocks
(suitable_migration_target(): a MIGRATE_MOVABLE pageblock that is not itself
wholly free, that is whose first page does not head a free block of
pageblock_order or more). A folio of pageblock_order or more (a PMD-sized THP)
is never isolated (skip_isolation_on_order()).  ``compaction_alloc()`` hands out isolated free
pages, splitting a larger one and keeping the low part; the scanners meeting
ends the run, and unused free pages go back to the buddy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.mm.buddy import free_one_page
from rofolio.mm.events import CompactionRun
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.free_area import FreeBlock
from rofolio.mm.gfp import PAGEBLOCK_ORDER, Gfp, MigrateType
from rofolio.mm.migrate import migrate_folio_to
from rofolio.mm.page_alloc import prep_new_folio
from rofolio.mm.pageblock import PAGEBLOCK_NR_PAGES, pageblock_start
from rofolio.mm.zone import Zone

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = ["FreeScanner", "compact_memory", "compact_zone", "isolatable", "suitable_migration_target"]


def isolatable(mm: MMState, folio: Folio) -> bool:
    """isolate_migratepages_block()'s filters for one folio: skip_isolation_on_order() skips a folio of
    pageblock_order or more even for compact_memory (a PMD-sized THP is never moved), then PG_lru or
    movable_ops, and an anonymous folio with more references than mappings is pinned."""
    if folio.reserved or folio.leaked or folio.order >= PAGEBLOCK_ORDER:
        return False
    if not folio.lru:
        return folio.movable_ops
    return not (folio.mapping == MappingKind.ANON and folio.refcount > folio.mapcount)  # pinned anon


def suitable_migration_target(zone: Zone, pfn: int) -> bool:
    """suitable_migration_target() for the pageblock at ``pfn``, as compact_memory asks it (cc->order -1): not
    when its first page heads a free block of pageblock_order or more (compaction would only break up what it
    is meant to make), else only a MIGRATE_MOVABLE pageblock (no CMA in the model)."""
    head = zone.free.find(pfn)
    if head is not None and head.pfn == pfn and head.order >= PAGEBLOCK_ORDER:
        return False
    return zone.pageblocks.get(pfn) == MigrateType.MOVABLE


class FreeScanner:
    """isolate_freepages(): free blocks of suitable pageblocks, from the top of the zone down."""

    def __init__(self, mm: MMState, zone: Zone) -> None:
        self.mm = mm
        self.zone = zone
        self.free_pfn = pageblock_start(zone.end_pfn - 1) + PAGEBLOCK_NR_PAGES  # next pageblock to scan is below
        self.isolated: list[FreeBlock] = []
        self.exhausted = False

    def _scan_one(self, low: int) -> bool:
        """Isolate the free blocks of the next pageblock down; False once the scanners meet."""
        start = self.free_pfn - PAGEBLOCK_NR_PAGES
        if start < low or start < self.zone.start_pfn:
            return False
        self.free_pfn = start
        if suitable_migration_target(self.zone, start):
            for block in list(self.zone.free.blocks(start, start + PAGEBLOCK_NR_PAGES)):  # isolate_freepages_block()
                self.zone.free.remove(block.pfn, block.order)
                self.isolated.append(block)
        return True

    def alloc(self, folio: Folio, low: int) -> Folio | None:
        """compaction_alloc(): a free block of the folio's order, splitting a larger one."""
        while True:
            fits = [b for b in self.isolated if b.order >= folio.order]
            if fits:
                block = min(fits, key=lambda b: (b.order, -b.pfn))
                self.isolated.remove(block)
                order = block.order
                while order > folio.order:  # keep the low half, the upper halves stay isolated
                    order -= 1
                    self.isolated.append(FreeBlock(block.pfn + (1 << order), order, block.mt))
                return self._prep(block.pfn, folio)
            if not self._scan_one(low):
                self.exhausted = True
                return None

    def _prep(self, pfn: int, src: Folio) -> Folio | None:
        return prep_new_folio(self.mm, self.zone, pfn, src.order, Gfp.MOVABLE, MigrateType.MOVABLE, src.label)

    def release(self) -> None:
        """release_free_list(): unused isolated pages go back to the buddy."""
        for block in sorted(self.isolated, key=lambda b: b.pfn):
            free_one_page(self.zone, block.pfn, block.order, to_tail=False)
        self.isolated.clear()


def compact_zone(mm: MMState, zone: Zone) -> tuple[int, int]:
    """compact_zone() over the whole zone; (folios migrated, migrations failed)."""
    scanner = FreeScanner(mm, zone)
    migrated = failed = 0
    for folio in mm.folios_in(zone.start_pfn, zone.end_pfn):
        if folio.pfn >= scanner.free_pfn:
            break  # compact_scanners_met()
        if not isolatable(mm, folio):
            continue
        low = pageblock_start(folio.pfn) + PAGEBLOCK_NR_PAGES
        ret, _ = migrate_folio_to(mm, folio, lambda f, low=low: scanner.alloc(f, low), "compaction")
        if ret == 0:
            migrated += 1
        elif ret == -Errno.ENOMEM and scanner.exhausted:
            break  # compaction_alloc() found nothing: the scanners met (COMPACT_COMPLETE), not a failure
        else:
            failed += 1
    scanner.release()
    mm.kernel.log.append(CompactionRun(zone.nid, zone.name, migrated, failed))
    return migrated, failed


def compact_memory(mm: MMState) -> tuple[int, int]:
    """sysctl_compaction_handler() → compact_nodes(): every zone of every node."""
    migrated = failed = 0
    for zone in mm.zones:
        m, f = compact_zone(mm, zone)
        migrated += m
        failed += f
    return migrated, failed
