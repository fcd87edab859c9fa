"""User page faults on anonymous private memory, and what a process reads back.

Rules, with their sources:

* ``do_huge_pmd_anonymous_page()`` (mm/huge_memory.c): in a THP-eligible
  VMA, a *read* fault with use_zero_page=1 (and !mm_forbids_zeropage())
  allocates one page table to deposit (pte_alloc_one()), takes the huge zero
  folio with ``mm_get_huge_zero_folio()`` and installs one read-only special
  PMD (set_huge_zero_folio()); nothing else is allocated.  A write fault
  allocates a PMD-sized folio and zeroes it (folio_zero_user()).
* ``do_huge_pmd_wp_page()`` on a huge zero PMD: from v6.13 (1ced09e0331f,
  ``kversion.HUGE_ZERO_WP_ALLOCATES_THP``) ``do_huge_zero_wp_pmd()`` first
  allocates and zeroes a PMD-sized folio as a write fault on an empty PMD does
  (``vma_alloc_anon_folio_pmd()``) and maps it in place of the huge zero
  folio (writable where the VMA is), keeping the deposited table; only if that allocation fails, and
  always before v6.13, it takes the fallback: ``__split_huge_zero_page_pmd()``
  turns the deposited table into 512 special read-only PTEs of the 4K zero
  page, and the fault is retried at PTE level.
* ``__split_huge_pmd()`` of an anonymous THP (MADV_DONTNEED of part of it):
  the deposited table maps its 512 pages, each PTE holding a reference
  (``__split_huge_pmd_locked()``: ``folio_ref_add(folio, HPAGE_PMD_NR - 1)``).
* ``do_anonymous_page()`` (mm/memory.c): a read maps the zero page with a
  special PTE; a write maps a new zeroed movable folio
  (vma_alloc_zeroed_movable_folio()).
* ``wp_page_copy()``: a write to a zero-page PTE maps a new zeroed movable
  folio, only for that 4K page.
* ``zap_huge_pmd()``: a huge zero PMD only frees its deposited table; the
  mm's huge zero reference goes at teardown (``mm_put_huge_zero_folio()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import AddressError, Errno
from rofolio.kversion import HUGE_ZERO_WP_ALLOCATES_THP
from rofolio.mm.direct_access import direct_map_copy, direct_map_write, page_content, user_store
from rofolio.mm.events import UserFault
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.gfp import (
    GFP_HIGHUSER_MOVABLE,
    GFP_PGTABLE_USER,
    GFP_TRANSHUGE,
    GFP_TRANSHUGE_LIGHT,
    HPAGE_PMD_NR,
    HPAGE_PMD_ORDER,
    Gfp,
)
from rofolio.mm.page_alloc import _leak, alloc_pages, folio_put, free_pages
from rofolio.mm.process import HugePmd, MmStruct, Pte, PteTable, Vma
from rofolio.mm.zero_page import is_zero_folio, mm_get_huge_zero_folio, mm_put_huge_zero_folio
from rofolio.units import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = [
    "do_anonymous_page", "do_huge_pmd_anonymous_page", "do_huge_pmd_wp_page", "exit_mmap", "folio_at",
    "handle_mm_fault", "map_anon_folio_pmd", "mm_alloc", "split_huge_pmd", "split_huge_zero_page_pmd", "user_read",
    "user_write", "vma_alloc_anon_folio_pmd", "wp_page_copy",
]


def mm_alloc(mm: MMState) -> MmStruct:
    """A new process address space."""
    mms = MmStruct(mm.next_mm_id)
    mm.next_mm_id += 1
    mm.processes[mms.id] = mms
    return mms


def _thp_allowed(mm: MMState, vma: Vma, haddr: int) -> bool:
    """thp_vma_allowable_order() for anonymous memory: the sysfs mode, and the PMD inside the VMA."""
    mode = mm.config.transparent_hugepage
    if mm.thp_unsupported or mm.thp_flags_cleared:  # hugepage_init() left no mode bit in the flags
        return False
    if mode == "never" or (mode == "madvise" and not vma.hugepage):
        return False
    return vma.start <= haddr and haddr + PMD_SIZE <= vma.end


def _pte_alloc_one(mm: MMState, mms: MmStruct) -> Folio | None:
    """pte_alloc_one(): a zeroed page-table page (GFP_PGTABLE_USER)."""
    return alloc_pages(mm, GFP_PGTABLE_USER, 0, label=f"page table of mm {mms.id}")


def _fault(mm: MMState, mms: MmStruct, addr: int, write: bool, handling: str) -> str:
    mm.kernel.log.append(UserFault(mms.id, addr, write, handling))
    return handling


def handle_mm_fault(mm: MMState, mms: MmStruct, addr: int, write: bool) -> str:
    """handle_mm_fault(): what handled the fault ("huge_zero_pmd", "cow_zero_page", ...) or "sigsegv"/"oom"."""
    vma = mms.find_vma(addr)
    if vma is None or (write and not vma.write):
        return _fault(mm, mms, addr, write, "sigsegv")
    haddr = addr & ~(PMD_SIZE - 1)
    entry = mms.pmds.get(haddr)
    if entry is None and _thp_allowed(mm, vma, haddr):
        handling = do_huge_pmd_anonymous_page(mm, mms, vma, haddr, write)
        if handling != "fallback":
            return _fault(mm, mms, addr, write, handling)
        entry = mms.pmds.get(haddr)
    if isinstance(entry, HugePmd):
        if not write or entry.writable:
            return _fault(mm, mms, addr, write, "present")
        handling = do_huge_pmd_wp_page(mm, mms, vma, haddr)
        if handling != "fallback":
            return _fault(mm, mms, addr, write, handling)
    return _fault(mm, mms, addr, write, _do_pte_fault(mm, mms, haddr, addr, write))


def do_huge_pmd_anonymous_page(mm: MMState, mms: MmStruct, vma: Vma, haddr: int, write: bool) -> str:
    """do_huge_pmd_anonymous_page()."""
    if not write and mm.config.use_zero_page:
        pgtable = _pte_alloc_one(mm, mms)
        if pgtable is None:
            return "oom"
        zero = mm_get_huge_zero_folio(mm, mms)
        if zero is None:
            free_pages(mm, pgtable, "pte_free")
            return "fallback"  # count_vm_event(THP_FAULT_FALLBACK)
        mms.pmds[haddr] = HugePmd(zero.pfn, writable=False, special=True)  # set_huge_zero_folio()
        mms.deposited[haddr] = pgtable
        mms.nr_ptes += 1
        return "huge_zero_pmd"
    folio = vma_alloc_anon_folio_pmd(mm, mms, vma)
    if not isinstance(folio, Folio):
        return folio
    pgtable = _pte_alloc_one(mm, mms)
    if pgtable is None:
        folio_put(mm, folio)
        return "oom"
    map_anon_folio_pmd(folio, mms, vma, haddr)  # a write fault: the VMA is writable
    mms.deposited[haddr] = pgtable
    mms.nr_ptes += 1
    return "thp"


def vma_alloc_anon_folio_pmd(mm: MMState, mms: MmStruct, vma: Vma) -> Folio | str:
    """vma_alloc_anon_folio_pmd(): a zeroed PMD-sized folio (folio_zero_user() stores through the direct map),
    or "fallback" without memory, "oops" if zeroing it faulted."""
    gfp = GFP_TRANSHUGE if vma.hugepage else GFP_TRANSHUGE_LIGHT  # vma_thp_gfp_mask(), defrag=madvise
    folio = alloc_pages(mm, gfp, HPAGE_PMD_ORDER, label=f"THP of mm {mms.id}")
    if folio is None:
        return "fallback"
    if direct_map_write(mm, folio.pfn, folio.nr_pages, 0, "folio_zero_user") < 0:
        _leak(mm, folio)
        return "oops"
    return folio


def do_huge_pmd_wp_page(mm: MMState, mms: MmStruct, vma: Vma, haddr: int) -> str:
    """do_huge_pmd_wp_page(): a huge zero PMD becomes a new THP ("huge_zero_wp_thp", from v6.13) or is split
    ("fallback": the caller retries at PTE level); an exclusive anon THP is reused ("reuse")."""
    entry = mms.pmds[haddr]
    assert isinstance(entry, HugePmd)
    if entry.special:
        if HUGE_ZERO_WP_ALLOCATES_THP.applies(mm.version):  # do_huge_zero_wp_pmd()
            folio = vma_alloc_anon_folio_pmd(mm, mms, vma)
            if isinstance(folio, Folio):
                map_anon_folio_pmd(folio, mms, vma, haddr)  # map_anon_folio_pmd_pf(); the deposited table stays
                return "huge_zero_wp_thp"
            if folio == "oops":
                return folio
        split_huge_zero_page_pmd(mm, mms, haddr)
        return "fallback"
    entry.writable = True  # an exclusive anon THP is reused
    return "reuse"


def split_huge_pmd(mm: MMState, mms: MmStruct, haddr: int) -> PteTable:
    """__split_huge_pmd() of a PMD-mapped anonymous THP: the deposited table maps its pages, one reference and
    one mapping each (the PMD's own become the first page's)."""
    entry = mms.pmds[haddr]
    assert isinstance(entry, HugePmd) and not entry.special
    folio = mm.folio_of(entry.pfn)
    assert folio is not None
    folio.refcount += HPAGE_PMD_NR - 1  # folio_ref_add(folio, HPAGE_PMD_NR - 1)
    folio.mapcount += HPAGE_PMD_NR - 1
    folio.rmap.remove((mms.id, haddr))
    folio.rmap.extend((mms.id, haddr + (i << PAGE_SHIFT)) for i in range(HPAGE_PMD_NR))
    table = PteTable(mms.deposited.pop(haddr),  # pgtable_trans_huge_withdraw()
                     {i: Pte(entry.pfn + i, entry.writable, special=False) for i in range(HPAGE_PMD_NR)})
    mms.pmds[haddr] = table
    return table


def split_huge_zero_page_pmd(mm: MMState, mms: MmStruct, haddr: int) -> None:
    """__split_huge_zero_page_pmd(): the deposited table becomes 512 special read-only zero-page PTEs."""
    assert mm.zero_page is not None
    table = mms.deposited.pop(haddr)  # pgtable_trans_huge_withdraw()
    mms.pmds[haddr] = PteTable(table, fill=Pte(mm.zero_page.pfn, writable=False, special=True))


def _do_pte_fault(mm: MMState, mms: MmStruct, haddr: int, addr: int, write: bool) -> str:
    entry = mms.pmds.get(haddr)
    if entry is None:
        page = _pte_alloc_one(mm, mms)
        if page is None:
            return "oom"
        entry = PteTable(page)
        mms.pmds[haddr] = entry
        mms.nr_ptes += 1
    assert isinstance(entry, PteTable)
    index = (addr - haddr) >> PAGE_SHIFT
    pte = entry.get(index)
    if pte is None:
        return do_anonymous_page(mm, mms, entry, haddr, index, write)
    if write and not pte.writable:
        if mm.zero_page is not None and pte.pfn == mm.zero_page.pfn:
            return wp_page_copy(mm, mms, entry, haddr, index)
        entry.entries[index] = Pte(pte.pfn, True, pte.special)  # wp_page_reuse()
        return "reuse"
    return "present"


def do_anonymous_page(mm: MMState, mms: MmStruct, table: PteTable, haddr: int, index: int, write: bool) -> str:
    """do_anonymous_page(): the zero page for a read, a new zeroed folio for a write."""
    assert mm.zero_page is not None
    if not write:
        table.entries[index] = Pte(mm.zero_page.pfn, writable=False, special=True)
        return "zero_pte"
    return _new_anon_pte(mm, mms, table, haddr, index, "anon_page")


def wp_page_copy(mm: MMState, mms: MmStruct, table: PteTable, haddr: int, index: int) -> str:
    """wp_page_copy(): a new page for this 4K only, mapped writable if the VMA is (maybe_mkwrite()).

    Over the zero page it is a zeroed folio (vma_alloc_zeroed_movable_folio());
    over another page a copy of it, read and written through the direct map
    (__wp_page_copy_user()), after which the old page's mapping is dropped.
    Returns "cow_zero_page", "cow", "oom", or "oops" (the copy faulted).
    """
    addr = haddr + (index << PAGE_SHIFT)
    old = table.get(index)
    from_zero = old is None or is_zero_folio(mm, mm.folio_of(old.pfn))
    label = f"anon page of mm {mms.id}" if from_zero else f"COW copy in mm {mms.id}"
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE | (Gfp.ZERO if from_zero else Gfp(0)), 0, label=label)
    if folio is None:
        return "oom"
    if old is not None and not from_zero and direct_map_copy(mm, old.pfn, folio.pfn, 1, "wp_page_copy"):
        _leak(mm, folio)  # the task oopsed holding the new page
        return "oops"
    vma = mms.find_vma(addr)
    _map_anon(folio, mms, addr)
    table.entries[index] = Pte(folio.pfn, writable=bool(vma and vma.write), special=False)
    if old is not None and not old.special:
        _unmap_folio(mm, mms, old.pfn, addr)  # page_remove_rmap() + put of the old page
    return "cow_zero_page" if from_zero else "cow"


def _new_anon_pte(mm: MMState, mms: MmStruct, table: PteTable, haddr: int, index: int, handling: str) -> str:
    addr = haddr + (index << PAGE_SHIFT)
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE | Gfp.ZERO, 0, label=f"anon page of mm {mms.id}")
    if folio is None:
        return "oom"
    _map_anon(folio, mms, addr)
    table.entries[index] = Pte(folio.pfn, writable=True, special=False)
    return handling


def map_anon_folio_pmd(folio: Folio, mms: MmStruct, vma: Vma, haddr: int) -> None:
    """map_anon_folio_pmd(): a new anonymous THP mapped by one PMD, writable where the VMA is
    (maybe_pmd_mkwrite())."""
    _map_anon(folio, mms, haddr)
    mms.pmds[haddr] = HugePmd(folio.pfn, writable=vma.write, special=False)


def _map_anon(folio: Folio, mms: MmStruct, addr: int) -> None:
    """folio_add_new_anon_rmap() + folio_add_lru(): the fault's reference becomes the mapping's."""
    folio.mapping = MappingKind.ANON
    folio.lru = True
    folio.mapcount = 1
    folio.rmap.append((mms.id, addr))


# ------------------------------------------------------------------ what a process sees
def _resolve(mm: MMState, mms: MmStruct, addr: int, write: bool) -> int | None:
    """The pfn the access reaches after any fault; None if the fault killed the task (an oops in the kernel's
    half of the fault, or SIGSEGV): the access never happens."""
    found = mms.lookup(addr)
    if found is None or (write and not found[1]):
        handling = handle_mm_fault(mm, mms, addr, write)
        if handling in ("oops", "sigsegv"):
            return None
        found = mms.lookup(addr)
        if found is None:
            raise AddressError(f"user {'write' if write else 'read'} at {addr:#x} failed: {handling}",
                               "map the address with mmap_anon() first")
    return found[0]


def user_read(mm: MMState, mms: MmStruct, addr: int) -> int:
    """A load from user space: faults the page in if needed; 0 means the process reads zeroes, -EFAULT that
    the fault killed it."""
    pfn = _resolve(mm, mms, addr, write=False)
    return -Errno.EFAULT if pfn is None else page_content(mm, pfn)


def user_write(mm: MMState, mms: MmStruct, addr: int, value: int) -> int:
    """A store from user space (write fault first if needed); returns the pfn written, or -EFAULT when the
    fault killed the task (an oops zeroing or copying its new page, SIGSEGV) and nothing was stored."""
    pfn = _resolve(mm, mms, addr, write=True)
    if pfn is None:
        return -Errno.EFAULT
    user_store(mm, pfn, value)
    return pfn


def folio_at(mm: MMState, mms: MmStruct, addr: int) -> Folio | None:
    """Which folio backs ``addr`` now (the huge zero folio, the zero page, an anon folio), without faulting."""
    found = mms.lookup(addr)
    return None if found is None else mm.folio_of(found[0])


def exit_mmap(mm: MMState, mms: MmStruct) -> None:
    """exit_mmap(): zap every mapping, free the page tables, drop the mm's huge zero reference."""
    for haddr, entry in sorted(mms.pmds.items()):
        if isinstance(entry, HugePmd):
            if not entry.special:
                _unmap_folio(mm, mms, entry.pfn, haddr)
            table = mms.deposited.pop(haddr)  # zap_deposited_table()
            free_pages(mm, table, "pte_free")
        else:
            for index, pte in sorted(entry.entries.items()):
                if pte is not None and not pte.special:
                    _unmap_folio(mm, mms, pte.pfn, haddr + (index << PAGE_SHIFT))
            free_pages(mm, entry.page, "pte_free")
        mms.nr_ptes -= 1
    mms.pmds.clear()
    mm_put_huge_zero_folio(mm, mms)
    del mm.processes[mms.id]


def _unmap_folio(mm: MMState, mms: MmStruct, pfn: int, addr: int) -> None:
    folio = mm.folio_of(pfn)
    if folio is None:
        return
    if (mms.id, addr) in folio.rmap:
        folio.rmap.remove((mms.id, addr))
    folio.mapcount -= 1
    folio_put(mm, folio, "zap_pte_range")
