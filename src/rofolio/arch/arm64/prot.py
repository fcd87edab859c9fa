"""arm64 page-table descriptor bits, as plain ints (like ``rofolio.prot.X86``).

Values follow arch/arm64/include/asm/pgtable-hwdef.h and pgtable-prot.h.  A
protection value holds the descriptor without its output address, the way the
kernel's ``pte_val() & ~PTE_ADDR_MASK`` would, so comparisons (ptdump grouping,
``pgattr_change_is_safe()``) see the bits the kernel sees.  Block (section)
entries keep ``PMD_TYPE_SECT`` in bits [1:0], page entries ``PTE_TYPE_PAGE``.
"""

from __future__ import annotations

__all__ = [
    "ARM64", "attrindx", "is_read_only", "mk_sect_prot", "p_leaf", "p_sect", "page_kernel", "page_kernel_ro",
    "prot_normal", "pte_present", "pte_present_invalid", "pte_valid",
]


class ARM64:
    """Stage-1 descriptor bits (pgtable-hwdef.h, pgtable-prot.h)."""

    VALID = 1 << 0  # PTE_VALID / PMD_SECT_VALID
    TABLE_BIT = 1 << 1  # PTE_TABLE_BIT: table (levels 0-2) or page (level 3)
    TYPE_MASK = 3  # PTE_TYPE_MASK / PMD_TYPE_MASK
    TYPE_PAGE = 3  # PTE_TYPE_PAGE
    TYPE_TABLE = 3  # PMD_TYPE_TABLE / PUD_TYPE_TABLE
    TYPE_SECT = 1  # PMD_TYPE_SECT / PUD_TYPE_SECT: a block
    ATTRINDX_SHIFT = 2
    ATTRINDX_MASK = 7 << 2  # PTE_ATTRINDX_MASK
    USER = 1 << 6  # AP[1]
    RDONLY = 1 << 7  # AP[2]
    SHARED = 3 << 8  # SH[1:0], inner shareable
    AF = 1 << 10
    NG = 1 << 11
    PRESENT_INVALID = NG  # pgtable-prot.h: bit 11 means present-invalid only in an invalid entry
    GP = 1 << 50  # BTI guarded
    DBM = 1 << 51
    WRITE = DBM  # PTE_WRITE shares bit 51 with DBM
    CONT = 1 << 52
    PXN = 1 << 53
    UXN = 1 << 54
    DIRTY = 1 << 55  # software dirty
    SWBITS_MASK = (1 << 63) | (0xF << 55)  # PTE_SWBITS_MASK: BIT(63) | GENMASK(58, 55)

    # MAIR indices (arch/arm64/include/asm/memory.h)
    MT_NORMAL = 0
    MT_NORMAL_TAGGED = 1
    MT_NORMAL_NC = 2
    MT_DEVICE_nGnRnE = 3
    MT_DEVICE_nGnRE = 4


def attrindx(mt: int) -> int:
    """PTE_ATTRINDX(t)."""
    return mt << ARM64.ATTRINDX_SHIFT


def prot_normal(ng: bool, tagged: bool = False) -> int:
    """PROT_NORMAL / PROT_NORMAL_TAGGED = PROT_DEFAULT | PXN | UXN | WRITE | ATTRINDX.

    PROT_DEFAULT is PTE_TYPE_PAGE | PTE_AF | PTE_MAYBE_SHARED | PTE_MAYBE_NG;
    ``ng`` is arm64_use_ng_mappings (KPTI), without LPA2 PTE_MAYBE_SHARED is PTE_SHARED.
    """
    prot = ARM64.TYPE_PAGE | ARM64.AF | ARM64.SHARED | ARM64.PXN | ARM64.UXN | ARM64.WRITE
    if ng:
        prot |= ARM64.NG
    return prot | attrindx(ARM64.MT_NORMAL_TAGGED if tagged else ARM64.MT_NORMAL)


def page_kernel(ng: bool, tagged: bool = False) -> int:
    """PAGE_KERNEL = PROT_NORMAL | PTE_DIRTY (pgtable-prot.h _PAGE_KERNEL); ``tagged``: pgprot_tagged() of it.

    The software dirty bit is in every kernel mapping's descriptor (the QEMU oracle read 0x00e8... in 7.2's
    vmalloc and linear-map PTEs); nothing in pageattr.c touches it.
    """
    return prot_normal(ng, tagged) | ARM64.DIRTY


def page_kernel_ro(ng: bool) -> int:
    """PAGE_KERNEL_RO = (PROT_NORMAL & ~PTE_WRITE) | PTE_RDONLY | PTE_DIRTY (_PAGE_KERNEL_RO)."""
    return (prot_normal(ng) & ~ARM64.WRITE) | ARM64.RDONLY | ARM64.DIRTY


def mk_sect_prot(prot: int) -> int:
    """mk_pmd_sect_prot() / mk_pud_sect_prot(): a block descriptor (clear the table bit)."""
    return (prot & ~ARM64.TABLE_BIT) | ARM64.TYPE_SECT


def pte_valid(val: int) -> bool:
    return bool(val & ARM64.VALID)


def pte_present_invalid(val: int) -> bool:
    """pte_present_invalid(): PTE_PRESENT_INVALID set and PTE_VALID clear."""
    return val & (ARM64.VALID | ARM64.PRESENT_INVALID) == ARM64.PRESENT_INVALID


def pte_present(val: int) -> bool:
    """pte_present() (and pmd_present()/pud_present() through pmd_pte()): valid or present-invalid."""
    return pte_valid(val) or pte_present_invalid(val)


def p_sect(val: int) -> bool:
    """pmd_sect() / pud_sect(): a *valid* block (bits [1:0] == 0b01)."""
    return val & ARM64.TYPE_MASK == ARM64.TYPE_SECT


def p_leaf(val: int) -> bool:
    """pmd_leaf() / pud_leaf() for a leaf entry of the model: present and not a table."""
    return pte_present(val) and val & ARM64.TYPE_MASK != ARM64.TYPE_TABLE


def is_read_only(val: int) -> bool:
    """AP[2] set and PTE_WRITE (DBM) clear: no kernel store can succeed, even with hardware DBM."""
    return bool(val & ARM64.RDONLY) and not val & ARM64.WRITE
