"""The generic ``arch_make_folio_readonly()`` and its first user, the persistent huge zero folio.

Lance Yang's proposal for RFC v2 (LKML 2605.3/11644): a generic helper with a
weak default, the arch hooks behind it, best effort.  ``arch_make_folio_readonly``
asks the arch (``ArchKernel.arch_make_folio_readonly``); an arch kernel
without the hook gets the weak default, -EOPNOTSUPP.  A failure (-ENOMEM from
a page-table allocation in a split, -EOPNOTSUPP) leaves the folio writable
and is recorded with the reason (the cover letter: the kernel then simply goes
on using the folio writable, and no caller sees an error).

``folio_restore_writable`` is the inverse that model 1 needs on migration and
free; whether it re-forms large direct-map leaves is read off the arch's
Collapse events, never assumed.

Its first user, ``make_persistent_huge_zero_folio_readonly`` (RFC patch 1/3),
lives with the huge zero folio in ``rofolio.mm.zero_page`` (mm/huge_memory.c),
which imports this module, never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.mm.events import FolioReadonly
from rofolio.mm.folio import Folio

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = ["arch_make_folio_readonly", "folio_restore_writable"]


def _arch_call(mm: MMState, name: str, folio: Folio) -> tuple[int, str]:
    """Call the arch hook ``name``; (ret, why).  Missing hook: the weak default's -EOPNOTSUPP."""
    k = mm.kernel
    hook = getattr(k, name, None)
    if hook is not None:
        return hook(folio.pfn, folio.nr_pages), f"{k.arch} {name}"
    return -Errno.EOPNOTSUPP, "weak default arch_make_folio_readonly()"


def _collapses(mm: MMState) -> int:
    c = mm.kernel.log.counters
    return sum(c.collapses.values())


def arch_make_folio_readonly(mm: MMState, folio: Folio, why: str = "") -> int:
    """Make the folio's direct-map alias read-only, best effort; 0 or -errno (the folio stays writable)."""
    if folio.readonly:
        return 0
    if not mm.policy.before_make_readonly(mm, folio, why):
        mm.kernel.log.append(FolioReadonly(folio.pfn, folio.nr_pages, True, -Errno.EBUSY, f"{why}: refused"))
        return -Errno.EBUSY
    ret, how = _arch_call(mm, "arch_make_folio_readonly", folio)
    if ret == 0 and all(not mm.kernel.direct_map_writable(folio.pfn + i) for i in range(folio.nr_pages)):
        folio.readonly = True
        mm.record_readonly(folio.pfn, folio.nr_pages)
        note = how
    elif ret == 0:  # the hook said "done" but the direct map is still writable: a no-op fallback
        ret = -Errno.EOPNOTSUPP
        note = f"{how} returned 0 but left the direct map writable"
    else:
        note = f"{how} failed with {Errno.describe(ret)}: the folio stays writable"
    mm.kernel.log.append(FolioReadonly(folio.pfn, folio.nr_pages, True, ret, f"{why}: {note}" if why else note))
    return ret


def folio_restore_writable(mm: MMState, folio: Folio, why: str) -> int:
    """Undo arch_make_folio_readonly() (model 1 on migration and free); 0 or -errno."""
    if not folio.readonly:
        return 0
    before = _collapses(mm)
    ret, how = _arch_call(mm, "arch_make_folio_writable", folio)
    if ret == 0:
        folio.readonly = False
    reformed = _collapses(mm) > before
    mm.kernel.log.append(FolioReadonly(folio.pfn, folio.nr_pages, False, ret, f"{why}: {how}", reformed))
    return ret
