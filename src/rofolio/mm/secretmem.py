"""secretmem folios (mm/secretmem.c): the precedent for direct-map state that follows a folio.

A memfd_secret fault allocates ``folio_alloc(gfp | __GFP_ZERO, 0)`` from the
mapping's gfp mask (GFP_HIGHUSER: not movable), removes the page from the
direct map with ``set_direct_map_invalid_noflush()`` and flushes that one
page (``flush_tlb_kernel_range()``); the folio joins the (unevictable) page
cache, so it is on the LRU.  ``.migrate_folio`` returns -EBUSY and
``.free_folio`` restores the direct map and then zeroes the folio
(rofolio.mm.page_alloc.secretmem_free_folio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.gfp import GFP_HIGHUSER, Gfp
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.units import PAGE_SIZE

__all__ = ["memfd_secret_fault", "secretmem_fault_folio"]

if TYPE_CHECKING:
    from rofolio.mm.state import MMState


def secretmem_fault_folio(mm: MMState) -> Folio | None:
    """secretmem_fault(): a zeroed page taken out of the direct map; None if that fails."""
    folio = alloc_pages(mm, GFP_HIGHUSER | Gfp.ZERO, 0, label="secretmem")
    if folio is None:
        return None
    if mm.kernel.set_direct_map_invalid_noflush(folio.pfn):
        folio_put(mm, folio)
        return None
    addr = mm.kernel.page_address(folio.pfn)
    mm.kernel.flush_tlb_kernel_range(addr, addr + PAGE_SIZE, "secretmem_fault")
    folio.mapping = MappingKind.SECRETMEM
    folio.lru = True
    return folio


def memfd_secret_fault(mm: MMState) -> tuple[int, Folio | None]:
    """memfd_secret() then a fault on it: (0, the folio), -ENOSYS without can_set_direct_map(), or -ENOMEM.

    The syscall refuses before anything is allocated when the direct map cannot be changed
    (secretmem.c: the can_set_direct_map() test in memfd_secret()); without ARCH_HAS_SET_DIRECT_MAP
    CONFIG_SECRETMEM cannot be built, which user space sees the same way.
    """
    if not mm.kernel.can_set_direct_map():  # type: ignore[attr-defined]
        return -Errno.ENOSYS, None
    folio = secretmem_fault_folio(mm)
    return (0, folio) if folio is not None else (-Errno.ENOMEM, None)
