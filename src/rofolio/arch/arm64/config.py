"""What an arm64 machine is: memory map, CPU features, command line, kernel version.

The memory map defaults to QEMU's ``virt`` board (RAM from 1 GiB, built with
``MemoryMap.flat(mem, base=1 << 30)``).  The command-line ``rodata=`` string is
parsed the way the modelled kernel parses it: ``arch_parse_debug_rodata()``
(arch/arm64/include/asm/setup.h) accepts ``on``, ``off`` and ``noalias``;
anything else falls back to generic ``set_debug_rodata()`` (init/main.c), which
warns and keeps the defaults (``rodata_enabled`` and ``rodata_full`` true) for
every string but "on"/"off".  So ``rodata=full`` is now an invalid option that
behaves like the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rofolio.arch.kernel import KFENCE_POOL_SIZE
from rofolio.errors import ConfigError
from rofolio.kversion import DEFAULT_KERNEL, Gate, KernelVersion, register
from rofolio.physmem import MemoryMap, check_ram
from rofolio.units import PAGE_SIZE, GiB, Level, align_down, format_size

__all__ = [
    "ARM64_LINEAR_ALIAS_SERIES", "ARM64_MIN_KERNEL", "KFENCE_POOL_SIZE", "Arm64Config", "Arm64Layout", "KfenceMode",
    "RodataSetting", "set_debug_rodata",
]

# The model follows arch/arm64/mm/{mmu,pageattr}.c with BBML2_NOABORT block mappings under
# rodata=full (arch/arm64/mm/mmu.c, map_mem()/linear_map_split_to_ptes()) and the on/off/noalias
# parser ("arm64: refactor the rodata=xxx", Huang Shijie, v7 of 9 Sep 2025).
# Since commit a166563e7ec3 ("arm64: mm: support large block mapping when rodata=full") (v6.18);
# older kernels are not modelled (docs/fidelity.md, arm64).
ARM64_LARGE_BLOCKS_RODATA_FULL = register(Gate(
    "arm64-large-blocks-rodata-full", KernelVersion(6, 18), "a166563e7ec3",
    "arm64: mm: support large block mapping when rodata=full"))
ARM64_MIN_KERNEL = ARM64_LARGE_BLOCKS_RODATA_FULL.mainline

# Kernel "invalid" entries use the present-invalid encoding, pageattr uses p?d_leaf()
# (arch/arm64/mm/pageattr.c, __change_memory_common()/set_direct_map_invalid_noflush()), and
# split_pmd()/split_pud() keep an invalid block's children invalid (arch/arm64/mm/mmu.c).
# Commit 15bfba1ad77f ("arm64: mm: Handle invalid large leaf mappings correctly"), merged for v7.1
# (arm64 for-next/core, April 2026) and in stable 7.0.1 (cbea627ea634, Linux 7.0.1 of 22 April 2026).
# It was queued for 6.18.y too; the release that carries it was not established, so 6.18 is without it.
ARM64_PRESENT_INVALID = register(Gate(
    "arm64-present-invalid", KernelVersion(7, 1), "15bfba1ad77f",
    "arm64: mm: Handle invalid large leaf mappings correctly", backports={(7, 0): 1}))
ARM64_PRESENT_INVALID_KERNEL = ARM64_PRESENT_INVALID.mainline

# map_mem() maps the kernel's linear alias first, with the linear map's own flags (PTEs when
# force_pte_mapping(), blocks and PTE_CONT otherwise), then all of RAM over it, keeping existing tables and
# any PTE_CONT group that already holds a valid non-contiguous entry; update_mapping_prot() goes through the
# same builder (PTE_CONT allowed); pgattr_change_is_safe() no longer refuses PTE_CONT entries; mark_rodata_ro()
# makes the linear alias of [__init_end, __bss_stop) read-only (arch/arm64/mm/mmu.c as Linux 7.2 has it).
# Patches 1-11 of Ard Biesheuvel's "arm64: Unmap linear alias of kernel data/bss" (v6, 26 May 2026,
# <20260526175846.2694125-17-ardb+git@google.com>), in v7.2; the mainline commit ids were not established here.
ARM64_LINEAR_ALIAS_SERIES = register(Gate(
    "arm64-linear-alias-data-ro", KernelVersion(7, 2), "(series)",
    "arm64: Unmap linear alias of kernel data/bss (patches 1-11)",
    note="20260526175846.2694125-17-ardb+git@google.com; commit ids not established"))

VA_BITS = 48
PAGE_OFFSET = (-(1 << VA_BITS)) & ((1 << 64) - 1)  # _PAGE_OFFSET(48) = 0xffff000000000000
PAGE_END = (-(1 << (VA_BITS - 1))) & ((1 << 64) - 1)  # _PAGE_END(48) = 0xffff800000000000
MODULES_VSIZE = 2 * GiB
ARM64_MEMSTART_ALIGN = Level.PUD.size  # kernel-pgtable.h: PUD_SHIFT for 4K (> SECTION_SIZE_BITS)


class KfenceMode(StrEnum):
    """How KFENCE gets its pool: not built, from memblock in map_mem(), or later at runtime."""

    NONE = "none"  # CONFIG_KFENCE=n
    EARLY = "early"  # kfence_early_init: CONFIG_KFENCE_SAMPLE_INTERVAL != 0, or kfence.sample_interval=N
    LATE = "late"  # kfence.sample_interval=0 at boot: the pool comes later (kfence_init_late)


@dataclass(frozen=True, slots=True)
class RodataSetting:
    """rodata_enabled / rodata_full after the command line, and any pr_warn it caused."""

    enabled: bool
    full: bool
    warning: str | None = None


def set_debug_rodata(arg: str | None) -> RodataSetting:
    """init/main.c set_debug_rodata() with arm64's arch_parse_debug_rodata() (asm/setup.h).

    Defaults: rodata_enabled = true (init/main.c), rodata_full = true (pageattr.c).
    """
    if arg is None:  # no rodata= on the command line
        return RodataSetting(True, True)
    # arch_parse_debug_rodata()
    if arg == "on":
        return RodataSetting(True, True)
    if arg == "off":
        return RodataSetting(False, False)
    if arg == "noalias":
        return RodataSetting(True, False)
    # set_debug_rodata(): the generic fallback only knows "on" and "off", handled above
    return RodataSetting(True, True, f"Invalid option string for rodata: '{arg}'")


@dataclass(frozen=True, slots=True)
class Arm64Layout:
    """Kernel virtual address layout for 4K pages and 48-bit VAs (arch/arm64/include/asm/memory.h)."""

    phys_offset: int  # memstart_addr: RAM start rounded down to ARM64_MEMSTART_ALIGN
    page_offset: int = PAGE_OFFSET
    page_end: int = PAGE_END
    modules_vaddr: int = PAGE_END  # MODULES_VADDR = _PAGE_END(VA_BITS_MIN)
    vmalloc_start: int = PAGE_END + MODULES_VSIZE  # VMALLOC_START = MODULES_END (= KIMAGE_VADDR)

    def va(self, pa: int) -> int:
        """__phys_to_virt(): ((pa - PHYS_OFFSET) | PAGE_OFFSET)."""
        return (pa - self.phys_offset) | self.page_offset

    def pa(self, va: int) -> int:
        """__lm_to_phys() of a linear-map address."""
        return (va & ~self.page_offset) + self.phys_offset


@dataclass(frozen=True, slots=True)
class Arm64Config:
    """An arm64 machine description (4K granule, 48-bit VA, 4-level tables).

    ``bbml2`` is the boot CPU's BBML2_NOABORT (``cpu_supports_bbml2_noabort()``);
    ``secondary_without_bbml2`` says at least one secondary CPU lacks it, so the
    system capability is false once features are finalized.  ``tlb_range`` is
    FEAT_TLBIRANGE; ``ng_mappings`` is arm64_use_ng_mappings (KPTI: kernel
    mappings non-global from the start).  The linear map is Normal-Tagged with or without MTE
    (``map_mem()`` uses ``pgprot_tagged()`` unconditionally; MTE only changes what MAIR says for
    that index), so MTE is not a machine option.
    """

    memory: MemoryMap
    granule: int = PAGE_SIZE
    rodata: str | None = None
    debug_pagealloc: bool = False
    kfence: KfenceMode = KfenceMode.NONE
    realm: bool = False
    bbml2: bool = False
    secondary_without_bbml2: bool = False
    nr_cpus: int = 8
    kernel: KernelVersion = DEFAULT_KERNEL
    tlb_range: bool = False
    ng_mappings: bool = False
    layout: Arm64Layout = field(init=False)
    rodata_setting: RodataSetting = field(init=False)
    usable: MemoryMap = field(init=False)  # the RAM arm64_memblock_init() keeps: what the linear map can cover

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", KernelVersion.parse(self.kernel))
        object.__setattr__(self, "kfence", KfenceMode(self.kfence))
        if self.granule != PAGE_SIZE:
            raise ConfigError(
                f"the {format_size(self.granule)} granule is not modelled",
                "use the 4K granule; 16K/64K need other level sizes than rofolio.units provides",
            )
        if self.kernel < ARM64_MIN_KERNEL:
            raise ConfigError(
                f"the arm64 model starts at kernel {ARM64_MIN_KERNEL}, not {self.kernel}",
                f"use {ARM64_MIN_KERNEL} or newer (BBML2 block mappings and rodata=on/noalias)",
            )
        if not 1 <= self.nr_cpus <= 4096:
            raise ConfigError(f"{self.nr_cpus} CPUs is not a possible machine", "give 1 to 4096 CPUs")
        if self.secondary_without_bbml2 and self.nr_cpus < 2:
            raise ConfigError("a secondary CPU without BBML2 needs a second CPU", "set nr_cpus to 2 or more")
        self.memory.check_page_aligned()
        check_ram(self.memory.total_ram)
        phys_offset = align_down(self.memory.ram[0].start, ARM64_MEMSTART_ALIGN)
        layout = Arm64Layout(phys_offset)
        # arm64_memblock_init() (arch/arm64/mm/init.c): RAM past memstart_addr + the linear region's size (past
        # the PA size first, which 48-bit PAs put further out) is removed with a pr_warn; the image is at the bottom
        object.__setattr__(self, "usable", self.memory.ram_below(phys_offset + layout.page_end - layout.page_offset))
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "rodata_setting", set_debug_rodata(self.rodata))

    # ---------------------------------------------------------------- derived
    @property
    def capped(self) -> bool:
        """arm64_memblock_init() removed RAM the linear map cannot cover (and warned)."""
        return self.usable.total_ram < self.memory.total_ram

    @property
    def rodata_full(self) -> bool:
        return self.rodata_setting.full

    @property
    def kfence_early_init(self) -> bool:
        """kfence_early_init (mmu.c): CONFIG_KFENCE with a non-zero sample interval at boot."""
        return self.kfence is KfenceMode.EARLY

    @property
    def arm64_kfence_can_set_direct_map(self) -> bool:
        """arm64_kfence_can_set_direct_map() (asm/kfence.h): CONFIG_KFENCE && !kfence_early_init."""
        return self.kfence is KfenceMode.LATE

    @property
    def system_supports_bbml2_noabort(self) -> bool:
        """The system capability, once every CPU has been checked."""
        return self.bbml2 and not self.secondary_without_bbml2

    @property
    def linear_alias_series(self) -> bool:
        """map_mem()/update_mapping_prot()/mark_rodata_ro() as the v7.2 linear-alias series left them."""
        return ARM64_LINEAR_ALIAS_SERIES.applies(self.kernel)

    @property
    def present_invalid_encoding(self) -> bool:
        """Kernel invalid entries are present-invalid (15bfba1ad77f: v7.1, stable 7.0.1)."""
        return ARM64_PRESENT_INVALID.applies(self.kernel)

    @classmethod
    def qemu_virt(cls, mem: int = 4 * GiB, **options: object) -> Arm64Config:
        """A QEMU ``virt`` machine: one RAM bank from 1 GiB."""
        return cls(memory=MemoryMap.flat(mem, base=1 << 30), **options)  # type: ignore[arg-type]
