"""arch/riscv/mm/pageattr.c: permission changes in the kernel page table, the linear alias included.

``__set_memory(addr, numpages, set, clear)`` does everything under init_mm's mmap lock, then
``flush_tlb_all()`` (on 64-bit: a split may have replaced a leaf larger than the range), even after an error:

* a vmalloc or module address: for each page in the range, its linear alias (``area->pages[i]``) is split
  to 4K where needed and walked with the masks; then the vmalloc range itself is walked;
* a kernel-image address: the same on its linear alias range, then the image range;
* a linear-map address: ``split_linear_mapping()`` of the range, the walk, and then the walk of the same
  range once more (the common tail of the function walks ``[start, end)`` for every address kind).

``split_linear_mapping()`` breaks only the leaves the range covers in part (its first and last entry at each
level): a 1G leaf into 512 2M leaves, a 2M leaf into 512 4K leaves, every child with the parent's bits, one
page from the page allocator per split, no TLB maintenance of its own.  The walk
(``walk_kernel_page_table_range()`` with ``pageattr_ops``) rewrites a huge entry whole when ``p?d_leaf()``
holds for it, and every PTE in range, none entries too; holes above the PTE level are skipped.

Unlike arm64 there is no gate: ``set_memory_*()`` accept a linear-map address, and ``set_direct_map_*()``
always act, so arch_make_folio_readonly() can be set_memory_ro() on the folio's linear address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.riscv64.pgtable import PAGE_KERNEL, RISCV, entry_leaf, entry_present
from rofolio.arch.riscv64.tlbflush import flush_tlb_all, flush_tlb_kernel_range
from rofolio.errors import Errno
from rofolio.events import EntryWrite, Split
from rofolio.pagetable import EntryState
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level, align_down, align_up

if TYPE_CHECKING:
    from rofolio.arch.riscv64.kernel import Riscv64Kernel

__all__ = [
    "SET_MEMORY_MASKS",
    "KernelBug",
    "kernel_map_pages",
    "kernel_page_present",
    "set_memory",
    "set_pageattr_masks",
    "split_linear_mapping",
    "walk_pageattr",
]

# pageattr.c: the (set, clear) masks of each public function
SET_MEMORY_MASKS = {
    "set_memory_ro": (RISCV.READ, RISCV.WRITE),
    "set_memory_rw": (RISCV.READ | RISCV.WRITE, 0),
    "set_memory_x": (RISCV.EXEC, 0),
    "set_memory_nx": (0, RISCV.EXEC),
    "set_memory_rw_nx": (RISCV.READ | RISCV.WRITE, RISCV.EXEC),
    "set_direct_map_invalid_noflush": (0, RISCV.PRESENT),
    "set_direct_map_default_noflush": (PAGE_KERNEL, RISCV.EXEC),
}


class KernelBug(RuntimeError):
    """An oops the modelled kernel would take (a NULL or bogus pointer followed); the model stops there."""


def set_pageattr_masks(val: int, set_mask: int, clear_mask: int) -> int:
    """set_pageattr_masks(): clear first, then set."""
    return (val & ~clear_mask) | set_mask


# ------------------------------------------------------------------ the walk
def _rewrite(k: Riscv64Kernel, lo: int, hi: int, set_mask: int, clear_mask: int) -> None:
    """Write every leaf of the runs in [lo, hi) (all of one level) with the masks applied."""
    for run in list(k.pt.runs(lo, hi)):
        a, b = max(run.start, lo), min(run.end, hi)
        old = k.pt.run_at(a).flags  # type: ignore[union-attr]
        new = set_pageattr_masks(old, set_mask, clear_mask)
        k.pt.set_flags(a, b, new)
        k.log.append(EntryWrite(a, run.level, (b - a) // run.level.size, old, new))


def _none_ptes(k: Riscv64Kernel, lo: int, hi: int, set_mask: int, clear_mask: int) -> None:
    """pageattr_pte_entry() runs for none PTEs of an existing PTE table too: each becomes 0 with the masks,
    a non-present entry of pfn 0 when the set mask is not empty."""
    for region in sorted({align_down(lo, Level.PMD.size), align_down(hi - 1, Level.PMD.size)}):
        if k.pt.entry_state(region, Level.PMD) != EntryState.TABLE:
            continue  # a none PMD (or higher) entry: pte_hole(), which does nothing
        a, b = max(lo, region), min(hi, region + Level.PMD.size)
        new = set_pageattr_masks(0, set_mask, clear_mask)
        if new:
            for va in range(a, b, PAGE_SIZE):  # pfn_pte(0): every entry names pfn 0, so no run joins them
                k.pt.map(va, va + PAGE_SIZE, Level.PTE, new, 0)
        k.log.append(EntryWrite(a, Level.PTE, (b - a) // PAGE_SIZE, 0, new))


def walk_pageattr(k: Riscv64Kernel, start: int, end: int, set_mask: int, clear_mask: int) -> int:
    """walk_kernel_page_table_range(start, end, &pageattr_ops): always 0 (no callback fails)."""
    addr = start
    while addr < end:
        run = k.pt.first_run_from(addr)
        if run is None or run.start >= end:
            _none_ptes(k, addr, end, set_mask, clear_mask)
            break
        if run.start > addr:
            _none_ptes(k, addr, run.start, set_mask, clear_mask)
            addr = run.start
        level = run.level
        if level == Level.PTE:  # pageattr_pte_entry(): every PTE, whatever it holds
            seg_end = min(run.end, end)
            _rewrite(k, addr, seg_end, set_mask, clear_mask)
            addr = seg_end
            continue
        # pageattr_p?d_entry(): a huge entry the range touches is rewritten whole when p?d_leaf() holds; the
        # walker never descends below a leaf, nor below a pud that pud_present() (V only) rejects
        first = align_down(addr, level.size)
        last = min(run.end, align_up(min(run.end, end), level.size))
        if entry_leaf(level, run.flags):
            _rewrite(k, first, last, set_mask, clear_mask)
        addr = last
    return 0


# ------------------------------------------------------------------ splitting
def _split_leaf(k: Riscv64Kernel, entry: int, level: Level) -> int:
    """__split_linear_mapping_p?d() on one leaf: a page for the table, 512 children with the leaf's bits
    (prot is the entry without its PFN), smp_wmb(), then the entry points to the table; 0 or -ENOMEM."""
    child = Level(level - 1)
    if not k.alloc_pgtable_page(child):  # alloc_page(GFP_KERNEL) failed
        return -Errno.ENOMEM
    run = k.pt.run_at(entry)
    assert run is not None
    k.pt.split(entry, run.flags)
    k.log.append(Split(entry, level, False, False))  # riscv keeps no DirectMap or vmstat split counts
    return 0


def _split_level(k: Riscv64Kernel, level: Level, lo: int, hi: int) -> int:
    """__split_linear_mapping_{p4d,pud,pmd}() over [lo, hi): only an entry the range covers in part needs
    splitting (a covered one gets its protections changed whole), so only the first and the last entry.

    Reading an entry below a none entry, or below a leaf that p?d_leaf() rejects (V clear), follows a
    pointer the kernel never set: the model reports the oops that would be.
    """
    for entry in sorted({align_down(lo, level.size), align_down(hi - 1, level.size)}):
        a, b = max(lo, entry), min(hi, entry + level.size)
        if a == entry and b == entry + level.size:
            continue  # the whole entry is in the range
        if level < Level.PUD or k.config.sv != 39:  # Sv39's PUD entries are the PGD itself
            above = k.pt.entry_state(entry, Level(level + 1))
            if above in (EntryState.NONE, EntryState.LEAF):
                raise KernelBug(f"Unable to handle kernel paging request: split_linear_mapping() reads the "
                                f"{level.entry_name} entry of {a:#x} through a {above} "
                                f"{Level(level + 1).entry_name} entry")
        run = k.pt.run_at(entry)
        if k.pt.entry_state(entry, level) == EntryState.LEAF and run is not None and entry_leaf(level, run.flags):
            ret = _split_leaf(k, entry, level)
            if ret:
                return ret
        if level > Level.PMD:  # the pmd level does not descend: its children are PTEs
            ret = _split_level(k, Level(level - 1), a, b)
            if ret:
                return ret
    return 0


def split_linear_mapping(k: Riscv64Kernel, start: int, end: int) -> int:
    """split_linear_mapping(): __split_linear_mapping_pgd() from the p4d level down to the pmd level (PGD
    entries are never linear-map leaves; with Sv39/Sv48 the p4d level is folded, so the walk's first real
    level is the PUD's).  0 or -ENOMEM (the splits done so far stay)."""
    return _split_level(k, Level.P4D if k.config.sv == 57 else Level.PUD, start, end)


# ---------------------------------------------------------------- __set_memory
def _linear_alias_pages(k: Riscv64Kernel, addr: int, numpages: int) -> list[int]:
    """The linear-map address of each page behind [addr, addr + numpages pages) of a vmalloc area."""
    area = k.find_vm_area(addr)
    if area is None:
        raise KernelBug(f"Unable to handle kernel NULL pointer dereference: __set_memory() of {addr:#x}, "
                        "which is in no vmalloc area (find_vm_area() returned NULL)")
    if area.pages is None:
        raise KernelBug(f"Unable to handle kernel NULL pointer dereference: __set_memory() of {addr:#x} reads "
                        "area->pages of a vmap() area, which has none")
    first = (addr - area.addr) >> PAGE_SHIFT
    if first + numpages > len(area.pages):
        raise KernelBug(f"__set_memory() reads area->pages[{first + numpages - 1}] past the end of an area of "
                        f"{len(area.pages)} pages")
    return [k.page_address(pfn) for pfn in area.pages[first:first + numpages]]


def _set_memory(k: Riscv64Kernel, addr: int, numpages: int, set_mask: int, clear_mask: int) -> int:
    start, end = addr, addr + numpages * PAGE_SIZE
    layout, image = k.config.layout, k.config.kernel_image
    if layout.is_vmalloc_addr(start) or image.is_module_addr(start):  # is_vmalloc_or_module_addr()
        for lm in _linear_alias_pages(k, start, numpages):
            ret = split_linear_mapping(k, lm, lm + PAGE_SIZE)
            if ret:
                return ret
            walk_pageattr(k, lm, lm + PAGE_SIZE, set_mask, clear_mask)
    elif image.is_kernel_mapping(start) or layout.is_linear_mapping(start):
        lm_start, lm_end = start, end
        if image.is_kernel_mapping(start):  # lm_alias() of both ends
            lm_start = layout.va(image.kernel_mapping_va_to_pa(start))
            lm_end = layout.va(image.kernel_mapping_va_to_pa(end))
        ret = split_linear_mapping(k, lm_start, lm_end)
        if ret:
            return ret
        walk_pageattr(k, lm_start, lm_end, set_mask, clear_mask)
    # the range itself; the model holds no kernel-image mapping, so for an image address this walk finds nothing
    return walk_pageattr(k, start, end, set_mask, clear_mask)


def set_memory(k: Riscv64Kernel, func: str, addr: int, numpages: int, set_mask: int, clear_mask: int,
               reason: str = "") -> int:
    """__set_memory() as ``func`` calls it: nothing for zero pages; the change, then flush_tlb_all() whatever
    it returned."""
    if not numpages:
        return 0
    ret = _set_memory(k, addr, numpages, set_mask, clear_mask)
    flush_tlb_all(k, reason or func)
    return ret


def kernel_map_pages(k: Riscv64Kernel, addr: int, numpages: int, enable: bool) -> None:
    """__kernel_map_pages() under debug_pagealloc: apply_to_existing_page_range() toggles V on each existing
    PTE (a huge leaf would make it WARN and stop: the map is all 4K then), then flush_tlb_kernel_range()."""
    if not k.config.debug_pagealloc:
        return
    end = addr + numpages * PAGE_SIZE
    for run in list(k.pt.runs(addr, end)):
        lo, hi = max(run.start, addr), min(run.end, end)
        if run.level != Level.PTE:
            # mm/memory.c: apply_to_pud_range() warns on a PUD leaf, apply_to_pmd_range() on a PMD leaf
            func = "apply_to_pud_range" if run.level == Level.PUD else "apply_to_pmd_range"
            k.warn_once(f"WARNING: CPU: 0 at mm/memory.c {func}")
            break
        old = run.flags
        new = old | RISCV.PRESENT if enable else old & ~RISCV.PRESENT
        k.pt.set_flags(lo, hi, new)
        k.log.append(EntryWrite(lo, Level.PTE, (hi - lo) >> PAGE_SHIFT, old, new))
    flush_tlb_kernel_range(k, addr, end, "__kernel_map_pages")


def kernel_page_present(k: Riscv64Kernel, addr: int) -> bool:
    """kernel_page_present(): the walk's own present tests down to the leaf (pgtable.entry_present()).

    They are software tests: a PTE with V clear but G set (every kernel PTE) and a 2M leaf with V clear
    but R set both answer true, so a page set_direct_map_invalid_noflush() unmapped reads as present.
    """
    run = k.pt.run_at(addr)
    if run is None:
        return False
    return entry_present(run.level, run.flags)
