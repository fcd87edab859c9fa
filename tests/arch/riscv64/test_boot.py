"""riscv64's linear map at boot and the changes pageattr.c makes to it, with exact figures.

The 8G machine's layout is the one Debian's 7.2.13+deb14-riscv64 kernel built under QEMU 7.2 (virt, Sv48,
CONFIG_KFENCE with sample interval 0, rodata on), as `rofolio oracle riscv64-boot` read it from the guest's
swapper_pg_dir, less the one page a boot-time set_memory_ro() of a vmalloc page split (an input the oracle
hands the model separately).
"""

from __future__ import annotations

import pytest

from rofolio.arch.riscv64 import boot, ptdump
from rofolio.arch.riscv64.config import Riscv64Config
from rofolio.arch.riscv64.pageattr import KernelBug
from rofolio.arch.riscv64.pgtable import RISCV
from rofolio.errors import AddressError, ConfigError
from rofolio.events import BootMapping, EntryWrite, Flush, FlushKind, PgtableAlloc, Split
from rofolio.machine import Machine, MachineSpec
from rofolio.physmem import MemoryMap, MemRange
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, GiB, Level, align_up
from tests.arch.riscv64.conftest import CPUS, boot_riscv64

DEBIAN_72_VIRT_8G = [
    "---[ Linear mapping ]---",
    "0xffffaf8000000000-0xffffaf8000200000    0x0000000080000000         2M PMD .   ..     ..   D A G . . W R V",
    "0xffffaf8000200000-0xffffaf8001000000    0x0000000080200000        14M PMD .   ..     ..   D A G . . . R V",
    "0xffffaf8001000000-0xffffaf8001200000    0x0000000081000000         2M PMD .   ..     ..   D A G . . W R V",
    "0xffffaf8001200000-0xffffaf8001400000    0x0000000081200000         2M PTE .   ..     ..   D A G . . W R V",
    "0xffffaf8001400000-0xffffaf8002200000    0x0000000081400000        14M PMD .   ..     ..   D A G . . . R V",
    "0xffffaf8002200000-0xffffaf8040000000    0x0000000082200000       990M PMD .   ..     ..   D A G . . W R V",
    "0xffffaf8040000000-0xffffaf81c0000000    0x00000000c0000000         6G PUD .   ..     ..   D A G . . W R V",
    "0xffffaf81c0000000-0xffffaf81ffe00000    0x0000000240000000      1022M PMD .   ..     ..   D A G . . W R V",
    "0xffffaf81ffe00000-0xffffaf8200000000    0x000000027fe00000         2M PTE .   ..     ..   D A G . . W R V",
]


def test_debian_72_virt_linear_map_after_boot_is_the_measured_one() -> None:
    """create_linear_mapping_page_table(): 2M below the image, the text alias 2M read-only, RAM up to 3G in 2M
    and then 1G leaves, the KFENCE pool at the top in 4K; free_initmem() made [__init_begin, __init_end)'s alias
    writable, splitting the 2M leaf the end falls in; mark_rodata_ro() made the rodata alias read-only."""
    k = boot_riscv64(8 * GiB, kfence=True, kfence_sample_interval=0, nr_cpus=1)
    assert ptdump.ptdump_lines(k) == DEBIAN_72_VIRT_8G


def test_boot_tables_and_the_late_init_split() -> None:
    k = boot_riscv64(8 * GiB, running=False, kfence=True, kfence_sample_interval=0)
    c = k.log.counters
    # Sv48: one PUD table for the 512G entry, PMD tables for the 1G regions holding 2M leaves (0-1G, 7G),
    # PTE tables for the 2M pool; nothing was split yet
    assert (c.pgtables_allocated, sum(c.splits.values())) == (4, 0)
    boot.late_init(k)
    c = k.log.counters
    # free_initmem(): set_memory_rw_nx() splits the 2M leaf __init_end falls in (one PTE table), then
    # set_memory_nx(); mark_rodata_ro(): two set_memory_ro() calls, covered 2M leaves: no split
    assert (c.pgtables_allocated, c.splits[Level.PMD], c.splits[Level.PUD]) == (5, 1, 0)
    assert [e.reason for e in k.log.events if isinstance(e, Flush)] == [
        "free_initmem", "free_initmem", "mark_rodata_ro", "mark_rodata_ro"]


