"""change_page_attr (CPA): how x86-64 changes protections in the kernel page table.

A rule-by-rule model of arch/x86/mm/pat/set_memory.c.  Function names follow
the kernel's; each rule carries a comment naming the function it mirrors.
Where the model processes several 4K pages in one step it does so only when
the kernel's page-by-page loop would do the same thing to each of them (same
run, same static protections, no alias work), so every counter stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.events import (
    CacheFlush,
    EntryWrite,
    LargePageCheck,
    PgtableFree,
    Phase,
    PteCheck,
)
from rofolio.pagetable import EntryState, Run
from rofolio.prot import X86, x86_4k_2_large, x86_large_2_4k
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level

if TYPE_CHECKING:
    from rofolio.arch.x86_64.kernel import X86Kernel

__all__ = [
    "CPA_ARRAY", "CPA_COLLAPSE", "CPA_NO_CHECK_ALIAS", "CpaData", "change_page_attr_set_clr", "collapse_large_pages",
    "collapse_pmd_page", "collapse_pud_page", "cpa_collapse_large_pages", "cpa_flush", "cpa_flush_all",
    "cpa_process_alias", "pgprot_clear_protnone_bits", "should_split_large_page", "split_large_page",
    "static_protections", "verify_rwx",
]

# set_memory.c flag bits of struct cpa_data
CPA_FLUSHTLB = 1
CPA_ARRAY = 2
CPA_PAGES_ARRAY = 4
CPA_NO_CHECK_ALIAS = 8
CPA_COLLAPSE = 16

# enum cpa_warn; cpa_warn_level = CPA_PROTECT
CPA_CONFLICT, CPA_PROTECT, CPA_DETECT = 0, 1, 2
_WARN_NAMES = {CPA_CONFLICT: "conflict", CPA_PROTECT: "protect", CPA_DETECT: "detect"}

# enum pg_level's PG_LEVEL_4K, looked up once: __change_page_attr() tests it on every call, and reading an enum
# member off its class costs several plain lookups on Python 3.11 (EnumType.__getattr__)
PG_LEVEL_4K = Level.PTE


@dataclass(slots=True)
class CpaData:
    """struct cpa_data: the state of one change_page_attr call."""

    vaddr: int  # start address (linear mode)
    numpages: int
    mask_set: int
    mask_clr: int
    flags: int = 0
    vaddrs: tuple[int, ...] | None = None  # CPA_ARRAY / CPA_PAGES_ARRAY addresses
    curpage: int = 0
    pfn: int = 0
    force_split: bool = False
    force_static_prot: bool = False
    force_flush_all: bool = False

    def addr(self, idx: int) -> int:
        """__cpa_addr()."""
        if self.vaddrs is not None:
            return self.vaddrs[idx]
        return self.vaddr + idx * PAGE_SIZE


# --------------------------------------------------------------------- entry
def change_page_attr_set_clr(
    k: X86Kernel,
    addr: int | tuple[int, ...],
    numpages: int,
    mask_set: int,
    mask_clr: int,
    force_split: bool = False,
    in_flag: int = 0,
) -> int:
    """change_page_attr_set_clr(): the common body of every set_memory_*() call."""
    # canon_pgprot(): every bit the model uses is in __supported_pte_mask
    if not mask_set and not mask_clr and not force_split:
        return 0
    if isinstance(addr, tuple):
        vaddrs = tuple(a & ~(PAGE_SIZE - 1) for a in addr)
        if vaddrs != addr:
            k.warn("WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c change_page_attr_set_clr (unaligned)")
        cpa = CpaData(0, numpages, mask_set, mask_clr, in_flag, vaddrs, force_split=force_split)
    else:
        if addr & (PAGE_SIZE - 1):
            # an unaligned linear address is a caller bug: the kernel WARNs once and rounds it down
            k.warn("WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c change_page_attr_set_clr (unaligned)")
            addr &= ~(PAGE_SIZE - 1)
        cpa = CpaData(addr, numpages, mask_set, mask_clr, in_flag, force_split=force_split)
    # kmap_flush_unused() and vm_unmap_aliases() run here; the model has no lazy vmap areas.
    # Before v6.2, change_page_attr_set_clr() passed checkalias = 0 for an _PAGE_NX-only request
    # (set_memory_x/nx) and for CPA_NO_CHECK_ALIAS, and that flag was also __change_page_attr()'s
    # "primary": no alias processing (so no forced full flush) and a hole is skipped without an error.
    # Since commits d597416683d5 ("x86/mm: Inhibit _PAGE_NX changes from cpa_process_alias()") and
    # ef9ab81af6e1 ("x86/mm: Untangle __change_page_attr_set_clr(.checkalias)") (v6.2) both are primary.
    primary = k.nx_checks_alias or ((mask_set | mask_clr) != X86.NX and not in_flag & CPA_NO_CHECK_ALIAS)
    ret = _change_page_attr_set_clr(k, cpa, primary=primary)
    if not cpa.flags & CPA_FLUSHTLB:  # nothing was written: no flush at all
        return ret
    cache = bool(mask_set & X86.CACHE_MASK)  # !!pgprot2cachemode(mask_set)
    if ret:
        cpa_flush_all(k, cache)  # a failure after some writes flushes everything, to be safe
        return ret
    cpa_flush(k, cpa, cache)
    return ret


def _change_page_attr_set_clr(k: X86Kernel, cpa: CpaData, primary: bool) -> int:
    """__change_page_attr_set_clr(): walk the range, one leaf (or one preserved large page) at a time."""
    numpages = cpa.numpages
    if not (cpa.mask_set | cpa.mask_clr) and not cpa.force_split:
        return 0
    rempages = numpages
    ret = 0
    array = bool(cpa.flags & (CPA_ARRAY | CPA_PAGES_ARRAY))
    while rempages:
        cpa.numpages = 1 if array else rempages  # array mode goes page by page: no large-page shortcut
        ret = _change_page_attr(k, cpa, primary)
        if ret:
            break
        if primary and not cpa.flags & CPA_NO_CHECK_ALIAS:
            ret = cpa_process_alias(k, cpa)
            if ret:
                break
        rempages -= cpa.numpages
        cpa.curpage += cpa.numpages
    cpa.numpages = numpages  # put the request's page count back: cpa_flush sees the whole request
    return ret


def _change_page_attr(k: X86Kernel, cpa: CpaData, primary: bool) -> int:
    """__change_page_attr(): change one 4K leaf, keep a large leaf, or split it and repeat."""
    address = cpa.addr(cpa.curpage)
    while True:  # the kernel's `repeat:` label
        run = k.pt.run_at(address)
        if run is None:
            return _cpa_process_fault(k, cpa, address, primary)
        if run.level == PG_LEVEL_4K:
            _change_ptes(k, cpa, run, address, primary)
            return 0
        do_split = should_split_large_page(k, cpa, run, address)
        if do_split <= 0:
            return do_split
        err = split_large_page(k, cpa, address)
        if err:
            return err


def _change_ptes(k: X86Kernel, cpa: CpaData, run: Run, address: int, primary: bool) -> None:
    """The PG_LEVEL_4K branch of _change_page_attr(), for as many pages as behave alike."""
    pfn = run.pfn + ((address - run.start) >> PAGE_SHIFT)  # run.pfn_at(address)
    count = 1 if cpa.numpages == 1 else _alike_ptes(k, cpa, run, address, pfn, primary)
    old = run.flags
    new = (old & ~cpa.mask_clr) | cpa.mask_set
    k.log.add(PteCheck, address, count)  # cpa_inc_4k_install()
    # lpsize 0: a 4K entry never gets the keep-the-large-page exemption of static_protections()
    new = _stretch_protections(k, new, address, pfn, count)
    new = verify_rwx(k, old, new, address, pfn, count)
    new = pgprot_clear_protnone_bits(new)
    cpa.pfn = pfn + count - 1
    if new != old:  # write (and ask for a flush) only if the entry really changes
        k.pt.set_flags(address, address + count * PAGE_SIZE, new)
        k.log.add(EntryWrite, address, PG_LEVEL_4K, count, old, new)
        cpa.flags |= CPA_FLUSHTLB
    cpa.numpages = count


def _alike_ptes(k: X86Kernel, cpa: CpaData, run: Run, address: int, pfn: int, primary: bool) -> int:
    """How many 4K pages from ``address`` the kernel's per-page loop would treat identically."""
    if primary and not cpa.flags & CPA_NO_CHECK_ALIAS and k.alias_work(address, pfn, cpa.numpages):
        return 1  # cpa_process_alias() acts per 4K page here: keep the kernel's granularity
    count = min(cpa.numpages, (run.end - address) >> PAGE_SHIFT)
    return k.uniform_protection_pages(address, pfn, count)


