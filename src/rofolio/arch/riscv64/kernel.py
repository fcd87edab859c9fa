"""The riscv64 kernel's linear-map state and its permission-change API.

``Riscv64Kernel`` holds init_mm's page table (``rofolio.pagetable``), the KFENCE pool and the vmalloc areas
the model created; counters are folded from the event log.  Entry points carry the kernel's names and
return its values (0 or a negative errno); the rules live in ``init`` (building, late boot) and
``pageattr`` (changing), ``boot`` runs the boot sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from rofolio.arch.kernel import KernelState
from rofolio.arch.riscv64 import pageattr as _pageattr
from rofolio.arch.riscv64 import tlbflush as _tlbflush
from rofolio.arch.riscv64.config import Riscv64Config
from rofolio.arch.riscv64.pageattr import SET_MEMORY_MASKS
from rofolio.arch.riscv64.pgtable import PAGE_KERNEL, RISCV, RiscvLookup
from rofolio.errors import AddressError
from rofolio.events import EventLog, Phase
from rofolio.pagetable import PageTable
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, PAGE_SIZE

__all__ = ["Riscv64Kernel", "VmArea"]


@dataclass(frozen=True, slots=True)
class VmArea:
    """A vm_struct as __set_memory() reads it: ``size`` includes the guard page; ``pages`` are the backing
    pfns (area->pages), None for a vmap() area, which keeps no array."""

    addr: int
    size: int
    pages: tuple[int, ...] | None


class Riscv64Kernel(KernelState):
    """init_mm's page table on riscv64 and the state init.c and pageattr.c consult."""

    arch = "riscv64"
    LOOKUP = RiscvLookup

    def __init__(self, config: Riscv64Config, log: EventLog | None = None) -> None:
        self.config = config
        self.layout = config.layout
        self.image = config.kernel_image
        self.log = log if log is not None else EventLog()
        self.pt = PageTable()
        self.phase = Phase.BOOTING
        self.cpus_online = 1
        self.kfence_pool: int | None = None  # __pa(__kfence_pool)
        self.vm_areas: list[VmArea] = []
        self._vmalloc_next = self.layout.vmalloc_start
        self._warned_once: set[str] = set()

    # ----------------------------------------------------------- addresses
    @property
    def memory(self) -> MemoryMap:
        """The RAM the kernel kept: setup_bootmem() drops what the linear map cannot reach."""
        return self.config.usable

    @property
    def debug_pagealloc(self) -> bool:
        return self.config.debug_pagealloc

    # -------------------------------------------------------------- lookups
    def kernel_page_present(self, pfn: int) -> bool:
        """kernel_page_present(): the software present tests, which a V-cleared kernel page passes."""
        return _pageattr.kernel_page_present(self, self.page_address(pfn))

    def oops_text(self, addr: int, write: bool, present: bool, number: int, found: RiscvLookup | None) -> str:
        """no_context() -> die_kernel_fault() (arch/riscv/mm/fault.c), then die()'s first line (traps.c): a
        load or store page fault reads the same for a read-only and a not-present leaf; show_pte()'s lines
        and the register dump are left out."""
        msg = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
        return f"Unable to handle kernel {msg} at virtual address {addr:016x}\nOops [#{number}]"

    # -------------------------------------------------------- entry points
    def check_call_range(self, addr: int, numpages: int) -> None:
        """Refuse a negative page count: __set_memory() would compute an end below the start, let
        split_linear_mapping() act on the entries at the start and return -EINVAL from the walk, a path the
        model does not follow."""
        if numpages < 0:
            raise AddressError(f"{numpages} pages from {addr:#x}: a negative page count",
                               "give the number of 4K pages to change (0 or more)")

    def _set_memory(self, func: str, addr: int, numpages: int) -> int:
        set_mask, clear_mask = SET_MEMORY_MASKS[func]
        return self._call(func, addr, numpages,
                          lambda: _pageattr.set_memory(self, func, addr, numpages, set_mask, clear_mask))

    def set_memory_ro(self, addr: int, numpages: int) -> int:
        """set_memory_ro(): set R, clear W (pageattr.c)."""
        return self._set_memory("set_memory_ro", addr, numpages)

    def set_memory_rw(self, addr: int, numpages: int) -> int:
        """set_memory_rw(): set R and W."""
        return self._set_memory("set_memory_rw", addr, numpages)

    def set_memory_x(self, addr: int, numpages: int) -> int:
        """set_memory_x(): set X."""
        return self._set_memory("set_memory_x", addr, numpages)

    def set_memory_nx(self, addr: int, numpages: int) -> int:
        """set_memory_nx(): clear X."""
        return self._set_memory("set_memory_nx", addr, numpages)

    def set_memory_rw_nx(self, addr: int, numpages: int) -> int:
        """set_memory_rw_nx(): set R and W, clear X (free_initmem()'s call)."""
        return self._set_memory("set_memory_rw_nx", addr, numpages)

    def set_direct_map_invalid_noflush(self, pfn: int) -> int:
        """set_direct_map_invalid_noflush(): clear V of one page; __set_memory() flushes everything anyway."""
        return self._set_memory("set_direct_map_invalid_noflush", self._ram_page(pfn), 1)

    def set_direct_map_default_noflush(self, pfn: int) -> int:
        """set_direct_map_default_noflush(): PAGE_KERNEL (valid and writable), X cleared."""
        return self._set_memory("set_direct_map_default_noflush", self._ram_page(pfn), 1)

    def set_direct_map_valid_noflush(self, pfn: int, nr: int, valid: bool) -> int:
        """set_direct_map_valid_noflush(): PAGE_KERNEL without X, or V cleared, over ``nr`` pages (none: 0,
        nothing done, __set_memory()'s early return)."""
        addr = self._ram_page(pfn, nr)
        set_mask, clear_mask = (PAGE_KERNEL, RISCV.EXEC) if valid else (0, RISCV.PRESENT)
        return self._call("set_direct_map_valid_noflush", addr, nr, lambda: _pageattr.set_memory(
            self, "set_direct_map_valid_noflush", addr, nr, set_mask, clear_mask))

    def kernel_map_pages(self, pfn: int, numpages: int, enable: bool) -> None:
        """__kernel_map_pages() (CONFIG_DEBUG_PAGEALLOC): nothing unless debug_pagealloc is on."""
        addr = self._ram_page(pfn, numpages)
        self._call("__kernel_map_pages", addr, numpages,
                   lambda: _pageattr.kernel_map_pages(self, addr, numpages, enable) or 0)

    def flush_tlb_kernel_range(self, start: int, end: int, reason: str) -> None:
        _tlbflush.flush_tlb_kernel_range(self, start, end, reason)

    def make_linear_range_readonly(self, pa: int, size: int) -> int:
        """What a riscv arch_make_folio_readonly() does: set_memory_ro() on the linear address, 0 or -errno."""
        if pa % PAGE_SIZE or size <= 0 or size % PAGE_SIZE or not self.memory.is_ram(pa, pa + size):
            raise AddressError(f"[{pa:#x}, {pa + size:#x}) is not a page-aligned range of RAM",
                               "give a folio's physical address and size")
        return self.set_memory_ro(self.va(pa), size >> PAGE_SHIFT)

    def arch_make_folio_readonly(self, pfn: int, nr_pages: int) -> int:
        """The RFC hook on riscv64 as its own rules allow it: set_memory_ro() of the folio's linear address,
        which splits only the leaves the folio covers in part.  The RFC v2 series carries no riscv
        override: a kernel built from it takes the weak default on riscv (docs/fidelity.md, riscv64)."""
        return self.make_linear_range_readonly(pfn << PAGE_SHIFT, nr_pages * PAGE_SIZE)

    def arch_make_folio_writable(self, pfn: int, nr_pages: int) -> int:
        """The inverse on the same path: set_memory_rw() of the folio's linear address."""
        return self.set_memory_rw(self.page_address(pfn), nr_pages)

    # -------------------------------------------------------------- vmalloc
    def vmalloc(self, pfns: list[int], huge: bool = False) -> int:
        """A vmalloc() area backed by ``pfns`` (area->pages set), 4K PTEs; ``huge`` is not modelled apart."""
        return self._vm_area(pfns, tuple(pfns))

    def vmap(self, pfns: list[int]) -> int:
        """vmap(): an area without a pages array."""
        return self._vm_area(pfns, None)

    def _vm_area(self, pfns: list[int], pages: tuple[int, ...] | None) -> int:
        """Map ``pfns`` with PAGE_KERNEL 4K PTEs at the next free vmalloc address, one guard page after."""
        if not pfns:
            raise AddressError("a vmalloc area of no pages", "give at least one page")
        for pfn in pfns:
            self._ram_page(pfn)
        start = self._vmalloc_next
        end = start + len(pfns) * PAGE_SIZE
        self._vmalloc_next = end + PAGE_SIZE
        self.alloc_missing_tables(start, end, self.layout.levels[:-1])  # the tables below each empty entry
        self.pt.map_pfns(start, pfns, PAGE_KERNEL)
        self.vm_areas.append(VmArea(start, end - start + PAGE_SIZE, pages))
        return start
