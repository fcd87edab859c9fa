"""The 4K zero page and the huge zero folio (mm/huge_memory.c, include/linux/huge_mm.h).

The 4K ``empty_zero_page`` lives in the kernel image; where (.bss or
.rodata) is the arch's choice and decides whether its direct-map alias is
read-only (x86 ``empty_zero_page_in_rodata``; mm does not assume either).

The huge zero folio (rules from mm/huge_memory.c, each function below names its own):

* ``get_huge_zero_folio()``: fast path ``atomic_inc_not_zero(&huge_zero_refcount)``;
  else ``folio_alloc((GFP_TRANSHUGE | __GFP_ZERO | __GFP_ZEROTAGS) & ~__GFP_MOVABLE,
  HPAGE_PMD_ORDER)``, ``THP_ZERO_PAGE_ALLOC(_FAILED)``, large_rmappable cleared,
  the pointer and ``huge_zero_pfn`` set, refcount 2 (one for the caller, one
  for the shrinker);
* ``mm_get_huge_zero_folio()``: one reference per mm, guarded by
  MMF_HUGE_ZERO_FOLIO; ``mm_put_huge_zero_folio()`` drops it at mm teardown;
* ``put_huge_zero_folio()`` warns (WARN_ON_ONCE) if it drops the last
  reference, which it does all the same;
* the "thp-zero" shrinker counts HPAGE_PMD_NR only at refcount 1, and its
  scan does cmpxchg(1 → 0), clears the pointer, resets ``huge_zero_pfn`` and
  frees the folio;
* CONFIG_PERSISTENT_HUGE_ZERO_FOLIO: ``thp_shrinker_init()`` →
  ``huge_zero_init()`` allocates the folio once with
  ``alloc_huge_zero_folio()`` (no reference count: nothing ever puts it),
  warns "Allocating persistent huge zero folio failed" on failure, and
  registers no zero-folio shrinker;
  ``mm_get_huge_zero_folio()`` just returns the folio and
  ``mm_put_huge_zero_folio()`` does nothing (Pankaj Raghav's v3 patch);
  ``largest_zero_folio()`` falls back to the 4K zero page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.events import KernelWarning
from rofolio.mm.direct_access import oops
from rofolio.mm.events import HugeZeroFolioAlloc
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import HPAGE_PMD_NR, HPAGE_PMD_ORDER, HUGE_ZERO_FOLIO_GFP
from rofolio.mm.page_alloc import alloc_pages, folio_put, free_pages
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.shrinker import Shrinker, shrinker_register
from rofolio.mm.warn import warning_text
from rofolio.units import PAGE_SHIFT, MiB

if TYPE_CHECKING:
    from rofolio.mm.process import MmStruct
    from rofolio.mm.state import MMState

__all__ = [
    "MMF_HUGE_ZERO_FOLIO", "HugeZeroFolio", "alloc_huge_zero_folio", "get_huge_zero_folio",
    "get_persistent_huge_zero_folio", "hugepage_init", "is_zero_folio", "largest_zero_folio",
    "make_persistent_huge_zero_folio_readonly", "mm_get_huge_zero_folio", "mm_put_huge_zero_folio",
    "put_huge_zero_folio", "set_huge_zero_folio_pointer", "shrink_huge_zero_folio_count",
    "shrink_huge_zero_folio_scan", "thp_shrinker_init",
]

MMF_HUGE_ZERO_FOLIO = "MMF_HUGE_ZERO_FOLIO"


@dataclass
class HugeZeroFolio:
    """The globals: huge_zero_refcount, huge_zero_folio, huge_zero_pfn, and how the pointer is annotated."""

    persistent: bool
    folio: Folio | None = None
    refcount: int = 0
    pfn: int = -1  # huge_zero_pfn = ~0UL when there is none
    pointer_ro_after_init: bool = False  # RFC: __ro_after_init instead of __read_mostly
    allocations: int = 0


def _write_pointer(mm: MMState, value: Folio | None) -> int:
    """Store to the huge_zero_folio pointer; after init a __ro_after_init pointer faults."""
    from rofolio.mm.bootmem import ro_after_init_pfn

    hz = mm.huge_zero
    if hz.pointer_ro_after_init:
        pfn = ro_after_init_pfn(mm.kernel)
        if pfn is not None and not mm.kernel.direct_map_writable(pfn):
            return oops(mm, pfn, "huge_zero_folio pointer (__ro_after_init)")
        if pfn is None and mm.kernel.phase == "running":
            mm.kernel.log.append(KernelWarning("write to __ro_after_init huge_zero_folio after init"))
            return -Errno.EFAULT
    hz.folio = value
    return 0


def set_huge_zero_folio_pointer(mm: MMState, value: Folio | None) -> int:
    """A store to the pointer from outside the huge zero folio code (a bug, or a test of __ro_after_init)."""
    return _write_pointer(mm, value)


def is_zero_folio(mm: MMState, folio: Folio | None) -> bool:
    """is_zero_folio(): only the 4K zero page, not the huge zero folio."""
    return folio is not None and folio is mm.zero_page


def alloc_huge_zero_folio(mm: MMState) -> Folio | None:
    """alloc_huge_zero_folio(): the PMD-sized zeroed folio, explicitly not rmappable; THP_ZERO_PAGE_ALLOC_FAILED
    (HugeZeroFolioAlloc) when there is none."""
    folio = alloc_pages(mm, HUGE_ZERO_FOLIO_GFP, HPAGE_PMD_ORDER, label="huge zero folio")
    if folio is None:
        mm.kernel.log.append(HugeZeroFolioAlloc(-1, False))
        return None
    folio.large_rmappable = False  # folio_clear_large_rmappable()
    return folio


def _install(mm: MMState, folio: Folio) -> bool:
    """Point huge_zero_folio at ``folio`` and set huge_zero_pfn (THP_ZERO_PAGE_ALLOC); False if the store faulted."""
    mm.kernel.log.append(HugeZeroFolioAlloc(folio.pfn, True))
    if _write_pointer(mm, folio):
        return False
    mm.huge_zero.pfn = folio.pfn
    mm.huge_zero.allocations += 1
    return True


def get_huge_zero_folio(mm: MMState) -> bool:
    """get_huge_zero_folio()."""
    hz = mm.huge_zero
    if hz.refcount > 0:  # atomic_inc_not_zero()
        hz.refcount += 1
        return True
    folio = alloc_huge_zero_folio(mm)
    if folio is None:
        return False
    if hz.folio is not None:  # already installed (a put took the count to 0 without the shrinker): keep it
        hz.refcount += 1
        folio_put(mm, folio, "get_huge_zero_folio")
        return True
    if not _install(mm, folio):
        return False
    hz.refcount = 2  # one for the caller, one the shrinker puts back
    return True


def put_huge_zero_folio(mm: MMState) -> None:
    """put_huge_zero_folio(): WARN_ON_ONCE(atomic_dec_and_test(&huge_zero_refcount)): only the shrinker may put
    the last reference, and a put that does drops it all the same, with a warning."""
    hz = mm.huge_zero
    hz.refcount -= 1
    if hz.refcount == 0:
        where = "mm/huge_memory.c put_huge_zero_folio()"
        mm.kernel.warn_once(warning_text(where, "the huge zero folio's last reference was put outside the shrinker "
                                                "(WARN_ON_ONCE(atomic_dec_and_test(&huge_zero_refcount)))"), where)


def mm_get_huge_zero_folio(mm: MMState, mms: MmStruct) -> Folio | None:
    """mm_get_huge_zero_folio()."""
    if mm.huge_zero.persistent:
        return mm.huge_zero.folio
    if MMF_HUGE_ZERO_FOLIO in mms.flags:
        return mm.huge_zero.folio
    if not get_huge_zero_folio(mm):
        return None
    if MMF_HUGE_ZERO_FOLIO in mms.flags:  # test_and_set_bit() lost a race: drop the extra reference
        put_huge_zero_folio(mm)
    mms.flags.add(MMF_HUGE_ZERO_FOLIO)
    return mm.huge_zero.folio


def mm_put_huge_zero_folio(mm: MMState, mms: MmStruct) -> None:
    """mm_put_huge_zero_folio(): at mm teardown."""
    if mm.huge_zero.persistent:
        return
    if MMF_HUGE_ZERO_FOLIO in mms.flags:
        put_huge_zero_folio(mm)


def shrink_huge_zero_folio_count(mm: MMState) -> int:
    """shrink_huge_zero_folio_count(): HPAGE_PMD_NR only when the shrinker's reference is the last."""
    return HPAGE_PMD_NR if mm.huge_zero.refcount == 1 else 0