def _cpa_process_fault(k: X86Kernel, cpa: CpaData, vaddr: int, primary: bool) -> int:
    """__cpa_process_fault(): the address has no entry (a hole).

    The kernel steps over a hole one page at a time (numpages = 1, each page looked up again); the model steps
    over the whole hole, up to the request's end, at once, which ends the same.  Array mode already comes here
    one page at a time, and every address is page-aligned, so a step is at least one page."""
    nxt = k.pt.first_run_from(vaddr)
    hole_pages = cpa.numpages if nxt is None else min(cpa.numpages, (nxt.start - vaddr) >> PAGE_SHIFT)
    if not primary:  # an alias walk that finds a hole is not an error
        cpa.numpages = hole_pages
        return 0
    # the direct map has holes by design: a hole inside it is skipped silently
    if k.within_direct_map_mapped(vaddr):
        cpa.numpages = min(hole_pages, (k.direct_map_mapped_end() - vaddr) >> PAGE_SHIFT)
        cpa.pfn = k.layout.pa(vaddr) >> PAGE_SHIFT
        return 0
    if k.pfn_in_highmap(cpa.pfn):  # a hole in the high kernel map fails without a warning
        return -Errno.EFAULT
    k.warn(f"CPA: called for zero pte. vaddr = {vaddr:x} cpa->vaddr = {cpa.addr(0):x}")
    return -Errno.EFAULT


