"""x86-64 boot: the direct map as init_mem_mapping() builds it, and what boot changes later.

Mirrors, in boot order:

* arch/x86/mm/init.c ``init_mem_mapping()``: the ISA range with 4K pages, then
  ``memory_map_top_down()`` in steps that grow x256 (2M, 512M, 128G),
  ``init_range_memory_mapping()`` per memblock region, ``init_memory_mapping()``
  with ``split_mem_range()`` and ``adjust_range_page_size_mask()``;
* arch/x86/mm/init_64.c ``phys_pud_init()`` / ``phys_pmd_init()`` /
  ``phys_pte_init()``, including their counting quirk: an existing leaf that a
  later step visits again is counted again by ``update_page_count()`` while
  ``!after_bootmem``, so /proc/meminfo can report more than the page tables hold;
* the high kernel map (head_64.S ``level2_kernel_pgt`` after ``cleanup_highmap()``);
* KFENCE's pool: ``arch_kfence_init_pool()`` (arch/x86/include/asm/kfence.h) splits it to 4K;
* ``set_real_mode_permissions()`` (arch/x86/realmode/init.c, an early_initcall);
* ``free_initmem()`` and ``mark_rodata_ro()`` (arch/x86/mm/init.c, init_64.c).
"""

from __future__ import annotations

from dataclasses import dataclass

from rofolio.arch.kernel import KFENCE_POOL_SIZE
from rofolio.arch.x86_64.config import X86Config
from rofolio.arch.x86_64.image import KernelImage
from rofolio.arch.x86_64.kernel import X86Kernel
from rofolio.errors import ConfigError
from rofolio.events import BootMapping, EventLog, PgtableAlloc, Phase
from rofolio.pagetable import EntryState
from rofolio.physmem import SECTION_SIZE, MemoryMap, memmap_pages, sections_spanned
from rofolio.prot import X86, x86_large_2_4k
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level, align_down, align_up, approx_size

__all__ = [
    "BootOptions", "BootProfile", "BpfPack", "add_pfn_range_mapped", "alternative_instructions",
    "arch_kfence_init_pool", "boot", "bpf_prog_pack_alloc", "free_init_pages", "free_initmem",
    "free_kernel_image_pages",
    "idt_setup_apic_and_irq_gates", "init_mem_mapping", "init_memory_mapping", "init_range_memory_mapping",
    "kernel_physical_mapping_init", "kfence_init_pool", "kfence_pool_address", "late_init", "map_kernel_highmap",
    "mark_rodata_ro", "memblock_regions", "memory_map_top_down", "page_size_mask", "pti_check_boottime_disable",
    "qemu_initrd_address",
    "set_real_mode_permissions",
    "split_mem_range",
]

ISA_END_ADDRESS = 0x100000
BIOS_BEGIN = 0xA0000
BIOS_END = 0x100000  # arch/x86/include/asm/e820/types.h: the legacy BIOS area ends at 1M


@dataclass(frozen=True, slots=True)
class BpfPack:
    """A BPF JIT pack (bpf_prog_pack_alloc()): 512 vmalloc'ed 4K pages made RO, then X."""

    va: int  # where module_alloc() put it
    pages: tuple[tuple[int, int], ...]  # the backing pages: (physical address, count) stretches, in order


@dataclass(frozen=True, slots=True)
class BootProfile:
    """Boot-time users of set_memory_*() whose placement depends on the page allocator.

    The model cannot derive which pages the page allocator gave a BPF JIT pack
    during boot, so a profile records them, measured on a real kernel; the
    model then applies the same calls with its own rules.
    """

    name: str
    bpf_packs: tuple[BpfPack, ...] = ()
    initrd: tuple[int, int] | None = None  # free_initrd_mem(): physical address and pages


@dataclass(frozen=True, slots=True)
class BootOptions:
    """Boot-time activity besides init_mem_mapping() that changes the direct map."""

    kfence: bool = False  # CONFIG_KFENCE with a non-zero sample interval (Debian's 6.1 shows none)
    kfence_pool: int | None = None  # physical address of __kfence_pool; None: where memblock puts it
    realmode_trampoline: int = 0x98000  # reserve_real_mode(): top-down below 1M
    pti: bool = False  # page-table isolation (free_kernel_image_pages() adds set_memory_np_noalias)
    pti_built: bool = True  # CONFIG_MITIGATION_PAGE_TABLE_ISOLATION (Debian's configs have it; tinyconfig not)
    profile: BootProfile | None = None
    initrd_size: int = 0  # bytes of initrd the boot loader loads where no profile says where it went




