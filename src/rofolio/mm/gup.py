"""get_user_pages() / pin_user_pages(): which page a kernel caller gets for a user address.

The question the bug library asks of GUP is: when a caller takes a user page
*for writing* (``FOLL_WRITE``, and ``FOLL_FORCE`` for ptrace and
/proc/<pid>/mem) on a private mapping it may not write directly, does it get a
private copy (COW), or the shared page behind the mapping (the zero page, the
huge zero folio, a page-cache page)?  The answer changed with the kernel:

* ``pre-4.9``: ``faultin_page()`` dropped FOLL_WRITE after the COW fault of a
  FOLL_FORCE write on a !VM_WRITE mapping and retried the lookup as a read.  If
  madvise(MADV_DONTNEED) zaps the copy before the retry, the retry read-faults
  the *original* page and returns it: Dirty COW (CVE-2016-5195).
* ``4.10``: 19be0eaffa3a (4.9) keeps FOLL_WRITE and adds FOLL_COW: a PTE may be
  followed for a write after a COW only if it is dirty (can_follow_write_pte()).
  8310d48b125d (4.10; 4.9.y) gave THP the same rule, can_follow_write_pmd(),
  and so opened the THP path: touch_pmd() marked a PMD dirty on every follow,
  so a re-faulted huge zero PMD passed it for a FOLL_FORCE write on a
  !VM_WRITE mapping: Huge Dirty COW (CVE-2017-1000405).
* ``4.15``: a8f97366452e (touch_p[mu]d() dirties only for FOLL_WRITE) closes it.
* ``5.7``: FOLL_PIN (pin_user_pages()) adds GUP_PIN_COUNTING_BIAS to a small
  folio's refcount, and since 8fde12ca79af (5.1) a grab is refused once the
  refcount is no longer positive (rofolio.mm.longterm_pin.try_grab_folio()).
  Before 5.7 a "pin" is a plain FOLL_GET reference.
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
from rofolio.kversion import ZERO_PAGE_NOT_PINNED, KernelVersion
from rofolio.mm.fault import (
    _pte_alloc_one,
    _unmap_folio,
    do_huge_pmd_wp_page,
    handle_mm_fault,
    split_huge_pmd,
    split_huge_zero_page_pmd,
    wp_page_copy,
)
from rofolio.mm.folio import Folio
from rofolio.mm.longterm_pin import try_grab_folio
from rofolio.mm.process import HugePmd, MmStruct, Pte, PteTable
from rofolio.mm.warn import warning_text
from rofolio.mm.zero_page import is_zero_folio
from rofolio.units import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = ["Foll", "GupResult", "GupRules", "get_user_page", "map_file_page", "pin_many"]

class GupRules(StrEnum):
    """The GUP behaviour of a kernel era, oldest first."""

    DROP_FOLL_WRITE = "pre-4.9"
    FOLL_COW = "4.10"
    TOUCH_PMD_FIX = "4.15"
    FOLL_PIN = "5.7"
    PINS_ZERO_PAGE = "6.1"  # today's COW rules, but pin_user_pages() still pins ZERO_PAGE: 6.1.0 to 6.1.129
    CURRENT = "current"

    @property
    def has_foll_pin(self) -> bool:
        """FOLL_PIN and GUP_PIN_COUNTING_BIAS (5.7); before, a pin is a FOLL_GET reference."""
        return self in (GupRules.FOLL_PIN, GupRules.PINS_ZERO_PAGE, GupRules.CURRENT)

    @property
    def refcount_checked(self) -> bool:
        """try_grab_folio() refuses a folio whose refcount is not positive (8fde12ca79af, 5.1)."""
        return self in (GupRules.FOLL_PIN, GupRules.PINS_ZERO_PAGE, GupRules.CURRENT)

    @property
    def pins_zero_page(self) -> bool:
        """Until c8070b787519 ("mm: Don't pin ZERO_PAGE in pin_user_pages()") the zero page was pinned like any page."""
        return self != GupRules.CURRENT

    @classmethod
    def for_kernel(cls, version: KernelVersion) -> GupRules:
        """The rules of a modelled kernel (6.1 and later), by whether pin_user_pages() pins ZERO_PAGE.

        mm/gup.c try_grab_folio()/gup_put_folio() skip the shared zero page: since commit
        c8070b787519 ("mm: Don't pin ZERO_PAGE in pin_user_pages()") (v6.5; 6.1.130 as 476c1dfefab8).
        """
        return cls.CURRENT if ZERO_PAGE_NOT_PINNED.applies(version) else cls.PINS_ZERO_PAGE


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


def _pin_skipped(mm: MMState, folio: Folio, rules: GupRules) -> bool:
    """pin_user_pages() leaves the zero page unpinned (today): nothing to take, nothing to release."""
    return is_zero_folio(mm, folio) and not rules.pins_zero_page


def _grab(mm: MMState, folio: Folio, count: int, pin: bool, rules: GupRules) -> int:
    """try_grab_folio() under ``rules``: how many of ``count`` grabs were taken (a skipped pin counts as taken)."""
    if pin and _pin_skipped(mm, folio, rules):
        return count
    return try_grab_folio(mm, folio, count, pin=pin and rules.has_foll_pin, refcount_check=rules.refcount_checked)


def _take(mm: MMState, pfn: int, flags: frozenset[str], rules: GupRules, how: str) -> GupResult:
    """The page GUP returns, with the reference (FOLL_GET) or pin (FOLL_PIN) it takes on it."""
    folio = mm.folio_of(pfn)
    pin = Foll.PIN in flags
    if folio is not None and not _grab(mm, folio, 1, pin, rules):
        return GupResult(-Errno.ENOMEM, None, -1, "try_grab_folio() refused: the refcount is not positive", False)
    pinned = pin and folio is not None and not _pin_skipped(mm, folio, rules)
    return GupResult(0, folio, pfn, how, pinned)


def _force_cow(mm: MMState, mms: MmStruct, addr: int, rules: GupRules) -> tuple[int | None, str]:
    """The COW fault a FOLL_FORCE write takes on a private mapping: (the private copy's pfn, how it went).

    On a huge zero PMD, today's rules take the machine's do_huge_pmd_wp_page() (a new THP from v6.13); the
    older eras' kernels all split it (their fallback path, the only one before 1ced09e0331f)."""
    haddr = addr & ~(PMD_SIZE - 1)
    entry = mms.pmds.get(haddr)
    if isinstance(entry, HugePmd) and entry.special:
        vma = mms.find_vma(addr)
        assert vma is not None
        if rules == GupRules.CURRENT:
            handling = do_huge_pmd_wp_page(mm, mms, vma, haddr)
            if handling == "huge_zero_wp_thp":
                thp = mms.pmds[haddr]
                assert isinstance(thp, HugePmd)
                return thp.pfn + ((addr - haddr) >> PAGE_SHIFT), handling
            if handling == "oops":
                return None, "oops_zeroing_thp"
        else:
            split_huge_zero_page_pmd(mm, mms, haddr)
        entry = mms.pmds[haddr]
    table = _pte_table(mm, mms, haddr, entry)
    if table is None:
        return None, "oom"
    index = (addr - haddr) >> PAGE_SHIFT
    handling = wp_page_copy(mm, mms, table, haddr, index)
    if handling in ("oom", "oops"):
        return None, handling
    pte = table.get(index)
    assert pte is not None
    return pte.pfn, handling


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


def _zap(mm: MMState, mms: MmStruct, addr: int) -> None:
    """madvise(MADV_DONTNEED) on the page: its PTE becomes none and the copy is unmapped (the table stays)."""
    haddr = addr & ~(PMD_SIZE - 1)
    table = mms.pmds.get(haddr)
    if isinstance(table, HugePmd) and not table.special:
        table = split_huge_pmd(mm, mms, haddr)  # zap_pmd_range() splits a PMD it zaps only part of
    if not isinstance(table, PteTable):
        return
    index = (addr - haddr) >> PAGE_SHIFT
    pte = table.get(index)
    if table.fill is not None:
        table.entries[index] = None  # none, among the split table's zero-page PTEs
    else:
        table.entries.pop(index, None)
    if pte is not None and not pte.special:
        _unmap_folio(mm, mms, pte.pfn, addr)  # zap_pte_range()


def get_user_page(mm: MMState, mms: MmStruct, addr: int, flags: frozenset[str], rules: GupRules,
                  race: str | None = None) -> GupResult:
    """__get_user_pages() for one page under ``rules``, with the MADV_DONTNEED race or not."""
    if rules == GupRules.CURRENT and Foll.LONGTERM in flags and Foll.PIN not in flags:
        # is_valid_gup_args() (mm/gup.c, read in 7.2): FOLL_LONGTERM only when pinning, else WARN_ON_ONCE and the
        # caller's -EINVAL; the older eras' rules do not check it (when the check came was not established)
        where = "mm/gup.c is_valid_gup_args()"
        mm.kernel.warn_once(warning_text(where, "FOLL_LONGTERM without FOLL_PIN"), where)
        return GupResult(-Errno.EINVAL, None, -1, "is_valid_gup_args(): FOLL_LONGTERM is only for pin_user_pages()",
                         False)
    vma = mms.find_vma(addr)
    if vma is None:
        return GupResult(-Errno.EFAULT, None, -1, "no VMA", False)
    write = Foll.WRITE in flags
    if write and not vma.write and Foll.FORCE not in flags:  # check_vma_flags()
        return GupResult(-Errno.EFAULT, None, -1, "write to a read-only mapping without FOLL_FORCE", False)
    found = mms.lookup(addr)
    if found is None:
        handle_mm_fault(mm, mms, addr, write and vma.write)  # faultin_page()
        found = mms.lookup(addr)
        if found is None:
            return GupResult(-Errno.EFAULT, None, -1, "fault failed", False)
    pfn, writable, special = found
    if not write or writable:
        return _take(mm, pfn, flags, rules, "the mapped page")
    original = pfn
    huge_zero = isinstance(mms.pmds.get(addr & ~(PMD_SIZE - 1)), HugePmd) and special
    copy, handling = _force_cow(mm, mms, addr, rules)
    if copy is None:
        return _cow_failed(handling)
    if race != "madv_dontneed":
        return _take(mm, copy, flags, rules, "a private COW copy")
    _zap(mm, mms, addr)
    # the retry, after the copy was zapped
    forced = Foll.FORCE in flags and not vma.write  # only a FOLL_FORCE write to a !VM_WRITE mapping COWs this way
    if rules == GupRules.DROP_FOLL_WRITE and forced:
        # faultin_page() cleared FOLL_WRITE after the COW; the retry is a read, which maps the original page again
        _remap_original(mm, mms, addr, original, huge_zero)
        return _take(mm, original, flags, rules, "the original page: FOLL_WRITE was dropped before the race")
    if rules == GupRules.FOLL_COW and huge_zero and forced:
        # the process re-faults the huge zero PMD; touch_pmd() dirties it; can_follow_write_pmd() passes
        _remap_original(mm, mms, addr, original, huge_zero)
        return _take(mm, original, flags, rules,
                     "touch_pmd() dirtied the re-faulted PMD and FOLL_COW let it through")
    # FOLL_WRITE kept: the retry's write fault reads the page in again (the zero page, or the file's page:
    # do_anonymous_page() / do_cow_fault()) and COWs it once more
    assert mm.zero_page is not None
    _remap_original(mm, mms, addr, mm.zero_page.pfn if huge_zero else original, huge_zero=False)
    copy, handling = _force_cow(mm, mms, addr, rules)
    if copy is None:
        return _cow_failed(handling)
    return _take(mm, copy, flags, rules, "a private COW copy: the retry kept FOLL_WRITE")


def _cow_failed(handling: str) -> GupResult:
    if handling == "oops_zeroing_thp":
        return GupResult(-Errno.EFAULT, None, -1, "zeroing the new THP oopsed (folio_zero_user())", False)
    if handling == "oops":
        return GupResult(-Errno.EFAULT, None, -1, "the COW copy oopsed reading the original page", False)
    return GupResult(-Errno.ENOMEM, None, -1, "no memory for the COW copy", False)


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
    folio = mm.folio_of(pfn)
    if folio is None or is_zero_folio(mm, folio):
        table = _pte_table(mm, mms, haddr, mms.pmds.get(haddr))
        if table is not None:
            table.entries[(addr - haddr) >> PAGE_SHIFT] = Pte(pfn, writable=False, special=True)
        return
    map_file_page(mm, mms, addr, folio)


def pin_many(mm: MMState, folio: Folio, count: int, rules: GupRules) -> tuple[int, str]:
    """``count`` pin_user_pages() on mappings of ``folio`` under ``rules``: (pins taken, what happened)."""
    if _pin_skipped(mm, folio, rules):
        return count, "pin_user_pages() leaves the zero page unpinned (\"mm: Don't pin ZERO_PAGE\")"
    before = folio.refcount
    taken = _grab(mm, folio, count, True, rules)
    what = f"refcount {before} -> {folio.refcount}"
    if folio.refcount >= 1 << 31:
        what += " (past 2^31: negative as an atomic_t)"
    if taken < count:
        what += f", then {count - taken} more pins refused with a WARN (try_grab_folio)"
    return taken, what


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