def test_sv39_has_no_1g_leaves_and_debug_pagealloc_no_huge_ones() -> None:
    """best_map_size(): a PUD leaf needs pgtable_l4_enabled; under debug_pagealloc every leaf is 4K."""
    sv39 = boot_riscv64(8 * GiB, sv=39)
    assert {r.level for r in sv39.pt.runs()} == {Level.PMD, Level.PTE}
    assert sv39.layout.page_offset == 0xFFFFFFD600000000
    dpa = boot_riscv64(2 * GiB, debug_pagealloc=True)
    assert {r.level for r in dpa.pt.runs()} == {Level.PTE}


def test_rfc_step_splits_one_1g_leaf_and_flushes_everything_once() -> None:
    """arch_make_folio_readonly() of a 2M-aligned 2M folio inside a 1G leaf: split_linear_mapping() splits the
    1G leaf (one table), the 2M entry is then covered whole; __set_memory() walks the range twice (2 entry
    writes) and ends with flush_tlb_all() to the 7 other harts."""
    m = Machine.boot(MachineSpec.build(arch="riscv64", mem="8G", cpus=8))
    before = m.counters.copy()
    pfn = (5 * GiB) >> PAGE_SHIFT
    assert m.kernel.arch_make_folio_readonly(pfn, 512) == 0  # type: ignore[attr-defined]
    c = m.counters
    assert (c.splits[Level.PUD] - before.splits[Level.PUD], c.splits[Level.PMD] - before.splits[Level.PMD]) == (1, 0)
    assert (c.pgtables_allocated - before.pgtables_allocated, c.entries_written - before.entries_written) == (1, 2)
    assert (c.flushes_all - before.flushes_all, c.ipis - before.ipis) == (1, 7)
    found = m.lookup(m.page_address(pfn))
    assert (found.level, found.writable, found.present) == (Level.PMD, False, True)
    assert m.kernel.arch_make_folio_writable(pfn, 512) == 0  # type: ignore[attr-defined]
    assert m.direct_map_writable(pfn)


def test_one_page_in_a_1g_leaf_takes_two_splits() -> None:
    k = boot_riscv64(8 * GiB)
    split_before = len([e for e in k.log.events if isinstance(e, Split)])
    assert k.set_memory_ro(k.va(5 * GiB + 4096), 1) == 0
    splits = [e for e in k.log.events if isinstance(e, Split)][split_before:]
    assert [(e.addr, e.level) for e in splits] == [(k.va(5 * GiB), Level.PUD), (k.va(5 * GiB), Level.PMD)]
    assert k.lookup(k.va(5 * GiB + 4096)).flags & (RISCV.READ | RISCV.WRITE) == RISCV.READ  # type: ignore[union-attr]
    assert k.lookup(k.va(5 * GiB)).flags & RISCV.WRITE  # type: ignore[union-attr]


def test_invalidated_pages_still_read_as_present_to_kernel_page_present() -> None:
    """pte_present() counts _PAGE_PROT_NONE, which is _PAGE_GLOBAL: a kernel PTE with V cleared by
    set_direct_map_invalid_noflush() is still "present" to kernel_page_present(), while a CPU access faults."""
    k = boot_riscv64(8 * GiB)
    pfn = (5 * GiB) >> PAGE_SHIFT
    assert k.set_direct_map_invalid_noflush(pfn) == 0
    assert (k.kernel_page_present(pfn), k.direct_map_present(pfn)) == (True, False)


