"""The x86-64 kernel image in RAM: its sections, its high mapping and its direct-map alias.

The image is mapped twice (comment above ``highmap_start_pfn()`` in
arch/x86/mm/pat/set_memory.c): at ``__START_KERNEL_map`` (the "high kernel
map", where the kernel executes) and in the direct map at ``PAGE_OFFSET + pa``.
Section boundaries are physical addresses; the defaults are those of Debian's
6.1.0 amd64 kernel booted without KASLR (loaded at CONFIG_PHYSICAL_START =
16 MiB), read from its /proc/kallsyms under the QEMU oracle.  A later kernel's
sections differ a little; what the model derives from them (which 2M pages
hold a section boundary) changes only where a boundary moves across one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from rofolio.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_up

__all__ = ["KernelImage"]


@dataclass(frozen=True, slots=True)
class KernelImage:
    """Physical addresses of the section symbols of vmlinux (arch/x86/kernel/vmlinux.lds.S).

    Defaults: Debian 6.1.0-57-amd64 (6.1.192) without KASLR, from the guest's
    /proc/kallsyms (phys_base = 0, so phys = VA - __START_KERNEL_map).
    """

    text: int = 0x1000000  # _text
    etext: int = 0x1E01D32  # _etext
    start_rodata: int = 0x2000000  # __start_rodata (2M aligned on x86-64)
    end_rodata: int = 0x28EB000  # __end_rodata
    end_rodata_hpage_align: int = 0x2A00000  # __end_rodata_hpage_align
    sdata: int = 0x2A00000  # _sdata
    init_begin: int = 0x3044000  # __init_begin
    init_end: int = 0x3306000  # __init_end
    smp_locks_end: int = 0x330F000  # __smp_locks_end (__smp_locks starts at __init_end)
    bss_start: int = 0x3310000  # __bss_start
    bss_decrypted_unused: int = 0x4203000  # __start_bss_decrypted_unused
    bss_decrypted_end: int = 0x4400000  # __end_bss_decrypted
    bss_stop: int = 0x4400000  # __bss_stop
    brk_end: int = 0x4411000  # _brk_end (its value)
    end: int = 0x4430000  # _end
    idt_table: int = 0x3313000  # idt_table, page aligned in .bss
    empty_zero_page_bss: int = 0x3310000  # empty_zero_page in .bss..page_aligned (6.1 .. 2026)
    empty_zero_page_rodata: int = 0x2000000  # a `const` empty_zero_page lands in .rodata (Ard, 2026)
    # the size of .data..percpu (__per_cpu_end - __per_cpu_start): the guest's "percpu: Embedded 62 pages/cpu
    # s217088 r8192 d28672" (7.2.13: s221184); pcpu_embed_first_chunk() copies it into every CPU's unit
    percpu_static: int = 217088

    def zero_page(self, in_rodata: bool) -> int:
        """Physical address of empty_zero_page for the chosen placement."""
        return self.empty_zero_page_rodata if in_rodata else self.empty_zero_page_bss

    def highmap_pfns(self) -> tuple[int, int]:
        """[highmap_start_pfn(), highmap_end_pfn()] inclusive (set_memory.c __cpa_pfn_in_highmap)."""
        return self.text >> PAGE_SHIFT, (align_up(self.brk_end, PMD_SIZE) - 1) >> PAGE_SHIFT

    def rodata_pfns(self) -> tuple[int, int]:
        """The pfns protect_rodata() keeps read-only, inclusive (set_memory.c)."""
        return self.start_rodata >> PAGE_SHIFT, (self.end_rodata >> PAGE_SHIFT) - 1

    def sections(self) -> list[tuple[str, int, int]]:
        """(name, start, end) physical ranges, for reports."""
        return [
            ("text", self.text, self.etext),
            ("rodata", self.start_rodata, self.end_rodata),
            ("data", self.sdata, self.init_begin),
            ("init", self.init_begin, self.init_end),
            ("smp_locks", self.init_end, self.smp_locks_end),
            ("bss", self.bss_start, self.bss_stop),
            ("brk", self.bss_stop, self.brk_end),
        ]

    def __post_init__(self) -> None:
        order = [
            self.text, self.etext, self.start_rodata, self.end_rodata, self.end_rodata_hpage_align,
            self.sdata, self.init_begin, self.init_end, self.smp_locks_end, self.bss_start,
            self.bss_decrypted_unused, self.bss_decrypted_end, self.brk_end, self.end,
        ]
        if any(b < a for a, b in pairwise(order)) or self.text % PAGE_SIZE:
            raise ValueError("kernel image sections are out of order")