# ------------------------------------------------------------- large pages
def should_split_large_page(k: X86Kernel, cpa: CpaData, run: Run, address: int) -> int:
    """should_split_large_page(): 1 = split, 0 = done (kept), <0 = error."""
    if cpa.force_split:
        return 1
    return _should_split_large_page(k, cpa, run, address)


def _should_split_large_page(k: X86Kernel, cpa: CpaData, run: Run, address: int) -> int:
    """__should_split_large_page(): can the large leaf stay, with or without a new protection?"""
    level = run.level
    psize = level.size
    pmask = level.mask
    old_prot = run.flags
    lpaddr = address & pmask
    old_pfn = run.pfn_at(lpaddr)

    # how many 4K pages from address to the end of this large page
    fit = ((address + psize) & pmask) - address >> PAGE_SHIFT
    cpa.numpages = min(cpa.numpages, fit)

    # req_prot in 4K format with the masks applied, converted back to large format
    req_prot = x86_large_2_4k(old_prot)
    req_prot = (req_prot & ~cpa.mask_clr) | cpa.mask_set
    req_prot = x86_4k_2_large(req_prot)
    req_prot = pgprot_clear_protnone_bits(req_prot)
    if req_prot & X86.PRESENT:
        req_prot |= X86.PSE

    cpa.pfn = old_pfn + ((address & (psize - 1)) >> PAGE_SHIFT)
    numpages = psize >> PAGE_SHIFT

    # first check the large leaf as it is against the static protections (CPA_CONFLICT level)
    chk_prot = static_protections(k, old_prot, lpaddr, old_pfn, numpages, psize, CPA_CONFLICT)
    if chk_prot != old_prot:
        k.warn(f"WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c __should_split_large_page ({lpaddr:#x})")
        cpa.force_static_prot = True
        k.log.add(LargePageCheck, lpaddr, level, "split")
        return 1

    # an unchanged protection keeps the large page whatever the alignment and length
    if req_prot == old_prot:
        k.log.add(LargePageCheck, lpaddr, level, "sameprot")
        return 0

    # a range that covers only part of the large page forces a split
    if address != lpaddr or cpa.numpages != numpages:
        k.log.add(LargePageCheck, lpaddr, level, "split")
        return 1

    new_prot = static_protections(k, req_prot, lpaddr, old_pfn, numpages, psize, CPA_DETECT)
    new_prot = verify_rwx(k, old_prot, new_prot, lpaddr, old_pfn, numpages)
    if req_prot != new_prot:  # a static protection would differ inside: split
        k.log.add(LargePageCheck, lpaddr, level, "split")
        return 1

    # nothing objects: rewrite the large leaf in place
    k.pt.set_flags(lpaddr, lpaddr + psize, new_prot)
    k.log.add(EntryWrite, lpaddr, level, 1, old_prot, new_prot)
    cpa.flags |= CPA_FLUSHTLB
    k.log.add(LargePageCheck, lpaddr, level, "preserved")
    return 0