def boot(config: X86Config, image: KernelImage | None = None, options: BootOptions | None = None,
         log: EventLog | None = None) -> X86Kernel:
    """setup_arch() up to smp_init(): the kernel is left in SYSTEM_SCHEDULING.

    Initcalls (such as ``thp_shrinker_init()``) run on the returned kernel;
    ``late_init()`` then frees init memory, write-protects the image and
    enters SYSTEM_RUNNING, like ``kernel_init()``.
    """
    options = options or BootOptions()
    k = X86Kernel(config, image, log)
    k.pti = options.pti
    k.pti_built = options.pti_built
    if options.profile is not None and options.profile.initrd is not None:
        pa, pages = options.profile.initrd
        k.initrd = (pa, pages * PAGE_SIZE)
    elif options.initrd_size:
        k.initrd = (qemu_initrd_address(config.memory, options.initrd_size), options.initrd_size)
    init_mem_mapping(k)
    map_kernel_highmap(k)
    if config.ram_dropped:  # e820_end_pfn() clamps last_pfn; sparse's mminit_validate_memmodel_limits() WARNs
        k.warn(f"e820: last_pfn clamped to max_arch_pfn = {config.maxmem >> PAGE_SHIFT:#x}: "
               f"{approx_size(config.ram_dropped)} of RAM above MAXMEM ({approx_size(config.maxmem)}, "
               f"MAX_PHYSMEM_BITS {config.layout.max_physmem_bits}) is not used")
    if options.kfence and not config.debug_pagealloc:
        kfence_init_pool(k, options.kfence_pool)
    idt_setup_apic_and_irq_gates(k)
    if config.nr_cpus == 1:
        alternative_instructions(k)
    k.set_phase(Phase.SCHEDULING)  # rest_init(): kernel_init() runs the early initcalls first
    set_real_mode_permissions(k, options.realmode_trampoline)  # do_init_real_mode(), an early_initcall
    k.smp_init()
    if options.profile is not None:
        for pack in options.profile.bpf_packs:
            bpf_prog_pack_alloc(k, pack)
    if k.initrd is not None:  # populate_rootfs() → free_initrd_mem(): PAGE_ALIGN(end)
        pa, size = k.initrd
        free_init_pages(k, k.va(pa), k.va(pa) + align_up(size, PAGE_SIZE))
    return k


UINT32_MAX = 0xFFFFFFFF


def qemu_initrd_address(memory: MemoryMap, size: int) -> int:
    """Where QEMU's Linux loader puts an initrd of ``size`` bytes (hw/i386/x86.c x86_load_linux()).

    The setup header of every modelled kernel has protocol >= 2.12 with XLF_CAN_BE_LOADED_ABOVE_4G
    (arch/x86/boot/header.S, CONFIG_X86_64), so initrd_max is UINT32_MAX, capped below
    below_4g_mem_size - acpi_data_size: the end of the RAM QEMU's e820 gives below 4 GiB (the 128 KiB
    above it is the ACPI data SeaBIOS keeps).  The initrd ends there: (initrd_max - size) & ~4095.
    """
    low_end = max((r.end for r in memory.ram if r.end <= 1 << 32), default=0)
    initrd_max = min(UINT32_MAX, low_end - 1)
    if size <= 0 or size > initrd_max:
        raise ConfigError(f"an initrd of {size} bytes does not fit below {initrd_max + 1:#x}",
                          "give a smaller initrd or more memory below 4 GiB")
    return (initrd_max - size) & ~4095


def late_init(k: X86Kernel) -> None:
    """kernel_init() after the initcalls: free_initmem(), mark_readonly(), SYSTEM_RUNNING."""
    k.set_phase(Phase.FREEING_INITMEM)
    free_initmem(k)
    mark_rodata_ro(k)
    k.set_phase(Phase.RUNNING)