def shrink_huge_zero_folio_scan(mm: MMState) -> int:
    """shrink_huge_zero_folio_scan(): cmpxchg(1, 0), clear the pointer and the pfn, free the folio."""
    hz = mm.huge_zero
    if hz.refcount != 1:
        return 0
    folio = hz.folio
    assert folio is not None
    if not mm.policy.before_free(mm, folio, "shrink_huge_zero_folio_scan"):
        return 0  # refused: the folio stays, with the shrinker's reference
    hz.refcount = 0
    if _write_pointer(mm, None):
        hz.refcount = 1
        return 0
    hz.pfn = -1
    folio.refcount = 0
    free_pages(mm, folio, "shrink_huge_zero_folio_scan")
    return HPAGE_PMD_NR


def make_persistent_huge_zero_folio_readonly(mm: MMState) -> int:
    """RFC patch 1/3: the persistent huge zero folio read-only once, at thp_shrinker_init() time."""
    folio = get_persistent_huge_zero_folio(mm)
    if folio is None:
        return -Errno.ENOMEM
    ret = arch_make_folio_readonly(mm, folio, "persistent huge zero folio")
    mm.huge_zero.pointer_ro_after_init = True  # "While at it": huge_zero_folio becomes __ro_after_init
    return ret


THP_ZERO_SHRINKER = Shrinker("thp-zero", shrink_huge_zero_folio_count, shrink_huge_zero_folio_scan)