def split_large_page(k: X86Kernel, cpa: CpaData, address: int) -> int:
    """split_large_page(): one page-table page, then _split_large_page()."""
    run = k.pt.run_at(address)
    assert run is not None and run.level > Level.PTE
    child = Level(run.level - 1)
    if not k.alloc_pgtable_page(child):  # alloc_pages(GFP_KERNEL, 0) failed
        return -Errno.ENOMEM
    _split_large_page(k, cpa, run, address)
    return 0


def _split_large_page(k: X86Kernel, cpa: CpaData, run: Run, address: int) -> None:
    """__split_large_page(): 512 entries one level down, counters, install, flush_tlb_all()."""
    level = run.level
    ref_prot = run.flags
    if level == Level.PMD:
        ref_prot = x86_large_2_4k(ref_prot)  # 2M -> 4K: drop PSE, move the PAT bit to its 4K position
    elif not ref_prot & X86.PRESENT:
        ref_prot &= ~X86.PSE  # 1G -> 2M: keep PSE unless the entry is not present
    ref_prot = pgprot_clear_protnone_bits(ref_prot)
    lpaddr = address & level.mask
    # split_set_pte() runs for each new entry before __set_pmd_pte() installs the table: its lookups (the
    # text-RO rule) still find the large leaf
    fixups = _split_set_static_prot(k, run, lpaddr, level, ref_prot) if cpa.force_static_prot else []
    k.pt.split(address, ref_prot)
    for start, end, prot in fixups:
        k.pt.set_flags(start, end, prot)
    k.split_page_count(address, level)
    # the split is flushed globally before any 4K entry changes (Intel's TLB application note
    # warns against mixed page sizes for one address)
    k.flush_tlb_all("split")


def _split_set_static_prot(k: X86Kernel, run: Run, lpaddr: int, level: Level,
                           ref_prot: int) -> list[tuple[int, int, int]]:
    """split_set_pte() with force_static_prot, entry by entry of the table a split makes: static_protections()
    at CPA_PROTECT with lpsize 0, so each entry that breaks one is warned about on its own; a PMD split's 4K
    entry takes the fixed protection, a PUD split's 2M entry cannot be fixed (pr_warn_once()).  Returns the
    fixed 4K stretches as (start, end, prot), to write once the table is in."""
    child = Level(level - 1)
    npg = child.pages
    fixups: list[tuple[int, int, int]] = []
    for addr in range(lpaddr, lpaddr + level.size, child.size):
        prot = static_protections(k, ref_prot, addr, run.pfn_at(addr), npg, 0, CPA_PROTECT)
        if prot == ref_prot:
            continue
        if child != Level.PTE:
            k.warn_once("CPA: Cannot fixup static protections for PUD split")
        elif fixups and fixups[-1][1] == addr and fixups[-1][2] == prot:
            fixups[-1] = (fixups[-1][0], addr + PAGE_SIZE, prot)
        else:
            fixups.append((addr, addr + PAGE_SIZE, prot))
    return fixups


# ------------------------------------------------------------------ aliases
def cpa_process_alias(k: X86Kernel, cpa: CpaData) -> int:
    """cpa_process_alias(): also change the direct-map and high-map aliases of what changed."""
    direct, high = k.alias_targets(cpa.addr(cpa.curpage), cpa.pfn)  # pfn_range_is_mapped() and the two tests
    if direct:
        cpa.force_flush_all = True
        ret = _change_page_attr_set_clr(k, _alias_cpa(cpa, k.layout.va(cpa.pfn << PAGE_SHIFT)), primary=False)
        if ret:
            return ret
    if high:
        cpa.force_flush_all = True
        # the high-map range test is approximate, so its result is ignored
        _change_page_attr_set_clr(k, _alias_cpa(cpa, k.highmap_va(cpa.pfn << PAGE_SHIFT)), primary=False)
    return 0


def _alias_cpa(cpa: CpaData, vaddr: int) -> CpaData:
    """alias_cpa = *cpa, at the alias address, linear mode, NX masked out (the direct map is NX anyway)."""
    nx_mask = ~X86.NX
    return replace(cpa, vaddr=vaddr, vaddrs=None, flags=cpa.flags & ~(CPA_PAGES_ARRAY | CPA_ARRAY), curpage=0,
                   mask_set=cpa.mask_set & nx_mask, mask_clr=cpa.mask_clr & nx_mask)


