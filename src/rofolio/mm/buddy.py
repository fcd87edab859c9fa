"""The buddy allocator inside one zone (mm/page_alloc.c), on the run-based free lists.

Each rule names its source:

* freeing: ``split_large_buddy()`` frees blocks above pageblock_order one
  pageblock at a time with that pageblock's migratetype, and
  ``__free_one_page()`` merges with free buddies of the same order (across
  pageblocks only between mergeable migratetypes), then adds the result at
  the tail for FPI_TO_TAIL, else at the tail if ``buddy_merge_likely()``, else
  at the head;
* allocation: ``__rmqueue()`` tries ``__rmqueue_smallest()`` (the head of the
  smallest non-empty list of the wanted migratetype, ``expand()`` puts the
  upper halves at the heads of the lower lists), then ``__rmqueue_claim()``
  (largest foreign block first, claiming whole pageblocks), then
  ``__rmqueue_steal()`` (smallest foreign block, no claim);
* the fallback order is ``fallbacks[]``; ``can_claim_block()`` and
  ``try_to_claim_block()`` decide claims.

Per-CPU page lists, watermarks, ALLOC_NOFRAGMENT and highatomic reserves are
not modelled (docs/fidelity.md, "Generic MM").
"""

from __future__ import annotations

from collections.abc import Callable

from rofolio.mm.gfp import FALLBACKS, MAX_PAGE_ORDER, PAGEBLOCK_ORDER, MigrateType
from rofolio.mm.pageblock import PAGEBLOCK_NR_PAGES, pageblock_start
from rofolio.mm.zone import Zone

__all__ = [
    "buddy_merge_likely", "can_claim_block", "expand", "free_one_page", "free_pages_memory", "rmqueue",
    "rmqueue_claim", "rmqueue_smallest", "rmqueue_steal",
]

MovableCounter = Callable[[int, int], int]  # pages of LRU/movable folios in [start, end)


def buddy_merge_likely(zone: Zone, pfn: int, order: int) -> bool:
    """buddy_merge_likely(): add to the tail if the buddy of the next-higher block is free."""
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher = pfn & ~((1 << (order + 1)) - 1)
    higher_buddy = higher ^ (1 << (order + 1))
    return zone.spans(higher_buddy) and zone.free.find_exact(higher_buddy, order + 1) is not None


def free_one_page(zone: Zone, pfn: int, order: int, to_tail: bool) -> None:
    """free_one_page() → split_large_buddy(): one __free_one_page() per pageblock above pageblock_order."""
    if order <= PAGEBLOCK_ORDER:
        _free_one_page(zone, pfn, order, zone.pageblocks.get(pfn), to_tail)
        return
    for chunk in range(pfn, pfn + (1 << order), PAGEBLOCK_NR_PAGES):
        _free_one_page(zone, chunk, PAGEBLOCK_ORDER, zone.pageblocks.get(chunk), to_tail)


def _free_one_page(zone: Zone, pfn: int, order: int, mt: MigrateType, to_tail: bool) -> None:
    """__free_one_page(): merge with free buddies, then add at the head or the tail."""
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if not zone.spans(buddy_pfn):
            break
        buddy = zone.free.find_exact(buddy_pfn, order)
        if buddy is None:
            break
        # from pageblock order up, an isolated/CMA-like block never merges with an ordinary one
        if order >= PAGEBLOCK_ORDER and mt != buddy.mt and not (mt.mergeable and buddy.mt.mergeable):
            break
        zone.free.remove(buddy_pfn, order)
        if buddy.mt != mt:  # the buddy's pageblock takes our migratetype, so later expand() splits land right
            zone.pageblocks.set_range(buddy_pfn, buddy_pfn + (1 << order), mt)
        pfn &= buddy_pfn
        order += 1
    tail = to_tail or buddy_merge_likely(zone, pfn, order)
    zone.free.add(pfn, order, mt, tail=tail)


def expand(zone: Zone, pfn: int, low: int, high: int, mt: MigrateType) -> None:
    """expand(): the upper half of each split goes to the head of the next lower list."""
    while high > low:
        high -= 1
        zone.free.add(pfn + (1 << high), high, mt, tail=False)


def rmqueue_smallest(zone: Zone, order: int, mt: MigrateType) -> int | None:
    """__rmqueue_smallest()."""
    for current in range(order, MAX_PAGE_ORDER + 1):
        if zone.free.nonempty(current, mt):
            pfn = zone.free.take_first(current, mt)
            expand(zone, pfn, order, current, mt)
            return pfn
    return None


def can_claim_block(order: int, start_mt: MigrateType) -> bool:
    """can_claim_block(): large requests, and unmovable/reclaimable ones, may claim whole pageblocks."""
    if order >= PAGEBLOCK_ORDER:
        return True
    return order >= PAGEBLOCK_ORDER // 2 or start_mt in (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE)


def _fallback_mt(zone: Zone, order: int, start_mt: MigrateType) -> MigrateType | None:
    """find_fallback_migratetype(): the first fallbacks[] list with a block of ``order``."""
    for mt in FALLBACKS[start_mt]:
        if zone.free.nonempty(order, mt):
            return mt
    return None