# --------------------------------------------------------------------- memblock
def memblock_regions(k: X86Kernel) -> list[tuple[int, int]]:
    """memblock.memory: e820 RAM trimmed to whole pages, without page 0 and [640K, 1M) (trim_bios_range)."""
    out = []
    for r in k.config.memory.ram:
        start = align_up(max(r.start, PAGE_SIZE), PAGE_SIZE)
        end = align_down(r.end, PAGE_SIZE)
        # e820__range_update(BIOS_BEGIN, BIOS_END - BIOS_BEGIN, ...): the hole becomes reserved, RAM on
        # either side of it stays (a range [0, 2G) keeps [1M, 2G))
        for lo, hi in ((start, min(end, BIOS_BEGIN)), (max(start, BIOS_END), end)):
            if lo < hi:
                out.append((lo, hi))
    return out


def _is_region_memory(regions: list[tuple[int, int]], start: int, size: int) -> bool:
    """memblock_is_region_memory(): [start, start + size) lies inside one memory region."""
    return any(s <= start and start + size <= e for s, e in regions)


def _reserved(k: X86Kernel) -> list[tuple[int, int]]:
    """memblock.reserved at init_mem_mapping() time, as far as the model knows it: the image, and the initrd
    (setup_arch() → early_reserve_initrd() runs first)."""
    out = [(k.image.text, align_up(k.image.end, PAGE_SIZE))]
    if k.initrd is not None:
        out.append((k.initrd[0], align_up(k.initrd[0] + k.initrd[1], PAGE_SIZE)))
    return out


# ------------------------------------------------------------------ init.c
def page_size_mask(config: X86Config) -> set[Level]:
    """probe_page_size_mask(): 2M unless DEBUG_PAGEALLOC; 1G with direct_gbpages (and 2M)."""
    if config.debug_pagealloc:
        return set()
    return {Level.PMD, Level.PUD} if config.gbpages else {Level.PMD}


def init_mem_mapping(k: X86Kernel) -> None:
    """init_mem_mapping(): the ISA range first, then RAM top-down."""
    regions = memblock_regions(k)
    psm = page_size_mask(k.config)
    end = k.config.memory.max_pfn << PAGE_SHIFT
    init_memory_mapping(k, regions, psm, 0, ISA_END_ADDRESS)
    memory_map_top_down(k, regions, psm, ISA_END_ADDRESS, end)


def memory_map_top_down(k: X86Kernel, regions: list[tuple[int, int]], psm: set[Level],
                        map_start: int, map_end: int) -> None:
    """memory_map_top_down(): map from the highest free 2M block down, steps growing x256."""
    real_end = _highest_free_pmd(k, regions, map_start, map_end) + Level.PMD.size
    step_size = Level.PMD.size
    last_start = real_end
    mapped_ram_size = 0
    while last_start > map_start:
        if last_start > step_size:
            start = max(align_down(last_start - 1, step_size), map_start)
        else:
            start = map_start
        mapped_ram_size += init_range_memory_mapping(k, regions, psm, start, last_start)
        last_start = start
        if mapped_ram_size >= step_size:
            step_size <<= 21 - PAGE_SHIFT - 1  # get_new_step_size()
    if real_end < map_end:
        init_range_memory_mapping(k, regions, psm, real_end, map_end)


def _highest_free_pmd(k: X86Kernel, regions: list[tuple[int, int]], lo: int, hi: int) -> int:
    """memblock_phys_alloc_range(PMD_SIZE, PMD_SIZE, lo, hi) top-down, immediately freed."""
    reserved = _reserved(k)
    for start, end in sorted(regions, reverse=True):
        a = align_down(min(end, hi) - Level.PMD.size, Level.PMD.size)
        while a >= max(start, lo):
            if not any(rs < a + Level.PMD.size and a < re for rs, re in reserved):
                return a
            a -= Level.PMD.size
    return align_down(lo, Level.PMD.size)


def init_range_memory_mapping(k: X86Kernel, regions: list[tuple[int, int]], psm: set[Level],
                              r_start: int, r_end: int) -> int:
    """init_range_memory_mapping(): init_memory_mapping() for each memory region inside the range."""
    mapped = 0
    for s, e in regions:
        start = min(max(s, r_start), r_end)
        end = min(max(e, r_start), r_end)
        if start >= end:
            continue
        init_memory_mapping(k, regions, psm, start, end)
        mapped += end - start
    return mapped