# --------------------------------------------------------- static protection
def _stretch_protections(k: X86Kernel, prot: int, start: int, pfn: int, npg: int) -> int:
    """The 4K branch of __change_page_attr() for a stretch of alike PTEs (_alike_ptes()): the kernel calls
    static_protections(prot, address, pfn, 1, 0, CPA_PROTECT) page by page, so each conflicting page prints its
    own check_conflict() line, in page order; the result is the same for every page of the stretch."""
    if npg == 1:
        return static_protections(k, prot, start, pfn, 1, 0, CPA_PROTECT)
    new = static_protections(k, prot, start, pfn, npg, 0, CPA_DETECT)  # silent: a line prints only on a change
    if new != prot:
        for i in range(npg):
            static_protections(k, prot, start + i * PAGE_SIZE, pfn + i, 1, 0, CPA_PROTECT)
    return new


def static_protections(
    k: X86Kernel, prot: int, start: int, pfn: int, npg: int, lpsize: int, warnlvl: int
) -> int:
    """static_protections(): strip bits that must never be set on kernel text, rodata, ..."""
    if not prot & X86.PRESENT:  # a non-present entry cannot conflict: nothing to strip
        return prot
    end = start + npg * PAGE_SIZE - 1
    forbidden = 0
    res = k.protect_kernel_text(start, end)
    if res:  # check_conflict() has nothing to say about an empty mask
        _check_conflict(k, warnlvl, prot, res, start, end, pfn, "Text NX")
    forbidden |= res
    # the text-RO rule is skipped when the change covers a whole large page, so that page can stay large
    if lpsize != npg * PAGE_SIZE or start & (lpsize - 1):  # lpsize 0 never reaches the alignment test
        res = k.protect_kernel_text_ro(start, end)
        if res:
            _check_conflict(k, warnlvl, prot, res, start, end, pfn, "Text RO")
        forbidden |= res
    # protect_pci_bios(): CONFIG_PCI_BIOS is 32-bit only
    res = k.protect_rodata(pfn, pfn + npg - 1)
    if res:  # check_conflict() has nothing to say about an empty mask
        _check_conflict(k, warnlvl, prot, res, start, end, pfn, "Rodata RO")
    forbidden |= res
    return prot & ~forbidden


def _check_conflict(
    k: X86Kernel, warnlvl: int, prot: int, val: int, start: int, end: int, pfn: int, txt: str
) -> None:
    """check_conflict(): pr_warn for conflicts at CPA_CONFLICT and CPA_PROTECT level."""
    if warnlvl > CPA_PROTECT or (prot & ~val) == prot:
        return
    k.warn(
        f"CPA {_WARN_NAMES[warnlvl]:>8} {txt:>10}: 0x{start:016x} - 0x{end:016x} PFN {pfn:x}"
        f" req {prot:016x} prevent {val:016x}"
    )


def verify_rwx(k: X86Kernel, old: int, new: int, start: int, pfn: int, npg: int) -> int:
    """verify_rwx(): warn once when a change leaves an entry writable and executable; it is allowed anyway.

    Since commit 652c5bf380ad ("x86/mm: Refuse W^X violations") and c5129ecc12a3 ("x86/mm: Ease W^X
    enforcement back to just a warning"), both v6.1.  The model's NX is always supported, and its
    upper-level entries are never NX or read-only (Xen PV's case, 2024), so the entry alone decides.
    """
    # a970174d7a10 ("x86/mm: Do not verify W^X at boot up") (v6.1): no check while SYSTEM_BOOTING;
    # reverted by commit 414ebf148cb5 ("x86/mm: Do verify W^X at boot up") (v6.2)
    if not k.rwx_at_boot and k.phase == Phase.BOOTING:
        return new
    if not (old ^ new) & (X86.RW | X86.NX):
        return new
    if new & (X86.RW | X86.NX) != X86.RW:
        return new
    end = start + npg * PAGE_SIZE - 1
    k.warn_once(f"CPA detected W^X violation: {old:016x} -> {new:016x} range: 0x{start:016x} - 0x{end:016x}"
                f" PFN {pfn:x}", "verify_rwx")
    return new


def pgprot_clear_protnone_bits(prot: int) -> int:
    """pgprot_clear_protnone_bits(): GLOBAL means PROTNONE on a non-present entry, so drop it."""
    if not prot & X86.PRESENT:
        prot &= ~X86.GLOBAL
    return prot


