"""Offlining and onlining a memory block (mm/memory_hotplug.c offline_pages()/online_pages()).

``offline_pages()``:

1. the range must lie in one zone (test_pages_in_a_zone(): else -EINVAL);
2. ``start_isolate_page_range()`` isolates every pageblock; it fails with
   -EBUSY ("failure to isolate range") when ``has_unmovable_pages()`` finds a
   page that is neither free, nor on the LRU, nor movable_ops, nor in
   ZONE_MOVABLE: a kernel allocation, a reserved page, the huge zero folio;
3. ``scan_movable_pages()`` + ``do_migrate_range()`` migrate every LRU or
   movable_ops folio out, to another node than its own when one has memory
   (alloc_migration_target() with GFP_KERNEL | __GFP_MOVABLE |
   __GFP_RETRY_MAYFAIL, 7.2's mask: GFP_USER before v6.14 at the earliest, which
   differs only in the cpuset bit __GFP_HARDWALL); then ``test_pages_isolated()`` needs every page of
   the range free.  The kernel loops until both hold or a signal arrives
   ("signal backoff", -EINTR): a page in use that cannot move (a leaked or
   kernel page in ZONE_MOVABLE, a folio whose migration keeps failing) keeps
   it looping; the model gives up after ``MAX_PASSES`` passes with that same
   result;
4. ``__offline_isolated_pages()`` takes the free pages out of the buddy.

Failures print ``memory offlining [mem %#010llx-%#010llx] failed due to %s``
and undo the isolation.  ``online_pages()`` frees the block back with
``__free_pages_core(FPI_TO_TAIL)`` at the largest order the pfn allows
(online_pages_range()).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import AddressError, Errno
from rofolio.events import KernelWarning
from rofolio.mm.buddy import free_one_page, free_pages_memory
from rofolio.mm.errnos import EINTR
from rofolio.mm.events import MemoryOffline
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_KERNEL, Gfp, MigrateType, ZoneType
from rofolio.mm.migrate import alloc_migration_target, migrate_folio_to
from rofolio.units import PAGE_SHIFT

if TYPE_CHECKING:
    from rofolio.mm.state import MMState
    from rofolio.mm.zone import Zone

__all__ = ["do_migrate_range", "has_unmovable_pages", "memory_block_range", "offline_memory_block", "offline_pages",
           "online_pages"]

MAX_PASSES = 10


def memory_block_range(mm: MMState, pa: int) -> tuple[int, int]:
    """The [start pfn, end pfn) of the memory block holding physical address ``pa``."""
    size = mm.config.memory_block_size >> PAGE_SHIFT
    start = (pa >> PAGE_SHIFT) // size * size
    return start, start + size


def has_unmovable_pages(mm: MMState, zone: Zone, start: int, end: int) -> Folio | None:
    """has_unmovable_pages(): the first folio in [start, end) that offlining cannot move, if any."""
    if zone.type == ZoneType.MOVABLE:
        return None  # everything in ZONE_MOVABLE counts as movable (bootmem in it aside)
    for folio in [*mm.folios_in(max(start - (1 << 10), 0), end), *_leaked_in(mm, start, end)]:
        if folio.end <= start:
            continue
        if folio.reserved or folio.leaked or not (folio.lru or folio.movable_ops):
            return folio
    return None


def _reserved_overlap(mm: MMState, start: int, end: int) -> str | None:
    for rs, re_, what in mm.reserved:
        if rs < end and start < re_:
            return what
    return None


def offline_pages(mm: MMState, start: int, end: int) -> int:
    """offline_pages() of [start, end); 0 or -EINVAL/-EBUSY/-EINTR."""
    log = mm.kernel.log

    def failed(ret: int, reason: str) -> int:
        log.append(KernelWarning(f"memory offlining [mem {start << PAGE_SHIFT:#010x}-"
                                 f"{(end << PAGE_SHIFT) - 1:#010x}] failed due to {reason}"))
        log.append(MemoryOffline(start, end, ret, reason))
        return ret

    zone = mm.zone_of(start)
    if zone is None or mm.zone_of(end - 1) is not zone:
        return failed(-Errno.EINVAL, "range not in one zone")
    reserved = _reserved_overlap(mm, start, end)
    blocker = has_unmovable_pages(mm, zone, start, end)
    if reserved is not None or blocker is not None:
        what = blocker.describe() if blocker is not None else f"reserved memory ({reserved})"
        log.append(KernelWarning(f"page dumped because: unmovable page: {what}"))
        return failed(-Errno.EBUSY, "failure to isolate range")
    _isolate(zone, start, end)
    for _ in range(MAX_PASSES):
        movable = [f for f in mm.folios_in(start, end) if f.lru or f.movable_ops]  # scan_movable_pages()
        if movable:
            do_migrate_range(mm, movable)
        if not _pages_in_use(mm, start, end):  # test_pages_isolated(): every page is a free buddy page
            break
    else:
        _unisolate(zone, start, end)
        return failed(-EINTR, "signal backoff")
    for block in list(zone.free.blocks(start, end)):  # __offline_isolated_pages()
        zone.free.remove(block.pfn, block.order)
    zone.offline_pages += end - start
    zone.managed_pages -= end - start
    log.append(MemoryOffline(start, end, 0, ""))
    return 0


def _leaked_in(mm: MMState, start: int, end: int) -> list[Folio]:
    """The folios an oops leaked in [start, end): out of mm.folios, never freed, allocated as the kernel sees
    them."""
    return [f for f in mm.leaked if f.pfn < end and start < f.end]


def _pages_in_use(mm: MMState, start: int, end: int) -> bool:
    """Whether any page of [start, end) is not free: allocated, or leaked."""
    return bool(mm.folios_in(start, end) or _leaked_in(mm, start, end))


def do_migrate_range(mm: MMState, folios: list[Folio]) -> None:
    """do_migrate_range(): migrate the isolated folios to another node than the first one's, or to that node
    when no other node has memory (node_states[N_MEMORY] less the folio's node)."""
    nid = folios[0].nid
    others = frozenset(n.nid for n in mm.nodes if n.nid != nid and any(z.present_pages for z in n.zones))
    target = alloc_migration_target(mm, GFP_KERNEL | Gfp.MOVABLE | Gfp.RETRY_MAYFAIL, nid,
                                    others or frozenset({nid}))
    for folio in folios:
        migrate_folio_to(mm, folio, target, "memory_offline")


def _isolate(zone: Zone, start: int, end: int) -> None:
    """set_migratetype_isolate() on every pageblock; free blocks move to the isolate lists."""
    zone.pageblocks.set_range(start, end, MigrateType.ISOLATE)
    for block in list(zone.free.blocks(start, end)):
        zone.free.move(block.pfn, block.order, MigrateType.ISOLATE)


def _unisolate(zone: Zone, start: int, end: int) -> None:
    """undo_isolate_page_range(): back to MIGRATE_MOVABLE, free blocks re-merged."""
    zone.pageblocks.set_range(start, end, MigrateType.MOVABLE)
    for block in list(zone.free.blocks(start, end)):
        zone.free.remove(block.pfn, block.order)
        free_one_page(zone, block.pfn, block.order, to_tail=True)  # __putback_isolated_page(): to the tail


def online_pages(mm: MMState, start: int, end: int) -> int:
    """online_pages(): an offlined block back to the buddy, to the tail, largest orders first."""
    zone = mm.zone_of(start)
    if zone is None or zone.offline_pages < end - start:
        raise AddressError(f"[pfn {start:#x}, {end:#x}) is not an offlined memory block",
                           "online only what offline_pages() took out")
    zone.pageblocks.set_range(start, end, MigrateType.MOVABLE)
    if mm.config.debug_pagealloc:
        mm.kernel.kernel_map_pages(start, end - start, True)
    free_pages_memory(mm.zone_of, start, end)
    zone.offline_pages -= end - start
    if mm.config.debug_pagealloc:
        mm.kernel.kernel_map_pages(start, end - start, False)
    return 0


def offline_memory_block(mm: MMState, pa: int) -> int:
    """echo offline > /sys/devices/system/memory/memoryN/state for the block holding ``pa``."""
    start, end = memory_block_range(mm, pa)
    return offline_pages(mm, start, end)

