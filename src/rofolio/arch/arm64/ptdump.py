"""arm64 ptdump text, in the layout of /sys/kernel/debug/kernel_page_tables (arch/arm64/mm/ptdump.c).

``note_page()`` starts a new line when the level changes or when the entry's
bits under the mask of every ``pte_bits[]`` field change; each line is
``0x%016lx-0x%016lx   `` then the size as ``%9lu%c`` (K/M/G/T/P/E, shifted
while it divides by 1024), the level name, and for a non-zero prot every
field's ``set`` or ``clear`` string, each after one space.  With 4K pages and
48-bit VAs the P4D level is folded, so top-level entries print as "PGD".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.arm64.prot import ARM64, attrindx
from rofolio.pagetable import walk_entries
from rofolio.units import Level

if TYPE_CHECKING:
    from rofolio.arch.arm64.kernel import Arm64Kernel

__all__ = [
    "LEVEL_NAMES", "PROT_MASK", "WALK_LEVELS", "dump_prot", "format_size", "note_lines", "ptdump_lines", "sections",
]

# pte_bits[]: (mask, val, set, clear)
PTE_BITS: tuple[tuple[int, int, str, str | None], ...] = (
    (ARM64.VALID, ARM64.VALID, " ", "F"),
    (ARM64.USER, ARM64.USER, "USR", "   "),
    (ARM64.RDONLY, ARM64.RDONLY, "ro", "RW"),
    (ARM64.PXN, ARM64.PXN, "NX", "x "),
    (ARM64.SHARED, ARM64.SHARED, "SHD", "   "),
    (ARM64.AF, ARM64.AF, "AF", "  "),
    (ARM64.NG, ARM64.NG, "NG", "  "),
    (ARM64.CONT, ARM64.CONT, "CON", "   "),
    (ARM64.TYPE_MASK, ARM64.TYPE_SECT, "BLK", "   "),
    (ARM64.UXN, ARM64.UXN, "UXN", "   "),
    (ARM64.GP, ARM64.GP, "GP", "  "),
    (ARM64.ATTRINDX_MASK, attrindx(ARM64.MT_DEVICE_nGnRnE), "DEVICE/nGnRnE", None),
    (ARM64.ATTRINDX_MASK, attrindx(ARM64.MT_DEVICE_nGnRE), "DEVICE/nGnRE", None),
    (ARM64.ATTRINDX_MASK, attrindx(ARM64.MT_NORMAL_NC), "MEM/NORMAL-NC", None),
    (ARM64.ATTRINDX_MASK, attrindx(ARM64.MT_NORMAL), "MEM/NORMAL", None),
    (ARM64.ATTRINDX_MASK, attrindx(ARM64.MT_NORMAL_TAGGED), "MEM/NORMAL-TAGGED", None),
)
PROT_MASK = 0
for _mask, *_ in PTE_BITS:
    PROT_MASK |= _mask  # ptdump_initialize(): the union of every field's mask

LEVEL_NAMES = {Level.P4D: "PGD", Level.PUD: "PUD", Level.PMD: "PMD", Level.PTE: "PTE"}
WALK_LEVELS = (Level.P4D, Level.PUD, Level.PMD, Level.PTE)


def dump_prot(prot: int) -> str:
    """dump_prot(): " set" or " clear" for each field (nothing when the string is NULL)."""
    out = []
    for mask, val, set_str, clear_str in PTE_BITS:
        s = set_str if prot & mask == val else clear_str
        if s is not None:
            out.append(" " + s)
    return "".join(out)


def format_size(nbytes: int) -> str:
    """delta = size >> 10 with unit 'K', then ``while (!(delta & 1023) && unit[1])`` shift; '%9lu%c'."""
    units = "KMGTPE"
    delta = nbytes >> 10
    unit = 0
    while not delta & 1023 and unit < len(units) - 1:
        delta >>= 10
        unit += 1
    return f"{delta:9d}{units[unit]}"


def note_lines(k: Arm64Kernel, start: int, end: int) -> list[str]:
    """The lines note_page() prints for ``[start, end)``: entries merged by level and masked prot."""
    lines: list[str] = []
    current: list | None = None  # [start, end, level, prot]
    for s, e, level, flags in walk_entries(k.pt, start, end, WALK_LEVELS):
        prot = 0 if flags is None else flags & PROT_MASK
        if current is not None and current[1] == s and current[2] == level and current[3] == prot:
            current[1] = e
            continue
        if current is not None:
            lines.append(_line(*current))
        current = [s, e, level, prot]
    if current is not None:
        lines.append(_line(*current))
    return lines


def _line(start: int, end: int, level: Level, prot: int) -> str:
    text = f"0x{start:016x}-0x{end:016x}   {format_size(end - start)} {LEVEL_NAMES[level]}"
    return text + dump_prot(prot) if prot else text


def sections(k: Arm64Kernel) -> list[tuple[str, str, int, int]]:
    """(name, start marker, end marker, start, end) of the address ranges the model holds."""
    lay = k.layout
    vmemmap_start = (-(1 << (48 - 6))) & ((1 << 64) - 1)  # VMEMMAP_START, VMEMMAP_SHIFT = 12 - 6
    vmalloc_end = vmemmap_start - (256 << 20)  # VMALLOC_END = VMEMMAP_START - SZ_256M
    return [
        ("Linear Mapping", "Linear Mapping start", "Linear Mapping end", lay.page_offset, lay.page_end),
        ("vmalloc", "vmalloc() area", "vmalloc() end", lay.vmalloc_start, vmalloc_end),
    ]


def ptdump_lines(k: Arm64Kernel, which: tuple[str, ...] = ("Linear Mapping",)) -> list[str]:
    """The ptdump text of the chosen sections (all modelled sections if ``which`` is empty)."""
    out: list[str] = []
    for name, first, last, start, end in sections(k):
        if which and name not in which:
            continue
        out.append(f"---[ {first} ]---")
        out.extend(note_lines(k, start, end))
        out.append(f"---[ {last} ]---")
    return out
