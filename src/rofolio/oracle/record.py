"""Boot records read from a guest: what its boot placed, handed to the model as input.

The kernel decides at run time where some boot-time users of set_memory_*() land: the page allocator
hands a BPF JIT pack its pages (kernel/bpf/core.c bpf_prog_pack_alloc(), from ptp_classifier_init() on
Debian's 6.1), and the boot loader puts the initrd where the kernel's setup header lets it
(hw/i386/x86.c x86_load_linux() for QEMU), which free_initrd_mem() hands back.  The guest shows both:
the kernel log's "RAMDISK: [mem A-B]" line, and the oracle's page-table walk of the module area before
anything else is loaded there.  A record holds those placements only, never a counter or a split count;
the model applies its own rules to them.  So are the page-table pages on the way to an address the
oracle stores to (the module's "path" line before the store): memblock placed boot's tables and the page
allocator those that splits and vmalloc made.
"""

from __future__ import annotations

from rofolio.machine import BootRecord
from rofolio.oracle.guest import IMAGE_SYMBOLS, MODULES_VADDR, GuestLog
from rofolio.prot import X86
from rofolio.units import PAGE_SIZE, Level

PATH_LEVELS = {"pgd": Level.PGD, "p4d": Level.P4D, "pud": Level.PUD, "pmd": Level.PMD}
START_KERNEL_MAP = 0xFFFFFFFF80000000  # __START_KERNEL_map: with nokaslr and phys_base 0, pa = va - this

__all__ = ["record_of"]


def record_of(log: GuestLog, source: str = "guest") -> BootRecord:
    """The boot record of one guest: its initrd, the pages mapped in the module area at boot, and where its
    kernel image's sections are (the section symbols it printed, when it printed them).

    Every present page the walk found between MODULES_VADDR and the module area's end before the
    oracle's module was loaded belongs to the boot-time BPF JIT pack; the stretches keep the walk's
    order, which is the order the pack maps them.
    """
    initrd = None if log.ramdisk is None else (log.ramdisk[0], log.ramdisk[1] - log.ramdisk[0])
    stretches = tuple((pa, size // PAGE_SIZE) for _, pa, size in sorted(log.walk_modules))
    packs = ((MODULES_VADDR, stretches),) if stretches else ()
    image = {IMAGE_SYMBOLS[name]: va - START_KERNEL_MAP for name, va in log.image_symbols.items()
             if name in IMAGE_SYMBOLS and va >= START_KERNEL_MAP}
    if image and log.brk_end is not None and log.brk_end >= START_KERNEL_MAP:
        image["brk_end"] = log.brk_end - START_KERNEL_MAP
    return BootRecord(initrd=initrd, bpf_packs=packs, source=source, image=tuple(sorted(image.items())),
                      tables=tables_of(log))


def tables_of(log: GuestLog) -> tuple[tuple[int, int, int], ...]:
    """The page-table pages the guest's paths went through: every entry of a path but the last points to a
    table (the walk went on below it), keyed by the entry's level and the region it maps."""
    found: dict[tuple[int, int], int] = {}
    for step in log.steps:
        for path in step.paths():
            va = int(path["va"], 16)
            entries = [(PATH_LEVELS[k], int(v, 16)) for k, v in path.items() if k in PATH_LEVELS]
            for level, value in entries[:-1] if "pte" not in path else entries:
                found[(int(level), va & level.mask)] = value & X86.PFN_MASK  # the table's address
    return tuple(sorted((level, region, pa) for (level, region), pa in found.items()))
