"""The x86-64 kernel's page-table state and its set_memory_*() API.

``X86Kernel`` holds what arch/x86/mm keeps: init_mm's page table (direct map,
high kernel map, vmalloc areas), ``pfn_mapped[]`` and ``max_pfn_mapped``,
``kernel_set_to_readonly``, ``system_state`` and the online CPUs.  The
DirectMap counters are not kept here: they are folded from the event log
(``rofolio.stats``), which this class writes to.

Entry points carry the kernel's names and return the kernel's values (0 or a
negative errno).  Boot lives in ``rofolio.arch.x86_64.boot``; the CPA rules in
``rofolio.arch.x86_64.cpa``.
"""

from __future__ import annotations

from rofolio.arch import KernelState, LeafLookup
from rofolio.arch.x86_64 import cpa as _cpa
from rofolio.arch.x86_64.config import X86Config
from rofolio.arch.x86_64.image import KernelImage
from rofolio.errors import AddressError, Errno
from rofolio.events import (
    BootMapping,
    Collapse,
    EventLog,
    Flush,
    FlushKind,
    Phase,
    Split,
)
from rofolio.kversion import (
    X86_CPA_COLLAPSE,
    X86_DIRTY_CLEARED_WITH_RW,
    X86_NX_CHECKS_ALIAS,
    X86_OOPS_NO_PREEMPT,
    X86_OOPS_PREFIX,
    X86_RO_CLEARS_DIRTY,
    X86_RWX_AT_BOOT,
)
from rofolio.pagetable import EntryState, PageTable
from rofolio.physmem import MemoryMap
from rofolio.prot import X86
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level

__all__ = ["Lookup", "X86Kernel"]

SECTION_SHIFT = 27  # SECTION_SIZE_BITS on x86-64: 128 MiB memory sections (sparsemem)


class Lookup(LeafLookup):
    """What lookup_address() returns on x86-64: _PAGE_PRESENT and _PAGE_RW decide, and the stored entry."""

    __slots__ = ()

    @property
    def present(self) -> bool:
        return bool(self.flags & X86.PRESENT)

    @property
    def writable(self) -> bool:
        return bool(self.flags & X86.RW)

    @property
    def entry(self) -> int:
        """The entry as the kernel stores it (and dump_pagetable() prints it in an oops).

        ``pfn`` is the page the entry maps, as pte_pfn() reads it back; the
        stored value of a non-present, non-zero entry holds the pfn inverted
        (the L1TF mitigation: pfn_pte() XORs it with protnone_mask(),
        arch/x86/include/asm/pgtable-invert.h), which CPA's set_memory_np()
        and set_direct_map_invalid_noflush() entries get.  Checked against
        Debian 6.1 under the QEMU oracle (docs/fidelity.md, "The QEMU oracle").
        """
        value = (self.pfn << PAGE_SHIFT) | self.flags
        if value and not self.flags & X86.PRESENT:  # __pte_needs_invert()
            value ^= X86.PFN_MASK
        return value


# Enum members read on every CPA call, looked up once: Python 3.11's EnumType.__getattr__ makes reading a member
# off its class several times slower than a plain lookup.
_FLUSH_ALL, _FLUSH_PAGES = FlushKind.ALL, FlushKind.PAGES


