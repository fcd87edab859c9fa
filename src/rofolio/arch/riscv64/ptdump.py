"""riscv64 ptdump text, in the layout of /sys/kernel/debug/kernel_page_tables (arch/riscv/mm/ptdump.c).

``note_page()`` starts a new line when the level or the entry's bits under the level's mask change (not
when the physical address jumps); a line is ``0x%016lx-0x%016lx   `` then `` 0x%016lx `` (the first
entry's physical address), the size as ``%9lu%c`` (K/M/G/..., shifted while it divides by 1024), the
level's name (PGD, P4D, PUD, PMD, PTE with five configured levels), then for every ``pte_bits[]`` field
one space and its set or clear string.  Holes print nothing.  Only the Svnapot, Svpbmt and RSW fields are
never set in the model (their clear strings are printed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.riscv64.pgtable import RISCV, entry_leaf
from rofolio.pagetable import walk_entries
from rofolio.units import Level

if TYPE_CHECKING:
    from rofolio.arch.riscv64.kernel import Riscv64Kernel

__all__ = ["LEVEL_NAMES", "dump_prot", "format_line", "ptdump_lines"]

# pte_bits[]: (mask, set, clear), after the N, MT and RSW fields, which the model never sets
PTE_BITS = ((RISCV.DIRTY, "D"), (RISCV.ACCESSED, "A"), (RISCV.GLOBAL, "G"), (RISCV.USER, "U"), (RISCV.EXEC, "X"),
            (RISCV.WRITE, "W"), (RISCV.READ, "R"), (RISCV.PRESENT, "V"))
LEVEL_NAMES = {Level.PGD: "PGD", Level.P4D: "P4D", Level.PUD: "PUD", Level.PMD: "PMD", Level.PTE: "PTE"}


def dump_prot(prot: int) -> str:
    """dump_prot(): " set" or " clear" for each field."""
    fields = [".", "  ..  ", "  ..  "]  # _PAGE_NAPOT, _PAGE_MTMASK_SVPBMT, _PAGE_SOFT: clear
    fields += [s if prot & mask else "." for mask, s in PTE_BITS]
    return "".join(" " + f for f in fields)


def _size(nbytes: int) -> str:
    """dump_addr()'s size: kB, then shifted by 1024 while it divides."""
    units, delta, i = "KMGTPE", nbytes >> 10, 0
    while not delta & 1023 and i < len(units) - 1:
        delta >>= 10
        i += 1
    return f"{delta:9d}{units[i]}"


def format_line(start: int, end: int, pa: int, level: Level, prot: int) -> str:
    return f"0x{start:016x}-0x{end:016x}    0x{pa:016x} {_size(end - start)} {LEVEL_NAMES[level]}{dump_prot(prot)}"


def ptdump_lines(k: Riscv64Kernel, sections: tuple[str, ...] | None = None) -> list[str]:
    """The "Linear mapping" section: [PAGE_OFFSET, PAGE_OFFSET + KERN_VIRT_SIZE), every non-hole line.

    note_page() prints a line when the next note brings another level or other bits, and ends it at that note's
    address.  An upper entry that is neither none nor a leaf by ``p?d_leaf()`` (a 1G leaf whose V bit was
    cleared: pud_leaf() needs V) is passed over without a note (mm/ptdump.c ptdump_pud_entry() notes leaves only;
    mm/pagewalk.c walk_pud_range() does not descend below a non-present entry), so it belongs to the line before
    it, whatever comes after.
    """
    lo = k.layout.page_offset
    hi = lo + k.layout.kern_virt_size
    out = ["---[ Linear mapping ]---"]
    line: tuple[int, Level, int, int] | None = None  # the start, level, bits and first PA of the open line
    for start, _end, level, flags in walk_entries(k.pt, lo, hi, k.layout.levels):
        if flags is not None and level > Level.PTE and not entry_leaf(level, flags):
            continue
        prot = (flags or 0) & RISCV.FLAGS_MASK
        if line is not None and (line[1], line[2]) == (level, prot):
            continue
        if line is not None and line[2]:  # a hole (prot 0) is never printed
            out.append(format_line(line[0], start, line[3], line[1], line[2]))
        found = k.lookup(start) if prot else None
        line = (start, level, prot, found.pfn << 12 if found is not None else 0)
    if line is not None and line[2]:
        out.append(format_line(line[0], hi, line[3], line[1], line[2]))
    return out
