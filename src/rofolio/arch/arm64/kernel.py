"""The arm64 kernel's linear-map state and its permission-change API.

``Arm64Kernel`` holds what arch/arm64/mm keeps about init_mm's page table: the
leaves (``rofolio.pagetable``), ``linear_map_requires_bbml2``, whether CPU
features are finalized, the KFENCE pool and the vmalloc areas the model
created.  Counters are not kept here: they are folded from the event log.

Entry points carry the kernel's names and return the kernel's values (0 or a
negative errno).  The rules live in ``mmu`` (building and splitting) and
``pageattr`` (changing permissions); ``boot`` runs the boot sequence.
"""

from __future__ import annotations

from rofolio.arch import KernelState, LeafLookup
from rofolio.arch.arm64 import kfence as _kfence
from rofolio.arch.arm64 import mmu as _mmu
from rofolio.arch.arm64 import pageattr as _pageattr
from rofolio.arch.arm64 import tlbflush as _tlbflush
from rofolio.arch.arm64.abort import FAULT_LEVEL, data_abort_esr, die_line, mem_abort_decode
from rofolio.arch.arm64.config import Arm64Config
from rofolio.arch.arm64.image import Arm64KernelImage
from rofolio.arch.arm64.prot import ARM64, is_read_only, page_kernel
from rofolio.arch.arm64.vmalloc import VM_ALLOC, VM_ALLOW_HUGE_VMAP, VM_MAP, VmArea
from rofolio.errors import AddressError, ConfigError
from rofolio.events import (
    EventLog,
    Phase,
)
from rofolio.pagetable import EntryState, PageTable
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, GiB, Level

__all__ = ["Arm64Kernel", "Arm64Lookup"]


class Arm64Lookup(LeafLookup):
    """The leaf entry for an address on arm64: a valid descriptor is present; PTE_RDONLY decides writes."""

    __slots__ = ()

    @property
    def valid(self) -> bool:
        return bool(self.flags & ARM64.VALID)

    @property
    def present(self) -> bool:
        """What a CPU access sees: a valid descriptor."""
        return self.valid

    @property
    def read_only(self) -> bool:
        """PTE_RDONLY set and PTE_WRITE clear: a kernel store faults."""
        return is_read_only(self.flags)

    @property
    def writable(self) -> bool:
        return self.valid and not self.read_only

    @property
    def cont(self) -> bool:
        return bool(self.flags & ARM64.CONT)

    @property
    def block(self) -> bool:
        """A PMD or PUD block (section) descriptor."""
        return self.level > Level.PTE


