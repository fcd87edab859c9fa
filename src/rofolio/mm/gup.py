"""get_user_pages() / pin_user_pages(): which page a kernel caller gets for a user address.

The question the bug library asks of GUP is: when a caller takes a user page
*for writing* (``FOLL_WRITE``, and ``FOLL_FORCE`` for ptrace and
/proc/<pid>/mem) on a private mapping it may not write directly, does it get a
private copy (COW), or the shared page behind the mapping (the zero page, the
huge zero folio, a page-cache page)?  The answer changed with the kernel:

* ``pre-4.9``: ``faultin_page()`` dropped FOLL_WRITE after a COW fault on a
  !VM_WRITE mapping ("drop FOLL_WRITE and retry").  If madvise(MADV_DONTNEED)
  zaps the copy before the retry, the retry read-faults the *original* page
  and returns it: Dirty COW (CVE-2016-5195).
* ``4.9``: commit 19be0eaffa3a keeps FOLL_WRITE and adds FOLL_COW: a PTE may be
  followed for a write after a COW only if it is dirty (can_follow_write_pte()).
  The THP path was still open: touch_pmd() marked a PMD dirty on every
  follow, so a re-faulted huge zero PMD passed can_follow_write_pmd():
  Huge Dirty COW (CVE-2017-1000405).
* ``4.15``: a8f97366452e (touch_p[mu]d() dirties only for FOLL_WRITE) and
  8310d48b125d (can_follow_write_pmd() honours FOLL_FORCE/FOLL_COW) close it.
* ``current``: today's anon-exclusive COW rules never hand out a shared page
  for writing; and pin_user_pages() leaves the shared zero page unpinned
  (David Howells, 2023: a pin on ZERO_PAGE could overflow its refcount).

The race is given, not simulated: ``race="madv_dontneed"`` means the copy was
zapped between the COW fault and the retry, the window every exploit widens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.mm.direct_access import direct_map_copy
from rofolio.mm.fault import _map_anon, _pte_alloc_one, handle_mm_fault, split_huge_zero_page_pmd
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_HIGHUSER_MOVABLE
from rofolio.mm.page_alloc import alloc_pages
from rofolio.mm.process import HugePmd, MmStruct, Pte, PteTable
from rofolio.units import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

GUP_PIN_COUNTING_BIAS = 1024  # include/linux/mm.h: a FOLL_PIN on a small folio adds this to the refcount
REFCOUNT_LIMIT = 1 << 31  # page->_refcount is an atomic_t


class GupRules(StrEnum):
    DROP_FOLL_WRITE = "pre-4.9"
    FOLL_COW = "4.9"
    TOUCH_PMD_FIX = "4.15"
    CURRENT = "current"


class Foll(StrEnum):
    WRITE = "FOLL_WRITE"
    FORCE = "FOLL_FORCE"
    PIN = "FOLL_PIN"
    LONGTERM = "FOLL_LONGTERM"


@dataclass(frozen=True, slots=True)
class GupResult:
    ret: int  # 0 or -errno
    folio: Folio | None  # the folio the caller now holds
    pfn: int  # the page inside it
    how: str  # why this page: "mapped page", "private COW copy", "original page after the race", ...
    pinned: bool


def _lookup(mms: MmStruct, addr: int) -> tuple[int, bool, bool] | None:
    """(pfn, writable, special) of the user mapping of ``addr``, or None."""
    haddr = addr & ~(PMD_SIZE - 1)
    entry = mms.pmds.get(haddr)
    if entry is None:
        return None
    if isinstance(entry, HugePmd):
        return entry.pfn + ((addr - haddr) >> PAGE_SHIFT), entry.writable, entry.special
    pte = entry.get((addr - haddr) >> PAGE_SHIFT)
    return None if pte is None else (pte.pfn, pte.writable, pte.special)


def _take(mm: MMState, pfn: int, flags: frozenset[str], rules: GupRules, how: str) -> GupResult:
    """try_grab_folio(): FOLL_GET takes a reference, FOLL_PIN a pin (the shared zero page is skipped today)."""
    folio = mm.folio_of(pfn)
    pinned = False
    if folio is not None:
        is_zero_page = folio is mm.zero_page
        if Foll.PIN in flags:
            if not (is_zero_page and rules == GupRules.CURRENT):  # "mm: Don't pin ZERO_PAGE"
                folio.refcount += 1 if folio.order else GUP_PIN_COUNTING_BIAS
                folio.pincount += 1
                pinned = True
        else:
            folio.refcount += 1
    return GupResult(0, folio, pfn, how, pinned)


def _force_cow(mm: MMState, mms: MmStruct, addr: int) -> int | None:
    """The COW fault a FOLL_FORCE write takes on a private mapping: a private copy at ``addr``."""
    haddr = addr & ~(PMD_SIZE - 1)
    entry = mms.pmds.get(haddr)
    if isinstance(entry, HugePmd) and entry.special:
        split_huge_zero_page_pmd(mm, mms, haddr)  # do_huge_pmd_wp_page(): "goto fallback"
        entry = mms.pmds[haddr]
    entry = _pte_table(mm, mms, haddr, entry)
    if entry is None:
        return None
    index = (addr - haddr) >> PAGE_SHIFT
    old = entry.get(index)
    copy = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0, label=f"COW copy in mm {mms.id}")
    if copy is None:
        return None
    if old is not None:
        direct_map_copy(mm, old.pfn, copy.pfn, 1, "wp_page_copy")
    vma = mms.find_vma(addr)
    entry.entries[index] = Pte(copy.pfn, writable=bool(vma and vma.write), special=False)
    _map_anon(copy, mms, haddr + (index << PAGE_SHIFT))
    return copy.pfn


def _pte_table(mm: MMState, mms: MmStruct, haddr: int, entry: HugePmd | PteTable | None) -> PteTable | None:
    """__pte_alloc(): the PTE table under ``haddr``, allocated if the PMD is none; None without memory."""
    if entry is None:
        table = _pte_alloc_one(mm, mms)
        if table is None:
            return None
        entry = mms.pmds[haddr] = PteTable(table)
        mms.nr_ptes += 1
    assert isinstance(entry, PteTable)
    return entry


def _zap(mms: MmStruct, addr: int) -> None:
    """madvise(MADV_DONTNEED) on the page: the private copy goes (its folio is not freed here)."""
    haddr = addr & ~(PMD_SIZE - 1)
    entry = mms.pmds.get(haddr)
    if isinstance(entry, PteTable):
        entry.entries.pop((addr - haddr) >> PAGE_SHIFT, None)
        if not entry.entries and entry.fill is None:
            del mms.pmds[haddr]


def get_user_page(mm: MMState, mms: MmStruct, addr: int, flags: frozenset[str], rules: GupRules,
                  race: str | None = None) -> GupResult:
    """__get_user_pages() for one page under ``rules``, with the MADV_DONTNEED race or not."""
    vma = mms.find_vma(addr)
    if vma is None:
        return GupResult(-Errno.EFAULT, None, -1, "no VMA", False)
    write = Foll.WRITE in flags
    if write and not vma.write and Foll.FORCE not in flags:  # check_vma_flags()
        return GupResult(-Errno.EFAULT, None, -1, "write to a read-only mapping without FOLL_FORCE", False)
    found = _lookup(mms, addr)
    if found is None:
        handle_mm_fault(mm, mms, addr, write and vma.write)  # faultin_page()
        found = _lookup(mms, addr)
        if found is None:
            return GupResult(-Errno.EFAULT, None, -1, "fault failed", False)
    pfn, writable, special = found
    if not write or writable:
        return _take(mm, pfn, flags, rules, "the mapped page")
    original = pfn
    huge_zero = isinstance(mms.pmds.get(addr & ~(PMD_SIZE - 1)), HugePmd) and special
    copy = _force_cow(mm, mms, addr)
    if copy is None:
        return GupResult(-Errno.ENOMEM, None, -1, "no memory for the COW copy", False)
    if race != "madv_dontneed":
        return _take(mm, copy, flags, rules, "a private COW copy")
    _zap(mms, addr)
    # the retry, after the copy was zapped
    if rules == GupRules.DROP_FOLL_WRITE:
        # FOLL_WRITE was dropped: the retry is a read, which maps the original page again
        _remap_original(mm, mms, addr, original, huge_zero)
        return _take(mm, original, flags, rules, "the original page: FOLL_WRITE was dropped before the race")
    if rules == GupRules.FOLL_COW and huge_zero:
        # the process re-faults the huge zero PMD; touch_pmd() dirties it; can_follow_write_pmd() passes
        _remap_original(mm, mms, addr, original, huge_zero)
        return _take(mm, original, flags, rules,
                     "touch_pmd() dirtied the re-faulted PMD and FOLL_COW let it through")
    copy = _force_cow(mm, mms, addr)  # FOLL_WRITE kept: the retry COWs again
    if copy is None:
        return GupResult(-Errno.ENOMEM, None, -1, "no memory for the COW copy", False)
    return _take(mm, copy, flags, rules, "a private COW copy: the retry kept FOLL_WRITE")


def _remap_original(mm: MMState, mms: MmStruct, addr: int, pfn: int, huge_zero: bool) -> None:
    """The read fault that follows the zap maps the shared page again."""
    haddr = addr & ~(PMD_SIZE - 1)
    if huge_zero:
        table = mms.pmds.get(haddr)
        if isinstance(table, PteTable):
            mms.deposited[haddr] = table.page  # the table goes back on deposit
            hz = mm.huge_zero.folio
            assert hz is not None
            mms.pmds[haddr] = HugePmd(hz.pfn, writable=False, special=True)
        return
    entry = mms.pmds.get(haddr)
    if isinstance(entry, PteTable):
        folio = mm.folio_of(pfn)
        special = folio is mm.zero_page
        entry.entries[(addr - haddr) >> PAGE_SHIFT] = Pte(pfn, writable=False, special=special)


def pin_many(mm: MMState, folio: Folio, count: int, rules: GupRules) -> tuple[int, bool]:
    """``count`` FOLL_PIN references on ``folio``; returns (refcount, overflowed)."""
    if folio is mm.zero_page and rules == GupRules.CURRENT:
        return folio.refcount, False  # the zero page is left unpinned
    per_pin = 1 if folio.order else GUP_PIN_COUNTING_BIAS
    folio.refcount += per_pin * count
    folio.pincount += count
    overflowed = folio.refcount >= REFCOUNT_LIMIT
    return folio.refcount, overflowed


def map_file_page(mm: MMState, mms: MmStruct, addr: int, folio: Folio) -> bool:
    """A read fault on a MAP_PRIVATE file mapping maps the page-cache page read-only."""
    haddr = addr & ~(PMD_SIZE - 1)
    entry = _pte_table(mm, mms, haddr, mms.pmds.get(haddr))
    if entry is None:
        return False
    entry.entries[(addr - haddr) >> PAGE_SHIFT] = Pte(folio.pfn, writable=False, special=False)
    folio.mapcount += 1
    folio.refcount += 1
    folio.rmap.append((mms.id, addr))
    return True
