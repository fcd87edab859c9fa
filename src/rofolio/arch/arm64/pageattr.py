"""arch/arm64/mm/pageattr.c: permission changes in the kernel page table, and the RFC's hook.

``__change_memory_common()`` = ``update_range_prot()`` then one
``flush_tlb_kernel_range()`` over the range (skipped only for a pure
make-valid).  ``update_range_prot()`` first calls ``split_kernel_leaf_mapping()``
(which does nothing unless BBML2_NOABORT block mappings are in use), then walks
the range with ``pageattr_ops``: a PUD/PMD block is changed in place only when
the range covers it whole, otherwise WARN_ON_ONCE and -EINVAL stop the walk;
every PTE in range is rewritten (none entries too).

The public ``set_memory_*()`` only accept a VM_ALLOC vmalloc area; on a
linear-map address ``find_vm_area()`` finds nothing and they return -EINVAL.
So a linear-map folio is made read-only through the internal path, as the
``set_direct_map_*_noflush()`` helpers do: that is ``make_linear_range_readonly()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.arm64.mmu import KernelBug, rewrite_leaves, split_kernel_leaf_mapping
from rofolio.arch.arm64.prot import ARM64, p_leaf, p_sect, pte_valid
from rofolio.arch.arm64.tlbflush import flush_tlb_kernel_range
from rofolio.arch.arm64.vmalloc import VM_ALLOC, VM_ALLOW_HUGE_VMAP
from rofolio.errors import Errno
from rofolio.events import EntryWrite
from rofolio.pagetable import EntryState
from rofolio.units import PAGE_SIZE, Level, align_down

if TYPE_CHECKING:
    from rofolio.arch.arm64.kernel import Arm64Kernel

__all__ = [
    "change_memory_common", "change_memory_common_noalias", "kernel_map_pages", "kernel_page_present",
    "make_linear_range_readonly", "set_direct_map_default_noflush", "set_direct_map_invalid_noflush",
    "set_direct_map_valid_noflush", "set_memory_valid", "set_pageattr_masks", "update_range_prot", "walk_pageattr",
]



def set_pageattr_masks(val: int, set_mask: int, clear_mask: int) -> int:
    """set_pageattr_masks(): the clear mask is applied before the set mask."""
    return (val & ~clear_mask) | set_mask


def _is_block_leaf(k: Arm64Kernel, val: int) -> bool:
    """pageattr_p?d_entry()'s test: p?d_sect() (valid blocks) before 15bfba1ad77f, p?d_leaf() since (v7.1, 7.0.1)."""
    return p_leaf(val) if k.config.present_invalid_encoding else p_sect(val)


def walk_pageattr(k: Arm64Kernel, start: int, end: int, set_mask: int, clear_mask: int) -> int:
    """walk_kernel_page_table_range_lockless(start, end, &pageattr_ops): 0 or -EINVAL (no rollback)."""
    if start >= end:
        return -Errno.EINVAL
    addr = start
    while addr < end:
        run = k.pt.first_run_from(addr)
        if run is None or run.start >= end:
            _none_ptes(k, addr, end, set_mask, clear_mask)
            return 0
        if run.start > addr:
            _none_ptes(k, addr, run.start, set_mask, clear_mask)
            addr = run.start
        seg_end = min(run.end, end)
        level = run.level
        if level == Level.PTE:  # pageattr_pte_entry(): no checks at all, PTE_CONT kept as it is
            rewrite_leaves(k, addr, seg_end, Level.PTE, lambda v: set_pageattr_masks(v, set_mask, clear_mask))
            addr = seg_end
            continue
        if not _is_block_leaf(k, run.flags):
            # the callback does nothing; the walker skips non-present leaves
            addr = seg_end
            continue
        name = f"pageattr_{level.entry_name}_entry"
        if addr % level.size:  # WARN_ON_ONCE when the range covers only part of the block: it starts inside it
            k.warn_once(f"WARNING: CPU: 0 at arch/arm64/mm/pageattr.c {name} (partial {level.leaf_name})", name)
            return -Errno.EINVAL
        whole_end = align_down(seg_end, level.size)
        if whole_end > addr:
            rewrite_leaves(k, addr, whole_end, level, lambda v: set_pageattr_masks(v, set_mask, clear_mask))
        if whole_end < seg_end:  # the range ends inside this block
            k.warn_once(f"WARNING: CPU: 0 at arch/arm64/mm/pageattr.c {name} (partial {level.leaf_name})", name)
            return -Errno.EINVAL
        addr = seg_end
    return 0