# -------------------------------------------------------------------- flush
def cpa_flush(k: X86Kernel, cpa: CpaData, cache: bool) -> None:
    """cpa_flush(): one global flush, or per-page INVLPG on every CPU below the ceiling."""
    if cpa.force_flush_all or cpa.numpages > k.config.tlb_single_page_flush_ceiling:
        k.flush_tlb_all("cpa_flush")
    else:
        k.flush_tlb_pages(cpa.numpages, "cpa_flush")  # on_each_cpu(__cpa_flush_tlb)
    if cache:
        present = sum(
            1 for i in range(cpa.numpages) if (leaf := k.pt.lookup(cpa.addr(i))) and leaf.flags & X86.PRESENT
        )
        k.log.add(CacheFlush, "clflush", present)  # non-present pages are not flushed
    if k.cpa_collapse and cpa.flags & CPA_COLLAPSE:
        cpa_collapse_large_pages(k, cpa)


def cpa_flush_all(k: X86Kernel, cache: bool) -> None:
    """cpa_flush_all(): __flush_tlb_all() (and wbinvd for cache changes) on every CPU."""
    k.flush_tlb_all("cpa_flush_all")
    if cache:
        k.log.add(CacheFlush, "wbinvd", 0)


# ------------------------------------------------------------------ collapse
def cpa_collapse_large_pages(k: X86Kernel, cpa: CpaData) -> None:
    """cpa_collapse_large_pages() (>= 6.15): try to re-form large pages around the range."""
    collapsed = 0
    freed: list[Level] = []
    if cpa.flags & (CPA_PAGES_ARRAY | CPA_ARRAY):
        for i in range(cpa.numpages):
            collapsed += collapse_large_pages(k, cpa.addr(i), freed)
    else:
        addr = cpa.addr(0)
        start = addr & Level.PMD.mask
        end = addr + PAGE_SIZE * cpa.numpages
        a = start
        while start <= a < end:
            collapsed += collapse_large_pages(k, a, freed)
            a += Level.PMD.size
    if not collapsed:
        return
    k.flush_tlb_all("collapse")
    for level in freed:  # page tables are freed only after the flush
        k.log.add(PgtableFree, level, 1)


def collapse_large_pages(k: X86Kernel, addr: int, freed: list[Level]) -> int:
    """collapse_large_pages(): only a PMD that points to a PTE table can collapse, then its PUD."""
    addr &= Level.PMD.mask
    if k.pt.entry_state(addr, Level.PUD) != EntryState.TABLE:
        return 0  # no PUD table below (none, or a 1G leaf)
    if k.pt.entry_state(addr, Level.PMD) != EntryState.TABLE:
        return 0  # no PTE table below (none, or a 2M leaf)
    collapsed = collapse_pmd_page(k, addr, freed)
    if collapsed:
        collapsed += collapse_pud_page(k, addr, freed)
    return collapsed


def collapse_pmd_page(k: X86Kernel, addr: int, freed: list[Level]) -> int:
    """collapse_pmd_page(): 512 present PTEs, same flags, consecutive pfns, 2M-aligned, not KERNEL_4K."""
    run = k.pt.run_at(addr)
    if run is None or run.level != Level.PTE:
        return 0
    first_flags, pfn = run.flags, run.pfn_at(addr)
    if (pfn << PAGE_SHIFT) & (Level.PMD.size - 1):  # the first pfn must be 2M-aligned
        return 0
    if first_flags & X86.KERNEL_4K:  # _PAGE_KERNEL_4K marks pages kept 4K on purpose
        return 0
    # the rest of the PTEs must be present, share the first one's flags and follow its pfn:
    # in runs, that is one run of present 4K leaves covering the whole 2M region
    if run.end < addr + Level.PMD.size or not first_flags & X86.PRESENT:
        return 0
    flags = x86_4k_2_large(first_flags) | X86.PSE
    k.pt.collapse(addr, Level.PMD, flags)
    freed.append(Level.PTE)
    k.collapse_page_count(addr, pfn, Level.PMD)
    return 1


def collapse_pud_page(k: X86Kernel, addr: int, freed: list[Level]) -> int:
    """collapse_pud_page(): 512 present PMD leaves, same flags, consecutive, 1G-aligned, GBPAGES."""
    if not k.config.direct_gbpages:
        return 0
    addr &= Level.PUD.mask
    run = k.pt.run_at(addr)
    if run is None or run.level != Level.PMD:
        return 0
    pfn = run.pfn_at(addr)
    if (pfn << PAGE_SHIFT) & (Level.PUD.size - 1):
        return 0
    if run.end < addr + Level.PUD.size or not run.flags & X86.PRESENT:
        return 0
    k.pt.collapse(addr, Level.PUD, run.flags)
    freed.append(Level.PMD)
    k.collapse_page_count(addr, pfn, Level.PUD)
    return 1
