"""memblock at the hand-over to the buddy allocator: what is reserved and what gets freed.

``memblock_free_all()`` → ``free_low_memory_core_early()`` frees every range
of memblock.memory that memblock.reserved does not cover, with
``__free_pages_memory()``: at each step the largest order the start pfn's
alignment allows (``min(MAX_PAGE_ORDER, __ffs(start))``), shrunk until it fits
before the range end (mm/memblock.c), each block through
``__free_pages_core()`` → ``__free_pages_ok(FPI_TO_TAIL)`` (mm/page_alloc.c).

Reserved, as far as the model knows an arch-neutral way to name them:

* RAM below 1 MiB (x86 keeps the BIOS areas, the real-mode trampoline and
  its low-memory reservation there);
* the kernel image (found through the arch kernel's ``image.text``/``image.end``);
* the initrd, where the boot loader put it (arch/x86/kernel/setup.c reserve_initrd());
* memblock's top-down allocations at the end of each node (below ZONE_MOVABLE when there is one), in
  boot order: the node's ``pg_data_t`` (alloc_node_data()), then the memmap, 64-byte ``struct page`` per
  4 KiB page of every memory section with RAM, in one PMD-aligned buffer (sparse_init() →
  sparse_buffer_init()), then, where the architecture embeds it in PMD-sized atoms (x86-64), the per-CPU
  first chunk (setup_per_cpu_areas() → pcpu_embed_first_chunk()), whose units keep only their used part:
  the rest goes back to memblock (``pcpu_fc_free()``) and so to the buddy allocator.

The ArchKernel protocol does not give the kernel image or the zero page;
``kernel_image_range``/``empty_zero_page_pfn``/``ro_after_init_pfn`` read
them from the x86 kernel's attributes and fall back to neutral choices.
"""

from __future__ import annotations

from typing import Any

from rofolio.mm.zone import Node
from rofolio.physmem import SECTION_SIZE, memmap_pages, sections_spanned
from rofolio.units import PAGE_SHIFT, MiB, align_up

__all__ = [
    "NODE_DATA_SIZE", "PERCPU_DYNAMIC_RESERVE", "PERCPU_MODULE_RESERVE", "alloc_top_down", "empty_zero_page_pfn",
    "free_ranges", "kernel_image_range", "percpu_first_chunk", "reserved_ranges", "ro_after_init_pfn",
]

LOW_MEMORY_END = 1 * MiB
# sizeof(pg_data_t) rounded up to pages, as alloc_node_data() (arch/x86/mm/numa.c) asks memblock for it: both
# Debian builds (6.1 and 7.2, amd64) log "NODE_DATA(0) allocated [mem 0x23ffd3000-0x23fffdfff]" (7.2:
# ...d2f80...) under the QEMU oracle; what matters is that it is more than nothing and less than 2 MiB
NODE_DATA_SIZE = 0x2B000
PERCPU_MODULE_RESERVE = 8 << 10  # include/linux/percpu.h (with modules)
PERCPU_DYNAMIC_RESERVE = 28 << 10  # include/linux/percpu.h, 64-bit, 4K pages
PMD_PAGES = (2 * MiB) >> PAGE_SHIFT


def kernel_image_range(kernel: Any) -> tuple[int, int] | None:
    """[first pfn, end pfn) of the kernel image, if the arch kernel exposes it."""
    image = getattr(kernel, "image", None)
    if image is None or not hasattr(image, "text") or not hasattr(image, "end"):
        return None
    return image.text >> PAGE_SHIFT, align_up(image.end, 1 << PAGE_SHIFT) >> PAGE_SHIFT


def empty_zero_page_pfn(kernel: Any) -> int | None:
    """The pfn of empty_zero_page: .bss..page_aligned or .rodata per the arch config (x86)."""
    image = getattr(kernel, "image", None)
    config = getattr(kernel, "config", None)
    if image is not None and hasattr(image, "zero_page") and config is not None:
        return image.zero_page(bool(getattr(config, "empty_zero_page_in_rodata", False))) >> PAGE_SHIFT
    return None


def ro_after_init_pfn(kernel: Any) -> int | None:
    """A page of .data..ro_after_init, where the RFC puts the huge_zero_folio pointer.

    On x86-64 RO_AFTER_INIT_DATA is part of the RO_DATA() output section
    (include/asm-generic/vmlinux.lds.h), so the model uses the last page of
    [__start_rodata, __end_rodata).  None when the arch kernel does not say.
    """
    image = getattr(kernel, "image", None)
    if image is None or not hasattr(image, "end_rodata"):
        return None
    return (image.end_rodata - 1) >> PAGE_SHIFT


def initrd_range(kernel: Any) -> tuple[int, int] | None:
    """[first pfn, end pfn) of the initrd the boot loader loaded, if the arch kernel has one."""
    initrd = getattr(kernel, "initrd", None)
    if not initrd:
        return None
    start, size = initrd
    return start >> PAGE_SHIFT, align_up(start + size, 1 << PAGE_SHIFT) >> PAGE_SHIFT


def alloc_top_down(ram: list[tuple[int, int]], reserved: list[tuple[int, int, str]], pages: int, align: int,
                   limit: int) -> int | None:
    """memblock_find_in_range() top-down (mm/memblock.c __memblock_find_range_top_down()): the highest
    ``align``-aligned start of ``pages`` free pages below ``limit``, or None."""
    for s, e in reversed(free_ranges([(s, min(e, limit)) for s, e in ram if s < limit], sorted(reserved))):
        start = (e - pages) & ~(align - 1)
        if e - pages >= 0 and start >= s:
            return start
    return None


