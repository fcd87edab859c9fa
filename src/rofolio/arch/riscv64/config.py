"""What a riscv64 machine is: its RAM, its paging mode, its command line, the kernel image in RAM.

The layout is asm/page.h's and asm/pgtable.h's for 4K pages: PAGE_OFFSET per satp mode (Sv39, Sv48,
Sv57), the linear map's size ``KERN_VIRT_SIZE`` (a quarter of the address space a PGD covers) and the
vmalloc area just below PAGE_OFFSET (Documentation/arch/riscv/vm-layout.rst).  ``phys_ram_base`` is the
first RAM byte rounded down to 2M (init.c setup_bootmem()), and the linear map is
``PAGE_OFFSET + (pa - phys_ram_base)``.

The kernel image's physical section addresses default to Debian's 7.2.13+deb14-riscv64 image as QEMU's
virt board loads it (OpenSBI fw_dynamic puts the kernel at RAM + 2M), measured by the riscv64 oracle from
kallsyms and /proc/iomem; a boot record's ``image`` replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from rofolio.arch.kernel import KFENCE_POOL_SIZE
from rofolio.errors import ConfigError
from rofolio.kversion import DEFAULT_KERNEL, KernelVersion
from rofolio.physmem import MemoryMap, check_ram
from rofolio.units import PAGE_SIZE, GiB, Level, align_down, align_up

__all__ = [
    "IMAGE_SYMBOLS",
    "KFENCE_POOL_SIZE",
    "PAGE_OFFSETS",
    "Riscv64Config",
    "Riscv64KernelImage",
    "Riscv64Layout",
    "RodataSetting",
    "set_debug_rodata",
]

# asm/page.h: PAGE_OFFSET_L3 / _L4 / _L5, chosen by set_satp_mode() at boot
PAGE_OFFSETS = {39: 0xFFFFFFD600000000, 48: 0xFFFFAF8000000000, 57: 0xFF60000000000000}
PGDIR_SIZES = {39: Level.PUD.size, 48: Level.P4D.size, 57: Level.PGD.size}  # what one top-level entry maps
PTRS_PER_PGD = 512
SECTION_ALIGN = 2 << 20  # vmlinux.lds.S: SECTION_ALIGN is L1_CACHE_BYTES without STRICT_KERNEL_RWX, PMD_SIZE with
QEMU_IMAGE_OFFSET = 2 << 20  # OpenSBI fw_dynamic on QEMU virt: the kernel at RAM + 2M (measured: 0x80200000)
# asm/pgtable.h: KERNEL_LINK_ADDR, the top 2G of the address space on 64-bit; no KASLR offset is added: Debian's
# riscv64 config has CONFIG_RELOCATABLE off, which RANDOMIZE_BASE depends on (measured: _start at
# 0xffffffff80000000 on every riscv64 guest)
KERNEL_LINK_ADDR = 0xFFFFFFFF80000000
MODULES_SIZE = 2 << 30  # asm/pgtable.h: MODULES_VADDR = PFN_ALIGN(_end) - SZ_2G, MODULES_END = PFN_ALIGN(_start)

# vmlinux.lds.S symbol -> Riscv64KernelImage field: what a boot record's image holds on riscv64
IMAGE_SYMBOLS = {"_start": "start", "__init_begin": "init_begin", "__init_data_begin": "init_data_begin",
                 "__init_end": "init_end", "__start_rodata": "start_rodata", "_data": "data", "_end": "end"}


@dataclass(frozen=True, slots=True)
class Riscv64KernelImage:
    """Physical addresses of the vmlinux symbols the linear map treats apart (arch/riscv/kernel/vmlinux.lds.S).

    ``[_start, __init_data_begin)`` is the text alias (mapped read-only from the start), ``[__start_rodata,
    _data)`` the rodata alias (read-only at mark_rodata_ro()), ``[__init_begin, __init_end)`` what
    free_initmem() makes writable again.  ``__init_end`` need not be page aligned (set_kernel_memory()
    rounds the page count up).
    """

    start: int  # _start
    init_begin: int  # __init_begin
    init_data_begin: int  # __init_data_begin: the end of the text alias
    init_end: int  # __init_end
    start_rodata: int  # __start_rodata
    data: int  # _data: the end of the rodata alias
    end: int  # _end

    def __post_init__(self) -> None:
        order = [self.start, self.init_begin, self.init_data_begin, self.init_end, self.start_rodata, self.data,
                 self.end]
        if any(b < a for a, b in pairwise(order)):
            raise ValueError("kernel image sections must be in order")
        # setup_vm() (arch/riscv/mm/init.c) BUG()s unless the load address is PMD aligned, and vmlinux.lds.S puts
        # __init_begin, __init_data_begin, _data and (RO_DATA) __start_rodata on SECTION_ALIGN, 2M with
        # STRICT_KERNEL_RWX
        if any(v % SECTION_ALIGN for v in (self.start, self.init_begin, self.init_data_begin, self.start_rodata,
                                            self.data)):
            raise ValueError("_start, __init_begin, __init_data_begin, __start_rodata and _data must be 2M aligned")

    @classmethod
    def qemu_virt(cls, ram_start: int) -> Riscv64KernelImage:
        """Debian 7.2.13+deb14-riscv64's section offsets, loaded at ``ram_start`` + 2M."""
        load = ram_start + QEMU_IMAGE_OFFSET
        return cls(start=load, init_begin=load + 0xE00000, init_data_begin=load + 0x1000000,
                   init_end=load + 0x10C3CE8, start_rodata=load + 0x1200000, data=load + 0x2000000,
                   end=load + 0x23A0000)

    @property
    def reserved_end(self) -> int:
        """setup_bootmem(): the kernel's memblock reservation ends at _end rounded up to 2M (STRICT_KERNEL_RWX)."""
        return align_up(self.end, Level.PMD.size)

    # init.c setup_vm(): kernel_map.virt_addr = KERNEL_LINK_ADDR, kernel_map.size = _end - the load address
    def virt(self, pa: int) -> int:
        """The kernel mapping's address of a physical address of the image (``pa + va_kernel_pa_offset``)."""
        return pa - self.start + KERNEL_LINK_ADDR

    def is_kernel_mapping(self, va: int) -> bool:
        """is_kernel_mapping() (asm/page.h): [kernel_map.virt_addr, + kernel_map.size)."""
        return KERNEL_LINK_ADDR <= va < KERNEL_LINK_ADDR + self.end - self.start

    def kernel_mapping_va_to_pa(self, va: int) -> int:
        """kernel_mapping_va_to_pa() (asm/page.h), which __pa_symbol() and so lm_alias() use."""
        return va - KERNEL_LINK_ADDR + self.start

    def is_module_addr(self, va: int) -> bool:
        """The module part of is_vmalloc_or_module_addr() (mm/vmalloc.c): [MODULES_VADDR, MODULES_END), the 2G
        below the image's mapping."""
        return align_up(self.virt(self.end), PAGE_SIZE) - MODULES_SIZE <= va < align_up(self.virt(self.start),
                                                                                            PAGE_SIZE)