def init_memory_mapping(k: X86Kernel, regions: list[tuple[int, int]], psm: set[Level],
                        start: int, end: int) -> None:
    """init_memory_mapping(): split into pieces, map each, record the pfn range as mapped."""
    for s, e, mask in split_mem_range(regions, psm, start, end):
        kernel_physical_mapping_init(k, s, e, mask)
    add_pfn_range_mapped(k, start >> PAGE_SHIFT, end >> PAGE_SHIFT)


def split_mem_range(regions: list[tuple[int, int]], psm: set[Level], start: int,
                    end: int) -> list[tuple[int, int, frozenset[Level]]]:
    """split_mem_range(): 4K head, 2M up to 1G, 1G body, 2M tail, 4K tail; then adjust and merge."""
    pmd, pud = Level.PMD.pages, Level.PUD.pages
    has_2m = frozenset({Level.PMD}) & psm
    has_1g = frozenset({Level.PMD, Level.PUD}) & psm
    mr: list[list] = []

    def save(s: int, e: int, mask: frozenset[Level]) -> None:
        if s < e:
            mr.append([s << PAGE_SHIFT, e << PAGE_SHIFT, set(mask)])

    limit = end >> PAGE_SHIFT
    pfn = start >> PAGE_SHIFT
    end_pfn = min(align_up(pfn, pmd), limit)  # head, if not 2M aligned
    if pfn < end_pfn:
        save(pfn, end_pfn, frozenset())
        pfn = end_pfn
    start_pfn, end_pfn = align_up(pfn, pmd), align_up(pfn, pud)  # big page (2M) range
    end_pfn = min(end_pfn, align_down(limit, pmd))
    if start_pfn < end_pfn:
        save(start_pfn, end_pfn, has_2m)
        pfn = end_pfn
    start_pfn, end_pfn = align_up(pfn, pud), align_down(limit, pud)  # big page (1G) range
    if start_pfn < end_pfn:
        save(start_pfn, end_pfn, has_1g)
        pfn = end_pfn
    start_pfn, end_pfn = align_up(pfn, pmd), align_down(limit, pmd)  # tail big page (2M) range
    if start_pfn < end_pfn:
        save(start_pfn, end_pfn, has_2m)
        pfn = end_pfn
    save(pfn, limit, frozenset())  # tail not big page (4K) range

    # adjust_range_page_size_mask(): upgrade a piece when its whole 2M (1G) is one memory region
    for piece in mr:
        s, e, mask = piece
        if Level.PMD in psm and Level.PMD not in mask:
            lo, hi = align_down(s, Level.PMD.size), align_up(e, Level.PMD.size)
            if _is_region_memory(regions, lo, hi - lo):
                mask.add(Level.PMD)
        if Level.PUD in psm and Level.PUD not in mask:
            lo, hi = align_down(s, Level.PUD.size), align_up(e, Level.PUD.size)
            if _is_region_memory(regions, lo, hi - lo):
                mask.add(Level.PUD)
    merged: list[list] = []
    for piece in mr:  # adjacent pieces of the same page size become one
        if merged and merged[-1][1] == piece[0] and merged[-1][2] == piece[2]:
            merged[-1][1] = piece[1]
        else:
            merged.append(piece)
    return [(s, e, frozenset(m)) for s, e, m in merged]


def add_pfn_range_mapped(k: X86Kernel, start_pfn: int, end_pfn: int) -> None:
    """add_pfn_range_mapped(): pfn_mapped[] (merged) and max_pfn_mapped."""
    ranges = sorted([*k.pfn_mapped, (start_pfn, end_pfn)])
    merged: list[tuple[int, int]] = []
    for s, e in ranges:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    k.pfn_mapped = merged
    k.max_pfn_mapped = max(k.max_pfn_mapped, end_pfn)


