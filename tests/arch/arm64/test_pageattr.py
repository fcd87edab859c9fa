"""arm64 pageattr.c / mmu.c splitting (change_memory_common(), split_kernel_leaf_mapping()), with exact figures.

Machines are QEMU virt, 4 GiB of RAM from 1 GiB, 8 CPUs, kernel 6.18, booted
to SYSTEM_RUNNING.  ``B`` is PA 2 GiB (VA 0xffff000040000000): a PUD block
under BBML2, 512 PTE-mapped 2M regions otherwise.  Without FEAT_TLBIRANGE a
flush of 512 pages or more becomes flush_tlb_all() (__flush_tlb_range_limit_excess()).
"""

from __future__ import annotations

from rofolio.arch.arm64 import pageattr
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.prot import ARM64
from rofolio.errors import Errno
from rofolio.events import EntryWrite, Flush, FlushKind, KernelWarning, PgtableAllocFailed, Split
from rofolio.machine import Machine, MachineSpec
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, GiB, Level, MiB
from tests.arch.arm64.conftest import B_PA, B_VA, CPUS, boot_arm64, step

FOLIO_PA = B_PA + 10 * MiB  # 2M-aligned, not 32M-aligned, inside the PUD at B
FOLIO_VA = B_VA + 10 * MiB
TWO_MB = 2 * MiB


def _leaves(k: Arm64Kernel, start: int, end: int, level: Level) -> int:
    return sum((min(r.end, end) - max(r.start, start)) // level.size
               for r in k.pt.runs(start, end) if r.level == level)


# 15 --------------------------------------------------------------------------------------------
def test_without_bbml2_2m_ro_writes_512_ptes_no_split_one_kernel_range_flush(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    assert not k.config.bbml2 and k.config.rodata_full and k.force_pte_mapping()
    assert all(r.level == Level.PTE and not r.flags & ARM64.CONT for r in k.pt.runs(B_VA, B_VA + GiB))
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, TWO_MB))
    assert s.ret == 0
    assert s.delta == {"entries_written": 512, "flushes": 1, "flushes_all": 1}
    [flush] = s.flushes()
    assert (flush.start, flush.end, flush.pages, flush.full) == (FOLIO_VA, FOLIO_VA + TWO_MB, 512, True)
    assert [e.cpus for e in s.events if isinstance(e, Flush)] == [CPUS]  # broadcast TLBI, no IPIs
    assert all(k.lookup(FOLIO_VA + i * PAGE_SIZE).read_only for i in (0, 255, 511))
    assert k.lookup(FOLIO_VA - PAGE_SIZE).writable and k.lookup(FOLIO_VA + TWO_MB).writable


def test_with_tlbi_range_the_2m_flush_stays_a_512_page_range_flush() -> None:
    k = boot_arm64(tlb_range=True)
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, TWO_MB))
    assert s.delta == {"entries_written": 512, "flushes": 1, "flushes_range": 1, "flushed_pages": 512}
    [flush] = [e for e in s.events if isinstance(e, Flush)]
    assert (flush.flush, flush.pages, flush.cpus, flush.ipis) == (FlushKind.RANGE, 512, CPUS, 0)


def test_511_pages_are_still_flushed_by_range_without_tlbi_range(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, TWO_MB - PAGE_SIZE))
    assert s.delta == {"entries_written": 511, "flushes": 1, "flushes_range": 1, "flushed_pages": 511}