def _none_ptes(k: Arm64Kernel, lo: int, hi: int, set_mask: int, clear_mask: int) -> None:
    """pte_entry is called for none PTEs of an existing PTE table too: __set_pte(0 with the masks)."""
    regions = {align_down(lo, Level.PMD.size), align_down(hi - 1, Level.PMD.size)}
    for region in sorted(regions):
        if k.pt.entry_state(region, Level.PMD) != EntryState.TABLE:
            continue  # a none PMD (or PUD) entry: the walker has no callback for holes here
        a, b = max(lo, region), min(hi, region + Level.PMD.size)
        new = set_pageattr_masks(0, set_mask, clear_mask)
        if new:
            k.pt.map(a, b, Level.PTE, new, 0)
        k.log.append(EntryWrite(a, Level.PTE, (b - a) // PAGE_SIZE, 0, new))


def update_range_prot(k: Arm64Kernel, start: int, size: int, set_mask: int, clear_mask: int) -> int:
    """update_range_prot(): split_kernel_leaf_mapping(), then the pageattr walk; no TLB flush."""
    ret = split_kernel_leaf_mapping(k, start, start + size)
    if ret:  # a failed split WARNs once and is returned before any walk
        k.warn_once(f"WARNING: CPU: 0 at arch/arm64/mm/pageattr.c update_range_prot ({ret})", "update_range_prot")
        return ret
    return walk_pageattr(k, start, start + size, set_mask, clear_mask)


def _make_valid_only(k: Arm64Kernel, set_mask: int, clear_mask: int) -> bool:
    """The masks of a pure make-valid, for which __change_memory_common() skips the TLBI."""
    if k.config.present_invalid_encoding:  # 15bfba1ad77f
        return set_mask == k.maybe_ng() | ARM64.VALID and clear_mask == ARM64.PRESENT_INVALID
    return set_mask == ARM64.VALID and clear_mask == 0


def change_memory_common_noalias(k: Arm64Kernel, start: int, size: int, set_mask: int, clear_mask: int) -> int:
    """__change_memory_common(): update_range_prot() then flush_tlb_kernel_range(), even after an error."""
    ret = update_range_prot(k, start, size, set_mask, clear_mask)
    # a change that only makes entries valid needs no TLBI (no stale valid entry can be cached)
    if not _make_valid_only(k, set_mask, clear_mask):
        flush_tlb_kernel_range(k, start, start + size, "__change_memory_common")
    return ret


def change_memory_common(k: Arm64Kernel, addr: int, numpages: int, set_mask: int, clear_mask: int) -> int:
    """change_memory_common(): a range inside one VM_ALLOC area; under rodata_full the linear alias of each
    page in the range too."""
    start = addr
    size = PAGE_SIZE * numpages
    end = start + size
    if addr % PAGE_SIZE:
        start &= ~(PAGE_SIZE - 1)
        end = start + size
        k.warn_once("WARNING: CPU: 0 at arch/arm64/mm/pageattr.c change_memory_common")
    # the whole range must lie in a single vmalloc area, and that area must be VM_ALLOC
    area = k.find_vm_area(addr)
    if area is None or end > area.addr + area.size or area.flags & (VM_ALLOC | VM_ALLOW_HUGE_VMAP) != VM_ALLOC:
        return -Errno.EINVAL
    if not numpages:
        return 0
    # under rodata_full a change of PTE_RDONLY is mirrored on the linear-map alias of each page in
    # [start, start + size): area->pages[idx] from the index of start, one call (and one TLBI) per page;
    # the first error is returned before the area itself is changed
    if k.config.rodata_full and (set_mask == ARM64.RDONLY or clear_mask == ARM64.RDONLY):
        first = (start - area.addr) // PAGE_SIZE
        if first + numpages > len(area.pages):
            # the range check above counts the guard page (area->size includes it), so numpages may reach
            # one page past area->pages[]: the kernel reads a pointer beyond the array (undefined)
            raise KernelBug(f"change_memory_common() reads area->pages[{len(area.pages)}] past the end of an "
                            f"area of {len(area.pages)} pages (a range that covers its guard page)")
        for pfn in area.pages[first:first + numpages]:
            ret = change_memory_common_noalias(k, k.page_address(pfn), PAGE_SIZE, set_mask, clear_mask)
            if ret:
                return ret
    # vm_unmap_aliases(): the model has no lazily freed vmap areas to purge
    return change_memory_common_noalias(k, start, size, set_mask, clear_mask)


def set_memory_valid(k: Arm64Kernel, addr: int, numpages: int, enable: bool) -> int:
    """set_memory_valid(): set/clear PTE_VALID (present-invalid encoding since 15bfba1ad77f)."""
    size = PAGE_SIZE * numpages
    if k.config.present_invalid_encoding:
        valid, invalid = k.maybe_ng() | ARM64.VALID, ARM64.PRESENT_INVALID
        if enable:
            return change_memory_common_noalias(k, addr, size, valid, invalid)
        return change_memory_common_noalias(k, addr, size, invalid, valid)
    if enable:
        return change_memory_common_noalias(k, addr, size, ARM64.VALID, 0)
    return change_memory_common_noalias(k, addr, size, 0, ARM64.VALID)


def set_direct_map_invalid_noflush(k: Arm64Kernel, addr: int) -> int:
    """set_direct_map_invalid_noflush(): clear PTE_VALID, no TLBI; a no-op when !can_set_direct_map()."""
    if not k.can_set_direct_map():
        return 0
    if k.config.present_invalid_encoding:
        return update_range_prot(k, addr, PAGE_SIZE, ARM64.PRESENT_INVALID, k.maybe_ng() | ARM64.VALID)
    return update_range_prot(k, addr, PAGE_SIZE, 0, ARM64.VALID)


def set_direct_map_default_noflush(k: Arm64Kernel, addr: int) -> int:
    """set_direct_map_default_noflush(): valid and *writable* (PTE_WRITE set, PTE_RDONLY clear), no TLBI."""
    if not k.can_set_direct_map():
        return 0
    if k.config.present_invalid_encoding:
        return update_range_prot(k, addr, PAGE_SIZE, k.maybe_ng() | ARM64.VALID | ARM64.WRITE,
                                 ARM64.PRESENT_INVALID | ARM64.RDONLY)
    return update_range_prot(k, addr, PAGE_SIZE, ARM64.VALID | ARM64.WRITE, ARM64.RDONLY)


def set_direct_map_valid_noflush(k: Arm64Kernel, addr: int, nr: int, valid: bool) -> int:
    """set_direct_map_valid_noflush(): set_memory_valid(), which flushes when it invalidates."""
    if not k.can_set_direct_map():
        return 0
    return set_memory_valid(k, addr, nr, valid)


def kernel_map_pages(k: Arm64Kernel, addr: int, numpages: int, enable: bool) -> int:
    """__kernel_map_pages() (DEBUG_PAGEALLOC): set_memory_valid() unless !can_set_direct_map()."""
    if not k.can_set_direct_map():
        return 0
    set_memory_valid(k, addr, numpages, enable)
    return 0


def kernel_page_present(k: Arm64Kernel, addr: int) -> bool:
    """kernel_page_present(): walk to the leaf; a block counts as present (valid-tested since 15bfba1ad77f)."""
    pgd = align_down(addr, Level.P4D.size)
    if not k.pt.occupied(pgd, pgd + Level.P4D.size):
        return False  # pgd_none() / p4d_none()
    for level in (Level.PUD, Level.PMD):
        state = k.pt.entry_state(addr, level)
        if state == EntryState.NONE:
            return False
        if state == EntryState.LEAF:
            val = k.pt.run_at(addr).flags  # type: ignore[union-attr]
            if k.config.present_invalid_encoding:
                return pte_valid(val)  # since 15bfba1ad77f: a block leaf is present iff it is valid
            # before it only a valid block (p?d_sect()) answers true; v6.18 then reads an invalid block as a
            # table pointer, which is undefined: the model reports such a block not present
            return p_sect(val)
    run = k.pt.run_at(addr)
    return run is not None and pte_valid(run.flags)


def make_linear_range_readonly(k: Arm64Kernel, pa: int, size: int) -> int:
    """The arm64 body of arch_make_folio_readonly(): RFC patch 2/3's path.

    set_memory_ro() cannot be used (-EINVAL on a linear-map address), so this is
    __change_memory_common(__va(pa), size, PTE_RDONLY, ~PTE_WRITE): update_range_prot()
    with the one flush_tlb_kernel_range() a live mapping needs.  It is gated like
    set_direct_map_*(): when !can_set_direct_map() a block may cover the range and
    nothing can split it, so report -EOPNOTSUPP and leave the folio writable.
    """
    if not k.can_set_direct_map():
        return -Errno.EOPNOTSUPP
    return change_memory_common_noalias(k, k.va(pa), size, ARM64.RDONLY, ARM64.WRITE)
