"""What an x86-64 machine is: its memory map, CPU features, kernel options and version."""

from __future__ import annotations

from dataclasses import dataclass, field

from rofolio.errors import ConfigError
from rofolio.kversion import DEFAULT_KERNEL, KernelVersion
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, GiB, TiB

__all__ = ["AddressLayout", "X86Config"]

# arch/x86/mm/tlb.c, tlb_single_page_flush_ceiling: the default of 33 comes from estimating a full flush
# at a few microseconds and one INVLPG at about 100ns; tunable in debugfs.
TLB_SINGLE_PAGE_FLUSH_CEILING = 33


@dataclass(frozen=True, slots=True)
class AddressLayout:
    """Kernel virtual address layout (Documentation/arch/x86/x86_64/mm.rst), without KASLR."""

    page_offset: int
    vmalloc_start: int
    vmalloc_end: int
    direct_map_size: int
    max_physmem_bits: int  # MAX_PHYSMEM_BITS (arch/x86/include/asm/sparsemem.h): MAXMEM = 1 << it
    start_kernel_map: int = 0xFFFFFFFF80000000  # __START_KERNEL_map
    kernel_image_size: int = 1 << 30  # KERNEL_IMAGE_SIZE: 1 GiB with CONFIG_RANDOMIZE_BASE, even with nokaslr
    modules_vaddr: int = 0xFFFFFFFFC0000000  # MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE

    @classmethod
    def for_paging(cls, la57: bool) -> AddressLayout:
        if la57:
            # 5-level: 0xff11000000000000 direct map (32 PiB), vmalloc at 0xffa0000000000000 (12.5 PiB)
            return cls(0xFF11000000000000, 0xFFA0000000000000, 0xFFD1FFFFFFFFFFFF, 32 << 50, 52)
        # 4-level: 0xffff888000000000 direct map (64 TiB), vmalloc at 0xffffc90000000000 (32 TiB)
        return cls(0xFFFF888000000000, 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF, 64 * TiB, 46)

    def va(self, pa: int) -> int:
        """__va(): the direct-map address of a physical address."""
        return self.page_offset + pa

    def pa(self, va: int) -> int:
        """__pa() of a direct-map address."""
        return va - self.page_offset

    def in_direct_map(self, va: int) -> bool:
        return self.page_offset <= va < self.page_offset + self.direct_map_size


@dataclass(frozen=True, slots=True)
class X86Config:
    """An x86-64 machine description.

    ``gbpages`` is the effective ``direct_gbpages``: the CPU has pdpe1gb and the
    command line does not say ``nogbpages`` (arch/x86/mm/init.c probe_page_size_mask()).
    """

    memory: MemoryMap
    gbpages: bool = True
    la57: bool = False
    debug_pagealloc: bool = False
    kernel: KernelVersion = DEFAULT_KERNEL
    nr_cpus: int = 8
    tlb_single_page_flush_ceiling: int = TLB_SINGLE_PAGE_FLUSH_CEILING
    empty_zero_page_in_rodata: bool = False
    pse: bool = True  # X86_FEATURE_PSE: every x86-64 CPU has it (QEMU's -cpu max too); False only in tests
    layout: AddressLayout = field(init=False)
    ram_dropped: int = field(init=False, default=0)  # bytes of RAM above MAXMEM that are not used

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", AddressLayout.for_paging(self.la57))
        object.__setattr__(self, "kernel", KernelVersion.parse(self.kernel))
        if not 1 <= self.nr_cpus <= 8192:
            raise ConfigError(f"{self.nr_cpus} CPUs is not a possible machine", "give 1 to 8192 CPUs")
        if self.tlb_single_page_flush_ceiling < 0:
            raise ConfigError("tlb_single_page_flush_ceiling must not be negative", "the kernel uses 33")
        limit = self.maxmem
        if self.memory.max_pfn << PAGE_SHIFT > limit:
            # e820__end_of_ram_pfn() clamps max_pfn to MAX_ARCH_PFN (MAXMEM >> PAGE_SHIFT): RAM above is not used
            kept = self.memory.ram_below(limit)
            object.__setattr__(self, "ram_dropped", self.memory.total_ram - kept.total_ram)
            object.__setattr__(self, "memory", kept)

    @property
    def maxmem(self) -> int:
        """MAXMEM (arch/x86/include/asm/pgtable_64_types.h): 1 << MAX_PHYSMEM_BITS, 64 TiB or, with la57, 4 PiB."""
        return 1 << self.layout.max_physmem_bits

    @property
    def direct_gbpages(self) -> bool:
        """direct_gbpages after probe_page_size_mask(): cleared under DEBUG_PAGEALLOC."""
        return self.gbpages and not self.debug_pagealloc

    @classmethod
    def qemu(cls, mem: int = 8 * GiB, **options: object) -> X86Config:
        """A machine with QEMU's e820 layout for ``-m mem``."""
        return cls(memory=MemoryMap.qemu_x86(mem), **options)  # type: ignore[arg-type]