class Arm64Kernel(KernelState):
    """init_mm's page table on arm64 and the state pageattr.c and mmu.c consult."""

    arch = "arm64"
    LOOKUP = Arm64Lookup

    def __init__(self, config: Arm64Config, image: Arm64KernelImage | None = None,
                 log: EventLog | None = None) -> None:
        self.config = config
        self.layout = config.layout
        self.image = image or Arm64KernelImage.qemu_virt(config.memory.ram[0].start)
        if not config.memory.is_ram(self.image.text, self.image.end):
            raise ConfigError(f"the kernel image [{self.image.text:#x}, {self.image.end:#x}) is not in RAM",
                              "load the image inside one RAM range")
        self.log = log if log is not None else EventLog()
        self.pt = PageTable()
        self.phase = Phase.BOOTING
        self.cpus_online = 1
        self.capabilities_finalized = False  # system_capabilities_finalized()
        self.linear_map_requires_bbml2 = False  # set by map_mem()
        self.kfence_pool: int | None = None  # __pa(__kfence_pool)
        self.vm_areas: list[VmArea] = []
        self._vmalloc_next = self.layout.vmalloc_start + GiB  # past the kernel image (KIMAGE_VADDR)
        self._warned_once: set[str] = set()

    # ------------------------------------------------------------ features
    def debug_pagealloc_enabled(self) -> bool:
        return self.config.debug_pagealloc

    def is_realm_world(self) -> bool:
        return self.config.realm

    def system_supports_bbml2_noabort(self) -> bool:
        """The finalized system capability: false until every CPU has been checked."""
        return self.capabilities_finalized and self.config.system_supports_bbml2_noabort

    def force_pte_mapping(self) -> bool:
        """force_pte_mapping() (mmu.c): debug_pagealloc, else no BBML2 and rodata_full/late KFENCE/realm."""
        # the system capability once capabilities are finalized, before that the boot CPU's own answer
        bbml2 = self.system_supports_bbml2_noabort() if self.capabilities_finalized else self.config.bbml2
        if self.debug_pagealloc_enabled():
            return True
        if bbml2:
            return False
        return self.config.rodata_full or self.config.arm64_kfence_can_set_direct_map or self.is_realm_world()

    def can_set_direct_map(self) -> bool:
        """can_set_direct_map() (pageattr.c)."""
        return (self.config.rodata_full or self.debug_pagealloc_enabled()
                or self.config.arm64_kfence_can_set_direct_map or self.is_realm_world())

    def split_leaf_mapping_possible(self) -> bool:
        """split_leaf_mapping_possible() (mmu.c): BBML2_NOABORT on every CPU and no forced PTEs."""
        if not self.system_supports_bbml2_noabort():
            return False
        return not self.force_pte_mapping()

    def maybe_ng(self) -> int:
        """PTE_MAYBE_NG."""
        return ARM64.NG if self.config.ng_mappings else 0

    # -------------------------------------------------------------- lookups
    def kernel_page_present(self, pfn: int) -> bool:
        """kernel_page_present(): presence only, never read-only-ness."""
        return _pageattr.kernel_page_present(self, self.page_address(pfn))

    # ------------------------------------------------- the generic MM interface
    @property
    def memory(self) -> MemoryMap:
        return self.config.usable

    @property
    def debug_pagealloc(self) -> bool:
        return self.config.debug_pagealloc

    def oops_text(self, addr: int, write: bool, present: bool, number: int, found: Arm64Lookup | None) -> str:
        """What a kernel-mode data abort at ``addr`` prints, from __do_kernel_fault() to die() (fault.c, traps.c).

        A valid leaf that refuses the access is a permission fault: "write to read-only memory" for a store
        (ESR_ELx_WNR), "read from unreadable memory" for a load; an invalid leaf (or a missing table) is a
        translation fault: "paging request".  The fault level is the level of the descriptor the walk stopped
        at.  show_pte()'s two lines (swapper_pg_dir's address and the raw table entries) are left out.
        """
        level = found.level if found is not None else self._hole_level(addr)
        esr = data_abort_esr(write=write, permission=present, level=FAULT_LEVEL[level])
        if present:
            msg = "write to read-only memory" if write else "read from unreadable memory"
        else:
            msg = "paging request"
        return "\n".join((f"Unable to handle kernel {msg} at virtual address {addr:016x}",
                          *mem_abort_decode(esr), die_line("Oops", esr, number)))

    def _hole_level(self, addr: int) -> Level:
        """The level whose entry is none when no leaf maps ``addr`` (the walk stops there)."""
        for level in (Level.PUD, Level.PMD):
            if self.pt.entry_state(addr, level) == EntryState.NONE:
                return level
        return Level.PTE

    def arch_make_folio_readonly(self, pfn: int, nr_pages: int) -> int:
        """RFC patch 2/3 on arm64: the internal update_range_prot() path, gated by can_set_direct_map()."""
        return self.make_linear_range_readonly(pfn << PAGE_SHIFT, nr_pages * PAGE_SIZE)

    def arch_make_folio_writable(self, pfn: int, nr_pages: int) -> int:
        """The inverse: set_direct_map_default_noflush() per page (writable), then one flush.

        The precedent is guest_memfd's restore (and secretmem's free path): the
        default-noflush helper, then flush_tlb_kernel_range() over the folio.
        Without can_set_direct_map() nothing was made read-only and nothing happens.
        """
        if not self.can_set_direct_map():
            return 0
        for i in range(nr_pages):
            ret = self.set_direct_map_default_noflush(pfn + i)
            if ret:
                return ret
        start = self.page_address(pfn)
        self.flush_tlb_kernel_range(start, start + nr_pages * PAGE_SIZE, "restore")
        return 0

    def flush_tlb_kernel_range(self, start: int, end: int, reason: str) -> None:
        _tlbflush.flush_tlb_kernel_range(self, start, end, reason)

    # --------------------------------------------------- page-table pages
    # -------------------------------------------------------- entry points
    def set_memory_ro(self, addr: int, numpages: int) -> int:
        """set_memory_ro(): change_memory_common(set PTE_RDONLY, clear PTE_WRITE)."""
        return self._call("set_memory_ro", addr, numpages, lambda: _pageattr.change_memory_common(
            self, addr, numpages, ARM64.RDONLY, ARM64.WRITE))

    def set_memory_rw(self, addr: int, numpages: int) -> int:
        """set_memory_rw(): change_memory_common(set PTE_WRITE, clear PTE_RDONLY)."""
        return self._call("set_memory_rw", addr, numpages, lambda: _pageattr.change_memory_common(
            self, addr, numpages, ARM64.WRITE, ARM64.RDONLY))

    def set_memory_nx(self, addr: int, numpages: int) -> int:
        """set_memory_nx(): set PTE_PXN, clear PTE_MAYBE_GP (0 without a BTI kernel)."""
        return self._call("set_memory_nx", addr, numpages, lambda: _pageattr.change_memory_common(
            self, addr, numpages, ARM64.PXN, 0))

    def set_memory_x(self, addr: int, numpages: int) -> int:
        """set_memory_x(): set PTE_MAYBE_GP (0), clear PTE_PXN."""
        return self._call("set_memory_x", addr, numpages, lambda: _pageattr.change_memory_common(
            self, addr, numpages, 0, ARM64.PXN))

    def set_memory_valid(self, addr: int, numpages: int, enable: bool) -> int:
        return self._call("set_memory_valid", addr, numpages,
                          lambda: _pageattr.set_memory_valid(self, addr, numpages, enable))

    def set_direct_map_invalid_noflush(self, pfn: int) -> int:
        addr = self._ram_page(pfn)
        return self._call("set_direct_map_invalid_noflush", addr, 1,
                          lambda: _pageattr.set_direct_map_invalid_noflush(self, addr))

    def set_direct_map_default_noflush(self, pfn: int) -> int:
        addr = self._ram_page(pfn)
        return self._call("set_direct_map_default_noflush", addr, 1,
                          lambda: _pageattr.set_direct_map_default_noflush(self, addr))

    def set_direct_map_valid_noflush(self, pfn: int, nr: int, valid: bool) -> int:
        addr = self._ram_page(pfn, nr)
        return self._call("set_direct_map_valid_noflush", addr, nr,
                          lambda: _pageattr.set_direct_map_valid_noflush(self, addr, nr, valid))

    def kernel_map_pages(self, pfn: int, numpages: int, enable: bool) -> None:
        """__kernel_map_pages() (CONFIG_DEBUG_PAGEALLOC)."""
        addr = self._ram_page(pfn, numpages)
        self._call("__kernel_map_pages", addr, numpages,
                   lambda: _pageattr.kernel_map_pages(self, addr, numpages, enable))

    def make_linear_range_readonly(self, pa: int, size: int) -> int:
        """What arch_make_folio_readonly() calls on arm64: 0, or -EOPNOTSUPP when it cannot."""
        if pa % PAGE_SIZE or size <= 0 or size % PAGE_SIZE or not self.config.usable.is_ram(pa, pa + size):
            raise AddressError(f"[{pa:#x}, {pa + size:#x}) is not a page-aligned range of RAM",
                               "give a folio's physical address and size")
        return self._call("make_linear_range_readonly", self.va(pa), size >> PAGE_SHIFT,
                          lambda: _pageattr.make_linear_range_readonly(self, pa, size))

    def linear_map_split_to_ptes(self) -> None:
        """Run linear_map_split_to_ptes() (normally boot does, from setup_system_features())."""
        _mmu.linear_map_split_to_ptes(self)

    def kfence_init_late(self, pa: int) -> bool:
        """kfence_init_late() with its pool at ``pa`` (kfence.sample_interval written at runtime)."""
        return _kfence.kfence_init_late(self, pa)

    # -------------------------------------------------------------- vmalloc
    def vmalloc(self, pfns: list[int], huge: bool = False) -> int:
        """A VM_ALLOC area backed by ``pfns`` (vmalloc(); ``huge`` adds VM_ALLOW_HUGE_VMAP)."""
        return self._vm_area(pfns, VM_ALLOC | (VM_ALLOW_HUGE_VMAP if huge else 0))

    def vmap(self, pfns: list[int]) -> int:
        """vmap(): a VM_MAP area, which change_memory_common() refuses."""
        return self._vm_area(pfns, VM_MAP)

    def _vm_area(self, pfns: list[int], flags: int) -> int:
        """Map ``pfns`` with PAGE_KERNEL 4K PTEs at the next free vmalloc address, one guard page after.

        Table pages the area needs are allocated as vmap_pages_range() would
        (the PUD table of this 512G region exists already: it maps the kernel image).
        """
        if not pfns:
            raise AddressError("a vmalloc area of no pages", "give at least one page")
        for pfn in pfns:
            self._ram_page(pfn)
        start = self._vmalloc_next
        end = start + len(pfns) * PAGE_SIZE
        self._vmalloc_next = end + PAGE_SIZE
        self.alloc_missing_tables(start, end, (Level.PUD, Level.PMD))
        prot = page_kernel(self.config.ng_mappings)
        self.pt.map_pfns(start, pfns, prot)
        self.vm_areas.append(VmArea(start, end - start + PAGE_SIZE, flags, tuple(pfns)))
        return start