@dataclass(frozen=True, slots=True)
class RodataSetting:
    """rodata_enabled after the command line, and any pr_warn it caused."""

    enabled: bool
    warning: str | None = None


def set_debug_rodata(arg: str | None) -> RodataSetting:
    """init/main.c set_debug_rodata(): riscv has no arch_parse_debug_rodata(), so only "on" and "off" parse;
    anything else warns and keeps the default (enabled)."""
    if arg is None or arg == "on":
        return RodataSetting(True)
    if arg == "off":
        return RodataSetting(False)
    return RodataSetting(True, f"Invalid option string for rodata: '{arg}'")


@dataclass(frozen=True, slots=True)
class Riscv64Layout:
    """The kernel's virtual layout for one satp mode (asm/page.h, asm/pgtable.h)."""

    sv: int
    phys_ram_base: int

    @property
    def page_offset(self) -> int:
        return PAGE_OFFSETS[self.sv]

    @property
    def pgdir_size(self) -> int:
        return PGDIR_SIZES[self.sv]

    @property
    def kern_virt_size(self) -> int:
        """KERN_VIRT_SIZE: half of the kernel half of the address space, i.e. (PTRS_PER_PGD / 2 * PGDIR_SIZE) / 2."""
        return PTRS_PER_PGD // 2 * self.pgdir_size // 2

    @property
    def vmalloc_start(self) -> int:
        """VMALLOC_START = PAGE_OFFSET - VMALLOC_SIZE, VMALLOC_SIZE = KERN_VIRT_SIZE / 2; VMALLOC_END = PAGE_OFFSET."""
        return self.page_offset - self.kern_virt_size // 2

    @property
    def levels(self) -> tuple[Level, ...]:
        """The levels a walk visits, top first (the top one printed by ptdump as PGD)."""
        return {39: (Level.PUD, Level.PMD, Level.PTE), 48: (Level.P4D, Level.PUD, Level.PMD, Level.PTE),
                57: (Level.PGD, Level.P4D, Level.PUD, Level.PMD, Level.PTE)}[self.sv]

    def va(self, pa: int) -> int:
        """linear_mapping_pa_to_va(): pa + va_pa_offset, va_pa_offset = PAGE_OFFSET - phys_ram_base."""
        return pa - self.phys_ram_base + self.page_offset

    def pa(self, va: int) -> int:
        return va - self.page_offset + self.phys_ram_base

    def is_linear_mapping(self, va: int) -> bool:
        """is_linear_mapping() (asm/page.h): [PAGE_OFFSET, PAGE_OFFSET + KERN_VIRT_SIZE)."""
        return self.page_offset <= va < self.page_offset + self.kern_virt_size

    def is_vmalloc_addr(self, va: int) -> bool:
        """is_vmalloc_or_module_addr() for the vmalloc part: [VMALLOC_START, VMALLOC_END)."""
        return self.vmalloc_start <= va < self.page_offset


