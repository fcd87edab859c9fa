"""Sparsemem sections: the memmap sparse_init() reserves covers each present section once."""

from hypothesis import given
from hypothesis import strategies as st

from rofolio.machine import Machine, MachineSpec
from rofolio.physmem import MemoryMap, MemRange, sections_spanned

SECTION = 32768  # 128 MiB of 4K pages (SECTION_SIZE_BITS 27 on x86-64)
SMALL = 16  # the count does not depend on the unit: small sections keep the brute force cheap


@st.composite
def sorted_disjoint_ranges(draw: st.DrawFn) -> list[tuple[int, int]]:
    cuts = sorted(set(draw(st.lists(st.integers(0, 40 * SMALL), max_size=12))))
    return [(s, e) for s, e in zip(cuts[::2], cuts[1::2], strict=False) if s < e]


@given(sorted_disjoint_ranges())
def test_memmap_counts_each_present_section_once(ranges: list[tuple[int, int]]) -> None:
    present = {pfn // SMALL for s, e in ranges for pfn in range(s, e)}
    assert sections_spanned(ranges, SMALL) == len(present)


def test_two_ranges_in_one_section_need_one_memmap_section() -> None:
    assert sections_spanned([(0, 100), (200, 300)], SECTION) == 1
    assert sections_spanned([(0, 100), (SECTION - 1, SECTION + 1)], SECTION) == 2


def test_ram_ranges_that_touch_are_one_range_as_memblock_keeps_them() -> None:
    """memblock_add() merges touching regions (mm/memblock.c memblock_merge_regions()), so a memory map cut at
    1.5G maps as one range: the x86 direct map's 1G leaf over [1G, 2G) crosses the cut."""
    assert MemoryMap.from_ram([(0x100000, 3 << 29), (3 << 29, 8 << 30)]).ram == (MemRange(0x100000, 8 << 30),)
    cut = Machine.boot(MachineSpec(memory_map=((0x100000, 3 << 29), (3 << 29, 8 << 30))))
    whole = Machine.boot(MachineSpec(memory_map=((0x100000, 8 << 30),)))
    assert cut.meminfo_lines() == whole.meminfo_lines()
