"""Pins: try_grab_folio()'s reference accounting, and FOLL_LONGTERM's rule that a long-term pin must not
sit in memory that has to stay movable (mm/gup.c).

``folio_is_longterm_pinnable()`` (include/linux/mm.h): the zero page is
always pinnable; a folio in ZONE_MOVABLE (or a CMA/isolated pageblock) is
not.  ``check_and_migrate_movable_folios()`` migrates such folios first,
with ``alloc_migration_target()`` and a gfp mask without __GFP_MOVABLE
(GFP_USER | __GFP_NOWARN), so the destination lands outside ZONE_MOVABLE,
and the pin is then taken on the destination.  CMA is not modelled; the
model's ZONE_MOVABLE comes from ``movablecore=`` (rofolio.mm.zone).

``try_grab_folio()`` (mm/gup.c): FOLL_GET adds one reference; FOLL_PIN
(5.7+) adds GUP_PIN_COUNTING_BIAS (1024) to a small folio's refcount, and one
reference plus one ``_pincount`` to a large folio's (include/linux/mm.h).
Since 8fde12ca79af ("mm: prevent get_user_pages() from overflowing page
refcount", 5.1, from memory) a folio whose refcount is no longer positive is
refused with a WARN.  ``page->_refcount`` is an atomic_t: past 2^31 it wraps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.mm.events import FolioPin, RefcountOverflow
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_USER, Gfp, MigrateType, ZoneType
from rofolio.mm.migrate import migrate_folio_to
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.mm.zero_page import is_zero_folio

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = [
    "GUP_PIN_COUNTING_BIAS", "folio_is_longterm_pinnable", "pin_folio", "pin_refs", "try_grab_folio", "unpin_folio",
]


def folio_is_longterm_pinnable(mm: MMState, folio: Folio) -> bool:
    """folio_is_longterm_pinnable()."""
    if is_zero_folio(mm, folio):
        return True
    zone = mm.zone_of(folio.pfn)
    if zone is not None and zone.pageblocks.get(folio.pfn) == MigrateType.ISOLATE:
        return False
    return zone is None or zone.type != ZoneType.MOVABLE


def pin_folio(mm: MMState, folio: Folio, longterm: bool) -> Folio | None:
    """Take a FOLL_PIN reference; with FOLL_LONGTERM migrate out of ZONE_MOVABLE first.

    Returns the folio that is pinned (the destination after a migration), or
    None when the migration failed (the pin fails with the migration's error).
    """
    moved_from = -1
    if longterm and not folio_is_longterm_pinnable(mm, folio):
        def target(src: Folio) -> Folio | None:
            return alloc_pages(mm, GFP_USER | Gfp.NOWARN | (Gfp.COMP if src.order else Gfp(0)), src.order,
                               src.nid, label=src.label)
        old = folio.pfn
        ret, dst = migrate_folio_to(mm, folio, target, "longterm_pin")
        if ret or dst is None:
            return None
        folio, moved_from = dst, old
    try_grab_folio(mm, folio, longterm=longterm, moved_from=moved_from)
    return folio


def unpin_folio(mm: MMState, folio: Folio) -> int:
    """unpin_folio(): drop the pin and the references it took."""
    folio.pincount -= 1
    folio.refcount -= pin_refs(folio) - 1
    return folio_put(mm, folio, "unpin_folio")


GUP_PIN_COUNTING_BIAS = 1024  # include/linux/mm.h
REFCOUNT_LIMIT = 1 << 31  # page->_refcount is an atomic_t


def pin_refs(folio: Folio) -> int:
    """References one FOLL_PIN takes: the bias on a small folio, 1 on a large one (which counts _pincount)."""
    return 1 if folio.order else GUP_PIN_COUNTING_BIAS


def try_grab_folio(mm: MMState, folio: Folio, count: int = 1, *, pin: bool = True, refcount_check: bool = True,
                   longterm: bool = False, moved_from: int = -1) -> int:
    """try_grab_folio() ``count`` times (FOLL_PIN, or FOLL_GET with ``pin`` False); returns how many it took.

    With ``refcount_check`` (5.1+) a grab is refused, with a one-time WARN, once
    the refcount is no longer positive as a signed int; without it the count
    simply wraps.  Crossing 2^31 is logged as a RefcountOverflow.
    """
    per = pin_refs(folio) if pin else 1
    taken = count
    if refcount_check:
        room = 0 if folio.refcount >= REFCOUNT_LIMIT else (REFCOUNT_LIMIT - 1 - folio.refcount) // per + 1
        taken = min(count, room)
        if taken < count:
            mm.kernel.warn_once(f"WARNING: try_grab_folio(): refcount of pfn {folio.pfn:#x} is not positive; "
                                f"{count - taken} grab(s) refused", "try_grab_folio")
    before = folio.refcount
    folio.refcount += per * taken
    if pin:
        folio.pincount += taken
        if taken:
            mm.kernel.log.append(FolioPin(folio.pfn, longterm, moved_from, taken))
    if before < REFCOUNT_LIMIT <= folio.refcount:
        mm.kernel.log.append(RefcountOverflow(folio.pfn, folio.refcount, folio.label))
    return taken
