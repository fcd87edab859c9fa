"""The page-table line of an x86 oops: arch/x86/mm/fault.c dump_pagetable() (64-bit).

One entry per level from the PGD down (P4D repeats the PGD entry under 4-level paging), stopping after a
none, not-present or leaf entry.  A table entry holds the table page's address, a placement (memblock,
the page allocator), and flags by who linked the table: _KERNPG_TABLE for a CPA split
(__split_large_page()) and for level3_kernel_pgt's entry over the image (head_64.S), _PAGE_TABLE
(_KERNPG_TABLE | _PAGE_USER) for p?d_populate() and pmd_populate_kernel() (boot's phys_*_init(), vmalloc).
"""

from __future__ import annotations

from rofolio.machine import BootRecord, Machine, MachineSpec
from rofolio.units import PAGE_SIZE, GiB, Level, MiB
from tests.conftest import boot_running


def _store(machine: Machine, va: int) -> str:
    return machine.kernel.kernel_store(va).fault.text.splitlines()[3]


def test_a_2m_leaf_cut_from_a_1g_leaf_hangs_from_a_table_the_split_made() -> None:
    m = boot_running(kernel="6.1")  # 8G with GB pages: [4G, 5G) is a 1G leaf at boot
    va = m.kernel.va(4 * GiB + 10 * MiB)
    m.kernel.set_memory_ro(va, 512)
    leaf = m.kernel.lookup_address(va).entry
    assert _store(m, va) == f"PGD ?067 P4D ?067 PUD ?063 PMD {leaf:x}"


def test_a_4k_leaf_in_a_2m_region_that_boot_mapped_hangs_from_a_populated_pmd_and_a_split_pte_table() -> None:
    m = boot_running(kernel="6.1", gbpages=False)
    va = m.kernel.va(6 * GiB)
    m.kernel.set_memory_ro(va, 1)
    assert _store(m, va) == "PGD ?067 P4D ?067 PUD ?067 PMD ?063 PTE 8000000180000161"  # 6.1: RO keeps Dirty


def test_the_kernel_image_hangs_from_level2_kernel_pgt_which_head_64_links_with_kernpg_table() -> None:
    m = boot_running(kernel="7.2")
    rodata = m.kernel.highmap_va(m.kernel.image.start_rodata)
    assert _store(m, rodata).startswith("PGD ?067 P4D ?067 PUD ?063 PMD ")


def test_the_kernpg_table_entry_covers_exactly_the_images_gigabyte_from_start_kernel_map() -> None:
    # level3_kernel_pgt's entry 510 spans [__START_KERNEL_map, MODULES_VADDR); entry 511 is level2_fixmap_pgt
    k = boot_running(kernel="7.2").kernel
    lo, hi = k.layout.start_kernel_map, k.layout.modules_vaddr
    assert hi - lo == GiB
    flags = [k.table_entry_flags(va, Level.PUD) & 0xFFF for va in (lo, hi - PAGE_SIZE, hi)]
    assert [f"{f:03x}" for f in flags] == ["063", "063", "067"]


def test_a_not_present_pte_ends_the_line_with_its_inverted_entry() -> None:
    m = boot_running(kernel="7.2", gbpages=False)
    pfn = (6 * GiB) // PAGE_SIZE
    m.set_direct_map("set_direct_map_invalid_noflush", pfn)
    line = _store(m, m.kernel.va(6 * GiB))
    assert line.startswith("PGD ?067 P4D ?067 PUD ?067 PMD ?063 PTE ")
    assert line.split()[-1] == f"{m.kernel.lookup_address(m.kernel.va(6 * GiB)).entry:x}"


def test_a_record_gives_the_table_pages_and_the_line_reads_as_debian_6_1_printed_it() -> None:
    # Debian 6.1.192 at 8G under QEMU, after set_memory_ro() of the 2M at 0x40a00000 (tests/oracle/data/
    # experiments-8G.serial.log): PGD 4401067 P4D 4401067 PUD 101fe3063 PMD 8000000040a001e1
    spec = MachineSpec.build(mem=8 * GiB, kernel="6.1")
    page_offset = 0xFFFF888000000000
    tables = ((int(Level.P4D), page_offset, 0x4401000), (int(Level.PUD), page_offset + 1 * GiB, 0x101FE3000))
    m = Machine.boot(spec, record=BootRecord(source="test", tables=tables))
    m.finish_boot()
    va = m.kernel.va(0x40A00000)
    m.kernel.set_memory_ro(va, 512)
    assert _store(m, va) == "PGD 4401067 P4D 4401067 PUD 101fe3063 PMD 8000000040a001e1"
