"""x86-64 boot: init_mem_mapping()'s direct map and the counts update_page_count() keeps.

The figures for the QEMU machines are derived from the kernel source
(arch/x86/mm/init.c, init_64.c) and agree with what a Debian 6.1 kernel prints
under QEMU once later boot activity is accounted for (docs/fidelity.md).
"""

from __future__ import annotations

from rofolio.arch.x86_64.boot import init_mem_mapping, split_mem_range
from rofolio.arch.x86_64.config import X86Config
from rofolio.arch.x86_64.kernel import X86Kernel
from rofolio.arch.x86_64.ptdump import meminfo_lines, ptdump_lines
from rofolio.machine import Machine, MachineSpec
from rofolio.physmem import MemoryMap
from rofolio.units import GiB, Level, MiB


def mapped(mem: int, **options: object) -> X86Kernel:
    """A kernel right after init_mem_mapping(), before anything else changed the direct map."""
    k = X86Kernel(X86Config.qemu(mem, **options))
    init_mem_mapping(k)
    return k


def test_top_down_steps_count_the_top_1g_leaf_three_times_on_8g() -> None:
    k = mapped(8 * GiB)
    pages = k.log.counters.direct_pages
    assert (pages[Level.PTE], pages[Level.PMD], pages[Level.PUD]) == (992, 1022, 8)
    # ... while the page tables hold six 1G leaves: [1G, 2G) and [4G, 9G)
    cov = k.direct_map_coverage()
    assert cov[Level.PUD] == 6 * GiB
    assert cov[Level.PMD] == 1022 * 2 * MiB and cov[Level.PTE] == 992 * 4096


def test_without_gbpages_the_counts_equal_the_page_tables() -> None:
    k = mapped(8 * GiB, gbpages=False)
    pages = k.log.counters.direct_pages
    assert (pages[Level.PTE], pages[Level.PMD], pages[Level.PUD]) == (992, 4094, 0)
    cov = k.direct_map_coverage()
    assert cov[Level.PMD] == 4094 * 2 * MiB and cov[Level.PTE] == 992 * 4096


def test_2g_machine_has_no_1g_leaf_because_1g_to_2g_is_not_all_ram() -> None:
    k = mapped(2 * GiB)
    pages = k.log.counters.direct_pages
    assert (pages[Level.PTE], pages[Level.PMD], pages[Level.PUD]) == (992, 1022, 0)


def test_isa_range_is_mapped_with_4k_pages_including_the_bios_hole() -> None:
    k = mapped(8 * GiB)
    for pa in (0, 0x9F000, 0xA0000, 0xFF000):
        assert k.lookup_address(k.va(pa)).level == Level.PTE
    assert k.pfn_range_is_mapped(0, 0x100)
    assert not k.pfn_range_is_mapped(0xBFFE0, 0xBFFE1)  # SeaBIOS's reserved top of low RAM


def test_a_ram_range_from_0_keeps_its_ram_above_the_bios_hole() -> None:
    # trim_bios_range() reserves [640K, 1M) only: [1M, 2G) stays RAM and is mapped (it was all dropped)
    k = X86Kernel(X86Config(memory=MemoryMap.from_ram([(0, 2 * GiB), (4 * GiB, 10 * GiB)])))
    init_mem_mapping(k)
    assert k.lookup_address(k.va(1 * GiB)).level == Level.PUD
    assert k.lookup_address(k.va(2 * MiB)).level == Level.PMD
    assert k.direct_map_coverage()[Level.PUD] == 7 * GiB  # [1G, 2G) and [4G, 10G)


def test_split_mem_range_upgrades_a_2m_piece_to_1g_inside_one_memory_region() -> None:
    regions = [(0x1000, 0x9F000), (0x100000, 0xBFFE0000), (0x100000000, 0x240000000)]
    pieces = split_mem_range(regions, {Level.PMD, Level.PUD}, 0x23FE00000, 0x240000000)
    assert pieces == [(0x23FE00000, 0x240000000, frozenset({Level.PMD, Level.PUD}))]