# 16 --------------------------------------------------------------------------------------------
def test_bbml2_2m_ro_inside_pud_splits_to_cont_pmds_and_deconts_one_group(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    assert k.lookup(FOLIO_VA).level == Level.PUD
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, TWO_MB))
    assert s.ret == 0
    # one PMD table; 16 PMDs lose PTE_CONT; the target PMD changed in place; one flush, none for the split
    assert s.delta == {"splits_1g": 1, "pgtables_allocated": 1, "entries_written": 17, "flushes": 1,
                       "flushes_all": 1}
    assert s.cont_cleared() == {Level.PMD: 16, Level.PTE: 0}
    assert [type(e).__name__ for e in s.events if isinstance(e, (Split, Flush))] == ["Split", "Flush"]
    [flush] = s.flushes()
    assert (flush.start, flush.end) == (FOLIO_VA, FOLIO_VA + TWO_MB)
    target = k.lookup(FOLIO_VA)
    assert target.level == Level.PMD and target.block and target.read_only and not target.cont
    neighbour = k.lookup(FOLIO_VA - TWO_MB)
    assert neighbour.writable and not neighbour.cont
    assert k.lookup(B_VA + 32 * MiB).cont and k.lookup(B_VA + GiB - TWO_MB).cont
    assert _leaves(k, B_VA, B_VA + GiB, Level.PMD) == 512  # "512 PMDs instead of 1 PUD"


