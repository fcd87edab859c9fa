"""Allocating and freeing folios: the zonelist walk, post_alloc_hook(), free_pages_prepare(), folio_put().

* ``alloc_pages()`` walks the zonelist from the highest zone ``gfp_zone()``
  allows (get_page_from_freelist()), takes a block with ``__rmqueue()``, then
  ``post_alloc_hook()``: DEBUG_PAGEALLOC maps the pages back
  (debug_pagealloc_map_pages()), and ``init = !want_init_on_free() &&
  want_init_on_alloc(gfp)`` zeroes them through the direct map
  (kernel_init_pages(), or tag_clear_highpage() for __GFP_ZEROTAGS);
* ``free_pages()`` runs ``free_pages_prepare()``: page poisoning
  (kernel_poison_pages()), then init_on_free (kernel_init_pages()), then
  DEBUG_PAGEALLOC unmapping, and gives the block to ``free_one_page()``;
* ``folio_put()`` drops a reference; at zero the lifetime policy is consulted
  (model 1 restores write permission first, model 2 refuses to free a
  read-only folio), then the mapping's ``free_folio`` callback runs (the
  secretmem pattern: set_direct_map_default_noflush(), then zero), then the
  pages are freed.

A content write that faults (an oops) ends the operation: the task that
oopsed is gone, and the pages it held are leaked, as after a real oops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.events import KernelWarning
from rofolio.mm.buddy import free_one_page, rmqueue
from rofolio.mm.direct_access import PAGE_POISON, direct_map_write
from rofolio.mm.events import PageAlloc, PageAllocFail, PageFree
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.gfp import (
    MAX_PAGE_ORDER,
    Gfp,
    MigrateType,
    gfp_migratetype,
    gfp_text,
    gfp_zone,
    want_init_on_alloc,
)

if TYPE_CHECKING:
    from rofolio.mm.state import MMState
    from rofolio.mm.zone import Zone

__all__ = [
    "alloc_pages", "folio_put", "free_pages", "free_pages_prepare", "post_alloc_hook", "prep_new_folio",
    "release_folio", "secretmem_free_folio",
]


def alloc_pages(mm: MMState, gfp: Gfp, order: int, nid: int = 0, label: str = "",
                nodemask: frozenset[int] | None = None) -> Folio | None:
    """__alloc_pages(): a folio of 2^order pages, or None (PageAllocFail event, warning unless __GFP_NOWARN);
    ``nid`` is the preferred node, ``nodemask`` the nodes allowed (all when None)."""
    if not 0 <= order <= MAX_PAGE_ORDER:
        return _fail(mm, gfp, order, f"order {order} > MAX_PAGE_ORDER")
    if mm.config.fail_page_alloc_min_order is not None and order >= mm.config.fail_page_alloc_min_order:
        return _fail(mm, gfp, order, "fail_page_alloc")  # mm/fail_page_alloc.c should_fail_alloc_page()
    mt = gfp_migratetype(gfp)
    for zone in mm.zonelist(nid, gfp_zone(gfp), thisnode=bool(gfp & Gfp.THISNODE), nodemask=nodemask):
        pfn = rmqueue(zone, order, mt, mm.movable_pages)
        if pfn is not None:
            break
    else:
        return _fail(mm, gfp, order, "no free block in the zonelist")
    return prep_new_folio(mm, zone, pfn, order, gfp, mt, label)


def prep_new_folio(mm: MMState, zone: Zone, pfn: int, order: int, gfp: Gfp, mt: MigrateType,
                   label: str) -> Folio | None:
    """The tail of get_page_from_freelist(): the block taken from ``zone`` becomes a folio (prep_new_page()).

    Also what compaction's free scanner hands migration (mm/compaction.c compaction_alloc()).
    """
    folio = Folio(pfn, order, gfp=gfp, migratetype=mt, nid=zone.nid, zone=zone.name, label=label,
                  large_rmappable=bool(order and gfp & Gfp.COMP))
    mm.folios[pfn] = folio
    mm.kernel.log.append(PageAlloc(pfn, order, gfp_text(gfp), mt.name, zone.name, zone.nid))
    if post_alloc_hook(mm, folio, gfp) < 0:
        _leak(mm, folio)
        return None
    return folio


def _fail(mm: MMState, gfp: Gfp, order: int, reason: str) -> None:
    mm.kernel.log.append(PageAllocFail(order, gfp_text(gfp), reason))
    if not gfp & Gfp.NOWARN:
        mm.kernel.log.append(KernelWarning(
            f"page allocation failure: order:{order}, mode:{int(gfp):#x}({gfp_text(gfp)})"))
    return None


def post_alloc_hook(mm: MMState, folio: Folio, gfp: Gfp) -> int:
    """post_alloc_hook(): map for DEBUG_PAGEALLOC, then initialise the contents if asked; 0 or -EFAULT."""
    cfg = mm.config
    if cfg.debug_pagealloc:
        mm.kernel.kernel_map_pages(folio.pfn, folio.nr_pages, True)
    init = not cfg.want_init_on_free and want_init_on_alloc(gfp, cfg.want_init_on_alloc)
    if init:
        path = "__GFP_ZERO" if gfp & Gfp.ZERO else "init_on_alloc"
        if gfp & Gfp.ZEROTAGS:
            path += "|__GFP_ZEROTAGS"  # tag_clear_highpage() clears the data as well as the tags
        return direct_map_write(mm, folio.pfn, folio.nr_pages, 0, path)
    return 0


def free_pages_prepare(mm: MMState, folio: Folio) -> int:
    """free_pages_prepare(): poison, init_on_free, then DEBUG_PAGEALLOC unmap; 0 or -EFAULT."""
    cfg = mm.config
    if cfg.page_poisoning:
        ret = direct_map_write(mm, folio.pfn, folio.nr_pages, PAGE_POISON, "page_poison")
        if ret:
            return ret
    if cfg.want_init_on_free:
        ret = direct_map_write(mm, folio.pfn, folio.nr_pages, 0, "init_on_free")
        if ret:
            return ret
    if cfg.debug_pagealloc:
        mm.kernel.kernel_map_pages(folio.pfn, folio.nr_pages, False)
    return 0


def free_pages(mm: MMState, folio: Folio, path: str) -> int:
    """__free_pages_ok()/free_frozen_pages(): prepare, then back to the buddy; 0 or -EFAULT (leaked)."""
    if folio.reserved:
        raise ValueError(f"{folio.describe()} is a reserved page and is never freed")
    if free_pages_prepare(mm, folio) < 0:
        _leak(mm, folio)
        return -Errno.EFAULT
    zone = mm.zone_of(folio.pfn)
    assert zone is not None
    del mm.folios[folio.pfn]
    folio.refcount = 0
    free_one_page(zone, folio.pfn, folio.order, to_tail=False)
    mm.kernel.log.append(PageFree(folio.pfn, folio.order, path))
    return 0


def _leak(mm: MMState, folio: Folio) -> None:
    """An oops (or a refused free) leaves the pages neither in use nor free."""
    folio.leaked = True
    mm.folios.pop(folio.pfn, None)
    mm.leaked.append(folio)


def folio_put(mm: MMState, folio: Folio, path: str = "folio_put") -> int:
    """folio_put(): drop a reference; the last one frees the folio (policy, free_folio, free_pages)."""
    if folio.refcount <= 0:  # a put after the last one: a double free
        # The kernel carries on: the reference count goes negative and the next check of the page reports it
        # (mm/page_alloc.c bad_page(), "nonzero _refcount"); the model reports it here and frees nothing.
        # The model has no task names: the process is "rofolio".
        mm.kernel.log.append(KernelWarning(f"BUG: Bad page state in process rofolio  pfn:{folio.pfn:05x}\n"
                                           f"page dumped because: nonzero _refcount ({path} after the last "
                                           f"reference takes the count to -1; before it: {folio.describe()})"))
        return 0
    folio.refcount -= 1
    if folio.refcount:
        return 0
    return release_folio(mm, folio, path)


def release_folio(mm: MMState, folio: Folio, path: str) -> int:
    """The last reference is gone: the lifetime policy, the mapping's free_folio, then free_pages()."""
    if not mm.policy.before_free(mm, folio, path):
        _leak(mm, folio)
        return -Errno.EBUSY  # refused: the folio stays out of the allocator
    if folio.mapping == MappingKind.SECRETMEM:
        ret = secretmem_free_folio(mm, folio)
        if ret:
            _leak(mm, folio)
            return ret
    folio.mapping = MappingKind.NONE
    folio.lru = False
    return free_pages(mm, folio, path)


def secretmem_free_folio(mm: MMState, folio: Folio) -> int:
    """mm/secretmem.c secretmem_free_folio(): set_direct_map_default_noflush(), then zero the folio."""
    mm.kernel.set_direct_map_default_noflush(folio.pfn)
    return direct_map_write(mm, folio.pfn, folio.nr_pages, 0, "secretmem_free_folio")
