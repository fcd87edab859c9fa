"""riscv page-table entry bits and the tests the kernel applies to them.

The bit values are the Sv39/Sv48/Sv57 PTE layout (asm/pgtable-bits.h); the kernel protections are
asm/pgtable.h's.  The *software* tests differ by level, and they are not the hardware's: a CPU walk
uses only the V bit, while ``pte_present()`` also counts _PAGE_PROT_NONE, which is the Global bit, and
``pmd_present()`` (with THP) also counts the R/W/X leaf bits.  So a kernel PTE whose V bit was cleared
(set_direct_map_invalid_noflush(), DEBUG_PAGEALLOC) still reads as present to software, while the CPU
faults on it.
"""

from __future__ import annotations

from rofolio.arch.kernel import LeafLookup
from rofolio.units import Level

__all__ = [
    "PAGE_KERNEL", "PAGE_KERNEL_EXEC", "PAGE_KERNEL_READ", "PAGE_KERNEL_READ_EXEC", "PAGE_TABLE", "RISCV",
    "RiscvLookup", "entry_leaf", "entry_present", "pte_none",
]


class RISCV:
    """_PAGE_* bits of a leaf entry (asm/pgtable-bits.h)."""

    PRESENT = 1 << 0  # V
    READ = 1 << 1
    WRITE = 1 << 2
    EXEC = 1 << 3
    USER = 1 << 4
    GLOBAL = 1 << 5
    ACCESSED = 1 << 6
    DIRTY = 1 << 7
    SOFT = 3 << 8  # RSW
    LEAF = READ | WRITE | EXEC  # asm/pgtable-bits.h: a valid entry with none of R/W/X points to a table
    PROT_NONE = GLOBAL  # asm/pgtable-bits.h: not-present user pages are told from swap entries by it
    PFN_SHIFT = 10
    FLAGS_MASK = (1 << PFN_SHIFT) - 1  # the bits below the PFN; Svpbmt/Svnapot bits above it are not modelled


# asm/pgtable.h: the kernel's protections (no memory-type bits: PMA, no Svpbmt override)
PAGE_KERNEL = (RISCV.READ | RISCV.WRITE | RISCV.PRESENT | RISCV.ACCESSED | RISCV.DIRTY | RISCV.GLOBAL)
PAGE_KERNEL_READ = PAGE_KERNEL & ~RISCV.WRITE
PAGE_KERNEL_EXEC = PAGE_KERNEL | RISCV.EXEC
PAGE_KERNEL_READ_EXEC = PAGE_KERNEL_READ | RISCV.EXEC
PAGE_TABLE = RISCV.PRESENT  # a pointer to the next table: V alone


def pte_none(val: int) -> bool:
    """pte_none(): the entry is all zero."""
    return val == 0


def entry_present(level: Level, val: int) -> bool:
    """p?d_present() for a leaf's bits at ``level`` (asm/pgtable.h, pgtable-64.h).

    pte_present(): V or PROT_NONE (= G); pmd_present() with CONFIG_TRANSPARENT_HUGEPAGE: V, PROT_NONE or any
    of R/W/X (so a huge entry whose V bit THP splitting cleared still counts); pud_present() and
    p4d_present(): V only.
    """
    if level == Level.PTE:
        return bool(val & (RISCV.PRESENT | RISCV.PROT_NONE))
    if level == Level.PMD:
        return bool(val & (RISCV.PRESENT | RISCV.PROT_NONE | RISCV.LEAF))
    return bool(val & RISCV.PRESENT)


def entry_leaf(level: Level, val: int) -> bool:
    """p?d_leaf(): present by the level's own test and any of R/W/X set (pte_leaf() for a PTE).  riscv defines
    no p4d_leaf() or pgd_leaf(), so the generic ones (include/linux/pgtable.h) say no at those levels."""
    if level >= Level.P4D:
        return False
    return entry_present(level, val) and bool(val & RISCV.LEAF)


class RiscvLookup(LeafLookup):
    """The leaf for an address as a riscv CPU walks it: V decides presence, W writes."""

    __slots__ = ()

    @property
    def present(self) -> bool:
        return bool(self.flags & RISCV.PRESENT)

    @property
    def writable(self) -> bool:
        return self.present and bool(self.flags & RISCV.WRITE)
