"""arm64 boot: map_mem(), force_pte_mapping(), the kernel alias, KFENCE, linear_map_split_to_ptes().

QEMU virt, 4 GiB from PA 1 GiB; the Image where QEMU loads it, 2 MiB into RAM (measured by the arm64
oracle), so the kernel alias [_text, __init_begin) is [1G + 2M, 1G + 0x1860000): 11 PMD blocks and 96 PTEs,
and the first 2M of RAM is ordinary RAM.
"""

from __future__ import annotations

import pytest

from rofolio.arch.arm64.config import Arm64Config, set_debug_rodata
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.mmu import CONT_PMD_SIZE, mapping_pieces
from rofolio.arch.arm64.prot import ARM64
from rofolio.arch.arm64.tlbflush import KernelRangeFlush
from rofolio.errors import ConfigError
from rofolio.events import KernelWarning, PgtableAlloc
from rofolio.units import PAGE_SIZE, GiB, Level, MiB
from tests.arch.arm64.conftest import boot_arm64

RAM = 1 * GiB
# the kernel before the v7.2 linear-alias series: the alias mapped apart without PTE_CONT (NOMAP for the RAM loop)
PRE_SERIES = "7.1"


def _shape(k: Arm64Kernel, start_pa: int, end_pa: int) -> list[tuple[int, int, str, bool, bool]]:
    """(start offset from RAM, end offset, leaf size, CONT, read-only) per run."""
    lo, hi = k.va(start_pa), k.va(end_pa)
    out = []
    for r in k.pt.runs(lo, hi):
        out.append((k.pa(max(r.start, lo)) - RAM, k.pa(min(r.end, hi)) - RAM, r.level.leaf_name,
                    bool(r.flags & ARM64.CONT), bool(r.flags & ARM64.RDONLY)))
    return out


def _boot_tables(k: Arm64Kernel) -> dict[Level, int]:
    out = {Level.PUD: 0, Level.PMD: 0, Level.PTE: 0}
    for e in k.log.events:
        if isinstance(e, PgtableAlloc):
            out[e.level] += e.count
    return out


ALIAS_END = 0x1860000
ALIAS = [(2 * MiB, 24 * MiB, "2M", False, True), (24 * MiB, ALIAS_END, "4K", False, True)]


def test_without_bbml2_rodata_full_maps_all_ram_with_plain_ptes_but_the_alias_keeps_blocks() -> None:
    k = boot_arm64(kernel=PRE_SERIES)
    assert k.force_pte_mapping() and k.can_set_direct_map() and not k.linear_map_requires_bbml2
    assert _shape(k, RAM, 5 * GiB) == [(0, 2 * MiB, "4K", False, False), *ALIAS,
                                       (ALIAS_END, 4 * GiB, "4K", False, False)]
    assert _boot_tables(k) == {Level.PUD: 1, Level.PMD: 4, Level.PTE: 2037}  # 2048 PMD slots - 11 alias blocks
    assert sum(k.pt.table_pages().values()) == 2042 == k.log.counters.pgtables_allocated
    # mark_linear_text_alias_ro(): one flush of the 22.4M alias, past the 512-page limit
    [flush] = [e for e in k.log.events if isinstance(e, KernelRangeFlush)]
    assert (flush.start, flush.end, flush.full) == (k.va(RAM + 2 * MiB), k.va(RAM + ALIAS_END), True)


def test_bbml2_maps_ram_with_pud_blocks_cont_pmds_and_cont_ptes_where_aligned() -> None:
    k = boot_arm64(bbml2=True, kernel=PRE_SERIES)
    assert not k.force_pte_mapping() and k.linear_map_requires_bbml2
    assert _shape(k, RAM, 5 * GiB) == [
        (0, 2 * MiB, "2M", False, False),  # one block: the alias cuts RAM before a 32M CONT_PMD group
        *ALIAS,
        (ALIAS_END, 0x1A00000, "4K", True, False),  # 26 CONT_PTE groups up to the next 2M
        (0x1A00000, 0x2000000, "2M", False, False),  # 3 blocks up to the next 32M
        (0x2000000, 1 * GiB, "2M", True, False),  # 31 CONT_PMD groups
        (1 * GiB, 4 * GiB, "1G", False, False),
    ]
    assert _boot_tables(k) == {Level.PUD: 1, Level.PMD: 1, Level.PTE: 1}