def test_kfence_guard_pages_lose_v_only_with_a_sample_interval() -> None:
    """kfence_init_pool(): pages 0 and 1 and every object's right guard page (255): 257 PTEs without V."""
    on = boot_riscv64(2 * GiB, kfence=True)
    off = boot_riscv64(2 * GiB, kfence=True, kfence_sample_interval=0)
    assert on.kfence_pool == off.kfence_pool == 4 * GiB - (2 << 20)

    def invalid(k: object) -> int:
        base = k.va(k.kfence_pool)  # type: ignore[attr-defined]
        return sum(1 for i in range(512) if not k.lookup(base + (i << 12)).present)  # type: ignore[attr-defined]

    assert (invalid(on), invalid(off)) == (257, 0)
    # kfence_protect_page(): each protect flushes that page on this hart only (no IPI)
    local = [e for e in on.log.events if isinstance(e, Flush) and e.reason == "kfence_protect_page"]
    assert len(local) == 257 and {(e.flush, e.pages, e.cpus, e.ipis) for e in local} == {(FlushKind.PAGES, 1, 1, 0)}


def test_set_memory_on_a_vmap_area_oopses_and_on_a_vmalloc_area_changes_the_alias() -> None:
    """__set_memory() reads area->pages: vmap() keeps none (a NULL dereference); a vmalloc area's pages get
    their linear alias split and changed."""
    k = boot_riscv64(8 * GiB)
    pfn = (5 * GiB) >> PAGE_SHIFT
    with pytest.raises(KernelBug, match="vmap"):
        k.set_memory_ro(k.vmap([pfn]), 1)
    addr = k.vmalloc([pfn + 1, pfn + 7])
    assert k.set_memory_ro(addr, 2) == 0
    assert [k.direct_map_writable(pfn + i) for i in (0, 1, 7)] == [True, False, False]


def test_ram_beyond_the_linear_map_is_dropped_with_a_warning() -> None:
    """setup_bootmem(): Sv39's linear map is 128G; RAM above phys_ram_base + 128G is removed."""
    k = boot_riscv64(256 * GiB, sv=39)
    assert k.memory.ram[-1].end == 2 * GiB + 128 * GiB
    assert any(getattr(e, "text", "").startswith("Physical memory overflows the linear mapping size: region "
                                                 "above 0x0000002080000000 removed") for e in k.log.events)


def test_rodata_off_keeps_the_rodata_alias_writable_and_other_strings_warn() -> None:
    k = boot_riscv64(2 * GiB, rodata="off")
    rodata = k.config.kernel_image.start_rodata
    assert k.lookup(k.va(rodata)).writable  # type: ignore[union-attr]
    assert not k.lookup(k.va(k.config.kernel_image.start)).writable  # type: ignore[union-attr]  # text alias
    k = boot_riscv64(2 * GiB, rodata="full")
    assert not k.lookup(k.va(rodata)).writable  # type: ignore[union-attr]
    assert any(getattr(e, "text", "") == "Invalid option string for rodata: 'full'" for e in k.log.events)


def test_a_512g_leaf_is_refused() -> None:
    """best_map_size() would give Sv57 a 512G leaf where RAM starts 512G-aligned; the model has none."""
    with pytest.raises(ConfigError, match="512G linear-map leaf"):
        boot.boot(Riscv64Config(memory=MemoryMap.flat(1024 * GiB, base=512 * GiB), sv=57))


def test_set_direct_map_valid_noflush_of_no_pages_returns_0_and_does_nothing() -> None:
    """__set_memory() returns 0 for zero pages before it walks or flushes."""
    k = boot_riscv64(8 * GiB)
    before = k.log.appended
    assert k.set_direct_map_valid_noflush((5 * GiB) >> PAGE_SHIFT, 0, False) == 0
    assert not any(isinstance(e, (Flush, Split)) for e in k.log.events[before:])


def test_set_memory_of_a_kernel_image_address_changes_its_linear_alias_too() -> None:
    """__set_memory() of an address in the kernel mapping (is_kernel_mapping()) splits and changes the linear
    alias of the range (lm_alias() of both ends) before it walks the image range itself."""
    k = boot_riscv64(8 * GiB, running=False)  # before mark_rodata_ro(): the rodata alias is writable 2M leaves
    image = k.config.kernel_image
    page = image.start_rodata + 5 * PAGE_SIZE
    before = k.log.appended
    assert k.set_memory_ro(image.virt(page), 1) == 0
    assert [k.lookup(k.va(page + i * PAGE_SIZE)).writable for i in (-1, 0, 1)] == [True, False, True]  # type: ignore[union-attr]
    splits = [e for e in k.log.events[before:] if isinstance(e, Split)]
    assert [(e.addr, e.level) for e in splits] == [(k.va(image.start_rodata), Level.PMD)]