def _try_to_claim_block(zone: Zone, pfn: int, current: int, order: int, start_mt: MigrateType,
                        block_mt: MigrateType, movable_pages: MovableCounter) -> int | None:
    """try_to_claim_block(): take the whole block if large, else the pageblock if half of it is free or alike."""
    if current >= PAGEBLOCK_ORDER:
        zone.free.remove(pfn, current)
        zone.pageblocks.set_range(pfn, pfn + (1 << current), start_mt)  # change_pageblock_range()
        expand(zone, pfn, order, current, start_mt)
        return pfn
    start = pageblock_start(pfn)
    end = start + PAGEBLOCK_NR_PAGES
    if not (zone.spans(start) and zone.spans(end - 1)):
        return None
    free_pages = sum(1 << b.order for b in zone.free.blocks(start, end))
    movable = movable_pages(start, end)
    if start_mt == MigrateType.MOVABLE:
        alike = movable
    elif block_mt == MigrateType.MOVABLE:
        alike = PAGEBLOCK_NR_PAGES - (free_pages + movable)
    else:
        alike = 0
    if free_pages + alike < PAGEBLOCK_NR_PAGES // 2:
        return None
    for block in list(zone.free.blocks(start, end)):  # move_freepages_block()
        zone.free.move(block.pfn, block.order, start_mt)
    zone.pageblocks.set_range(start, end, start_mt)
    return rmqueue_smallest(zone, order, start_mt)


def rmqueue_claim(zone: Zone, order: int, start_mt: MigrateType, movable_pages: MovableCounter) -> int | None:
    """__rmqueue_claim(): the largest foreign block first, claiming its pageblock(s)."""
    for current in range(MAX_PAGE_ORDER, order - 1, -1):
        if not can_claim_block(order, start_mt):
            break
        mt = _fallback_mt(zone, current, start_mt)
        if mt is None:
            continue
        head = zone.free.first(current, mt)
        assert head is not None
        pfn = _try_to_claim_block(zone, head.pfn, current, order, start_mt, mt, movable_pages)
        if pfn is not None:
            return pfn
    return None


def rmqueue_steal(zone: Zone, order: int, start_mt: MigrateType) -> int | None:
    """__rmqueue_steal(): the smallest foreign block; the remainder stays on the foreign lists."""
    for current in range(order, MAX_PAGE_ORDER + 1):
        mt = _fallback_mt(zone, current, start_mt)
        if mt is None:
            continue
        pfn = zone.free.take_first(current, mt)
        expand(zone, pfn, order, current, mt)
        return pfn
    return None


def rmqueue(zone: Zone, order: int, mt: MigrateType, movable_pages: MovableCounter) -> int | None:
    """__rmqueue(): native list, then claim, then steal."""
    pfn = rmqueue_smallest(zone, order, mt)
    if pfn is None:
        pfn = rmqueue_claim(zone, order, mt, movable_pages)
    if pfn is None:
        pfn = rmqueue_steal(zone, order, mt)
    return pfn


def free_pages_memory(zone_of: Callable[[int], Zone | None], start: int, end: int) -> int:
    """__free_pages_memory() → __free_pages_core(FPI_TO_TAIL) over one free memblock range.

    A stretch of whole MAX_PAGE_ORDER blocks is added as one run (they are
    freed one after the other to the tail, and a MAX_PAGE_ORDER block has no
    buddy to merge with).  Returns the pages freed.
    """
    freed = 0
    pfn = start
    max_nr = 1 << MAX_PAGE_ORDER
    while pfn < end:
        zone = zone_of(pfn)
        if zone is None:
            pfn += 1
            continue
        stop = min(end, zone.end_pfn)
        order = min(MAX_PAGE_ORDER, (pfn & -pfn).bit_length() - 1) if pfn else MAX_PAGE_ORDER
        while pfn + (1 << order) > stop:
            order -= 1
        if order == MAX_PAGE_ORDER:
            count = (stop - pfn) // max_nr
            _add_max_run(zone, pfn, count)
            pfn += count * max_nr
            freed += count * max_nr
            zone.managed_pages += count * max_nr
            continue
        free_one_page(zone, pfn, order, to_tail=True)
        zone.managed_pages += 1 << order
        freed += 1 << order
        pfn += 1 << order
    return freed


def _add_max_run(zone: Zone, pfn: int, count: int) -> None:
    """``count`` MAX_PAGE_ORDER blocks to the tails of their lists, in ascending order.

    One run when every pageblock in the stretch has the same migratetype,
    else block by block through free_one_page().
    """
    end = pfn + (count << MAX_PAGE_ORDER)
    if all(not pfn < start < end for start, _ in zone.pageblocks.runs()):
        zone.free.add(pfn, MAX_PAGE_ORDER, zone.pageblocks.get(pfn), tail=True, count=count)
        return
    for block in range(pfn, end, 1 << MAX_PAGE_ORDER):
        free_one_page(zone, block, MAX_PAGE_ORDER, to_tail=True)