@dataclass(frozen=True, slots=True)
class Riscv64Config:
    """A riscv64 machine (4K pages; Sv39, Sv48 or Sv57 as the CPU and the command line leave it).

    ``sv`` is the satp mode set_satp_mode() settles on (QEMU 7.2's virt CPU: Sv48); ``kfence`` is
    CONFIG_KFENCE (the pool is mapped with 4K pages at boot whatever the sample interval), and
    ``kfence_sample_interval`` 0 leaves the pool's guard pages mapped (kfence_init() gives up, as
    Debian's config does).  ``memory`` is what the machine has; the kernel keeps only what fits the linear
    map (``usable``).  A ``reserved`` range is a device-tree no-map region inside DRAM: never mapped, but it
    can be where DRAM starts.
    """

    memory: MemoryMap
    sv: int = 48
    rodata: str | None = None
    debug_pagealloc: bool = False
    kfence: bool = False
    kfence_sample_interval: int = 100  # CONFIG_KFENCE_SAMPLE_INTERVAL's default
    nr_cpus: int = 8
    kernel: KernelVersion = DEFAULT_KERNEL
    image: Riscv64KernelImage | None = None
    kfence_pool: int | None = None  # where memblock put the pool (a boot record); the model's choice if None
    layout: Riscv64Layout = field(init=False)
    rodata_setting: RodataSetting = field(init=False)
    usable: MemoryMap = field(init=False)
    capped: int | None = field(init=False)  # setup_bootmem(): the first physical address removed, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", KernelVersion.parse(self.kernel))
        if self.sv not in PAGE_OFFSETS:
            raise ConfigError(f"Sv{self.sv} is not a riscv64 paging mode", "give sv = 39, 48 or 57")
        if not 1 <= self.nr_cpus <= 256:
            raise ConfigError(f"{self.nr_cpus} CPUs is not a possible machine", "give 1 to 256 CPUs (NR_CPUS)")
        self.memory.check_page_aligned()
        check_ram(self.memory.total_ram)
        # setup_bootmem(): phys_ram_base = memblock_start_of_DRAM() & PMD_MASK, before
        # early_init_fdt_scan_reserved_mem() marks the device tree's no-map regions (a "reserved" range here),
        # which stay in memblock.memory (drivers/of/of_reserved_mem.c: memblock_mark_nomap()): they count
        layout = Riscv64Layout(self.sv, align_down(self.memory.ranges[0].start, Level.PMD.size))
        object.__setattr__(self, "layout", layout)
        # setup_bootmem(): RAM past __pa(PAGE_OFFSET) + KERN_VIRT_SIZE is cut off with a pr_warn
        limit = layout.phys_ram_base + layout.kern_virt_size
        object.__setattr__(self, "usable", self.memory.ram_below(limit))
        object.__setattr__(self, "capped", limit if self.memory.ram[-1].end > limit else None)
        image = self.image or Riscv64KernelImage.qemu_virt(self.memory.ram[0].start)
        if not self.usable.is_ram(image.start, image.reserved_end):
            raise ConfigError(f"the kernel image [{image.start:#x}, {image.reserved_end:#x}) is not in RAM",
                              "load the image inside one RAM range")
        object.__setattr__(self, "image", image)
        if self.kfence_pool is not None and (self.kfence_pool % PAGE_SIZE or not self.usable.is_ram(
                self.kfence_pool, self.kfence_pool + KFENCE_POOL_SIZE)):
            raise ConfigError(f"a KFENCE pool at {self.kfence_pool:#x} is not 2M of page-aligned RAM",
                              "give the pool's physical address from the boot")
        if self.kfence_sample_interval < 0:
            raise ConfigError("kfence.sample_interval cannot be negative", "give 0 (off) or milliseconds")
        object.__setattr__(self, "rodata_setting", set_debug_rodata(self.rodata))

    @property
    def kernel_image(self) -> Riscv64KernelImage:
        assert self.image is not None
        return self.image

    @classmethod
    def qemu_virt(cls, mem: int = 8 * GiB, **options: object) -> Riscv64Config:
        """A QEMU ``virt`` machine: one RAM bank from 2 GiB."""
        return cls(memory=MemoryMap.flat(mem, base=2 * GiB), **options)  # type: ignore[arg-type]