def test_set_memory_of_a_module_address_reads_its_vm_area_and_of_no_mapping_changes_nothing() -> None:
    """is_vmalloc_or_module_addr() counts [MODULES_VADDR, MODULES_END), the 2G below the image: find_vm_area()
    finds no area there (the model loads no module), a NULL dereference.  An address in no mapping at all is
    only walked: nothing changes, 0, and flush_tlb_all() all the same."""
    k = boot_riscv64(8 * GiB)
    image = k.config.kernel_image
    for module in (image.virt(image.start) - PAGE_SIZE, align_up(image.virt(image.end), PAGE_SIZE) - 2 * GiB):
        with pytest.raises(KernelBug, match="in no vmalloc area"):
            k.set_memory_ro(module, 1)
    before = ptdump.ptdump_lines(k)
    mark = k.log.appended
    assert k.set_memory_ro(align_up(image.virt(image.end), PAGE_SIZE) + Level.PMD.size, 1) == 0
    assert ptdump.ptdump_lines(k) == before
    assert [type(e) for e in k.log.events[mark:] if isinstance(e, (EntryWrite, Split, Flush))] == [Flush]


def test_a_negative_page_count_is_refused() -> None:
    k = boot_riscv64(8 * GiB)
    with pytest.raises(AddressError, match="negative page count"):
        k.set_memory_ro(k.va(5 * GiB), -1)


@pytest.mark.parametrize("gib", [5, 8])
def test_ptdump_passes_over_a_1g_leaf_whose_v_bit_is_clear(gib: int) -> None:
    """pud_leaf() needs V: ptdump_pud_entry() notes nothing for the invalidated GiB and the walk does not descend,
    so the GiB belongs to the line before it, which note_page() ends where the next note starts: the 6G PUD line
    prints as if it were whole, whether the GiB is inside it (5G) or its last (8G, then 2M leaves follow)."""
    k = boot_riscv64(8 * GiB, kfence=True, kfence_sample_interval=0, nr_cpus=1)
    assert k.set_direct_map_valid_noflush((gib * GiB) >> PAGE_SHIFT, GiB >> PAGE_SHIFT, False) == 0
    assert not k.lookup(k.va(gib * GiB)).present  # type: ignore[union-attr]
    assert ptdump.ptdump_lines(k) == DEBIAN_72_VIRT_8G


def test_ptdump_runs_the_last_line_over_an_invalid_last_gib_to_the_hole_after_ram() -> None:
    """Without KFENCE [3G, 10G) is 1G leaves; the last one invalidated, the line ends at the next note, the hole
    where RAM stops (10G): 7G, as before."""
    k = boot_riscv64(8 * GiB, nr_cpus=1)
    whole = ptdump.ptdump_lines(k)
    assert k.set_direct_map_valid_noflush((9 * GiB) >> PAGE_SHIFT, GiB >> PAGE_SHIFT, False) == 0
    assert ptdump.ptdump_lines(k) == whole and whole[-1].split()[2:4] == ["7G", "PUD"]


