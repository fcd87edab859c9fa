"""Page-table entry protection bits.

x86-64 bits follow ``arch/x86/include/asm/pgtable_types.h``.  A protection
value in rofolio is a plain ``int`` holding the entry's flag bits (the kernel's
``pte_flags()``: the entry without its pfn), because protection arithmetic sits
on every hot path of the model and ``enum.IntFlag`` is too slow there.  Large
leaves carry ``PSE`` and keep their PAT bit at bit 12, exactly as the kernel
stores them, so that comparisons such as the same-protection shortcut in
``__should_split_large_page()`` compare the same values the kernel compares.
"""

from __future__ import annotations

__all__ = ["X86", "x86_4k_2_large", "x86_large_2_4k"]


class X86:
    """x86-64 page-table entry bits (arch/x86/include/asm/pgtable_types.h)."""

    PRESENT = 1 << 0
    RW = 1 << 1
    USER = 1 << 2
    PWT = 1 << 3
    PCD = 1 << 4
    ACCESSED = 1 << 5
    DIRTY = 1 << 6
    PSE = 1 << 7  # in a PMD/PUD: large leaf
    PAT = 1 << 7  # in a PTE: the PAT bit shares bit 7
    GLOBAL = 1 << 8
    SOFTW1 = 1 << 9
    SOFTW2 = 1 << 10
    SOFTW3 = 1 << 11
    PAT_LARGE = 1 << 12  # the PAT bit of a PMD/PUD leaf
    NX = 1 << 63

    CPA_TEST = SOFTW1  # _PAGE_CPA_TEST = _PAGE_BIT_SOFTW1 (cpa-test.c)
    KERNEL_4K = SOFTW3  # _PAGE_KERNEL_4K = _PAGE_BIT_SOFTW3 ("x86/mm/pat: restore large ROX pages")

    CACHE_MASK = PWT | PCD | PAT  # _PAGE_CACHE_MASK, in 4K format

    # __PAGE_KERNEL = __PP | __RW | ___A | __NX | ___D | ___G
    PAGE_KERNEL = PRESENT | RW | ACCESSED | DIRTY | GLOBAL | NX
    PAGE_KERNEL_RO = PRESENT | ACCESSED | GLOBAL | NX
    PAGE_KERNEL_EXEC = PRESENT | RW | ACCESSED | DIRTY | GLOBAL
    PAGE_KERNEL_ROX = PRESENT | ACCESSED | GLOBAL
    PAGE_KERNEL_LARGE = PAGE_KERNEL | PSE
    # _KERNPG_TABLE = __PP | __RW | ___A | ___D: the flags of an entry that points to a table
    KERNPG_TABLE = PRESENT | RW | ACCESSED | DIRTY
    PFN_MASK = ((1 << 52) - 1) & ~0xFFF  # PTE_PFN_MASK: __PHYSICAL_MASK & PAGE_MASK (52-bit physical)

    # Cache modes as PAT-index bits in 4K format with Linux's PAT table (arch/x86/mm/pat/memtype.c):
    # WB = 0, WC = PWT, UC- = PCD, UC = PCD | PWT.
    CACHE_WB = 0
    CACHE_WC = PWT
    CACHE_UC_MINUS = PCD
    CACHE_UC = PCD | PWT


def x86_large_2_4k(flags: int) -> int:
    """pgprot_large_2_4k(): clear PSE and move the PAT bit from bit 12 to bit 7."""
    pat = X86.PAT if flags & X86.PAT_LARGE else 0
    return (flags & ~(X86.PSE | X86.PAT_LARGE)) | pat


def x86_4k_2_large(flags: int) -> int:
    """pgprot_4k_2_large(): move the PAT bit from bit 7 to bit 12 (PSE is added by the caller)."""
    pat = X86.PAT_LARGE if flags & X86.PAT else 0
    return (flags & ~(X86.PAT | X86.PAT_LARGE)) | pat