def test_debug_pagealloc_maps_everything_with_4k_pages_and_drops_the_1g_line() -> None:
    m = Machine.boot(MachineSpec.build(mem=4 * GiB, debug_pagealloc=True))
    cov = m.kernel.direct_map_coverage()
    assert cov[Level.PMD] == cov[Level.PUD] == 0
    assert not any(line.startswith("DirectMap1G") for line in m.meminfo_lines())


def test_5level_paging_puts_the_direct_map_at_0xff11000000000000() -> None:
    m = Machine.boot(MachineSpec.build(mem=8 * GiB, paging=5))
    assert m.kernel.lookup_address(0xFF11000000000000) is not None
    assert m.ptdump_lines()[1].startswith("0xff11000000000000-")


def test_mark_rodata_ro_leaves_the_text_alias_read_only_in_2m_pages() -> None:
    m = Machine.boot(MachineSpec.build(mem=8 * GiB))
    m.finish_boot()
    k = m.kernel
    text = k.lookup_address(k.va(k.image.text))
    assert text.level == Level.PMD and not text.writable
    gap = k.lookup_address(k.va(k.image.etext + 4096 * 4))  # the freed text/rodata gap
    assert gap.level == Level.PTE and gap.writable


def test_meminfo_lines_are_formatted_like_arch_report_meminfo() -> None:
    k = mapped(8 * GiB)
    assert meminfo_lines(k) == ["DirectMap4k:        3968 kB", "DirectMap2M:     2093056 kB",
                                "DirectMap1G:     8388608 kB"]


def test_ptdump_lines_follow_the_x86_debugfs_layout() -> None:
    k = mapped(8 * GiB)
    lines = ptdump_lines(k)
    assert lines[0] == "---[ Low Kernel Mapping ]---"
    # printk_prot(): USR, RW|ro, PWT, PCD, PSE, PAT, GLB, NX|x columns, then the level name
    blank = "    "
    pte_rw = blank + "RW " + blank * 4 + "GLB " + "NX " + "pte"
    pud_rw = blank + "RW " + blank * 2 + "PSE " + blank + "GLB " + "NX " + "pud"
    assert lines[1] == "0xffff888000000000-0xffff888000200000           2M " + pte_rw
    assert "0xffff888040000000-0xffff888080000000           1G " + pud_rw in lines
    # the hole between 3G and 4G is a none PUD entry: 30 blanks, level pud
    assert "0xffff8880c0000000-0xffff888100000000           1G " + " " * 30 + "pud" in lines
    # beyond RAM the rest of the first 512G is none PUDs, then none top-level entries ("pgd")
    assert lines[-1] == "0xffff890000000000-0xffffc90000000000          64T " + " " * 30 + "pgd"


def test_with_the_guests_boot_record_the_model_boots_as_the_real_kernel() -> None:
    """Debian 6.1.0-57 under QEMU (8G, -smp 1, nokaslr): /proc/meminfo and the page tables, given what its boot
    placed (the initrd and the BPF JIT pack, read from the same guest)."""
    from rofolio.oracle.guest import parse_log
    from rofolio.oracle.record import record_of
    from tests.oracle.conftest import recorded

    record = record_of(parse_log(recorded("boot-8G-max-la57.serial.log")))
    m = Machine.boot(MachineSpec.build(mem=8 * GiB, kernel="6.1", cpus=1), record=record)
    m.finish_boot()
    assert m.counters.meminfo_kb() == {"DirectMap4k": 24448, "DirectMap2M": 4169728, "DirectMap1G": 6291456}
    assert all(v == 0 for v in m.counters.vmstat().values())
    cov = m.kernel.direct_map_coverage()
    assert (cov[Level.PTE] >> 10, cov[Level.PMD] >> 10, cov[Level.PUD] >> 10) == (14208, 4179968, 4194304)
