"""The weak default: an architecture with no direct-map permission support.

What the kernel gives such an architecture (riscv64 without
ARCH_HAS_SET_DIRECT_MAP, for instance) is a set of fallbacks that do nothing:
``include/linux/set_memory.h`` defines ``set_direct_map_*()`` returning 0 when
CONFIG_ARCH_HAS_SET_DIRECT_MAP is off, and ``set_memory_ro()``/``set_memory_rw()``
returning 0 when CONFIG_ARCH_HAS_SET_MEMORY is off.  Those return values say
"done" without doing anything, which is why a best-effort read-only hook must
not be built on them: the generic ``arch_make_folio_readonly()`` has to report
-EOPNOTSUPP and leave the folio writable.

``NoDirectMapKernel`` has the entry-point names of the arch kernels where they
mean something here.  Its boot maps every RAM range with the largest leaf that
the alignment of both the physical and the virtual address allows, one leaf at
a time (riscv's ``create_linear_mapping_range()`` with ``best_map_size()``,
without the aliases riscv64's own boot maps apart); entries carry riscv's PAGE_KERNEL bits
(``rofolio.arch.riscv64.pgtable``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rofolio.arch.kernel import KernelState
from rofolio.arch.riscv64.pgtable import PAGE_KERNEL, RiscvLookup
from rofolio.errors import AddressError, ConfigError, Errno
from rofolio.events import BootMapping, EventLog, Flush, FlushKind, PgtableAlloc, Phase
from rofolio.pagetable import PageTable
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level

__all__ = ["NoDirectMapConfig", "NoDirectMapKernel", "boot"]


@dataclass(frozen=True, slots=True)
class NoDirectMapConfig:
    """A machine whose architecture cannot change direct-map permissions."""

    memory: MemoryMap
    nr_cpus: int = 8
    page_offset: int = 0xFFFFAF8000000000  # riscv64 Sv48 PAGE_OFFSET; any kernel address would do
    phys_offset: int | None = None  # the PA that maps to page_offset; the first RAM byte by default
    vmalloc_start: int = 0xFFFF8F8000000000  # riscv64 Sv48 VMALLOC_START (Documentation/arch/riscv/vm-layout.rst)

    def __post_init__(self) -> None:
        if not 1 <= self.nr_cpus <= 8192:
            raise ConfigError(f"{self.nr_cpus} CPUs is not a possible machine", "give 1 to 8192 CPUs")
        self.memory.check_page_aligned()

    @property
    def base(self) -> int:
        return self.memory.ram[0].start if self.phys_offset is None else self.phys_offset

    @classmethod
    def flat(cls, mem: int, base: int = 1 << 31, **options: object) -> NoDirectMapConfig:
        """One RAM bank (riscv virt machines start RAM at 2 GiB)."""
        return cls(memory=MemoryMap.flat(mem, base=base), **options)  # type: ignore[arg-type]


class NoDirectMapKernel(KernelState):
    """The direct map of an architecture without set_direct_map_*() or set_memory_*()."""

    arch = "nodirectmap"
    LOOKUP = RiscvLookup

    def __init__(self, config: NoDirectMapConfig, log: EventLog | None = None) -> None:
        self.config = config
        self.log = log if log is not None else EventLog()
        self.pt = PageTable()
        self.phase = Phase.BOOTING
        self.cpus_online = 1
        self._warned_once: set[str] = set()
        self._vmalloc_next = config.vmalloc_start

    # --------------------------------------------------------------- boot
    def boot(self) -> NoDirectMapKernel:
        """Map the direct map, bring the CPUs up; SYSTEM_SCHEDULING (initcalls next)."""
        for r in self.config.memory.ram:
            self.create_linear_mapping_range(r.start, r.end)
        tables = self.pt.table_pages()
        for level in (Level.PUD, Level.PMD, Level.PTE):
            if tables[level]:
                self.log.append(PgtableAlloc(level, tables[level]))
        self.cpus_online = self.config.nr_cpus
        self.set_phase(Phase.SCHEDULING)
        return self

    def create_linear_mapping_range(self, start: int, end: int) -> None:
        """Map [start, end): at each step the largest leaf that PA, VA and the remaining size allow."""
        pa = start
        while pa < end:
            va = self.va(pa)
            level = next(lv for lv in (Level.PUD, Level.PMD, Level.PTE)
                         if (pa | va) % lv.size == 0 and end - pa >= lv.size)
            stop = pa + (end - pa) // level.size * level.size
            if level != Level.PUD and (pa ^ va) % Level(level + 1).size == 0:
                stop = min(stop, _next_boundary(pa, Level(level + 1).size))  # a larger leaf may fit there
            self.pt.map(va, self.va(stop), level, PAGE_KERNEL, pa >> PAGE_SHIFT)
            self.log.append(BootMapping(va, self.va(stop), level, 0))
            pa = stop

    # ---------------------------------------------------------- addresses
    def va(self, pa: int) -> int:
        return self.config.page_offset + pa - self.config.base

    # ------------------------------------------------------- entry points
    def can_set_direct_map(self) -> bool:
        """No ARCH_HAS_SET_DIRECT_MAP: nothing can change direct-map entries (secretmem is not built)."""
        return False

    def set_direct_map_invalid_noflush(self, pfn: int) -> int:
        """The !CONFIG_ARCH_HAS_SET_DIRECT_MAP fallback: return 0, change nothing."""
        return self._call("set_direct_map_invalid_noflush", self.page_address(pfn), 1, lambda: 0)

    def set_direct_map_default_noflush(self, pfn: int) -> int:
        return self._call("set_direct_map_default_noflush", self.page_address(pfn), 1, lambda: 0)

    def set_direct_map_valid_noflush(self, pfn: int, nr: int, valid: bool) -> int:
        return self._call("set_direct_map_valid_noflush", self.page_address(pfn), nr, lambda: 0)

    def set_memory_ro(self, addr: int, numpages: int) -> int:
        """The !CONFIG_ARCH_HAS_SET_MEMORY fallback: it returns 0 although nothing became read-only."""
        return self._call("set_memory_ro", addr, numpages, lambda: 0)

    def set_memory_rw(self, addr: int, numpages: int) -> int:
        return self._call("set_memory_rw", addr, numpages, lambda: 0)

    def vmap(self, pfns: list[int]) -> int:
        """vmap(): map ``pfns`` with PAGE_KERNEL 4K PTEs at the next vmalloc address, one guard page after.

        Every architecture has vmap() (mm/vmalloc.c); the alias it creates is
        writable whatever the direct map says, which is the point of modelling it here.
        """
        if not pfns:
            raise AddressError("vmap of no pages", "give at least one page")
        for pfn in pfns:
            if not self.config.memory.is_ram(pfn << PAGE_SHIFT):
                raise AddressError(f"pfn {pfn:#x} is not RAM", "vmap pages of RAM")
        start = self._vmalloc_next
        self._vmalloc_next = start + (len(pfns) + 1) * PAGE_SIZE  # VM_NO_GUARD is not set
        for i, pfn in enumerate(pfns):
            self.pt.map(start + i * PAGE_SIZE, start + (i + 1) * PAGE_SIZE, Level.PTE, PAGE_KERNEL, pfn)
        return start

    def kernel_page_present(self, pfn: int) -> bool:
        """Without ARCH_HAS_SET_DIRECT_MAP no page is ever unmapped from the direct map."""
        return True

    # ------------------------------------------------- the generic MM interface
    @property
    def memory(self) -> MemoryMap:
        return self.config.memory

    @property
    def debug_pagealloc(self) -> bool:
        return False  # the weak-default architecture has no __kernel_map_pages() of its own

    def pa(self, va: int) -> int:
        return va - self.config.page_offset + self.config.base

    def arch_make_folio_readonly(self, pfn: int, nr_pages: int) -> int:
        """The weak default: -EOPNOTSUPP, and the folio stays writable (the RFC's best effort)."""
        return self.make_linear_range_readonly(pfn << PAGE_SHIFT, nr_pages * PAGE_SIZE)

    def arch_make_folio_writable(self, pfn: int, nr_pages: int) -> int:
        return 0  # nothing was made read-only

    def flush_tlb_kernel_range(self, start: int, end: int, reason: str) -> None:
        """A ranged kernel flush; no direct-map entry ever changes here, so only callers' own flushes."""
        pages = (end - start) >> PAGE_SHIFT
        self.log.append(Flush(FlushKind.RANGE, pages, self.cpus_online, self.cpus_online - 1, reason))

    def kernel_map_pages(self, pfn: int, numpages: int, enable: bool) -> None:
        """No DEBUG_PAGEALLOC unmapping without set_direct_map support: nothing to do."""

    def make_linear_range_readonly(self, pa: int, size: int) -> int:
        """The weak arch_make_folio_readonly(): -EOPNOTSUPP; the folio stays writable."""
        if pa % PAGE_SIZE or size <= 0 or size % PAGE_SIZE or not self.config.memory.is_ram(pa, pa + size):
            raise AddressError(f"[{pa:#x}, {pa + size:#x}) is not a page-aligned range of RAM",
                               "give a folio's physical address and size")
        return self._call("make_linear_range_readonly", self.va(pa), size >> PAGE_SHIFT,
                          lambda: -Errno.EOPNOTSUPP)


def _next_boundary(addr: int, size: int) -> int:
    return (addr // size + 1) * size


def boot(config: NoDirectMapConfig, log: EventLog | None = None) -> NoDirectMapKernel:
    return NoDirectMapKernel(config, log).boot()
