"""arch/riscv/mm/init.c: the linear map at boot, and the late-boot changes to it.

``setup_vm_final()`` -> ``create_linear_mapping_page_table()``: under STRICT_KERNEL_RWX the kernel's text
alias ``[_start, __init_data_begin)`` and rodata alias ``[__start_rodata, _data)`` are hidden from the
RAM loop (memblock NOMAP), and so is the KFENCE pool; every RAM range is mapped with
``create_linear_mapping_range()``, whose ``best_map_size()`` takes the largest leaf that the physical
address, the virtual address and the remaining size allow (512G only with Sv57, 1G from Sv48 on, 2M,
else 4K; always 4K under debug_pagealloc); then the two aliases the same way, and the pool with 4K pages.
The protection of each leaf is ``pgprot_from_va()``: read-only for the text alias, PAGE_KERNEL otherwise.

The model computes the leaves as runs of equal level, so a 64T machine costs a handful of runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.kernel import KFENCE_POOL_SIZE, kfence_guard_pages
from rofolio.arch.riscv64.pageattr import SET_MEMORY_MASKS, set_memory
from rofolio.arch.riscv64.pgtable import PAGE_KERNEL, PAGE_KERNEL_READ, RISCV
from rofolio.errors import ConfigError
from rofolio.events import BootMapping, EntryWrite, Flush, FlushKind, PgtableAlloc
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level, align_down, align_up

if TYPE_CHECKING:
    from rofolio.arch.riscv64.kernel import Riscv64Kernel

__all__ = [
    "best_map_size", "create_linear_mapping_page_table", "create_linear_mapping_range", "free_initmem",
    "kfence_alloc_pool", "kfence_init_pool", "linear_pieces", "mark_rodata_ro", "pgprot_from_va",
]


def best_map_size(k: Riscv64Kernel, pa: int, va: int, size: int) -> Level:
    """best_map_size(): the largest leaf with PA and VA aligned to it and ``size`` at least as large."""
    if k.config.debug_pagealloc:  # debug_pagealloc_enabled(): single pages, so they can be unmapped one by one
        return Level.PTE
    sv = k.config.sv
    for level, allowed in ((Level.P4D, sv >= 57), (Level.PUD, sv >= 48), (Level.PMD, True)):
        if allowed and not (pa | va) % level.size and size >= level.size:
            return level
    return Level.PTE


def linear_pieces(k: Riscv64Kernel, start: int, end: int, fixed: Level | None = None) -> list[tuple[int, int, Level]]:
    """The leaves create_linear_mapping_range() writes for physical ``[start, end)``, as runs (pa, pa_end, level).

    The kernel loops one leaf at a time; the model jumps to where best_map_size() may answer differently:
    the end of what fits, or the next boundary of a larger leaf whose alignment PA and VA share.
    """
    out: list[tuple[int, int, Level]] = []
    pa = start
    while pa < end:
        va = k.va(pa)
        level = fixed or best_map_size(k, pa, va, end - pa)
        stop = pa + (end - pa) // level.size * level.size
        if fixed is None:
            for bigger in (Level.PMD, Level.PUD, Level.P4D):
                if bigger > level and not (pa - va) % bigger.size:  # congruent: aligned together further on
                    stop = min(stop, align_up(pa + 1, bigger.size))  # past pa: pa is level-aligned, level < bigger
                    break
        out.append((pa, stop, level))
        pa = stop
    return out


def pgprot_from_va(k: Riscv64Kernel, va: int) -> int:
    """pgprot_from_va() with STRICT_KERNEL_RWX: the linear alias of the kernel text is read-only (not
    executable: the image has its own mapping for that); everything else PAGE_KERNEL."""
    image = k.config.kernel_image
    if k.va(image.start) <= va < k.va(image.init_data_begin):  # is_va_kernel_lm_alias_text()
        return PAGE_KERNEL_READ
    return PAGE_KERNEL


def create_linear_mapping_range(k: Riscv64Kernel, start: int, end: int, fixed: Level | None = None) -> None:
    """create_linear_mapping_range(): create_pgd_mapping() of each leaf with pgprot_from_va(va)."""
    for pa, stop, level in linear_pieces(k, start, end, fixed):
        if level > Level.PUD:
            raise ConfigError(f"a {level.leaf_name} linear-map leaf at {pa:#x} (Sv{k.config.sv}, RAM aligned to "
                              f"{level.leaf_name}) is not modelled", "start RAM at an address that is not "
                              f"{level.leaf_name}-aligned, or use sv = 48")
        # pgprot_from_va() is the same for every leaf of the piece: the text alias is mapped on its own (NOMAP
        # while the RAM loop runs), so a piece lies wholly inside or wholly outside it
        k.pt.map(k.va(pa), k.va(stop), level, pgprot_from_va(k, k.va(pa)), pa >> PAGE_SHIFT)
        k.log.append(BootMapping(k.va(pa), k.va(stop), level, 0))  # riscv keeps no DirectMap counts


def kfence_alloc_pool(k: Riscv64Kernel) -> int | None:
    """create_linear_mapping_page_table(): memblock_phys_alloc(KFENCE_POOL_SIZE, PAGE_SIZE) under CONFIG_KFENCE.

    memblock allocates top-down; with no boot record the model takes the top of RAM below the kernel's
    reservation (a real boot may have the device tree or initrd there: a record's pool replaces it).
    """
    if not k.config.kfence:
        return None
    if k.config.kfence_pool is not None:
        return k.config.kfence_pool
    image = k.config.kernel_image
    for r in reversed(k.memory.ram):
        top = r.end
        if r.start <= image.start < r.end and top - KFENCE_POOL_SIZE < image.reserved_end:
            continue
        if top - KFENCE_POOL_SIZE >= r.start:
            return align_down(top - KFENCE_POOL_SIZE, PAGE_SIZE)
    raise ConfigError("no room for the 2M KFENCE pool (BUG_ON(!kfence_pool) at boot)", "give more memory")


def _without(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        pieces = [(s, e)]
        for hs, he in holes:
            pieces = [p for a, b in pieces for p in ((a, min(b, hs)), (max(a, he), b)) if p[0] < p[1]]
        out.extend(pieces)
    return sorted(out)


def create_linear_mapping_page_table(k: Riscv64Kernel) -> None:
    """create_linear_mapping_page_table(): RAM around the NOMAP'd aliases and pool, then those."""
    image = k.config.kernel_image
    ktext = (image.start, image.init_data_begin)
    krodata = (image.start_rodata, image.data)
    pool = kfence_alloc_pool(k)
    nomap = [ktext, krodata] + ([(pool, pool + KFENCE_POOL_SIZE)] if pool is not None else [])
    for start, end in _without([(r.start, r.end) for r in k.memory.ram], nomap):  # for_each_mem_range()
        create_linear_mapping_range(k, start, end)
    create_linear_mapping_range(k, *ktext)
    create_linear_mapping_range(k, *krodata)
    if pool is not None:
        create_linear_mapping_range(k, pool, pool + KFENCE_POOL_SIZE, Level.PTE)  # PAGE_SIZE mappings only
        k.kfence_pool = pool
    tables = k.pt.table_pages(k.config.layout.levels[0])
    for level in (Level.P4D, Level.PUD, Level.PMD, Level.PTE):
        if tables.get(level):  # early page tables from memblock (alloc_p?d_fixmap())
            k.log.append(PgtableAlloc(level, tables[level]))


def kfence_init_pool(k: Riscv64Kernel) -> None:
    """kfence_init() with a non-zero sample interval: kfence_init_pool() clears V on the pool's first two pages
    and on every object's right guard page (kfence_protect_page(): set_pte(), then a local flush only)."""
    if k.kfence_pool is None or not k.config.kfence_sample_interval:
        return  # kfence_init() gives up; the pool stays mapped, and reserved
    base = k.va(k.kfence_pool)
    for i in kfence_guard_pages():
        va = base + i * PAGE_SIZE
        old = k.pt.run_at(va).flags  # type: ignore[union-attr]
        k.pt.set_flags(va, va + PAGE_SIZE, old & ~RISCV.PRESENT)
        k.log.append(EntryWrite(va, Level.PTE, 1, old, old & ~RISCV.PRESENT))
        # local_flush_tlb_kernel_range() of that page: this hart only, no IPI (asm/kfence.h)
        k.log.append(Flush(FlushKind.PAGES, 1, 1, 0, "kfence_protect_page"))


def set_kernel_memory(k: Riscv64Kernel, caller: str, func: str, start: int, end: int) -> None:
    """set_kernel_memory() (asm/set_memory.h): ``func`` from ``start`` over PAGE_ALIGN(end - start) pages."""
    set_memory(k, func, start, align_up(end - start, PAGE_SIZE) >> PAGE_SHIFT, *SET_MEMORY_MASKS[func], caller)


def free_initmem(k: Riscv64Kernel) -> None:
    """free_initmem() (arch/riscv/kernel/setup.c): the init sections' linear alias becomes writable and
    non-executable (set_memory_rw_nx()), then the image mapping non-executable (set_memory_nx() of the image
    address, which __set_memory() applies to the linear alias too); then the pages go to the page allocator."""
    image = k.config.kernel_image
    set_kernel_memory(k, "free_initmem", "set_memory_rw_nx", k.va(image.init_begin), k.va(image.init_end))
    set_kernel_memory(k, "free_initmem", "set_memory_nx", image.virt(image.init_begin), image.virt(image.init_end))


def mark_rodata_ro(k: Riscv64Kernel) -> None:
    """mark_rodata_ro(): set_memory_ro() of the image's [__start_rodata, _data), which __set_memory() applies
    to the linear alias as well, then the same on the linear alias itself."""
    image = k.config.kernel_image
    set_kernel_memory(k, "mark_rodata_ro", "set_memory_ro", image.virt(image.start_rodata), image.virt(image.data))
    set_kernel_memory(k, "mark_rodata_ro", "set_memory_ro", k.va(image.start_rodata), k.va(image.data))
