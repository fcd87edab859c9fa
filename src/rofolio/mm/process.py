"""Processes: an mm_struct with anonymous private VMAs and the leaf levels of its page table.

Only what the huge-zero-folio story needs: VMAs (``vm_area_struct``: range,
VM_WRITE, VM_HUGEPAGE), PMD entries that are either a huge leaf
(``HugePmd``: a THP or the huge zero folio's special read-only PMD) or a PTE
table (``PteTable``, itself a page allocated from the buddy), and the page
table deposited for each huge PMD (pgtable_trans_huge_deposit()).  Upper
table levels (PUD/P4D/PGD pages) are not modelled.

A PTE table made by splitting a huge zero PMD holds 512 identical entries;
it keeps them as a ``fill`` entry plus the entries that differ, so a table
costs memory only for what was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rofolio.errors import AddressError
from rofolio.mm.folio import Folio
from rofolio.units import PAGE_SHIFT, PMD_SIZE, PTRS_PER_TABLE, align_up

__all__ = ["HugePmd", "MmStruct", "Pte", "PteTable", "Vma"]

MMAP_BASE = 0x7F0000000000  # where the model places mappings (mmap_base on x86-64 is near here)


@dataclass
class Vma:
    """An anonymous private mapping [start, end)."""

    start: int
    end: int
    write: bool = True
    hugepage: bool = False  # VM_HUGEPAGE (madvise(MADV_HUGEPAGE))

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end


@dataclass(frozen=True, slots=True)
class Pte:
    pfn: int
    writable: bool
    special: bool  # pte_special(): the zero page, no struct page refcounting


@dataclass
class HugePmd:
    pfn: int
    writable: bool
    special: bool  # pmd_special(): the huge zero folio (David Hildenbrand, Aug 2025)


@dataclass
class PteTable:
    page: Folio  # the page-table page
    entries: dict[int, Pte | None] = field(default_factory=dict)  # None: a none entry where ``fill`` would say
    fill: Pte | None = None  # every entry not in ``entries`` (after a huge zero PMD split)

    def get(self, index: int) -> Pte | None:
        return self.entries.get(index, self.fill)

    def present(self) -> int:
        none = sum(1 for pte in self.entries.values() if pte is None)
        if self.fill is not None:
            return PTRS_PER_TABLE - none
        return len(self.entries) - none


@dataclass
class MmStruct:
    """struct mm_struct, reduced to what faults, migration and teardown use."""

    id: int
    flags: set[str] = field(default_factory=set)
    vmas: list[Vma] = field(default_factory=list)
    pmds: dict[int, HugePmd | PteTable] = field(default_factory=dict)
    deposited: dict[int, Folio] = field(default_factory=dict)
    nr_ptes: int = 0  # mm_inc_nr_ptes(): page-table pages this mm holds
    next_addr: int = MMAP_BASE

    def find_vma(self, addr: int) -> Vma | None:
        for vma in self.vmas:
            if vma.contains(addr):
                return vma
        return None

    def mmap_anon(self, length: int, write: bool = True, hugepage: bool = False) -> int:
        """mmap(MAP_PRIVATE|MAP_ANONYMOUS): PMD-aligned when >= 2M (thp_get_unmapped_area())."""
        if length <= 0 or length % (1 << PAGE_SHIFT):
            raise AddressError(f"mapping length {length} is not a positive multiple of 4K", "e.g. 2M")
        start = align_up(self.next_addr, PMD_SIZE) if length >= PMD_SIZE else self.next_addr
        self.vmas.append(Vma(start, start + length, write, hugepage))
        self.next_addr = align_up(start + length, PMD_SIZE) + PMD_SIZE  # a gap between mappings
        return start

    def lookup(self, addr: int) -> tuple[int, bool, bool] | None:
        """The (pfn, writable, special) a user access to ``addr`` would use, None if not mapped.

        ``special``: a special mapping such as the zero page (vm_normal_page() returns no page).
        """
        haddr = addr & ~(PMD_SIZE - 1)
        entry = self.pmds.get(haddr)
        if entry is None:
            return None
        if isinstance(entry, HugePmd):
            return entry.pfn + ((addr - haddr) >> PAGE_SHIFT), entry.writable, entry.special
        pte = entry.get((addr - haddr) >> PAGE_SHIFT)
        return None if pte is None else (pte.pfn, pte.writable, pte.special)
