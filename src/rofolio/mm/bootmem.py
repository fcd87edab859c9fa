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
* the memmap: 64-byte ``struct page`` per 4 KiB page of every memory section
  with RAM, allocated top-down at the end of each node (sparse_init(),
  vmemmap), below ZONE_MOVABLE when there is one.

The ArchKernel protocol does not give the kernel image or the zero page;
``kernel_image_range``/``empty_zero_page_pfn``/``ro_after_init_pfn`` read
them from the x86 kernel's attributes and fall back to neutral choices.
"""

from __future__ import annotations

from typing import Any

from rofolio.mm.zone import Node
from rofolio.physmem import SECTION_SIZE, memmap_pages, sections_spanned
from rofolio.units import PAGE_SHIFT, MiB, align_up

__all__ = ["empty_zero_page_pfn", "free_ranges", "kernel_image_range", "reserved_ranges", "ro_after_init_pfn"]

LOW_MEMORY_END = 1 * MiB


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


def reserved_ranges(kernel: Any, ram: list[tuple[int, int]], nodes: list[Node],
                    movable_start: int | None) -> list[tuple[int, int, str]]:
    """memblock.reserved as (start pfn, end pfn, what), sorted."""
    # x86 keeps the first 1 MiB (arch/x86/realmode/init.c reserve_real_mode(), setup.c
    # trim_low_memory_range()); where RAM starts higher (arm64, riscv virt machines) the model
    # reserves the same amount at the start of RAM, where firmware and the kernel image sit.
    first = ram[0][0] if ram and ram[0][0] >= LOW_MEMORY_END >> PAGE_SHIFT else 0
    out: list[tuple[int, int, str]] = [(first, first + (LOW_MEMORY_END >> PAGE_SHIFT), "low memory")]
    image = kernel_image_range(kernel)
    if image is not None:
        out.append((image[0], image[1], "kernel image"))
    section = SECTION_SIZE >> PAGE_SHIFT
    for node in nodes:
        clipped = [(max(s, node.start_pfn), min(e, node.end_pfn)) for s, e in ram]
        need = memmap_pages(sections_spanned([(s, e) for s, e in clipped if s < e], section))
        top = node.end_pfn if movable_start is None else min(node.end_pfn, movable_start)
        for s, e in reversed(ram):
            s, e = max(s, node.start_pfn), min(e, top)
            if e - s >= need:
                start = (e - need) & ~((2 * MiB >> PAGE_SHIFT) - 1)  # vmemmap is populated in 2M chunks
                out.append((start, e, f"memmap node {node.nid}"))
                break
    return sorted(out)


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