def test_rodata_off_and_noalias_use_blocks_and_cannot_set_the_direct_map() -> None:
    for rodata in ("off", "noalias"):
        k = boot_arm64(rodata=rodata)
        assert not k.can_set_direct_map() and not k.force_pte_mapping() and not k.linear_map_requires_bbml2
        assert _shape(k, 2 * GiB, 5 * GiB) == [(1 * GiB, 4 * GiB, "1G", False, False)]


def test_rodata_full_is_an_invalid_string_now_and_behaves_like_the_default() -> None:
    assert set_debug_rodata("full").warning == "Invalid option string for rodata: 'full'"
    assert (set_debug_rodata("on").full, set_debug_rodata("noalias").full, set_debug_rodata("off").enabled) == (
        True, False, False)
    k = boot_arm64(rodata="full")
    assert k.config.rodata_full and k.force_pte_mapping()
    assert [e.text for e in k.log.events if isinstance(e, KernelWarning)] == [
        "Invalid option string for rodata: 'full'"]


def test_debug_pagealloc_forces_ptes_even_with_bbml2() -> None:
    k = boot_arm64(bbml2=True, debug_pagealloc=True)
    assert k.force_pte_mapping() and not k.linear_map_requires_bbml2
    assert _shape(k, 2 * GiB, 3 * GiB) == [(1 * GiB, 2 * GiB, "4K", False, False)]


def test_early_kfence_pool_is_plain_ptes_at_the_top_of_ram_with_257_invalid_guard_pages() -> None:
    k = boot_arm64(bbml2=True, kfence="early", kernel=PRE_SERIES)
    pool = 5 * GiB - 2 * MiB
    assert k.kfence_pool == pool
    shape = _shape(k, 4 * GiB, 5 * GiB)
    assert shape[:2] == [
        (3 * GiB, 4 * GiB - 32 * MiB, "2M", True, False),
        (4 * GiB - 32 * MiB, 4 * GiB - 2 * MiB, "2M", False, False),  # the last CONT_PMD chunk is cut short
    ]
    assert {(size, cont) for _, _, size, cont, _ in shape[2:]} == {("4K", False)}
    assert shape[2][0] == 4 * GiB - 2 * MiB and shape[-1][1] == 4 * GiB
    assert not k.lookup(k.va(pool) - 2 * MiB).cont and k.lookup(k.va(pool) - CONT_PMD_SIZE).cont
    invalid = sum((r.end - r.start) // PAGE_SIZE for r in k.pt.runs(k.va(pool), k.va(pool) + 2 * MiB)
                  if not r.flags & ARM64.VALID)
    assert invalid == 257
    assert _boot_tables(k) == {Level.PUD: 1, Level.PMD: 2, Level.PTE: 2}
    flushes = [e for e in k.log.events if isinstance(e, KernelRangeFlush)]
    assert [f.reason for f in flushes].count("__change_memory_common") == 257