def percpu_first_chunk(cpus: int, static_size: int) -> tuple[int, int, int]:
    """pcpu_build_alloc_info() (mm/percpu.c) for PMD-sized atoms on one node: (unit pages, units, used pages).

    Each unit holds the static per-CPU data, PERCPU_MODULE_RESERVE and the dynamic reserve (size_sum); a
    PMD_SIZE allocation holds ``upa`` units, the largest power-of-two split whose units still fit size_sum
    and which wastes no more than a third of the CPUs' units, with no more allocations than fewer units
    per allocation would need.
    """
    size_sum = align_up(static_size + PERCPU_MODULE_RESERVE + PERCPU_DYNAMIC_RESERVE, 1 << PAGE_SHIFT)
    alloc = 2 * MiB
    upa = alloc // size_sum
    while alloc % upa or (alloc // upa) % (1 << PAGE_SHIFT):
        upa -= 1
    best, last_allocs = 1, None
    for candidate in range(upa, 0, -1):
        if alloc % candidate or (alloc // candidate) % (1 << PAGE_SHIFT):
            continue
        allocs = -(-cpus // candidate)
        if allocs * candidate - cpus > cpus // 3:  # "Don't accept if wastage is over 1/3"
            continue
        if last_allocs is not None and allocs > last_allocs:  # "and then don't consume more memory"
            break
        last_allocs, best = allocs, candidate
    unit = alloc // best
    return unit >> PAGE_SHIFT, -(-cpus // best) * best, size_sum >> PAGE_SHIFT


def reserved_ranges(kernel: Any, ram: list[tuple[int, int]], nodes: list[Node],
                    movable_start: int | None, cpus: int = 1) -> list[tuple[int, int, str]]:
    """memblock.reserved as (start pfn, end pfn, what), sorted."""
    # x86 keeps the first 1 MiB (arch/x86/realmode/init.c reserve_real_mode(), setup.c
    # trim_low_memory_range()); where RAM starts higher (arm64, riscv virt machines) the model
    # reserves the same amount at the start of RAM, where firmware and the kernel image sit.
    first = ram[0][0] if ram and ram[0][0] >= LOW_MEMORY_END >> PAGE_SHIFT else 0
    out: list[tuple[int, int, str]] = [(first, first + (LOW_MEMORY_END >> PAGE_SHIFT), "low memory")]
    image = kernel_image_range(kernel)
    if image is not None:
        out.append((image[0], image[1], "kernel image"))
    initrd = initrd_range(kernel)
    if initrd is not None:
        out.append((initrd[0], initrd[1], "initrd"))
    section = SECTION_SIZE >> PAGE_SHIFT
    atom = getattr(kernel, "percpu_atom", None)  # pcpu_embed_first_chunk()'s atom_size, where the arch embeds
    for node in nodes:
        clipped = [(max(s, node.start_pfn), min(e, node.end_pfn)) for s, e in ram]
        node_ram = [(s, e) for s, e in clipped if s < e]
        need = memmap_pages(sections_spanned(node_ram, section))
        top = node.end_pfn if movable_start is None else min(node.end_pfn, movable_start)
        # alloc_node_data(): the node's pg_data_t, top-down (SMP_CACHE_BYTES aligned; pages here)
        at = alloc_top_down(node_ram, out, NODE_DATA_SIZE >> PAGE_SHIFT, 1, top)
        if at is not None:
            out.append((at, at + (NODE_DATA_SIZE >> PAGE_SHIFT), f"NODE_DATA({node.nid})"))
        # sparse_init() -> sparse_buffer_init(): one buffer for the node's memmap, section_map_size() (PMD_SIZE
        # with vmemmap) aligned, top-down below what setup_arch() allocated before it
        at = alloc_top_down(node_ram, out, need, PMD_PAGES, top)
        if at is not None:
            out.append((at, at + need, f"memmap node {node.nid}"))
        if atom is not None and node.nid == 0:
            out += _percpu_reservations(kernel, node_ram, out, cpus, top)
    return sorted(out)


def _percpu_reservations(kernel: Any, ram: list[tuple[int, int]], reserved: list[tuple[int, int, str]], cpus: int,
                         top: int) -> list[tuple[int, int, str]]:
    """setup_per_cpu_areas() (arch/x86/kernel/setup_percpu.c) → pcpu_embed_first_chunk(): the group's units in
    one allocation, atom (PMD_SIZE) aligned, top-down (pcpu_fc_alloc() → memblock_alloc_try_nid() above
    MAX_DMA_ADDRESS); each used unit keeps its first size_sum bytes, the rest of it and every unused unit are
    given back with pcpu_fc_free() (mm/percpu.c).  All CPUs are one group on node 0 (NUMA groups not modelled)."""
    image = getattr(kernel, "image", None)
    static = getattr(image, "percpu_static", 0)
    unit, units, used = percpu_first_chunk(cpus, static)
    at = alloc_top_down(ram, reserved, unit * units, PMD_PAGES, top)
    if at is None:
        return []
    return [(at + i * unit, at + i * unit + used, f"per-CPU first chunk, unit {i}") for i in range(cpus)]


def free_ranges(ram: list[tuple[int, int]], reserved: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """for_each_free_mem_range(): memblock.memory minus memblock.reserved."""
    out: list[tuple[int, int]] = []
    for s, e in ram:
        cur = s
        for rs, re_, _ in reserved:
            if re_ <= cur or rs >= e:
                continue
            if rs > cur:
                out.append((cur, rs))
            cur = max(cur, re_)
        if cur < e:
            out.append((cur, e))
    return out