def thp_shrinker_init(mm: MMState) -> int:
    """thp_shrinker_init(): the persistent folio once and no shrinker, or the "thp-zero" shrinker."""
    if mm.huge_zero.persistent:  # huge_zero_init(), CONFIG_PERSISTENT_HUGE_ZERO_FOLIO: no reference count
        folio = alloc_huge_zero_folio(mm)
        if folio is None:
            mm.kernel.log.append(KernelWarning("Allocating persistent huge zero folio failed"))
            return 0
        if not _install(mm, folio):
            return 0
        if mm.config.readonly_huge_zero_folio_enabled:
            make_persistent_huge_zero_folio_readonly(mm)
        return 0
    shrinker_register(mm, THP_ZERO_SHRINKER)
    return 0


THP_MIN_TOTALRAM = (512 * MiB) >> PAGE_SHIFT  # MB_TO_PAGES(512)


def hugepage_init(mm: MMState) -> int:
    """hugepage_init() (mm/huge_memory.c, a subsys_initcall): without has_transparent_hugepage() it marks THP
    unsupported (no THP fault ever maps a huge page) and fails with -EINVAL before anything else, so
    thp_shrinker_init() never runs; else sysfs and khugepaged setup (not modelled), then thp_shrinker_init();
    then, on a machine whose totalram_pages() (the pages the buddy allocator manages) is below 512 MiB, it
    clears transparent_hugepage_flags: THP off and use_zero_page off, until an administrator writes sysfs
    (the persistent huge zero folio is allocated all the same)."""
    mm.initcalls_done = True
    if not mm.kernel.has_transparent_hugepage():
        mm.thp_unsupported = True  # transparent_hugepage_flags = 1 << TRANSPARENT_HUGEPAGE_UNSUPPORTED
        return -Errno.EINVAL
    ret = thp_shrinker_init(mm)
    if sum(z.managed_pages for z in mm.zones) < THP_MIN_TOTALRAM:
        mm.thp_flags_cleared = True  # transparent_hugepage_flags = 0
    return ret


def get_persistent_huge_zero_folio(mm: MMState) -> Folio | None:
    """get_persistent_huge_zero_folio() (include/linux/huge_mm.h)."""
    if not mm.huge_zero.persistent:
        return None
    return mm.huge_zero.folio


def largest_zero_folio(mm: MMState) -> Folio:
    """largest_zero_folio(): the persistent huge zero folio, else page_folio(ZERO_PAGE(0))."""
    folio = get_persistent_huge_zero_folio(mm)
    if folio is not None:
        return folio
    assert mm.zero_page is not None
    return mm.zero_page