def test_ram_ranges_that_touch_are_mapped_as_one() -> None:
    """memblock_add() merges touching regions, and create_linear_mapping_page_table() maps memblock's ranges: a
    1G leaf may cross where two ranges of the memory map meet."""
    whole = boot_riscv64(8 * GiB, kfence=True, kfence_sample_interval=0)
    joined = boot.boot(Riscv64Config(memory=MemoryMap.from_ram([(2 * GiB, 3 * GiB + GiB // 2),
                                                                (3 * GiB + GiB // 2, 10 * GiB)]),
                                     kfence=True, kfence_sample_interval=0, nr_cpus=CPUS))
    boot.late_init(joined)
    assert ptdump.ptdump_lines(joined) == ptdump.ptdump_lines(whole)


def test_a_no_map_region_where_dram_starts_still_sets_phys_ram_base() -> None:
    """setup_bootmem() takes phys_ram_base from memblock_start_of_DRAM() before the device tree's no-map regions
    are marked (they stay in memblock.memory): 4M of no-map at 2G leave the linear map's offsets, and its 1G
    leaves from 3G, as they are; only the 4M is not mapped."""
    nomap = MemoryMap((MemRange(2 * GiB, 2 * GiB + (4 << 20), "reserved"), MemRange(2 * GiB + (4 << 20), 10 * GiB)))
    k = boot.boot(Riscv64Config(memory=nomap))
    assert k.layout.phys_ram_base == 2 * GiB
    assert k.lookup(k.va(2 * GiB)) is None or not k.lookup(k.va(2 * GiB)).present  # type: ignore[union-attr]
    assert k.lookup(k.va(3 * GiB)).level == Level.PUD  # type: ignore[union-attr]


HOLE = 3 * GiB + (1 << 20)  # RAM stops 1M into a 2M region and starts again 2M later: two PTE tables with none PTEs


@pytest.mark.parametrize("first", [HOLE - PAGE_SIZE, HOLE + (2 << 20) - PAGE_SIZE])
def test_the_walk_writes_the_none_ptes_of_a_pte_table_it_crosses(first: int) -> None:
    """pageattr_pte_entry() runs for every PTE of an existing PTE table, none ones too: beside a hole a none PTE
    becomes 0 | the set mask (pfn 0, V clear), on both walks of __set_memory(), whether the walk starts in the
    hole or runs into it."""
    k = boot.boot(Riscv64Config(memory=MemoryMap.from_ram([(2 * GiB, HOLE), (HOLE + (2 << 20), 10 * GiB)])))
    none = HOLE if first < HOLE else first
    assert k.lookup(k.va(none)).flags == 0  # type: ignore[union-attr]
    mark = k.log.appended
    assert k.set_memory_ro(k.va(first), 2) == 0
    written = [(e.addr, e.old, e.new) for e in k.log.events[mark:] if isinstance(e, EntryWrite)]
    assert written.count((k.va(none), 0, RISCV.READ)) == 1 and written.count((k.va(none), RISCV.READ, RISCV.READ)) == 1
    after = k.lookup(k.va(none))
    assert (after.level, after.flags, after.pfn, after.present) == (Level.PTE, RISCV.READ, 0, False)  # type: ignore[union-attr]


def test_splitting_a_1g_leaf_allocates_a_pmd_table_and_a_2m_leaf_a_pte_table() -> None:
    """__split_linear_mapping_pud() takes a page for the 512 PMDs, __split_linear_mapping_pmd() one for the PTEs."""
    k = boot_riscv64(8 * GiB)
    mark = k.log.appended
    assert k.set_memory_ro(k.va(5 * GiB), 1) == 0
    assert [(type(e).__name__, e.level) for e in k.log.events[mark:] if isinstance(e, (PgtableAlloc, Split))] == [
        ("PgtableAlloc", Level.PMD), ("Split", Level.PUD), ("PgtableAlloc", Level.PTE), ("Split", Level.PMD)]


def test_set_memory_past_the_end_of_a_vmalloc_area_reads_past_its_pages_array() -> None:
    """__set_memory() indexes area->pages[] for every page asked for: more pages than the area has reads past the
    array (the model stops there, naming the index)."""
    k = boot_riscv64(8 * GiB)
    pfn = (5 * GiB) >> PAGE_SHIFT
    addr = k.vmalloc([pfn, pfn + 1])
    with pytest.raises(KernelBug, match=r"reads area->pages\[2\] past the end of an area of 2 pages"):
        k.set_memory_ro(addr + PAGE_SIZE, 2)
    assert k.set_memory_ro(addr + PAGE_SIZE, 1) == 0


def test_riscv_keeps_no_direct_map_counts_and_boot_maps_exactly_the_linear_map() -> None:
    """riscv has no direct_pages_count[] and no direct_map_* vmstat events (both are x86's): boot's mappings count
    nothing, and neither do splits; what boot mapped is the linear map the page table holds."""
    k = boot_riscv64(8 * GiB, running=False, kfence=True)
    mapped = [(e.start, e.end, e.level) for e in k.log.events if isinstance(e, BootMapping)]
    assert sum(end - start for start, end, _ in mapped) == sum(r.end - r.start for r in k.memory.ram)
    table = [(r.start, r.end) for r in k.pt.runs(*k.direct_map_bounds())]
    assert sum(end - start for start, end in table) == sum(end - start for start, end, _ in mapped)
    assert all(e.counted == 0 for e in k.log.events if isinstance(e, BootMapping))
    assert k.set_memory_ro(k.va(5 * GiB), 1) == 0  # a 1G and a 2M split
    c = k.log.counters
    assert sum(c.splits.values()) == 2
    assert set(c.direct_pages.values()) == {0} and set(c.vmstat().values()) == {0}


def test_a_split_below_a_1g_leaf_without_v_follows_a_bogus_pointer() -> None:
    """pud_leaf() needs V: a GiB invalidated whole is neither split nor skipped by __split_linear_mapping_pmd(),
    which reads the leaf's PFN as a PMD table (docs/fidelity.md, riscv64 finding 4)."""
    k = boot_riscv64(8 * GiB)
    assert k.set_direct_map_valid_noflush((5 * GiB) >> PAGE_SHIFT, GiB >> PAGE_SHIFT, False) == 0
    with pytest.raises(KernelBug, match=rf"paging request: split_linear_mapping\(\) reads the pmd entry of "
                                        rf"{k.va(5 * GiB):#x} through a leaf pud entry"):
        k.set_memory_ro(k.va(5 * GiB), 1)


def test_no_room_for_the_kfence_pool_is_the_boot_that_cannot_be() -> None:
    """memblock's top-down pool: not in the image's range when the image reaches its top 2M, nor in a range
    smaller than 2M; with nowhere else left the kernel's BUG_ON(!kfence_pool) would stop the boot."""
    image_top = 2 * GiB + (39 << 20)  # the image's reservation ends at 2G + 38M: 1M short of a pool above it
    small = [(3 * GiB + i * (2 << 20), 3 * GiB + i * (2 << 20) + (1 << 20)) for i in range(30)]
    with pytest.raises(ConfigError, match=r"no room for the 2M KFENCE pool \(BUG_ON\(!kfence_pool\) at boot\)"):
        boot.boot(Riscv64Config(memory=MemoryMap.from_ram([(2 * GiB, image_top), *small]), kfence=True))


def test_kfence_protect_page_writes_each_guard_pte_by_its_address() -> None:
    """kfence_init_pool() -> kfence_protect_page(): one PTE write per guard page, at that page, V cleared."""
    from rofolio.arch.kernel import kfence_guard_pages

    k = boot_riscv64(2 * GiB, kfence=True)
    base = k.va(k.kfence_pool)  # type: ignore[arg-type]
    writes = [e for e in k.log.events if isinstance(e, EntryWrite) and base <= e.addr < base + (2 << 20)]
    assert [(e.addr, e.level, e.count, e.old & ~e.new) for e in writes] == [
        (base + i * PAGE_SIZE, Level.PTE, 1, RISCV.PRESENT) for i in kfence_guard_pages()]


@pytest.mark.parametrize(("ram", "pool"), [
    # the image's range cannot hold the pool above its reservation: memblock goes on down to the range below it
    ([(1 * GiB, 1 * GiB + (64 << 20)), (2 * GiB, 2 * GiB + (39 << 20))], 1 * GiB + (62 << 20)),
    # a range of exactly 2M at the top holds it, at its start
    ([(2 * GiB, 2 * GiB + (128 << 20)), (3 * GiB, 3 * GiB + (2 << 20))], 3 * GiB),
])
def test_memblock_puts_the_kfence_pool_in_the_highest_range_that_holds_it(ram: list[tuple[int, int]],
                                                                          pool: int) -> None:
    from rofolio.arch.riscv64.config import Riscv64KernelImage

    k = boot.boot(Riscv64Config(memory=MemoryMap.from_ram(ram), kfence=True,
                                image=Riscv64KernelImage.qemu_virt(2 * GiB)))
    assert k.kfence_pool == pool