def test_from_the_7_2_alias_series_the_early_kfence_pool_is_still_mapped_first_with_plain_ptes() -> None:
    """map_mem() of the v7.2 series maps the early pool (arm64_kfence_map_pool()) before the alias and RAM."""
    k = boot_arm64(bbml2=True, kfence="early", kernel="7.2")
    pool = 5 * GiB - 2 * MiB
    assert k.kfence_pool == pool
    runs = list(k.pt.runs(k.va(pool), k.va(pool) + 2 * MiB))
    assert {r.level for r in runs} == {Level.PTE} and not any(r.flags & ARM64.CONT for r in runs)
    assert sum((r.end - r.start) // PAGE_SIZE for r in runs if not r.flags & ARM64.VALID) == 257


def test_late_kfence_and_realm_force_ptes_without_bbml2() -> None:
    for option in ({"kfence": "late"}, {"realm": True}):
        k = boot_arm64(rodata="off", **option)
        assert k.force_pte_mapping() and k.can_set_direct_map()
        assert k.lookup(k.va(3 * GiB)).level == Level.PTE


def test_secondary_without_bbml2_repaints_the_linear_map_with_ptes_but_the_alias() -> None:
    k = boot_arm64(bbml2=True, secondary_without_bbml2=True, kernel=PRE_SERIES)
    assert k.linear_map_requires_bbml2 and not k.system_supports_bbml2_noabort()
    # [_text, _stext) lies below kstart = lm_alias(_stext): the walk splits the alias's first block,
    # and mark_linear_text_alias_ro() then meets a table where it would put a block: pmd_set_huge()
    # refuses the unsafe change, so that 2M stays writable.
    assert _shape(k, RAM, 5 * GiB) == [
        (0, 2 * MiB, "4K", False, False),
        (2 * MiB, 4 * MiB, "4K", False, False),
        (4 * MiB, 24 * MiB, "2M", False, True),
        (24 * MiB, ALIAS_END, "4K", False, True),
        (ALIAS_END, 4 * GiB, "4K", False, False),
    ]
    flushes = [(e.reason, e.full) for e in k.log.events if isinstance(e, KernelRangeFlush)]
    assert flushes == [("linear_map_split_to_ptes", True), ("mark_linear_text_alias_ro", True)]
    assert k.log.counters.pgtables_allocated == sum(k.pt.table_pages().values()) == 2043
    # 3 PUD blocks -> 1536 plain PMDs; those, 500 RAM PMD blocks of the first 1G and the alias's first
    # block -> PTEs
    assert (k.log.counters.splits[Level.PUD], k.log.counters.splits[Level.PMD]) == (3, 2037)
    # afterwards nothing may split: the system lacks BBML2, and everything outside the alias is PTEs
    assert not k.split_leaf_mapping_possible()
    assert k.make_linear_range_readonly(3 * GiB, 2 * MiB) == 0


def test_mapping_pieces_follow_alloc_init_pud_cont_pmd_and_cont_pte() -> None:
    # a 1G-aligned VA/PA range of 1G + 34M + 68K, blocks and CONT allowed
    pieces = mapping_pieces(GiB, GiB, GiB + 34 * MiB + 68 * 1024, 0)
    assert [(p.end - p.start, p.level, p.cont) for p in pieces] == [
        (GiB, Level.PUD, False), (32 * MiB, Level.PMD, True), (2 * MiB, Level.PMD, False),
        (64 * 1024, Level.PTE, True), (4 * 1024, Level.PTE, False)]
    # VA and PA offsets differ within 64K: no CONT at all
    assert {p.cont for p in mapping_pieces(GiB + PAGE_SIZE, GiB, 4 * MiB, 0)} == {False}


def test_every_allocated_table_is_one_the_leaves_need() -> None:
    for options in ({}, {"bbml2": True}, {"rodata": "off"}, {"kfence": "early"}):
        k = boot_arm64(**options)
        assert k.log.counters.pgtables_allocated == sum(k.pt.table_pages().values()), options


def test_impossible_configurations_are_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="granule"):
        Arm64Config.qemu_virt(4 * GiB, granule=16384)
    with pytest.raises(ConfigError, match=r"6\.18"):
        Arm64Config.qemu_virt(4 * GiB, kernel="6.12")
    with pytest.raises(ConfigError, match="second CPU"):
        Arm64Config.qemu_virt(4 * GiB, nr_cpus=1, secondary_without_bbml2=True)


# v7.2: the linear-alias series (Ard Biesheuvel, "arm64: Unmap linear alias of kernel data/bss", patches 1-11;
# arch/arm64/mm/mmu.c map_mem(), alloc_init_cont_pte(), update_mapping_prot(), mark_rodata_ro() as 7.2 has
# them).  The default image has no __bss_stop, so its data alias runs to _end: [1G + 0x1eb0000, 1G + 0x2210000).
DATA = (0x1EB0000, 0x2210000)


def test_v7_2_rodata_on_maps_the_alias_with_ptes_too_and_makes_the_data_alias_read_only() -> None:
    # the alias is mapped with the linear map's own flags: force_pte_mapping() -> PTEs (measured on 7.2 under QEMU)
    k = boot_arm64()
    assert _shape(k, RAM, 5 * GiB) == [
        (0, 2 * MiB, "4K", False, False), (2 * MiB, ALIAS_END, "4K", False, True),
        (ALIAS_END, DATA[0], "4K", False, False), (DATA[0], DATA[1], "4K", False, True),
        (DATA[1], 4 * GiB, "4K", False, False)]
    assert _boot_tables(k) == {Level.PUD: 1, Level.PMD: 4, Level.PTE: 2048}
    flushes = [(e.reason, e.start - k.va(RAM)) for e in k.log.events if isinstance(e, KernelRangeFlush)]
    assert flushes == [("mark_linear_text_alias_ro", 2 * MiB), ("mark_rodata_ro", DATA[0])]