# ----------------------------------------------------------------- init_64.c
def kernel_physical_mapping_init(k: X86Kernel, paddr: int, paddr_end: int, mask: frozenset[Level]) -> None:
    """__kernel_physical_mapping_init(): allocate missing PUD (and P4D) tables, then phys_pud_init()."""
    top = Level.PGD if k.config.la57 else Level.P4D
    levels = tuple(Level(level) for level in range(top, Level.PUD, -1))  # pgd -> p4d (5-level), p4d -> pud
    k.alloc_missing_tables(k.layout.va(paddr), k.layout.va(paddr_end), levels)
    _phys_init(k, Level.PUD, paddr, paddr_end, mask)


def _phys_init(k: X86Kernel, level: Level, paddr: int, paddr_end: int, mask: frozenset[Level]) -> None:
    """phys_pud_init() / phys_pmd_init() / phys_pte_init() over [paddr, paddr_end) at ``level``.

    Existing tables are descended into; an existing leaf of an allowed size is
    counted again (only before after_bootmem) and left alone; runs of none
    entries get new leaves (covering whole entries, as pfn_pud()/pfn_pmd() mask
    the address) or new tables.  update_page_count(level, pages) ends each call.
    """
    size = level.size
    allowed = level == Level.PTE or level in mask
    pages = 0
    addr = paddr
    va = k.layout.va
    while addr < paddr_end:
        base = addr & level.mask
        nxt = base + size
        state = k.pt.entry_state(va(base), level)
        if state == EntryState.TABLE and level > Level.PTE:
            _phys_init(k, Level(level - 1), addr, min(nxt, paddr_end), mask)
            addr = nxt
            continue
        if state == EntryState.LEAF:
            if allowed:
                pages += 1  # an allowed large leaf is kept as it is, and counted again before bootmem
                addr = nxt
                continue
            # a large leaf of a size no longer allowed: replaced by a table (never at boot on sane maps)
            old = k.pt.run_at(va(base))
            assert old is not None
            k.pt.unmap(va(base), va(nxt))
            _fill(k, Level(level - 1), addr, min(nxt, paddr_end), mask, x86_large_2_4k(old.flags))
            k.log.append(PgtableAlloc(Level(level - 1)))
            addr = nxt
            continue
        # a stretch of none entries: up to the next entry that holds anything, or the range end
        stop = align_up(paddr_end, size)
        nxt_run = k.pt.first_run_from(va(base))
        if nxt_run is not None:
            stop = min(stop, max(align_down(nxt_run.start - k.layout.page_offset, size), nxt))
        if allowed:
            k.pt.map(va(base), va(stop), level, _leaf_flags(k, level), base >> PAGE_SHIFT)
            pages += (stop - base) // size
        else:
            k.log.append(PgtableAlloc(Level(level - 1), (stop - base) // size))
            _fill(k, Level(level - 1), addr, min(stop, paddr_end), mask, k.kernel_prot(X86.PAGE_KERNEL))
        addr = stop
    if pages:
        k.log.append(BootMapping(va(paddr), va(paddr_end), level, pages))


def _fill(k: X86Kernel, level: Level, paddr: int, paddr_end: int, mask: frozenset[Level],
          prot_4k: int) -> None:
    """Populate fresh tables (every entry none) below a new table: the arithmetic of phys_*_init()."""
    size = level.size
    va = k.layout.va
    if level == Level.PTE or level in mask:
        base, stop = paddr & level.mask, align_up(paddr_end, size)
        flags = prot_4k if level == Level.PTE else _large(prot_4k)
        k.pt.map(va(base), va(stop), level, flags, base >> PAGE_SHIFT)
        k.log.append(BootMapping(va(base), va(stop), level, (stop - base) // size))
        return
    first, last = paddr & level.mask, align_up(paddr_end, size)
    k.log.append(PgtableAlloc(Level(level - 1), (last - first) // size))
    _fill(k, Level(level - 1), paddr, paddr_end, mask, prot_4k)


def _leaf_flags(k: X86Kernel, level: Level) -> int:
    return k.kernel_prot(X86.PAGE_KERNEL if level == Level.PTE else X86.PAGE_KERNEL_LARGE)


def pti_check_boottime_disable(mode: str, cpu_meltdown: bool = False) -> bool:
    """pti_check_boottime_disable() (arch/x86/mm/pti.c): is X86_FEATURE_PTI forced on?

    ``pti=off`` keeps it off, ``pti=on`` forces it, and ``auto`` (no option) turns it on only for a CPU
    with X86_BUG_CPU_MELTDOWN.  The modelled CPU is the QEMU oracle's (``-cpu max`` under TCG), which
    does not have the bug: its oops banner says NOPTI (tests/oracle/data).  Xen PV and mitigations=off,
    which also keep it off, are not modelled.
    """
    if mode in ("off", "unbuilt"):  # unbuilt: the kernel has no CONFIG_MITIGATION_PAGE_TABLE_ISOLATION
        return False
    return mode == "on" or cpu_meltdown


def _large(prot_4k: int) -> int:
    from rofolio.prot import x86_4k_2_large

    return x86_4k_2_large(prot_4k) | X86.PSE


# ------------------------------------------------------------ the kernel image
def map_kernel_highmap(k: X86Kernel) -> None:
    """level2_kernel_pgt after cleanup_highmap(): 2M RWX leaves over [_text, roundup(_brk_end, 2M))."""
    img = k.image
    start = align_down(img.text, Level.PMD.size)
    end = align_up(img.brk_end, Level.PMD.size)
    flags = X86.PAGE_KERNEL_EXEC | X86.PSE  # __PAGE_KERNEL_LARGE_EXEC
    k.pt.map(k.highmap_va(start), k.highmap_va(end), Level.PMD, flags, start >> PAGE_SHIFT)


def kfence_init_pool(k: X86Kernel, pool: int | None) -> None:
    """kfence_init_pool(): arch_kfence_init_pool() splits the pool to 4K, then guard pages go non-present.

    Guard pages (the first two, then every second page) are made non-present
    with a raw set_pte() and a local flush_tlb_one_kernel() (kfence_protect_page()).
    """
    pa = kfence_pool_address(k) if pool is None else pool
    addr = k.va(pa)
    npages = KFENCE_POOL_SIZE >> PAGE_SHIFT
    if not arch_kfence_init_pool(k, addr):
        return
    guards = [0, 1, *range(3, npages, 2)]
    for i in guards:
        page = addr + i * PAGE_SIZE
        run = k.pt.run_at(page)
        if run is not None and run.flags & X86.PRESENT:
            k.pt.set_flags(page, page + PAGE_SIZE, run.flags & ~X86.PRESENT)
    k.flush_tlb_local("kfence_protect_page")


def arch_kfence_init_pool(k: X86Kernel, addr: int) -> bool:
    """arch_kfence_init_pool() (arch/x86/include/asm/kfence.h): page by page over the pool, set_memory_4k(addr, 1)
    wherever lookup_address() finds a leaf larger than 4K; False if a page has no entry.

    One call makes the 2M region holding ``addr`` 4K (a 1G leaf becomes 2M leaves first), so the pages after
    it up to the next 2M boundary are 4K already: the walk visits one page per 2M region, with the same calls.
    """
    end = addr + KFENCE_POOL_SIZE
    page = addr
    while page < end:
        found = k.lookup_address(page)
        if found is None:
            return False
        if found.level != Level.PTE:
            k.set_memory_4k(page, 1)
        page = min(end, align_down(page, Level.PMD.size) + Level.PMD.size)
    return True


def kfence_pool_address(k: X86Kernel) -> int:
    """Where memblock_alloc() put __kfence_pool: below the memmap at the top of RAM (a fit, see fidelity.md).

    kfence_alloc_pool() (mm/kfence/core.c) asks for PAGE_SIZE alignment only, so the pool may straddle two
    2M leaves.
    """
    regions = memblock_regions(k)
    top = max(e for _, e in regions)
    memmap = memmap_pages(sections_spanned(regions, SECTION_SIZE)) << PAGE_SHIFT  # regions in bytes: same count
    return align_down(top - memmap - 2 * KFENCE_POOL_SIZE, PAGE_SIZE)


def set_real_mode_permissions(k: X86Kernel, base: int) -> None:
    """set_real_mode_permissions(): NX over the trampoline, RO over its text+rodata, X over its text."""
    size, ro_size, text_start, text_size = 6 * PAGE_SIZE, 3 * PAGE_SIZE, base + PAGE_SIZE, 2 * PAGE_SIZE
    k.set_memory_nx(k.va(base), size >> PAGE_SHIFT)
    k.set_memory_ro(k.va(base), ro_size >> PAGE_SHIFT)
    k.set_memory_x(k.va(text_start), text_size >> PAGE_SHIFT)


def free_init_pages(k: X86Kernel, begin: int, end: int) -> None:
    """free_init_pages() (arch/x86/mm/init.c): NX then RW before the pages go back; NP with DEBUG_PAGEALLOC."""
    if begin >= end:
        return
    n = (end - begin) >> PAGE_SHIFT
    if k.config.debug_pagealloc:
        k.set_memory_np(begin, n)  # "debug: unmapping init"
    else:
        k.set_memory_nx(begin, n)
        k.set_memory_rw(begin, n)
        # free_reserved_area(..., POISON_FREE_INITMEM, what) (mm/page_alloc.c) fills each page with the poison
        # through its direct-map address: the stores set Dirty again where set_memory_ro() had cleared it
        for va in range(begin, end, PAGE_SIZE):
            pfn = k.valid_virt_pfn(va)
            if pfn is not None:
                k.store_landed(k.page_address(pfn))


def free_kernel_image_pages(k: X86Kernel, begin: int, end: int) -> None:
    """free_kernel_image_pages(): free_init_pages() on high-map addresses, plus NP without alias under PTI."""
    free_init_pages(k, begin, end)
    if k.pti and begin < end:
        k.set_memory_np_noalias(begin, (end - begin) >> PAGE_SHIFT)


def idt_setup_apic_and_irq_gates(k: X86Kernel) -> None:
    """idt_setup_apic_and_irq_gates() (arch/x86/kernel/idt.c): the IDT page is made read-only."""
    k.set_memory_ro(k.highmap_va(k.image.idt_table), 1)


def alternative_instructions(k: X86Kernel) -> None:
    """alternative_instructions(): a uniprocessor kernel frees the SMP alternatives (__smp_locks)."""
    img = k.image
    free_init_pages(k, k.highmap_va(img.init_end), k.highmap_va(img.smp_locks_end))


def bpf_prog_pack_alloc(k: X86Kernel, pack: BpfPack) -> None:
    """bpf_prog_pack_alloc() (kernel/bpf/core.c): vmalloc'ed pack set RO, then X (module area)."""
    pfns = [(pa >> PAGE_SHIFT) + i for pa, count in pack.pages for i in range(count)]
    va = k.vmap(pfns, at=pack.va)
    k.set_memory_ro(va, len(pfns))
    k.set_memory_x(va, len(pfns))


def free_initmem(k: X86Kernel) -> None:
    """free_initmem(): the unused decrypted .bss, then the init sections (arch/x86/mm/init.c)."""
    img = k.image
    # mem_encrypt_free_decrypted_mem(): no SME/SEV, so the unused part of .bss..decrypted goes
    free_init_pages(k, k.highmap_va(img.bss_decrypted_unused), k.highmap_va(img.bss_decrypted_end))
    free_kernel_image_pages(k, k.highmap_va(img.init_begin), k.highmap_va(img.init_end))


def mark_rodata_ro(k: X86Kernel) -> None:
    """mark_rodata_ro() (arch/x86/mm/init_64.c)."""
    img = k.image
    start = k.highmap_va(img.text)
    end = k.highmap_va(img.end_rodata_hpage_align)
    text_end = k.highmap_va(align_up(img.etext, PAGE_SIZE))
    rodata_start = k.highmap_va(img.start_rodata)
    rodata_end = k.highmap_va(align_up(img.end_rodata, PAGE_SIZE))
    k.set_memory_ro(start, (end - start) >> PAGE_SHIFT)
    k.kernel_set_to_readonly = True
    all_end = k.highmap_va(align_up(img.brk_end, Level.PMD.size))
    k.set_memory_nx(text_end, (all_end - text_end) >> PAGE_SHIFT)
    free_kernel_image_pages(k, text_end, rodata_start)  # "unused kernel image (text/rodata gap)"
    free_kernel_image_pages(k, rodata_end, k.highmap_va(img.sdata))  # "(rodata/data gap)"