class X86Kernel(KernelState):
    """init_mm's page table on x86-64 and the state CPA consults."""

    arch = "x86_64"
    LOOKUP = Lookup

    # setup_per_cpu_areas() (arch/x86/kernel/setup_percpu.c): pcpu_embed_first_chunk() with atom_size PMD_SIZE
    # when the CPU has PSE (every modelled CPU: X86Config.pse), so the first chunk comes in 2M allocations
    percpu_atom = 2 << 20

    def __init__(self, config: X86Config, image: KernelImage | None = None,
                 log: EventLog | None = None) -> None:
        self.config = config
        self.layout = config.layout
        self.image = image or KernelImage()
        self.log = log if log is not None else EventLog()
        self.pt = PageTable()
        self.pti = False  # boot_cpu_has(X86_FEATURE_PTI): page-table isolation, set by boot()
        self.pti_built = True  # CONFIG_MITIGATION_PAGE_TABLE_ISOLATION: __die_header() names PTI or NOPTI only then
        self.phase = Phase.BOOTING
        self.cpus_online = 1
        self.kernel_set_to_readonly = False
        self.pfn_mapped: list[tuple[int, int]] = []  # add_pfn_range_mapped()
        self.max_pfn_mapped = 0
        self.memtype: dict[int, int] = {}  # pfn -> PAT cache mode bits (memtype_reserve on RAM)
        self._vmalloc_next = config.layout.vmalloc_start
        self.initrd: tuple[int, int] | None = None  # (physical start, bytes) where the boot loader put it
        self._warned_once: set[str] = set()
        # where the page-table pages are: (entry level, start of the region the entry maps) -> physical address
        # of the table it points to.  memblock (alloc_low_pages()) and the page allocator (CPA splits, vmalloc)
        # place them, so only a record gives them (BootRecord.tables); dump_pagetable() prints them in an oops
        self.table_pages: dict[tuple[Level, int], int] = {}
        # the entries a CPA split turned into table entries, (level, region start): who linked a table decides
        # its entry's flags (table_entry_flags()); a collapse makes the entry a leaf again
        self.split_tables: set[tuple[Level, int]] = set()
        version = config.kernel
        self.ro_clears_dirty = X86_RO_CLEARS_DIRTY.applies(version)  # f788b71768ff, v6.6
        self.cpa_collapse = X86_CPA_COLLAPSE.applies(version)  # 41d88484c71c, v6.15
        # set_memory_x/nx and CPA_NO_CHECK_ALIAS calls run as primary changes: d597416683d5, ef9ab81af6e1, v6.2
        self.nx_checks_alias = X86_NX_CHECKS_ALIAS.applies(version)
        self.oops_prefix = X86_OOPS_PREFIX.applies(version)  # "Oops: Oops:": f9f62a877da1, v6.10
        self.oops_no_preempt = X86_OOPS_NO_PREEMPT.applies(version)  # no PREEMPT in the banner: 96389cf36591, v6.15
        self.rwx_at_boot = X86_RWX_AT_BOOT.applies(version)  # verify_rwx() while SYSTEM_BOOTING: 414ebf148cb5, v6.2
        # __set_pages_np() clears _PAGE_DIRTY with PRESENT|RW: c1fcf41cf37f, v6.15, 6.6.88, 6.12.24
        self.np_clears_dirty = X86_DIRTY_CLEARED_WITH_RW.applies(version)
        hm_lo, hm_hi = self.image.highmap_pfns()
        self._highmap_pfns = (hm_lo, hm_hi)
        ro_lo, ro_hi = self.image.rodata_pfns()
        self._rodata_pfns = (ro_lo, ro_hi)
        img = self.image
        # high-map addresses of _text, _etext, __end_rodata_hpage_align and _brk_end, which the static
        # protections and the alias rule test on every call
        self._text, self._etext, self._hpage_end, self._brk_end = (
            self.highmap_va(img.text), self.highmap_va(img.etext), self.highmap_va(img.end_rodata_hpage_align),
            self.highmap_va(img.brk_end))
        # memory sections (SECTION_SIZE_BITS) that hold RAM, as merged [first, last] ranges
        sections: list[tuple[int, int]] = []
        for r in config.memory.ram:
            lo, hi = r.start >> SECTION_SHIFT, (r.end - 1) >> SECTION_SHIFT
            if sections and lo <= sections[-1][1] + 1:
                sections[-1] = (sections[-1][0], max(hi, sections[-1][1]))
            else:
                sections.append((lo, hi))
        self._sections = sections

    # ------------------------------------------------------------- state
    def smp_init(self) -> None:
        """smp_init(): every CPU comes online; from now on flushes send IPIs."""
        self.cpus_online = self.config.nr_cpus

    # ------------------------------------------------- address predicates
    def direct_map_mapped_end(self) -> int:
        return self.layout.page_offset + (self.max_pfn_mapped << PAGE_SHIFT)

    def within_direct_map_mapped(self, va: int) -> bool:
        """within(vaddr, PAGE_OFFSET, PAGE_OFFSET + (max_pfn_mapped << PAGE_SHIFT))."""
        return self.layout.page_offset <= va < self.direct_map_mapped_end()

    def pfn_range_is_mapped(self, start_pfn: int, end_pfn: int) -> bool:
        """pfn_range_is_mapped() (arch/x86/mm/init.c): inside one range init_memory_mapping() mapped."""
        for s, e in self.pfn_mapped:
            if s <= start_pfn and end_pfn <= e:
                return True
        return False

    def pfn_in_highmap(self, pfn: int) -> bool:
        """__cpa_pfn_in_highmap()."""
        lo, hi = self._highmap_pfns
        return lo <= pfn <= hi

    def highmap_va(self, pa: int) -> int:
        """(pfn << PAGE_SHIFT) + __START_KERNEL_map - phys_base; phys_base is 0 without relocation."""
        return pa + self.layout.start_kernel_map

    def within_kernel_text_to_brk(self, va: int) -> bool:
        """within(vaddr, (unsigned long)_text, _brk_end)."""
        return self._text <= va < self._brk_end

    def virt_addr_valid(self, va: int) -> bool:
        """__virt_addr_valid() (arch/x86/mm/physaddr.c): true for the direct map *and* the high map."""
        return self.valid_virt_pfn(va) is not None

    def valid_virt_pfn(self, va: int) -> int | None:
        """The pfn behind ``va`` if __virt_addr_valid() accepts it (the direct map or the high map), else None."""
        start_kernel_map = self.layout.start_kernel_map
        if va >= start_kernel_map:
            y = va - start_kernel_map
            if y >= self.layout.kernel_image_size:
                return None
            pa = y
        else:
            if va < self.layout.page_offset:
                return None
            pa = va - self.layout.page_offset
            if pa >> 52:  # phys_addr_valid()
                return None
        pfn = pa >> PAGE_SHIFT
        return pfn if self.pfn_valid(pfn) else None

    def pfn_valid(self, pfn: int) -> bool:
        """pfn_valid() under SPARSEMEM: the 128 MiB section holding the pfn has memory."""
        section = (pfn << PAGE_SHIFT) >> SECTION_SHIFT
        return any(lo <= section <= hi for lo, hi in self._sections)

    # ---------------------------------------------------- static protections
    def protect_kernel_text(self, start: int, end: int) -> int:
        """protect_kernel_text(): forbid NX on the high mapping of [_text, _etext)."""
        return X86.NX if _overlaps(start, end, self._text, self._etext - 1) else 0

    def protect_kernel_text_ro(self, start: int, end: int) -> int:
        """protect_kernel_text_ro(): keep large high-map text/rodata pages RO once set read-only."""
        if not self.kernel_set_to_readonly or not _overlaps(start, end, self._text, self._hpage_end - 1):
            return 0
        found = self.lookup_address(start)
        if found is not None and found.level != Level.PTE:
            return X86.RW
        return 0

    def protect_rodata(self, spfn: int, epfn: int) -> int:
        """protect_rodata(): every alias of a .rodata pfn stays RO after kernel_set_to_readonly."""
        lo, hi = self._rodata_pfns
        return X86.RW if self.kernel_set_to_readonly and _overlaps(spfn, epfn, lo, hi) else 0

    def uniform_protection_pages(self, va: int, pfn: int, count: int) -> int:
        """Clip ``count`` pages at the first boundary where static_protections() could change."""
        limit = count
        for boundary in (*self._rodata_pfns, self._rodata_pfns[1] + 1,
                         self._highmap_pfns[0], self._highmap_pfns[1] + 1):
            if pfn < boundary < pfn + limit:
                limit = boundary - pfn
        for boundary in (self._text, self._etext, self._hpage_end):
            # the pages up to the one holding the boundary's last byte: _etext is not page-aligned, and the
            # page holding it is text (protect_kernel_text() takes [_text, _etext - 1]) while the next is not
            pages = (boundary - va + PAGE_SIZE - 1) >> PAGE_SHIFT  # > 0 exactly when the boundary is ahead
            if 0 < pages < limit:
                limit = pages
        return max(limit, 1)

    def alias_targets(self, va: int, pfn: int, count: int = 1) -> tuple[bool, bool]:
        """Which aliases cpa_process_alias() changes for a page of this stretch: (direct map, high map).

        The one place the decision lives: cpa_process_alias() acts on it page by page, and
        _alike_ptes() asks it whether a stretch of 4K pages may be handled in one step.
        """
        if not self.pfn_range_is_mapped(pfn, pfn + 1):
            return False, False
        # a primary call on the direct map already changed that alias
        direct = not self.within_direct_map_mapped(va)
        # a pfn inside the kernel image also gets its high-map alias changed, unless the primary
        # call was on the high map itself
        lo, hi = self._highmap_pfns
        high = not self.within_kernel_text_to_brk(va) and _overlaps(pfn, pfn + count - 1, lo, hi)
        return direct, high

    def alias_work(self, va: int, pfn: int, count: int) -> bool:
        """True if cpa_process_alias() would change an alias for some page in this stretch."""
        return any(self.alias_targets(va, pfn, count))

    # ------------------------------------------------------ page-table pages
    def split_page_count(self, address: int, level: Level) -> None:
        """split_page_count(), if virt_addr_valid(address) and its pfn is mapped (__split_large_page)."""
        direct = False
        pfn = self.valid_virt_pfn(address)
        if pfn is not None:
            # the counter is left alone when it is already zero at that level
            # direct_pages_count[] moves only with boot mappings, splits and collapses: fold just those
            direct = (self.pfn_range_is_mapped(pfn, pfn + 1)
                      and self.log.counters_of(BootMapping, Split, Collapse).direct_pages[level] > 0)
        self.log.add(Split, address & level.mask, level, direct, direct and self.running, 1)
        self.split_tables.add((level, address & level.mask))

    def collapse_page_count(self, address: int, pfn: int, level: Level) -> None:
        """collapse_page_count(), if virt_addr_valid(addr) and pfn_range_is_mapped(pfn, pfn + 1)."""
        direct = self.virt_addr_valid(address) and self.pfn_range_is_mapped(pfn, pfn + 1)
        self.log.add(Collapse, address, level, direct, direct and self.running)
        self.split_tables.discard((level, address & level.mask))

    def has_transparent_hugepage(self) -> bool:
        """has_transparent_hugepage() (arch/x86/include/asm/pgtable.h): boot_cpu_has(X86_FEATURE_PSE)."""
        return self.config.pse

    def store_landed(self, addr: int) -> None:
        """A CPU store through a present, writable leaf sets the entry's Accessed and Dirty bits (the MMU
        does it, no kernel code: Intel SDM vol. 3, "Accessed and Dirty Flags").  Kernel entries are built
        with both (PAGE_KERNEL), so it shows only after set_memory_ro() cleared Dirty (since commit
        f788b71768ff, v6.6) and set_memory_rw() left it clear: the next store makes the entry whole again."""
        run = self.pt.run_at(addr)
        wanted = X86.ACCESSED | X86.DIRTY
        if run is None or run.flags & wanted == wanted:
            return
        start = addr & run.level.mask
        self.pt.set_flags(start, start + run.level.size, run.flags | wanted)

    def kernel_prot(self, prot: int) -> int:
        """``prot`` as PAGE_KERNEL*() give it: masked by __default_kernel_pte_mask, which loses _PAGE_GLOBAL
        under PTI (probe_page_size_mask(), arch/x86/mm/init.c)."""
        return prot & ~X86.GLOBAL if self.pti else prot

    # ---------------------------------------------------------------- TLB
    def flush_tlb_all(self, reason: str) -> None:
        """flush_tlb_all(): on_each_cpu(do_flush_tlb_all): every online CPU, IPIs to the others."""
        cpus = self.cpus_online
        self.log.add(Flush, _FLUSH_ALL, 0, cpus, cpus - 1, reason)

    def flush_tlb_pages(self, pages: int, reason: str) -> None:
        """on_each_cpu(__cpa_flush_tlb): ``pages`` INVLPGs on every online CPU."""
        cpus = self.cpus_online
        self.log.add(Flush, _FLUSH_PAGES, pages, cpus, cpus - 1, reason)

    def flush_tlb_local(self, reason: str) -> None:
        """__flush_tlb_all() on this CPU only (__kernel_map_pages under DEBUG_PAGEALLOC)."""
        self.log.add(Flush, FlushKind.LOCAL_ALL, 0, 1, 0, reason)

    def flush_tlb_kernel_range(self, start: int, end: int, reason: str) -> None:
        """flush_tlb_kernel_range() (arch/x86/mm/tlb.c): full flush above the single-page ceiling."""
        pages = (end - start) >> PAGE_SHIFT
        if pages > self.config.tlb_single_page_flush_ceiling:
            self.flush_tlb_all(reason)
        else:
            self.flush_tlb_pages(pages, reason)

    # ------------------------------------------------------------ lookups
    def table_entry_flags(self, va: int, level: Level) -> int:
        """The flags of the entry at ``level`` that points to a table, by who made the table.

        A CPA split stores _KERNPG_TABLE (set_memory.c: __split_large_page()), as do the high kernel map's
        level3_kernel_pgt entry for the image's gigabyte (head_64.S; the next one, level2_fixmap_pgt over the
        modules and the fixmap, has _PAGE_TABLE); every other kernel table was linked by p?d_populate()
        or pmd_populate_kernel() (asm/pgalloc.h; init_64.c's phys_*_init() through DEFINE_POPULATE, vmalloc
        through __p?d_alloc()), which store _PAGE_TABLE, the same bits and _PAGE_USER.
        """
        split = (level, va & level.mask) in self.split_tables
        if split or (level == Level.PUD and self.layout.start_kernel_map <= va < self.layout.modules_vaddr):
            return X86.KERNPG_TABLE
        return X86.KERNPG_TABLE | X86.USER

    def dump_pagetable(self, va: int) -> str:
        """The page-table line of an oops (arch/x86/mm/fault.c, dump_pagetable(), 64-bit).

        One entry per level from the PGD down: P4D repeats the PGD entry under 4-level paging (the level is
        folded), and the walk stops after a none, not-present or leaf entry.  A table entry's address is
        where the table page was placed (``table_pages``, from a record); without one the model prints
        ``?`` for it and the flags it knows, e.g. ``PUD ?063`` for a table a CPA split made.
        """
        top = Level.PGD if self.config.la57 else Level.P4D
        walk = (("PGD", top), ("P4D", Level.P4D), ("PUD", Level.PUD), ("PMD", Level.PMD), ("PTE", Level.PTE))
        parts = []
        for name, level in walk:
            state = self.pt.entry_state(va, level)
            if state == EntryState.TABLE:
                pa = self.table_pages.get((level, va & level.mask))
                flags = self.table_entry_flags(va, level)
                parts.append(f"{name} {'?' if pa is None else ''}{(pa or 0) | flags:{'03x' if pa is None else 'x'}}")
                continue
            found = self.lookup_address(va) if state == EntryState.LEAF else None
            parts.append(f"{name} {found.entry if found is not None else 0:x}")
            break
        return " ".join(parts)

    def oops_text(self, addr: int, write: bool, present: bool, number: int, found: Lookup | None) -> str:
        """page_fault_oops() -> show_fault_oops() and dump_pagetable() (arch/x86/mm/fault.c).

        The error code has bit 0 for a protection violation and bit 1 for a
        write (0x0003 for a store to a read-only present entry, 0x0002 for a
        not-present one).  The page-table line ends with the leaf as stored: a
        not-present entry's pfn is inverted (L1TF), as the QEMU oracle printed it
        (``PMD 80000001800001e1`` for a read-only 2M leaf on Debian 6.1.0-57).
        """
        code = (1 if present else 0) | (2 if write else 0)
        reason = "permissions violation" if present else "not-present page"
        lines = [f"BUG: unable to handle page fault for address: {addr:016x}",
                 f"#PF: supervisor {'write' if write else 'read'} access in kernel mode",
                 f"#PF: error_code(0x{code:04x}) - {reason}"]
        lines.append(self.dump_pagetable(addr))
        # __die_header() (arch/x86/kernel/dumpstack.c): DEBUG_PAGEALLOC when enabled, then PTI or NOPTI
        # (CONFIG_PAGE_TABLE_ISOLATION is set in Debian's kernels); "Oops: " before page_fault_oops()'s "Oops"
        # since f9f62a877da1 (v6.10); PREEMPT (Debian: PREEMPT_DYNAMIC) moves to the CPU: line since
        # 96389cf36591 (v6.15), a line the model does not print
        prefix = "Oops: Oops" if self.oops_prefix else "Oops"
        preempt = "" if self.oops_no_preempt else " PREEMPT"
        pti = (" PTI" if self.pti else " NOPTI") if self.pti_built else ""  # only with the config option built
        lines.append(f"{prefix}: {code:04x} [#{number}]{preempt} SMP"
                     f"{' DEBUG_PAGEALLOC' if self.config.debug_pagealloc else ''}{pti}")
        return "\n".join(lines)

    def in_direct_map(self, va: int) -> bool:
        return self.within_direct_map_mapped(va)

    def direct_map_bounds(self) -> tuple[int, int]:
        return self.layout.page_offset, self.direct_map_mapped_end()

    def check_call_range(self, va: int, numpages: int) -> None:
        """Refuse a request the model cannot honour: outside the kernel address space."""
        if va < self.layout.page_offset or numpages < 0:
            raise AddressError(
                f"address {va:#x} is not a kernel address of this machine",
                f"direct-map addresses start at {self.layout.page_offset:#x} (PAGE_OFFSET)",
            )

    # ----------------------------------------------------------- entry points
    def set_memory_ro(self, addr: int, numpages: int) -> int:
        """set_memory_ro(): clear _PAGE_RW (and _PAGE_DIRTY since v6.6, commit f788b71768ff)."""
        clr = X86.RW | (X86.DIRTY if self.ro_clears_dirty else 0)
        return self._call("set_memory_ro", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, 0, clr))

    def set_memory_rw(self, addr: int, numpages: int) -> int:
        """set_memory_rw(): set _PAGE_RW only; _PAGE_DIRTY is not restored."""
        return self._call("set_memory_rw", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, X86.RW, 0))

    def set_memory_rox(self, addr: int, numpages: int) -> int:
        """set_memory_rox(): clear RW, DIRTY and NX; the only CPA_COLLAPSE user (>= 6.15)."""
        clr = X86.RW | X86.NX | (X86.DIRTY if self.ro_clears_dirty else 0)
        flag = _cpa.CPA_COLLAPSE if self.cpa_collapse else 0
        return self._call("set_memory_rox", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, 0, clr, False, flag))

    def set_memory_np(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_np", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, 0, X86.PRESENT))

    def set_memory_np_noalias(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_np_noalias", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, 0, X86.PRESENT,
                                                                False, _cpa.CPA_NO_CHECK_ALIAS))

    def set_memory_p(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_p", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, X86.PRESENT, 0))

    def set_memory_nx(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_nx", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, X86.NX, 0))

    def set_memory_x(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_x", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, 0, X86.NX))

    def set_memory_4k(self, addr: int, numpages: int) -> int:
        """set_memory_4k(): force_split; since v6.15 also sets _PAGE_KERNEL_4K so nothing re-collapses."""
        mask_set = X86.KERNEL_4K if self.cpa_collapse else 0
        return self._call("set_memory_4k", addr, numpages,
                          lambda: _cpa.change_page_attr_set_clr(self, addr, numpages, mask_set, 0, True))

    def set_memory_uc(self, addr: int, numpages: int) -> int:
        """set_memory_uc(): memtype_reserve(UC-) then _set_memory_uc() (UC- = PCD with Linux's PAT)."""
        def body() -> int:
            ret = self._memtype_reserve(addr, numpages, X86.CACHE_UC_MINUS)
            if ret:
                return ret
            ret = _cpa.change_page_attr_set_clr(self, addr, numpages, X86.CACHE_UC_MINUS, 0)
            if ret:
                self._memtype_free(addr, numpages)
            return ret
        return self._call("set_memory_uc", addr, numpages, body)

    def set_memory_wb(self, addr: int, numpages: int) -> int:
        """set_memory_wb(): clear every cache bit, then memtype_free()."""
        def body() -> int:
            ret = _cpa.change_page_attr_set_clr(self, addr, numpages, 0, X86.CACHE_MASK)
            if ret:
                return ret
            self._memtype_free(addr, numpages)
            return 0
        return self._call("set_memory_wb", addr, numpages, body)

    def set_memory_cpa_test(self, addrs: tuple[int, ...] | int, numpages: int, set_bit: bool,
                            array: bool = False) -> int:
        """What cpa-test.c does: set or clear _PAGE_CPA_TEST, in range or array mode."""
        mask = X86.CPA_TEST
        flag = _cpa.CPA_ARRAY if array else 0
        first = addrs[0] if isinstance(addrs, tuple) else addrs
        return self._call("change_page_attr_test", first, numpages,
                          lambda: _cpa.change_page_attr_set_clr(
                              self, addrs, numpages, mask if set_bit else 0, 0 if set_bit else mask, in_flag=flag))

    def set_direct_map_invalid_noflush(self, pfn: int) -> int:
        """set_direct_map_invalid_noflush() = __set_pages_np(page, 1): no alias work, no flush."""
        return self._call_set_pages("set_direct_map_invalid_noflush", pfn, 1, False)

    def set_direct_map_default_noflush(self, pfn: int) -> int:
        """set_direct_map_default_noflush() = __set_pages_p(page, 1): PRESENT|RW back, no flush."""
        return self._call_set_pages("set_direct_map_default_noflush", pfn, 1, True)

    def set_direct_map_valid_noflush(self, pfn: int, nr: int, valid: bool) -> int:
        """set_direct_map_valid_noflush(): __set_pages_p() or __set_pages_np() over ``nr`` pages, no flush;
        commit 0c6378a71574 ("arch: introduce set_direct_map_valid_noflush()") (v6.13), for execmem's ROX
        cache (mm/execmem.c execmem_set_direct_map_valid()).  Not gated: a library caller on an older modelled
        kernel gets the 6.13 function (no scenario step calls it)."""
        return self._call_set_pages("set_direct_map_valid_noflush", pfn, nr, valid)

    def _call_set_pages(self, func: str, pfn: int, nr: int, present: bool) -> int:
        """``func`` as a call of __set_pages_p() (``present``) or __set_pages_np() on ``nr`` pages from ``pfn``."""
        addr = self.page_address(pfn)
        return self._call(func, addr, nr, lambda: self._set_pages_p_np(addr, nr, present))

    def _set_pages_p_np(self, addr: int, numpages: int, present: bool) -> int:
        """__set_pages_p() (PRESENT|RW set) or __set_pages_np() (_np_clear() cleared)."""
        if present:
            return self._set_pages(addr, numpages, X86.PRESENT | X86.RW, 0)
        return self._set_pages(addr, numpages, 0, self._np_clear())

    def _np_clear(self) -> int:
        """__set_pages_np()'s mask_clr (arch/x86/mm/pat/set_memory.c): PRESENT|RW, and DIRTY
        since commit c1fcf41cf37f ("x86/mm: Clear _PAGE_DIRTY for kernel mappings when we clear
        _PAGE_RW") (v6.15; stable 6.6.88, 6.12.24, 6.14.3)."""
        return X86.PRESENT | X86.RW | (X86.DIRTY if self.np_clears_dirty else 0)

    def kernel_map_pages(self, pfn: int, numpages: int, enable: bool) -> None:
        """__kernel_map_pages() (DEBUG_PAGEALLOC): __set_pages_p/np and a local __flush_tlb_all()."""
        addr = self.page_address(pfn)

        def body() -> int:
            self._set_pages_p_np(addr, numpages, enable)
            self.flush_tlb_local("__kernel_map_pages")
            return 0
        self._call("__kernel_map_pages", addr, numpages, body)

    # ------------------------------------------------- the generic MM interface
    @property
    def memory(self) -> MemoryMap:
        return self.config.memory

    @property
    def debug_pagealloc(self) -> bool:
        return self.config.debug_pagealloc

    def arch_make_folio_readonly(self, pfn: int, nr_pages: int) -> int:
        """RFC patch 3/3 on x86: set_memory_ro(folio_address(folio), folio_nr_pages(folio))."""
        return self.set_memory_ro(self.page_address(pfn), nr_pages)

    def arch_make_folio_writable(self, pfn: int, nr_pages: int) -> int:
        """The inverse: set_memory_rw() on the folio's direct-map range (never re-forms large pages)."""
        return self.set_memory_rw(self.page_address(pfn), nr_pages)

    def direct_map_writable(self, pfn: int) -> bool:
        found = self.lookup_address(self.page_address(pfn))
        return bool(found and found.present and found.writable)

    def direct_map_present(self, pfn: int) -> bool:
        return self.kernel_page_present(pfn)

    def kernel_page_present(self, pfn: int) -> bool:
        """kernel_page_present(): presence only, never read-only-ness."""
        found = self.lookup_address(self.page_address(pfn))
        return bool(found and found.present)

    def _set_pages(self, addr: int, numpages: int, mask_set: int, mask_clr: int) -> int:
        """__set_pages_p() / __set_pages_np(): _change_page_attr_set_clr() with CPA_NO_CHECK_ALIAS."""
        data = _cpa.CpaData(addr, numpages, mask_set, mask_clr, _cpa.CPA_NO_CHECK_ALIAS)
        # checkalias = 0, which was also "primary", before ef9ab81af6e1 (v6.2): see change_page_attr_set_clr()
        return _cpa._change_page_attr_set_clr(self, data, primary=self.nx_checks_alias)

    # -------------------------------------------------------------- vmalloc
    def vmap(self, pfns: list[int], flags: int = X86.PAGE_KERNEL, at: int | None = None) -> int:
        """vmap(): map pages at a new vmalloc address with 4K PTEs, one guard page after.

        ``at`` places the area (e.g. module_alloc() at MODULES_VADDR).  Table
        pages the new area needs (PTE, PMD, PUD tables) are allocated as
        vmap_pages_range() would.  Returns the start address.
        """
        if not pfns:
            raise AddressError("vmap of no pages", "give at least one page")
        start = self._vmalloc_next if at is None else at
        end = start + len(pfns) * PAGE_SIZE
        if self.pt.occupied(start, end):
            raise AddressError(f"vmap at {start:#x} overlaps an existing mapping", "choose another address")
        if at is None:
            self._vmalloc_next = end + PAGE_SIZE  # VM_NO_GUARD is not set: one guard page
        self.alloc_missing_tables(start, end, (Level.P4D, Level.PUD, Level.PMD))
        self.pt.map_pfns(start, pfns, self.kernel_prot(flags))
        return start

    # ------------------------------------------------------------- memtype
    def _memtype_reserve(self, addr: int, numpages: int, mode: int) -> int:
        """reserve_ram_pages_type(): RAM pages can hold one non-WB type at a time, else -EBUSY."""
        start = self.layout.pa(addr)
        pfn0 = start >> PAGE_SHIFT
        for pfn in range(pfn0, pfn0 + numpages):
            if self.memtype.get(pfn, X86.CACHE_WB) != X86.CACHE_WB:
                # a pr_info() of the whole request and the two types as enum page_cache_mode numbers; the model
                # keeps it with the warnings, the lines a reader of the log should see
                self.warn(f"x86/PAT: reserve_ram_pages_type failed [mem {start:#010x}-"
                          f"{start + numpages * PAGE_SIZE - 1:#010x}], track "
                          f"{_PAGE_CACHE_MODE[self.memtype[pfn]]:#x}, req {_PAGE_CACHE_MODE[mode]:#x}")
                return -Errno.EBUSY
        for pfn in range(pfn0, pfn0 + numpages):
            self.memtype[pfn] = mode
        return 0

    def _memtype_free(self, addr: int, numpages: int) -> None:
        pfn0 = self.layout.pa(addr) >> PAGE_SHIFT
        for pfn in range(pfn0, pfn0 + numpages):
            self.memtype.pop(pfn, None)

    # --------------------------------------------------------------- checks


def _overlaps(r1_start: int, r1_end: int, r2_start: int, r2_end: int) -> bool:
    """overlaps() in set_memory.c (inclusive ends); its two tests are one condition written both ways round."""
    return r1_start <= r2_end and r2_start <= r1_end


# enum page_cache_mode (arch/x86/include/asm/pgtable_types.h) of the one type the model reserves,
# set_memory_uc()'s UC-: the number reserve_ram_pages_type() (arch/x86/mm/pat/memtype.c) prints
_PAGE_CACHE_MODE = {X86.CACHE_UC_MINUS: 2}
