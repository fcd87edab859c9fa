"""arch/arm64/mm/mmu.c's splitting and boot-mapping helpers, each pinned on its own: split_pud()/split_pmd(), the
range_split_to_ptes() walk (KFENCE's late pool, linear_map_split_to_ptes()), split_kernel_leaf_mapping_locked()'s
early returns, __create_pgd_mapping()'s page masking and the boot table accounting.  QEMU virt, 4 GiB of RAM
from 1 GiB, kernel 7.2 unless named (6.18 where an invalid entry must have PTE_VALID clear alone), BBML2 where a
test needs blocks in the linear map."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from rofolio.arch.arm64 import mmu
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.mmu import KernelBug
from rofolio.arch.arm64.prot import ARM64, attrindx
from rofolio.events import EntryWrite, PgtableAlloc, Split
from rofolio.units import PAGE_SIZE, GiB, Level, MiB
from tests.arch.arm64.conftest import B_PA, B_VA, boot_arm64, step

CONT_PMD = 32 * MiB  # CONT_PMDS (16) 2M blocks
CONT_PTE = 64 * 1024  # CONT_PTES (16) pages


def _level(k: Arm64Kernel, va: int) -> Level:
    return k.lookup(va).level


def test_split_pud_allocates_one_pmd_table_and_records_one_split_of_ints() -> None:
    """split_pud(): one table page, the 1G block becomes 512 PMD blocks (PTE_CONT here), no split count (arm64
    keeps none); the events carry plain integers, as the JSON output shows them."""
    k = boot_arm64(bbml2=True)
    s = step(k, lambda: mmu.split_pud(k, B_VA + 5 * MiB, True))
    assert s.ret == 0
    assert [e for e in s.events if isinstance(e, (PgtableAlloc, Split))] == [
        PgtableAlloc(Level.PMD, 1), Split(B_VA, Level.PUD, False, False, 1)]
    assert json.dumps(asdict(s.events[-1])).endswith('"count": 1}')  # an int, not 1.0
    assert _level(k, B_VA) == Level.PMD and k.lookup(B_VA).cont and k.lookup(B_VA + GiB - PAGE_SIZE).cont


def test_split_leaves_passes_over_leaves_of_another_level_and_splits_the_rest() -> None:
    k = boot_arm64(bbml2=True)
    below = B_VA - GiB  # the 1G block before B
    assert mmu.split_pud(k, below, False) == 0
    assert mmu.split_leaves(k, below, B_VA + GiB, Level.PUD, False) == 0
    assert _level(k, B_VA) == Level.PMD and _level(k, below) == Level.PMD


def test_rewrite_leaves_writes_only_its_level_and_counts_entries_as_ints() -> None:
    k = boot_arm64(bbml2=True)
    assert mmu.split_pud(k, B_VA, False) == 0
    assert mmu.split_pmd(k, B_VA + 2 * MiB, False) == 0  # [B + 2M, B + 4M) is now 512 PTEs
    mark = len(k.log.events)
    mmu.rewrite_leaves(k, B_VA, B_VA + 8 * MiB, Level.PMD, lambda v: v | ARM64.RDONLY)
    writes = [e for e in k.log.events[mark:] if isinstance(e, EntryWrite)]
    assert [(w.addr, w.level, w.count) for w in writes] == [(B_VA, Level.PMD, 1), (B_VA + 4 * MiB, Level.PMD, 2)]
    assert all(type(w.count) is int for w in writes)
    assert not k.lookup(B_VA + 2 * MiB).flags & ARM64.RDONLY and k.lookup(B_VA + 4 * MiB).flags & ARM64.RDONLY


def test_range_split_to_ptes_splits_what_touches_the_range_and_nothing_after_it() -> None:
    """split_to_ptes_pud_entry() then split_to_ptes_pmd_entry(): the 1G block is split to PMDs, the 2M block the
    range covers to plain PTEs; the block that starts where the range ends is left alone."""
    k = boot_arm64(bbml2=True)
    assert mmu.range_split_to_ptes(k, B_VA, B_VA + 2 * MiB) == 0
    assert _level(k, B_VA) == Level.PTE and not k.lookup(B_VA).cont
    assert _level(k, B_VA + 2 * MiB) == Level.PMD


def test_range_split_to_ptes_leaves_plain_ptes_unwritten() -> None:
    k = boot_arm64(bbml2=True)
    assert mmu.range_split_to_ptes(k, B_VA, B_VA + 2 * MiB) == 0
    s = step(k, lambda: mmu.range_split_to_ptes(k, B_VA, B_VA + 2 * MiB))
    assert s.ret == 0 and not s.events


def test_range_split_to_ptes_clears_cont_on_the_whole_group_of_a_cont_pmd() -> None:
    """split_to_ptes_pmd_entry(): a PTE_CONT PMD goes through split_contpmd() first, so all 16 of its group lose
    PTE_CONT, while the next group keeps it."""
    k = boot_arm64(bbml2=True)
    assert mmu.split_pud(k, B_VA, True) == 0
    assert mmu.range_split_to_ptes(k, B_VA + CONT_PMD + 2 * MiB, B_VA + CONT_PMD + 4 * MiB) == 0
    assert _level(k, B_VA + CONT_PMD + 2 * MiB) == Level.PTE
    assert not k.lookup(B_VA + CONT_PMD).cont and not k.lookup(B_VA + 2 * CONT_PMD - 2 * MiB).cont
    assert k.lookup(B_VA + 2 * CONT_PMD).cont and k.lookup(B_VA + CONT_PMD - 2 * MiB).cont


def test_range_split_to_ptes_walks_past_a_non_present_block_to_the_next() -> None:
    """The page-table walker skips a leaf that is not present (6.18 invalidates by clearing PTE_VALID alone): it
    stays one block, and the present block after it is still split."""
    k = boot_arm64(bbml2=True, kernel="6.18")
    invalid = B_VA + 10 * MiB
    assert k.set_direct_map_valid_noflush(k.pa(invalid) // PAGE_SIZE, 512, False) == 0
    assert _level(k, invalid) == Level.PMD and not k.lookup(invalid).flags & ARM64.PRESENT_INVALID
    assert mmu.range_split_to_ptes(k, invalid, invalid + 4 * MiB) == 0
    assert _level(k, invalid) == Level.PMD and _level(k, invalid + 2 * MiB) == Level.PTE


def test_range_split_to_ptes_splits_a_present_invalid_block_into_invalid_ptes() -> None:
    """Since 15bfba1ad77f an invalid block is present-invalid, so the walker splits it like any leaf, and
    split_pmd() gives its children pte_mkinvalid(): none of them becomes valid."""
    k = boot_arm64(bbml2=True)
    invalid = B_VA + 10 * MiB
    assert k.set_direct_map_valid_noflush(k.pa(invalid) // PAGE_SIZE, 512, False) == 0
    assert mmu.range_split_to_ptes(k, invalid, invalid + 2 * MiB) == 0
    for page in (invalid, invalid + 2 * MiB - PAGE_SIZE):
        found = k.lookup(page)
        assert found.level == Level.PTE and not found.valid and found.flags & ARM64.PRESENT_INVALID


def test_split_kernel_leaf_mapping_stops_inside_a_block_that_is_not_present() -> None:
    """split_kernel_leaf_mapping_locked(): nothing to split inside a block that is not present (6.18: PTE_VALID
    clear); that is success (0).  Far past the linear map, where no PGD entry is, it returns 0 too (the model's
    PUD-level test would answer the same there, so this half pins only the result)."""
    k = boot_arm64(bbml2=True, kernel="6.18")
    assert k.set_direct_map_valid_noflush(k.pa(B_VA) // PAGE_SIZE, GiB // PAGE_SIZE, False) == 0
    s = step(k, lambda: mmu.split_kernel_leaf_mapping_locked(k, B_VA + 10 * MiB + PAGE_SIZE))
    assert s.ret == 0 and not s.events and _level(k, B_VA) == Level.PUD
    empty = k.layout.page_end + 512 * GiB
    assert not k.pt.occupied(empty - 256 * GiB, empty + 256 * GiB)
    assert mmu.split_kernel_leaf_mapping_locked(k, empty + PAGE_SIZE) == 0


def test_split_kernel_leaf_mapping_leaves_a_non_present_cont_group_alone() -> None:
    """A whole 64K CONT group made invalid at once keeps PTE_CONT (its ends are group-aligned, so nothing is
    split); on 6.18 its PTEs are not present, so a later split inside it returns before split_contpte()."""
    k = boot_arm64(bbml2=True, kernel="6.18")
    group = B_VA + 10 * MiB + CONT_PTE
    assert mmu.split_kernel_leaf_mapping_locked(k, group - 11 * PAGE_SIZE) == 0  # PTEs now, the next group CONT
    assert k.set_direct_map_valid_noflush(k.pa(group) // PAGE_SIZE, CONT_PTE // PAGE_SIZE, False) == 0
    assert k.lookup(group).cont and not k.lookup(group).valid
    s = step(k, lambda: mmu.split_kernel_leaf_mapping_locked(k, group + 5 * PAGE_SIZE))
    assert s.ret == 0 and not s.events and k.lookup(group + 5 * PAGE_SIZE).cont


def test_a_one_page_split_goes_at_its_less_aligned_end() -> None:
    """split_kernel_leaf_mapping() for one page splits at whichever end __ffs() finds less aligned: here the
    start (one page past a 64K boundary's fifteenth page), whose CONT group loses PTE_CONT; the end, 64K-aligned,
    would have left the page inside its contiguous group."""
    k = boot_arm64(bbml2=True)
    page = B_VA + 10 * MiB + 15 * PAGE_SIZE
    assert mmu.split_kernel_leaf_mapping(k, page, page + PAGE_SIZE) == 0
    assert k.lookup(page).level == Level.PTE and not k.lookup(page).cont


def test_a_failed_split_of_the_linear_map_panics() -> None:
    """linear_map_split_to_ptes(): a secondary CPU without BBML2 needs a PTE-mapped linear map; if a table page
    cannot be had the kernel panics."""
    k = boot_arm64(bbml2=True)
    k.pgtable_alloc_fail = True
    with pytest.raises(KernelBug, match="Kernel panic - not syncing: Failed to split linear map"):
        mmu.linear_map_split_to_ptes(k)


def test_kfence_init_pool_reports_success_when_the_map_is_ptes_or_the_pool_early() -> None:
    """arch_kfence_init_pool() returns true at once without BBML2 (the linear map is PTE-mapped) and for an early
    pool (mapped with plain PTEs at boot, so a split would find nothing to do either: this half pins the result)."""
    assert mmu.arch_kfence_init_pool(boot_arm64()) is True
    assert mmu.arch_kfence_init_pool(boot_arm64(bbml2=True, kfence="early")) is True


def test_the_early_kfence_pool_is_mapped_tagged_with_ptes() -> None:
    """arm64_kfence_map_pool(): __map_memblock() with pgprot_tagged(PAGE_KERNEL) and NO_BLOCK_MAPPINGS; before
    the v7.2 linear-alias series the RAM loop leaves the pool out (MEMBLOCK_NOMAP), so these are its only flags."""
    k = boot_arm64(bbml2=True, kfence="early", kernel="6.18")
    pool = k.lookup(k.va(k.kfence_pool))
    assert pool.level == Level.PTE and not pool.cont
    assert pool.flags & ARM64.ATTRINDX_MASK == attrindx(ARM64.MT_NORMAL_TAGGED)


@pytest.mark.parametrize("kernel", ["6.18", "7.2"])
def test_with_kpti_every_linear_map_entry_is_not_global(kernel: str) -> None:
    """map_mem(): PAGE_KERNEL carries PTE_NG when arm64_use_ng_mappings (KPTI), the RAM and the kernel alias alike
    (mark_linear_text_alias_ro() finds every alias entry it rewrites non-global already)."""
    k = boot_arm64(ng_mappings=True, kernel=kernel)
    assert k.lookup(B_VA).flags & ARM64.NG and k.lookup(k.va(k.image.text)).flags & ARM64.NG
    rewrites = [e for e in k.log.events if isinstance(e, EntryWrite)]
    assert rewrites and all(e.old & ARM64.NG and e.new & ARM64.NG for e in rewrites)


def test_boot_records_a_table_allocation_only_for_levels_that_gained_tables() -> None:
    k = boot_arm64(bbml2=True)
    allocs = [e for e in k.log.events if isinstance(e, PgtableAlloc)]
    assert allocs and all(e.count > 0 for e in allocs)
    s = step(k, lambda: mmu.account_boot_tables(k, k.pt.table_pages()))  # a stage that made no tables
    assert not s.events


def test_create_pgd_mapping_masks_an_unaligned_virtual_address_to_its_page() -> None:
    """__create_pgd_mapping(): phys and virt are rounded down to their page and the end up, so a range that
    starts inside a page maps that whole page, and the next, from phys's page on."""
    k = boot_arm64()
    virt = k.layout.page_end + 512 * GiB + 0x123
    mmu.create_pgd_mapping(k, B_PA, virt, PAGE_SIZE, mmu.page_kernel(False), 0)
    assert k.lookup(virt).pfn == B_PA // PAGE_SIZE and k.lookup(virt + PAGE_SIZE).pfn == B_PA // PAGE_SIZE + 1


def test_mapping_pieces_use_no_cont_when_phys_is_off_by_one_page() -> None:
    """alloc_init_cont_pte(): PTE_CONT needs va, pa and length aligned to 64K; phys one page off is not."""
    aligned = mmu.mapping_pieces(B_PA, B_VA, CONT_PTE, mmu.NO_BLOCK_MAPPINGS)
    assert [(p.level, p.cont) for p in aligned] == [(Level.PTE, True)]
    odd = mmu.mapping_pieces(B_PA + PAGE_SIZE, B_VA, CONT_PTE, mmu.NO_BLOCK_MAPPINGS)
    assert [(p.level, p.cont) for p in odd] == [(Level.PTE, False)]


def test_mapping_a_1g_block_again_keeps_the_block_and_rewrites_it_in_place() -> None:
    """alloc_init_pud() of the v7.2 series over a live 1G block: the same flags write nothing; new permissions
    rewrite the one block entry (a permission change is safe under pgattr_change_is_safe())."""
    k = boot_arm64(bbml2=True)
    live = k.lookup(B_VA).flags
    s = step(k, lambda: mmu.map_over(k, B_PA, B_VA, GiB, live, 0))
    assert not s.events and _level(k, B_VA) == Level.PUD
    s = step(k, lambda: mmu.map_over(k, B_PA, B_VA, GiB, mmu.page_kernel_ro(False), 0))
    assert [(e.addr, e.level, e.count) for e in s.events if isinstance(e, EntryWrite)] == [(B_VA, Level.PUD, 1)]
    assert _level(k, B_VA) == Level.PUD and k.lookup(B_VA).read_only


def test_ram_minus_holes_leaves_no_empty_pieces() -> None:
    """for_each_mem_range() skipping MEMBLOCK_NOMAP: a hole that touches a range's start or end leaves no empty
    range behind."""
    ram = boot_arm64().config.memory.ram
    start, end = ram[0].start, ram[0].end
    assert mmu._without(ram[:1], [(start, start + MiB)]) == [(start + MiB, end)]
    assert mmu._without(ram[:1], [(end - MiB, end)]) == [(start, end - MiB)]
    assert mmu._without(ram[:1], [(start + MiB, start + 2 * MiB)]) == [(start, start + MiB), (start + 2 * MiB, end)]