def test_v7_2_noalias_keeps_cont_ptes_on_the_read_only_alias_and_no_cont_pmd_near_the_image() -> None:
    # update_mapping_prot() keeps PTE_CONT where a group has no valid non-contiguous entry (measured on 7.2:
    # the .rodata alias is a read-only PTE_CONT entry); a 32M group with a table or a block gets no PTE_CONT
    k = boot_arm64(rodata="noalias")
    assert _shape(k, RAM, 5 * GiB) == [
        (0, 2 * MiB, "2M", False, False), (2 * MiB, 24 * MiB, "2M", False, True),
        (24 * MiB, ALIAS_END, "4K", True, True), (ALIAS_END, 0x1A00000, "4K", True, False),
        (0x1A00000, 0x1E00000, "2M", False, False), (0x1E00000, DATA[0], "4K", True, False),
        (DATA[0], 32 * MiB, "4K", True, True), (32 * MiB, 34 * MiB, "2M", False, True),
        (34 * MiB, DATA[1], "4K", True, True), (DATA[1], 36 * MiB, "4K", True, False),
        (36 * MiB, 64 * MiB, "2M", False, False), (64 * MiB, 1 * GiB, "2M", True, False),
        (1 * GiB, 4 * GiB, "1G", False, False)]
    assert _boot_tables(k) == {Level.PUD: 1, Level.PMD: 1, Level.PTE: 3}


def test_v7_2_rodata_off_still_makes_the_text_alias_read_only_but_not_the_data_alias() -> None:
    # mark_linear_text_alias_ro() runs whatever rodata= says (smp_cpus_done()); mark_rodata_ro() only with
    # rodata_enabled (init/main.c mark_readonly())
    k = boot_arm64(rodata="off")
    assert k.lookup(k.va(RAM + 4 * MiB)).read_only and not k.lookup(k.va(RAM + DATA[0])).read_only


def test_v7_2_secondary_without_bbml2_no_longer_leaves_the_first_alias_block_writable() -> None:
    # linear_map_split_to_ptes() still splits the alias's first block (below lm_alias(_stext)), but
    # mark_linear_text_alias_ro() now descends into the table and makes those PTEs read-only
    k = boot_arm64(bbml2=True, secondary_without_bbml2=True)
    assert _shape(k, RAM, RAM + 24 * MiB) == [
        (0, 2 * MiB, "4K", False, False), (2 * MiB, 4 * MiB, "4K", False, True), (4 * MiB, 24 * MiB, "2M", False, True)]


def test_ram_past_the_linear_map_is_removed_with_the_kernels_warning() -> None:
    """arm64_memblock_init(): with 48-bit VAs the linear map covers 128 TiB from memstart_addr; memblock drops
    the RAM past it and the kernel warns that VA_BITS is too small (it used to be refused as a machine)."""
    k = boot_arm64(200 * 1024 * GiB, running=False, bbml2=True)
    assert k.memory.ram[-1].end == RAM + 128 * 1024 * GiB
    assert k.config.memory.ram[-1].end == RAM + 200 * 1024 * GiB  # what the machine has
    assert [e.text for e in k.log.events if isinstance(e, KernelWarning)] == [
        "Memory doesn't fit in the linear mapping, VA_BITS too small"]
    assert k.lookup(k.va(RAM + 128 * 1024 * GiB - PAGE_SIZE)) is not None


@pytest.mark.parametrize(("options", "label"), [
    ({"bbml2": True}, "arm64 rodata=full BBML2"),
    # BBML2_NOABORT is a system capability only when every CPU has it: the label does not claim block mappings
    ({"bbml2": True, "secondary_without_bbml2": True}, "arm64 rodata=full BBML2 (boot CPU only)"),
    ({"realm": True}, "arm64 rodata=full realm"),
])
def test_the_machine_label_names_what_changes_the_linear_map(options: dict[str, bool], label: str) -> None:
    from rofolio.machine import MachineSpec

    assert MachineSpec(arch="arm64", cpus=2, options=options).label() == label
