"""FOLL_LONGTERM pins: a long-term pin must not sit in memory that has to stay movable (mm/gup.c).

``folio_is_longterm_pinnable()`` (include/linux/mm.h): the zero page is
always pinnable; a folio in ZONE_MOVABLE (or a CMA/isolated pageblock) is
not.  ``check_and_migrate_movable_folios()`` migrates such folios first,
with ``alloc_migration_target()`` and a gfp mask without __GFP_MOVABLE
(GFP_USER | __GFP_NOWARN), so the destination lands outside ZONE_MOVABLE,
and the pin is then taken on the destination.  CMA is not modelled; the
model's ZONE_MOVABLE comes from ``movablecore=`` (rofolio.mm.zone).

A pin adds one reference and one pincount (the large-folio scheme of
gup_folio_pin; small folios use GUP_PIN_COUNTING_BIAS in the kernel, which
changes no decision the model makes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.mm.events import FolioPin
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_USER, Gfp, MigrateType, ZoneType
from rofolio.mm.migrate import migrate_folio_to
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.mm.zero_page import is_zero_folio

if TYPE_CHECKING:
    from rofolio.mm.state import MMState


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
    folio.refcount += 1
    folio.pincount += 1
    mm.kernel.log.append(FolioPin(folio.pfn, longterm, moved_from))
    return folio


def unpin_folio(mm: MMState, folio: Folio) -> int:
    """unpin_folio(): drop the pin and its reference."""
    folio.pincount -= 1
    return folio_put(mm, folio, "unpin_folio")
