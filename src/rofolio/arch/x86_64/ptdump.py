"""x86 ptdump text, in the layout of /sys/kernel/debug/page_tables/kernel.

Mirrors arch/x86/mm/dump_pagetables.c: ``note_page()`` prints one line per
run of entries with the same flags and level, as
``0x<start>-0x<end>   <size><unit> <flags> <level>``; ``printk_prot()`` prints
USR/RW|ro/PWT/PCD/PSE/PAT/GLB/NX|x columns, or blanks for a non-present entry.
Entries that are none are reported at the level where the walk found them.
"""

from __future__ import annotations

from rofolio.arch.x86_64.kernel import X86Kernel
from rofolio.pagetable import walk_entries
from rofolio.prot import X86
from rofolio.units import Level

__all__ = ["format_size", "level_name", "meminfo_lines", "printk_prot", "ptdump_lines", "sections"]

_UNITS = "BKMGTPE"


def printk_prot(flags: int | None, level: Level, la57: bool) -> str:
    """printk_prot(): the flag columns and the level name."""
    name = level_name(level, la57)
    if flags is None or not flags & X86.PRESENT:
        return " " * 30 + name
    out = ["USR " if flags & X86.USER else "    ", "RW " if flags & X86.RW else "ro ",
           "PWT " if flags & X86.PWT else "    ", "PCD " if flags & X86.PCD else "    "]
    # bit 7 is PSE above the PTE level and PAT at it: printk_prot() names it PSE only above
    out.append("PSE " if level > Level.PTE and flags & X86.PSE else "    ")
    pat = flags & X86.PAT if level == Level.PTE else flags & X86.PAT_LARGE
    out.append("PAT " if pat else "    ")
    out.append("GLB " if flags & X86.GLOBAL else "    ")
    out.append("NX " if flags & X86.NX else "x  ")
    return "".join(out) + name


def level_name(level: Level, la57: bool) -> str:
    """The kernel's level names; without 5-level paging the top (512G) entries are 'pgd'."""
    if level == Level.P4D and not la57:
        return "pgd"
    return level.entry_name


def format_size(delta: int) -> str:
    """note_page(): shift by 1024 while the size divides evenly, then '%9lu%c '."""
    unit = 0
    while delta and not delta & 1023 and unit < len(_UNITS) - 1:
        delta >>= 10
        unit += 1
    return f"{delta:9d}{_UNITS[unit]} "


def sections(k: X86Kernel) -> list[tuple[str, int, int]]:
    """The address-space sections the model holds, with the kernel's marker names."""
    lay = k.layout
    return [
        ("Low Kernel Mapping", lay.page_offset, lay.vmalloc_start),
        ("vmalloc() Area", lay.vmalloc_start, lay.vmalloc_end + 1),
        ("High Kernel Mapping", lay.start_kernel_map, lay.modules_vaddr),
    ]


def ptdump_lines(k: X86Kernel, which: tuple[str, ...] = ("Low Kernel Mapping",)) -> list[str]:
    """The ptdump text of the chosen sections (all modelled sections if ``which`` is empty)."""
    levels = (Level.PGD, Level.P4D, Level.PUD, Level.PMD, Level.PTE) if k.config.la57 else (
        Level.P4D, Level.PUD, Level.PMD, Level.PTE)
    out: list[str] = []
    for name, start, end in sections(k):
        if which and name not in which:
            continue
        out.append(f"---[ {name} ]---")
        for s, e, level, flags in walk_entries(k.pt, start, end, levels):
            out.append(f"0x{s:016x}-0x{e:016x}   {format_size(e - s)}{printk_prot(flags, level, k.config.la57)}")
    return out


def vmstat_lines(k: X86Kernel) -> dict[str, int]:
    """The direct_map_* lines of /proc/vmstat (mm/vmstat.c, CONFIG_X86): the splits, and the collapses from
    v6.15, whose commit 41d88484c71c ("x86/mm/pat: restore large ROX pages after fragmentation") added the
    DIRECT_MAP_LEVEL{2,3}_COLLAPSE events with CPA_COLLAPSE."""
    return {key: n for key, n in k.log.counters.vmstat().items() if k.cpa_collapse or "collapses" not in key}


def meminfo_lines(k: X86Kernel) -> list[str]:
    """arch_report_meminfo(): DirectMap4k/2M always, DirectMap1G only with direct_gbpages."""
    kb = k.log.counters.meminfo_kb()
    lines = [f"DirectMap4k:    {kb['DirectMap4k']:8d} kB", f"DirectMap2M:    {kb['DirectMap2M']:8d} kB"]
    if k.config.direct_gbpages:
        lines.append(f"DirectMap1G:    {kb['DirectMap1G']:8d} kB")
    return lines