def test_bbml2_range_with_both_ends_32m_aligned_keeps_every_cont_bit(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    s = step(k, lambda: k.make_linear_range_readonly(B_PA + 32 * MiB, 32 * MiB))
    assert s.delta == {"splits_1g": 1, "pgtables_allocated": 1, "entries_written": 16, "flushes": 1,
                       "flushes_all": 1}
    assert s.cont_cleared() == {Level.PMD: 0, Level.PTE: 0}
    changed = k.lookup(B_VA + 40 * MiB)
    assert changed.read_only and changed.cont  # modified in place, PTE_CONT kept on the whole group
    assert s.flushes()[0].pages == 8192


def test_bbml2_1g_aligned_start_splits_only_at_the_end(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    s = step(k, lambda: k.make_linear_range_readonly(B_PA, TWO_MB))
    assert s.delta == {"splits_1g": 1, "pgtables_allocated": 1, "entries_written": 17, "flushes": 1,
                       "flushes_all": 1}
    assert s.cont_cleared()[Level.PMD] == 16
    assert k.lookup(B_VA).read_only and k.lookup(B_VA + TWO_MB).writable


def test_bbml2_whole_pud_is_changed_in_place_without_a_split(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    s = step(k, lambda: k.make_linear_range_readonly(B_PA, GiB))
    assert s.delta == {"entries_written": 1, "flushes": 1, "flushes_all": 1}
    assert k.lookup(B_VA).level == Level.PUD and k.lookup(B_VA).read_only


# 17 --------------------------------------------------------------------------------------------
def test_bbml2_one_page_ro_inside_pud_needs_two_tables_and_no_split_flush(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    page_pa = FOLIO_PA + 5 * PAGE_SIZE  # B + 10M + 0x5000
    s = step(k, lambda: k.make_linear_range_readonly(page_pa, PAGE_SIZE))
    assert s.ret == 0
    assert s.delta == {"splits_1g": 1, "splits_2m": 1, "pgtables_allocated": 2, "entries_written": 33,
                       "flushes": 1, "flushes_range": 1, "flushed_pages": 1}
    assert s.cont_cleared() == {Level.PMD: 16, Level.PTE: 16}
    assert [e.level for e in s.events if isinstance(e, Split)] == [Level.PUD, Level.PMD]
    page = k.lookup(k.va(page_pa))
    assert page.level == Level.PTE and page.read_only and not page.cont
    assert k.lookup(k.va(page_pa) - PAGE_SIZE).writable and not k.lookup(k.va(page_pa) - PAGE_SIZE).cont
    assert k.lookup(FOLIO_VA + 64 * 1024).cont  # the next 64K group keeps PTE_CONT


def test_bbml2_one_2m_aligned_page_is_split_at_its_less_aligned_end(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, PAGE_SIZE))
    assert s.delta == {"splits_1g": 1, "splits_2m": 1, "pgtables_allocated": 2, "entries_written": 33,
                       "flushes": 1, "flushes_range": 1, "flushed_pages": 1}
    assert k.lookup(FOLIO_VA).read_only and k.lookup(FOLIO_VA + PAGE_SIZE).writable


# 18 --------------------------------------------------------------------------------------------
def test_rodata_off_set_direct_map_helpers_are_silent_no_ops() -> None:
    k = boot_arm64(rodata="off")
    assert not k.can_set_direct_map()
    pfn = FOLIO_PA >> PAGE_SHIFT
    before = k.lookup(FOLIO_VA)
    for op in (lambda: k.set_direct_map_invalid_noflush(pfn), lambda: k.set_direct_map_default_noflush(pfn),
               lambda: k.set_direct_map_valid_noflush(pfn, 512, False)):
        s = step(k, op)
        assert (s.ret, s.delta) == (0, {})
    assert k.lookup(FOLIO_VA) == before and before.level == Level.PUD and before.writable
    assert k.kernel_page_present(pfn)


def test_rodata_off_read_only_hook_reports_eopnotsupp_and_keeps_the_folio_writable() -> None:
    for rodata in ("off", "noalias"):
        k = boot_arm64(rodata=rodata, bbml2=True)
        s = step(k, lambda k=k: k.make_linear_range_readonly(FOLIO_PA, TWO_MB))
        assert (s.ret, s.delta) == (-Errno.EOPNOTSUPP, {})
        assert k.lookup(FOLIO_VA).writable


def test_late_kfence_realm_and_debug_pagealloc_each_enable_set_direct_map_even_with_rodata_off() -> None:
    for option in ({"kfence": "late"}, {"realm": True}, {"debug_pagealloc": True}):
        k = boot_arm64(rodata="off", **option)
        assert k.can_set_direct_map() and k.force_pte_mapping(), option
        assert k.make_linear_range_readonly(FOLIO_PA, TWO_MB) == 0
        assert k.lookup(FOLIO_VA).read_only


# 19 --------------------------------------------------------------------------------------------
def test_set_memory_ro_on_a_linear_map_address_returns_einval(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    s = step(k, lambda: k.set_memory_ro(FOLIO_VA, 512))
    assert (s.ret, s.delta) == (-Errno.EINVAL, {})
    assert k.lookup(FOLIO_VA).writable


def test_set_memory_ro_on_vmalloc_also_changes_each_linear_alias_page_by_page(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    pfns = [(FOLIO_PA >> PAGE_SHIFT) + i for i in range(4)]
    vaddr = k.vmalloc(pfns)
    s = step(k, lambda: k.set_memory_ro(vaddr, 4))
    assert s.ret == 0
    # rodata_full: one __change_memory_common() (and one TLBI) per backing page, then the vmalloc range
    assert s.delta == {"entries_written": 8, "flushes": 5, "flushes_range": 5, "flushed_pages": 8}
    assert [(f.start, f.pages) for f in s.flushes()] == [
        (FOLIO_VA + i * PAGE_SIZE, 1) for i in range(4)] + [(vaddr, 4)]
    assert all(k.lookup(FOLIO_VA + i * PAGE_SIZE).read_only for i in range(4))
    assert all(k.lookup(vaddr + i * PAGE_SIZE).read_only for i in range(4))


def test_set_memory_ro_refuses_vmap_and_huge_vmalloc_areas(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    pfn = FOLIO_PA >> PAGE_SHIFT
    assert k.set_memory_ro(k.vmap([pfn]), 1) == -Errno.EINVAL  # VM_MAP, not VM_ALLOC
    assert k.set_memory_ro(k.vmalloc([pfn], huge=True), 1) == -Errno.EINVAL  # VM_ALLOW_HUGE_VMAP
    assert k.lookup(FOLIO_VA).writable


# 20 --------------------------------------------------------------------------------------------
def test_set_direct_map_default_noflush_makes_a_read_only_page_writable(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    k.make_linear_range_readonly(FOLIO_PA, TWO_MB)
    s = step(k, lambda: k.set_direct_map_default_noflush(FOLIO_PA >> PAGE_SHIFT))
    assert (s.ret, s.delta) == (0, {"entries_written": 1})  # no TLBI: "noflush"
    page = k.lookup(FOLIO_VA)
    assert page.writable and page.flags & ARM64.WRITE and not page.flags & ARM64.RDONLY
    assert k.lookup(FOLIO_VA + PAGE_SIZE).read_only


def test_bbml2_default_noflush_inside_a_read_only_pmd_block_splits_it(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    k.make_linear_range_readonly(FOLIO_PA, TWO_MB)
    s = step(k, lambda: k.set_direct_map_default_noflush(FOLIO_PA >> PAGE_SHIFT))
    assert (s.ret, s.delta) == (0, {"splits_2m": 1, "pgtables_allocated": 1, "entries_written": 17})
    assert s.cont_cleared() == {Level.PMD: 0, Level.PTE: 16}
    assert k.lookup(FOLIO_VA).writable and k.lookup(FOLIO_VA + PAGE_SIZE).read_only


def test_invalid_then_default_gives_a_valid_writable_page(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    pfn = FOLIO_PA >> PAGE_SHIFT
    k.set_direct_map_invalid_noflush(pfn)
    assert not k.kernel_page_present(pfn) and k.kernel_page_present(pfn + 1)
    k.set_direct_map_default_noflush(pfn)
    assert k.kernel_page_present(pfn) and k.lookup(FOLIO_VA).writable


def test_valid_noflush_of_no_pages_splits_at_the_page_then_the_empty_walk_returns_einval(
        bbml2_machine: Arm64Kernel) -> None:
    # update_range_prot() splits at start (= end) before walk_kernel_page_table_range_lockless() refuses
    # the empty range; set_memory_valid() still calls flush_tlb_kernel_range() on it when invalidating
    k = bbml2_machine
    page_pa = FOLIO_PA + 5 * PAGE_SIZE
    s = step(k, lambda: k.set_direct_map_valid_noflush(page_pa >> PAGE_SHIFT, 0, False))
    assert s.ret == -Errno.EINVAL
    assert s.delta == {"splits_1g": 1, "splits_2m": 1, "pgtables_allocated": 2, "entries_written": 32,
                       "flushes": 1, "flushes_range": 1}  # the splits' entries only, and no page flushed
    assert k.lookup(k.va(page_pa)).level == Level.PTE and k.lookup(k.va(page_pa)).valid
    s = step(k, lambda: k.set_direct_map_valid_noflush(page_pa >> PAGE_SHIFT, 0, True))
    assert (s.ret, s.delta) == (-Errno.EINVAL, {})  # split already, and making valid flushes nothing


# errors and version differences ----------------------------------------------------------------
def test_partly_covered_block_without_bbml2_warns_and_returns_einval_but_still_flushes() -> None:
    k = boot_arm64(rodata="noalias")  # blocks, and nothing can split them
    s = step(k, lambda: k.set_memory_valid(FOLIO_VA, 1, False))
    assert s.ret == -Errno.EINVAL
    assert s.delta == {"warnings": 1, "flushes": 1, "flushes_range": 1, "flushed_pages": 1}
    assert k.lookup(FOLIO_VA).level == Level.PUD and k.lookup(FOLIO_VA).valid


def test_pgtable_allocation_failure_returns_enomem_and_leaves_the_folio_writable(bbml2_machine: Arm64Kernel) -> None:
    k = bbml2_machine
    k.pgtable_alloc_fail = True
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, TWO_MB))
    assert s.ret == -Errno.ENOMEM
    # __change_memory_common() flushes even after the failed split
    assert s.delta == {"pgtable_alloc_failures": 1, "warnings": 1, "flushes": 1, "flushes_all": 1}
    assert [e.level for e in s.events if isinstance(e, PgtableAllocFailed)] == [Level.PMD]
    assert [e.text for e in s.events if isinstance(e, KernelWarning)] == [
        "WARNING: CPU: 0 at arch/arm64/mm/pageattr.c update_range_prot (-12)"]
    assert k.lookup(FOLIO_VA).level == Level.PUD and k.lookup(FOLIO_VA).writable


def test_v6_18_cannot_revalidate_an_invalid_block_but_v7_0_can() -> None:
    """15bfba1ad77f: pageattr_pmd_entry() tested pmd_sect(), false for an invalid block, and the walker
    then skipped the non-present entry; v7.0 encodes it present-invalid and tests pmd_leaf()."""
    for kernel, revalidated in (("6.18", False), ("7.0", True)):
        k = boot_arm64(bbml2=True, kernel=kernel)
        pfn = FOLIO_PA >> PAGE_SHIFT
        assert k.set_direct_map_valid_noflush(pfn, 512, False) == 0
        block = k.lookup(FOLIO_VA)
        assert block.level == Level.PMD and not block.valid and not k.kernel_page_present(pfn)
        assert k.set_direct_map_valid_noflush(pfn, 512, True) == 0
        assert k.kernel_page_present(pfn) is revalidated, kernel
        assert bool(block.flags & ARM64.PRESENT_INVALID) is (kernel == "7.0")


def test_pure_make_valid_skips_the_tlbi(pte_machine: Arm64Kernel) -> None:
    k = pte_machine
    k.set_memory_valid(FOLIO_VA, 1, False)
    s = step(k, lambda: k.set_memory_valid(FOLIO_VA, 1, True))
    assert s.delta == {"entries_written": 1} and k.lookup(FOLIO_VA).valid


def test_late_kfence_pool_is_split_to_plain_ptes_without_a_tlbi_for_the_split() -> None:
    k = boot_arm64(rodata="off", kfence="late", bbml2=True)
    assert not k.force_pte_mapping() and k.lookup(FOLIO_VA).level == Level.PUD
    s = step(k, lambda: int(not k.kfence_init_late(FOLIO_PA)))
    assert s.ret == 0
    # range_split_to_ptes(): the PUD to 512 *plain* PMDs, the pool's PMD to 512 plain PTEs;
    # then 257 guard pages invalid, one single-page flush each
    assert s.delta == {"splits_1g": 1, "splits_2m": 1, "pgtables_allocated": 2, "entries_written": 257,
                       "flushes": 257, "flushes_range": 257, "flushed_pages": 257}
    assert not k.lookup(B_VA + 32 * MiB).cont  # split_pud(..., to_cont=false)
    assert not k.lookup(FOLIO_VA).valid and not k.lookup(FOLIO_VA + 2 * PAGE_SIZE).cont
    # splits never reach the pool afterwards (is_kfence_address()), and it is already PTEs
    s = step(k, lambda: k.set_memory_valid(FOLIO_VA + 2 * PAGE_SIZE, 1, False))
    assert s.delta == {"entries_written": 1, "flushes": 1, "flushes_range": 1, "flushed_pages": 1}


def test_splitting_a_present_invalid_block_keeps_its_other_pages_invalid() -> None:
    """15bfba1ad77f made an invalid block present-invalid, so split_kernel_leaf_mapping_locked() splits it, and
    in the same commit split_pmd() re-invalidates the children (pte_mkinvalid()): invalidating one page inside a
    2M block that set_direct_map_valid_noflush(..., false) had unmapped whole maps none of the others again."""
    for kernel in ("7.0.1", "7.2"):
        k = boot_arm64(bbml2=True, kernel=kernel)
        pfn = FOLIO_PA >> PAGE_SHIFT
        assert k.set_direct_map_valid_noflush(pfn, 512, False) == 0
        s = step(k, lambda k=k, pfn=pfn: k.set_direct_map_invalid_noflush(pfn + 5))
        assert s.delta == {"splits_2m": 1, "pgtables_allocated": 1, "entries_written": 17}
        assert not any(k.kernel_page_present(pfn + i) for i in (0, 5, 511))
        child = k.lookup(k.page_address(pfn))
        assert child.level == Level.PTE and child.flags & ARM64.PRESENT_INVALID and not child.valid


def test_the_present_invalid_encoding_comes_with_7_1_and_stable_7_0_1() -> None:
    """15bfba1ad77f was merged for v7.1 and backported to 7.0.1: 7.0.0 still clears PTE_VALID alone."""
    for kernel, encoded in (("6.18", False), ("7.0.0", False), ("7.0.1", True), ("7.0", True), ("7.2", True)):
        k = boot_arm64(bbml2=True, kernel=kernel)
        pfn = FOLIO_PA >> PAGE_SHIFT
        assert k.set_direct_map_valid_noflush(pfn, 512, False) == 0
        assert bool(k.lookup(k.page_address(pfn)).flags & ARM64.PRESENT_INVALID) is encoded, kernel


def test_debug_pagealloc_kernel_map_pages_flushes_only_when_unmapping() -> None:
    k = boot_arm64(debug_pagealloc=True)
    pfn = FOLIO_PA >> PAGE_SHIFT
    s = step(k, lambda: k.kernel_map_pages(pfn, 4, False))
    assert s.delta == {"entries_written": 4, "flushes": 1, "flushes_range": 1, "flushed_pages": 4}
    assert not k.kernel_page_present(pfn + 3) and k.kernel_page_present(pfn + 4)
    s = step(k, lambda: k.kernel_map_pages(pfn, 4, True))
    assert s.delta == {"entries_written": 4}  # making entries valid needs no TLBI
    assert k.kernel_page_present(pfn)


def test_without_can_set_direct_map_kernel_map_pages_returns_at_once() -> None:
    """__kernel_map_pages() does nothing unless can_set_direct_map() (rodata=off, no DEBUG_PAGEALLOC)."""
    k = boot_arm64(rodata="off")
    assert not k.can_set_direct_map()
    addr = k.va(FOLIO_PA)
    s = step(k, lambda: pageattr.kernel_map_pages(k, addr, 4, False))
    assert s.ret == 0 and s.delta == {} and k.kernel_page_present(FOLIO_PA >> PAGE_SHIFT)


def test_kernel_page_present_is_false_where_the_pgd_entry_is_none() -> None:
    # kernel_page_present(): pgd_none() / p4d_none() return false before any lower level is read; RAM is
    # [1G, 3G), so a page 512G further up has a PGD entry of its own, and it is none
    k = boot_arm64(2 * GiB)
    assert k.kernel_page_present(GiB >> PAGE_SHIFT)
    assert not k.kernel_page_present((GiB + 512 * GiB) >> PAGE_SHIFT)
    assert not k.kernel_page_present((3 * GiB) >> PAGE_SHIFT)  # the same PGD, past RAM: a none PUD


def test_a_hole_inside_a_pte_table_gets_the_masks_written_into_its_none_ptes() -> None:
    # RAM [1G, 1G+1M) and [1G+1.5M, 2G): one PTE table maps the 2M around the hole, whose 128 PTEs are none.
    # set_memory_valid(false) from the last page before the hole to the first after it walks them all:
    # pageattr_pte_entry() runs for none PTEs too and writes 0 & ~PTE_VALID | PTE_PRESENT_INVALID (v7.0)
    m = Machine.boot(MachineSpec.build(arch="arm64", memory_map=((GiB, GiB + MiB), (GiB + 3 * MiB // 2, 2 * GiB)),
                                       kernel="7.2", cpus=1, rodata="on"))
    m.finish_boot()
    k = m.kernel
    first = k.va(GiB + MiB - PAGE_SIZE)
    since, written = len(k.log.events), k.log.counters.entries_written
    assert pageattr.set_memory_valid(k, first, 130, False) == 0
    writes = [(e.addr - first, e.count, e.old, e.new) for e in k.log.events[since:] if isinstance(e, EntryWrite)]
    present, invalid = 0xE8000000000707, 0xE8000000000F06
    assert writes == [(0, 1, present, invalid), (PAGE_SIZE, 128, 0, ARM64.PRESENT_INVALID),
                      (129 * PAGE_SIZE, 1, present, invalid)]
    assert all(type(count) is int for _, count, _, _ in writes)  # entries, not a fraction of a page
    assert k.log.counters.entries_written - written == 130
    hole = k.pt.run_at(first + PAGE_SIZE)
    assert hole is not None
    assert (hole.level, hole.flags, hole.end - hole.start) == (Level.PTE, ARM64.PRESENT_INVALID, MiB // 2)


def test_a_hole_from_a_none_pmd_into_a_pte_table_writes_only_the_tables_none_ptes() -> None:
    # RAM [1G, B+2M) and [B+5M, 2G), B = 1G+64M (the image sits at 1G+2M): the PMD of [B+2M, B+4M) is none (the
    # walker has no callback there), the PTE table of [B+4M, B+6M) has none PTEs for [B+4M, B+5M): those 256 get
    # the masks
    base = GiB + 64 * MiB
    m = Machine.boot(MachineSpec.build(arch="arm64", memory_map=((GiB, base + TWO_MB), (base + 5 * MiB, 2 * GiB)),
                                       kernel="7.2", cpus=1, rodata="on"))
    m.finish_boot()
    k = m.kernel
    first = k.va(base + TWO_MB - PAGE_SIZE)
    since = len(k.log.events)
    assert pageattr.set_memory_valid(k, first, 3 * MiB // PAGE_SIZE + 2, False) == 0
    writes = [(e.addr - first, e.count, e.new) for e in k.log.events[since:] if isinstance(e, EntryWrite) and e.count]
    assert writes[1:] == [(2 * MiB + PAGE_SIZE, 256, ARM64.PRESENT_INVALID), (3 * MiB + PAGE_SIZE, 1, writes[0][2])]
    assert k.pt.run_at(k.va(base + 3 * MiB)) is None
    hole = k.pt.run_at(k.va(base + 4 * MiB))
    assert hole is not None
    assert (hole.level, hole.flags, hole.end - hole.start) == (Level.PTE, ARM64.PRESENT_INVALID, MiB)


def test_a_block_the_range_starts_or_ends_inside_warns_with_its_level() -> None:
    # pageattr_pmd_entry(): WARN_ON_ONCE when the range covers the block partly, at either end
    for offset in (PAGE_SIZE, 0):  # starts one page into a 2M block; starts on its boundary and ends inside it
        k = boot_arm64(2 * GiB, bbml2=False, rodata="noalias")
        since = len(k.log.events)
        assert pageattr.set_memory_valid(k, k.va(GiB + TWO_MB) + offset, 1, False) == -Errno.EINVAL
        assert [e.text for e in k.log.events[since:] if isinstance(e, KernelWarning)] == [
            "WARNING: CPU: 0 at arch/arm64/mm/pageattr.c pageattr_pmd_entry (partial 2M)"]


def test_an_empty_range_is_einval_from_the_walker() -> None:
    # walk_kernel_page_table_range_lockless(): start >= end is -EINVAL (set_memory_valid() has no early return)
    k = boot_arm64(2 * GiB, bbml2=False, rodata="noalias")
    assert pageattr.set_memory_valid(k, k.va(GiB), 0, True) == -Errno.EINVAL


def test_v6_18_set_memory_nx_flushes_its_range_and_making_valid_does_not() -> None:
    # before v7.0 only set_mask == PTE_VALID && clear_mask == 0 skips the TLBI in __change_memory_common()
    m = Machine.boot(MachineSpec.build(arch="arm64", mem="1G", kernel="6.18", cpus=1, rodata="on"))
    m.finish_boot()
    va = m.vmalloc([int(m.alloc_folio("kernel", 0).pfn) for _ in range(2)])  # type: ignore[union-attr]
    def flushes() -> tuple[int, int, int]:
        return m.counters.flushes_all, m.counters.flushes_range, m.counters.flushed_pages

    before = flushes()
    assert m.set_memory("set_memory_nx", va, 2) == 0
    assert flushes() == (before[0], before[1] + 1, before[2] + 2)
    assert pageattr.set_memory_valid(m.kernel, va, 2, True) == 0
    assert flushes() == (before[0], before[1] + 1, before[2] + 2)
