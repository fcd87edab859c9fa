"""x86 rules the random state machine seldom reaches, found by the mutation run: a range across a hole in the
direct map, a large page that already breaks a static protection, the cache-mode calls with their memtype
bookkeeping, CPA_ARRAY, DEBUG_PAGEALLOC, the no-alias and vmap paths, and the RFC hook
(arch/x86/mm/pat/set_memory.c, arch/x86/mm/pat/memtype.c, arch/x86/mm/tlb.c)."""

from __future__ import annotations

from typing import Any

import pytest

from rofolio.arch.x86_64 import cpa
from rofolio.errors import AddressError, Errno
from rofolio.events import CacheFlush, EntryWrite, Flush, FlushKind, KernelWarning, LargePageCheck, PteCheck, Split
from rofolio.machine import Machine
from rofolio.prot import X86
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, GiB, Level
from tests.conftest import boot_running


def _pci_hole(machine: Machine) -> tuple[int, int]:
    """[end of the RAM below 4 GiB, start of the RAM above it): QEMU's hole, which the direct map leaves none."""
    ram = machine.kernel.config.memory.ram
    below = max(r.end for r in ram if r.end <= 4 << 30)
    above = min(r.start for r in ram if r.start >= below)
    return below, above


def _ram_end(machine: Machine) -> int:
    """Where the machine's highest RAM range ends (9 GiB on the 8 GiB QEMU machine: RAM above 4 GiB)."""
    return max(r.end for r in machine.kernel.config.memory.ram)


def _none(machine: Machine, pa: int) -> bool:
    """No entry, or a none PTE in a table that holds other pages (the hole's first pages share a 2M region)."""
    found = machine.kernel.lookup_address(machine.kernel.va(pa))
    return found is None or found.flags == 0


def _warnings(events: Any) -> list[str]:
    """The kernel warnings' texts among ``events``, in order."""
    return [e.text for e in events if isinstance(e, KernelWarning)]


def _large_page_checks(step: Any) -> list[tuple[int, Level, str]]:
    """The __should_split_large_page() outcomes a step recorded (what cpa_stats counts)."""
    return [(e.addr, e.level, e.outcome) for e in step.events if isinstance(e, LargePageCheck)]


def test_a_range_across_a_hole_changes_the_ram_on_both_sides_and_skips_the_hole(gb_machine: Machine) -> None:
    """__cpa_process_fault(): a hole inside PAGE_OFFSET + max_pfn_mapped is skipped without an error or a warning;
    the walk goes on at the next RAM page."""
    k = gb_machine.kernel
    below, above = _pci_hole(gb_machine)
    numpages = (above - below) // PAGE_SIZE + 2  # the last page below the hole, the hole, the first page above
    step = gb_machine.step("ro", lambda: k.set_memory_ro(k.va(below - PAGE_SIZE), numpages))
    assert step.ret == 0 and not [e for e in step.events if isinstance(e, KernelWarning)]
    assert k.lookup_address(k.va(below - PAGE_SIZE)).read_only
    assert k.lookup_address(k.va(below - 2 * PAGE_SIZE)).writable
    assert _none(gb_machine, below) and _none(gb_machine, above - PAGE_SIZE)
    assert k.lookup_address(k.va(above)).read_only and k.lookup_address(k.va(above + PAGE_SIZE)).writable
    assert step.delta()["entries_written"] == 2


def test_a_range_that_starts_in_the_hole_finds_the_ram_after_it(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    _, above = _pci_hole(gb_machine)
    assert k.set_memory_ro(k.va(above - PAGE_SIZE), 2) == 0
    assert k.lookup_address(k.va(above)).read_only and k.lookup_address(k.va(above + PAGE_SIZE)).writable


def test_a_hole_outside_the_direct_map_fails_with_efault_and_a_warning(gb_machine: Machine) -> None:
    """Past max_pfn_mapped and outside the high map, a missing entry is a caller bug: -EFAULT and 'zero pte'."""
    k = gb_machine.kernel
    va = k.layout.vmalloc_start + (1 << 30)  # nothing is mapped there
    step = gb_machine.step("ro", lambda: k.set_memory_ro(va, 1))
    assert step.ret == -Errno.EFAULT
    assert _warnings(step.events) == [
        f"CPA: called for zero pte. vaddr = {va:x} cpa->vaddr = {va:x}"]


def test_a_hole_at_the_top_of_the_direct_map_is_skipped_only_up_to_max_pfn_mapped(gb_machine: Machine) -> None:
    """__cpa_process_fault(): the silent skip holds for addresses below PAGE_OFFSET + (max_pfn_mapped <<
    PAGE_SHIFT) only.  With the last two direct-map pages gone (their PTEs cleared, as a memory hot-remove leaves
    them), a request for those two and the page past the end skips the two and then warns and fails at the
    third, though nothing is mapped after the direct map for a long way."""
    k = gb_machine.kernel
    end = k.direct_map_mapped_end()
    assert k.set_memory_4k(end - 2 * PAGE_SIZE, 2) == 0
    k.pt.unmap(end - 2 * PAGE_SIZE, end)
    step = gb_machine.step("ro", lambda: k.set_memory_ro(end - 2 * PAGE_SIZE, 3))
    assert step.ret == -Errno.EFAULT
    assert _warnings(step.events) == [
        f"CPA: called for zero pte. vaddr = {end:x} cpa->vaddr = {end - 2 * PAGE_SIZE:x}"]


def test_running_off_the_end_of_the_high_map_fails_with_efault_but_no_warning(gb_machine: Machine) -> None:
    """__cpa_process_fault(): past the high map's last leaf (roundup(_brk_end, PMD_SIZE)) there is no entry.  A
    request that reaches it from the last mapped page still holds that page's pfn in cpa->pfn, inside
    [highmap_start_pfn(), highmap_end_pfn()], so it fails quietly; asked for on its own (cpa->pfn is 0) it warns."""
    k = gb_machine.kernel
    end = k.image.highmap_pfns()[1] + 1 << PAGE_SHIFT  # roundup(_brk_end, PMD_SIZE), physical
    hole = k.highmap_va(end)
    assert k.lookup_address(hole - PAGE_SIZE) is not None and k.lookup_address(hole) is None
    step = gb_machine.step("ro", lambda: k.set_memory_ro(hole - PAGE_SIZE, 2))
    assert step.ret == -Errno.EFAULT and not [e for e in step.events if isinstance(e, KernelWarning)]
    step = gb_machine.step("ro", lambda: k.set_memory_ro(hole, 1))
    assert step.ret == -Errno.EFAULT
    assert _warnings(step.events) == [
        f"CPA: called for zero pte. vaddr = {hole:x} cpa->vaddr = {hole:x}"]


def test_the_high_map_alias_of_its_first_and_last_page_follows_the_direct_map(gb_machine: Machine) -> None:
    """cpa_process_alias(): a change to a direct-map page whose pfn is in [highmap_start_pfn(), highmap_end_pfn()]
    (both ends included) is made to its high-map alias too; set_memory_np() shows it (no static protection keeps
    _PAGE_PRESENT)."""
    k = gb_machine.kernel
    first, last = k.image.highmap_pfns()
    for pfn in (first, last):
        pa = pfn << PAGE_SHIFT
        assert k.lookup_address(k.highmap_va(pa)).present
        assert gb_machine.step("np", lambda pa=pa: k.set_memory_np(k.va(pa), 1)).ret == 0
        assert not k.lookup_address(k.va(pa)).present and not k.lookup_address(k.highmap_va(pa)).present
    assert k.lookup_address(k.highmap_va((first + 1) << PAGE_SHIFT)).present  # only the page asked for
    assert k.lookup_address(k.highmap_va((last + 1) << PAGE_SHIFT)) is None  # the high map ends at last


def test_a_large_page_that_breaks_a_static_protection_is_split_and_fixed_up() -> None:
    """__should_split_large_page(): a 2M leaf whose own protection conflicts (here the .rodata alias made writable
    by hand, as a buggy caller could leave it) warns and is split, and split_set_pte() makes each 4K entry over
    .rodata read-only again before the request (here set_memory_x on one page) goes on."""
    machine = boot_running(gbpages=False)
    k = machine.kernel
    lo, _ = k.image.rodata_pfns()
    region = k.va(lo << 12) & Level.PMD.mask
    leaf = k.lookup_address(region)
    assert leaf.level == Level.PMD and leaf.read_only and leaf.flags & X86.NX
    k.pt.set_flags(region, region + Level.PMD.size, leaf.flags | X86.RW)  # the conflict
    page = region + 5 * PAGE_SIZE
    step = machine.step("x", lambda: k.set_memory_x(page, 1))
    assert step.ret == 0
    assert any("__should_split_large_page" in e.text for e in step.events if isinstance(e, KernelWarning))
    assert _large_page_checks(step)[:1] == [
        (region, Level.PMD, "split")]  # cpa_stats counts it checked, neither sameprot nor preserved
    for p in (region, page, region + Level.PMD.size - PAGE_SIZE):
        found = k.lookup_address(p)
        if k.layout.pa(p) >> 12 >= lo:  # every page of this region from .rodata's start on
            assert found.level == Level.PTE and found.read_only
        assert bool(found.flags & X86.NX) == (p != page)


def test_a_whole_large_page_request_a_static_protection_objects_to_is_split() -> None:
    """__should_split_large_page(): set_memory_rw() over a whole 2M leaf of .rodata asks for RW that
    protect_rodata() refuses (CPA_DETECT), so the request differs from what may be set and the leaf is split (a
    check counted as neither sameprot nor preserved); every page stays read-only."""
    machine = boot_running(gbpages=False)
    k = machine.kernel
    lo, hi = k.image.rodata_pfns()
    region = k.va(lo << 12)
    assert region % Level.PMD.size == 0 and (hi + 1 - lo) >= 512 and k.lookup_address(region).level == Level.PMD
    step = machine.step("rw", lambda: k.set_memory_rw(region, 512))
    assert _large_page_checks(step)[:1] == [
        (region, Level.PMD, "split")]
    assert all(k.lookup_address(region + i * PAGE_SIZE).read_only for i in (0, 511))


def test_each_4k_entry_of_the_fixed_up_split_is_warned_about_and_fixed_as_the_large_leaf_still_stood() -> None:
    """split_set_pte() calls static_protections() for each new entry (npg 1, CPA_PROTECT) before
    __set_pmd_pte() installs the table, so every page warns on its own, and protect_kernel_text_ro() still finds
    the 2M leaf: a text leaf made writable and NX by hand comes back read-only and executable, page by page."""
    machine = boot_running(gbpages=False)
    k = machine.kernel
    region = k.highmap_va(k.image.text) & Level.PMD.mask  # the first 2M of kernel text
    leaf = k.lookup_address(region)
    k.pt.set_flags(region, region + Level.PMD.size, leaf.flags | X86.RW | X86.NX)  # the conflict
    step = machine.step("x", lambda: k.set_memory_x(region + 5 * PAGE_SIZE, 1))
    warnings = _warnings(step.events)
    assert step.ret == 0 and len(warnings) == 2 + 2 * 512  # the conflict, the WARN, then two lines a page
    req = leaf.flags & ~X86.PSE | X86.RW | X86.NX  # the 4K form of the leaf's protection
    for i in (0, 5, 511):
        start, pfn = region + i * PAGE_SIZE, leaf.pfn + i
        assert warnings[2 + 2 * i:4 + 2 * i] == [
            f"CPA  protect    Text NX: 0x{start:016x} - 0x{start + PAGE_SIZE - 1:016x} PFN {pfn:x} req {req:016x} "
            f"prevent {X86.NX:016x}",
            f"CPA  protect    Text RO: 0x{start:016x} - 0x{start + PAGE_SIZE - 1:016x} PFN {pfn:x} req {req:016x} "
            f"prevent {X86.RW:016x}"]
        found = k.lookup_address(start)
        assert found.level == Level.PTE and found.read_only and not found.flags & X86.NX


def test_uc_then_wb_sets_and_clears_the_cache_bits_and_the_memtype(gb_machine: Machine) -> None:
    """set_memory_uc(): memtype_reserve(UC-), PCD on the entries, caches flushed; a reservation over a page that
    holds UC- already is refused with -EBUSY and a pr_info() naming the whole request and both types as enum
    page_cache_mode numbers (reserve_ram_pages_type(), as the 6.1 oracle guest printed it); set_memory_wb() clears
    the cache bits and frees the memtype."""
    k = gb_machine.kernel
    va = k.va(6 << 30)
    pfn = (6 << 30) >> 12
    step = gb_machine.step("uc", lambda: k.set_memory_uc(va, 2))
    assert step.ret == 0 and k.memtype == {pfn: X86.CACHE_UC_MINUS, pfn + 1: X86.CACHE_UC_MINUS}
    assert k.lookup_address(va).flags & X86.CACHE_MASK == X86.CACHE_UC_MINUS and k.lookup_address(va).present
    assert k.lookup_address(va + 2 * PAGE_SIZE).flags & X86.CACHE_MASK == 0
    assert [e for e in step.events if isinstance(e, CacheFlush)]
    again = gb_machine.step("uc again", lambda: k.set_memory_uc(va + PAGE_SIZE, 2))
    assert again.ret == -Errno.EBUSY and k.memtype[pfn + 1] == X86.CACHE_UC_MINUS and pfn + 2 not in k.memtype
    assert _warnings(again.events) == [
        "x86/PAT: reserve_ram_pages_type failed [mem 0x180001000-0x180002fff], track 0x2, req 0x2"]
    assert k.set_memory_wb(va, 2) == 0
    assert k.memtype == {} and k.lookup_address(va).flags & X86.CACHE_MASK == 0


def test_set_memory_wb_frees_only_its_own_pages_whatever_they_held(gb_machine: Machine) -> None:
    """memtype_free() -> free_ram_pages_type(): every page of the range goes back to write-back, including pages
    that never left it; pages before and after the range keep their type."""
    k = gb_machine.kernel
    va = k.va(6 << 30)
    pfn = (6 << 30) >> 12
    assert k.set_memory_uc(va, 1) == 0 and k.set_memory_uc(va + 4 * PAGE_SIZE, 2) == 0
    assert k.set_memory_wb(va + 3 * PAGE_SIZE, 2) == 0  # pfn + 3 was never reserved
    assert k.memtype == {pfn: X86.CACHE_UC_MINUS, pfn + 5: X86.CACHE_UC_MINUS}
    assert k.set_memory_np(va + 8 * PAGE_SIZE, 1) == 0 and k.set_memory_wb(va + 8 * PAGE_SIZE, 1) == 0
    assert not k.lookup_address(va + 8 * PAGE_SIZE).present  # _set_memory_wb() only clears cache bits


def test_pages_just_below_the_kernel_image_are_written_as_one_stretch(nogb_machine: Machine) -> None:
    """The model's batching (the kernel itself goes page by page, cpa->numpages = 1 for 4K entries): it keeps to
    single pages only where cpa_process_alias() has a high-map alias to change, for pfns inside
    [highmap_start_pfn(), highmap_end_pfn()]; three 4K pages ending right below that have none, so one step."""
    k = nogb_machine.kernel
    first, _ = k.image.highmap_pfns()
    va = k.va((first - 3) << PAGE_SHIFT)
    assert k.set_memory_4k(va, 3) == 0
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(va, 3))
    assert [(e.addr, e.count) for e in step.events if isinstance(e, EntryWrite)] == [(va, 3)]


def test_cpa_stats_count_each_large_page_check_by_its_outcome(nogb_machine: Machine) -> None:
    """__should_split_large_page() with CONFIG_X86_CPA_STATISTICS (debugfs x86/cpa_stats): a whole 2M leaf
    changed in place is checked and preserved (one entry written, the leaf itself); asked again it is checked
    and sameprot; one page of another 2M leaf is checked and split (neither sameprot nor preserved)."""
    k = nogb_machine.kernel
    leaf = k.va(6 * GiB)

    def stats() -> dict[str, int]:
        return {key: v for key, v in k.log.counters.cpa_stats().items() if key.startswith("2M")}

    before = stats()
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(leaf, 512))
    old = k.lookup_address(leaf + Level.PMD.size).flags  # an untouched neighbour: the leaf as it was
    assert [(e.addr, e.level, e.count, e.old) for e in step.events if isinstance(e, EntryWrite)] == [
        (leaf, Level.PMD, 1, old)]
    assert _large_page_checks(step) == [(leaf, Level.PMD, "preserved")]
    again = nogb_machine.step("ro again", lambda: k.set_memory_ro(leaf, 512))
    assert _large_page_checks(again) == [(leaf, Level.PMD, "sameprot")]
    nogb_machine.step("one page", lambda: k.set_memory_ro(leaf + Level.PMD.size, 1))
    after = stats()
    assert {key: after[key] - before[key] for key in after} == {
        "2M pages checked": 3, "2M pages sameprot": 1, "2M pages preserved": 1}


def test_flush_tlb_kernel_range_invalidates_page_by_page_up_to_the_ceiling(gb_machine: Machine) -> None:
    """flush_tlb_kernel_range() (arch/x86/mm/tlb.c): at most tlb_single_page_flush_ceiling (33) pages one by one
    on every CPU, more as one full flush."""
    k = gb_machine.kernel
    ceiling = k.config.tlb_single_page_flush_ceiling
    start = k.va(6 << 30)
    for pages, expected in ((1, (FlushKind.PAGES, 1)), (ceiling, (FlushKind.PAGES, ceiling)),
                            (ceiling + 1, (FlushKind.ALL, 0))):
        mark = k.log.appended
        k.flush_tlb_kernel_range(start, start + pages * PAGE_SIZE, "test")
        [flush] = k.log.since(mark)
        assert isinstance(flush, Flush)
        assert (flush.flush, flush.pages, flush.cpus, flush.ipis, flush.reason) == (*expected, 8, 7, "test")


def test_the_rfc_hook_makes_a_folio_read_only_and_writable_again(gb_machine: Machine) -> None:
    """RFC patch 3/3 on x86: arch_make_folio_readonly() is set_memory_ro() over the folio's direct-map range,
    and its inverse set_memory_rw() (the large page is not re-formed)."""
    k = gb_machine.kernel
    pfn, nr = (6 << 30) >> 12, 512
    assert k.arch_make_folio_readonly(pfn, nr) == 0
    assert not k.direct_map_writable(pfn) and not k.direct_map_writable(pfn + nr - 1)
    assert k.direct_map_writable(pfn + nr) and k.direct_map_present(pfn)
    assert k.arch_make_folio_writable(pfn, nr) == 0
    assert k.direct_map_writable(pfn) and k.direct_map_writable(pfn + nr - 1)
    assert k.lookup_address(k.page_address(pfn)).level == Level.PMD  # split from its 1G leaf, never re-formed


def test_debug_pagealloc_maps_and_unmaps_pages_with_a_local_flush() -> None:
    """__kernel_map_pages(): __set_pages_p() (PRESENT and RW set, DIRTY not) or __set_pages_np() (PRESENT, RW
    and, since c1fcf41cf37f, DIRTY cleared), then __flush_tlb_all() on this CPU only.  A free page starts out
    unmapped under DEBUG_PAGEALLOC."""
    machine = boot_running(debug_pagealloc=True)
    k = machine.kernel
    pfn = (6 << 30) >> 12
    neighbour = k.lookup_address(k.page_address(pfn + 2)).flags
    assert not k.kernel_page_present(pfn)
    mark = k.log.appended
    k.kernel_map_pages(pfn, 2, True)
    events = k.log.since(mark)
    assert events[0].func == "__kernel_map_pages" and events[0].numpages == 2  # type: ignore[attr-defined]
    [flush] = [e for e in events if isinstance(e, Flush)]
    assert (flush.flush, flush.pages, flush.cpus, flush.ipis, flush.reason) == (
        FlushKind.LOCAL_ALL, 0, 1, 0, "__kernel_map_pages")  # a whole flush: no page count
    mapped = k.lookup_address(k.page_address(pfn)).flags
    assert mapped & (X86.PRESENT | X86.RW) == X86.PRESENT | X86.RW and not mapped & X86.DIRTY
    assert k.direct_map_writable(pfn + 1) and not k.kernel_page_present(pfn + 2)
    k.kernel_map_pages(pfn, 2, False)
    for p in (pfn, pfn + 1):
        assert k.lookup_address(k.page_address(p)).flags == mapped & ~(X86.PRESENT | X86.RW | X86.GLOBAL)
    assert k.lookup_address(k.page_address(pfn + 2)).flags == neighbour


@pytest.mark.parametrize("edge", ["start", "end"])
def test_debug_pagealloc_mapping_across_an_edge_of_rodata_keeps_only_rodata_read_only(edge: str) -> None:
    """__set_pages_p() has CPA_NO_CHECK_ALIAS, so the model may treat a stretch of 4K pages as one; the stretch
    must still break where protect_rodata() starts and stops holding (its first pfn; the one after its last)."""
    machine = boot_running(debug_pagealloc=True)
    k = machine.kernel
    first, last = k.image.rodata_pfns()
    start = first - 2 if edge == "start" else last - 1
    k.kernel_map_pages(start, 4, False)
    k.kernel_map_pages(start, 4, True)
    flags = [k.lookup_address(k.page_address(pfn)).flags for pfn in range(start, start + 4)]
    assert all(f & X86.PRESENT for f in flags)
    expected = [True, True, False, False] if edge == "start" else [False, False, True, True]
    assert [bool(f & X86.RW) for f in flags] == expected


def test_set_memory_np_noalias_leaves_the_direct_map_alias_and_flushes_only_its_page(gb_machine: Machine) -> None:
    """CPA_NO_CHECK_ALIAS: no cpa_process_alias(), so the direct-map alias of a vmalloc page stays present and
    no full flush is forced; set_memory_np() on the same kind of page changes the alias too."""
    k = gb_machine.kernel
    pfn = (6 << 30) >> 12
    vaddr = k.vmap([pfn])
    step = gb_machine.step("np noalias", lambda: k.set_memory_np_noalias(vaddr, 1))
    assert step.ret == 0 and not k.lookup_address(vaddr).present
    assert k.kernel_page_present(pfn) and k.direct_map_writable(pfn)
    assert [(f.flush, f.pages) for f in step.events if isinstance(f, Flush)] == [(FlushKind.PAGES, 1)]
    assert step.events[0].func == "set_memory_np_noalias"  # type: ignore[attr-defined]
    other = k.vmap([pfn + 1])
    assert k.set_memory_np(other, 1) == 0 and not k.kernel_page_present(pfn + 1)


def test_set_memory_np_noalias_on_a_whole_large_leaf_changes_it_in_place(nogb_machine: Machine) -> None:
    """set_memory_np_noalias() is no set_memory_4k(): a request covering a whole 2M leaf keeps it one leaf."""
    k = nogb_machine.kernel
    va = k.va(6 * GiB)
    assert k.lookup_address(va).level == Level.PMD
    assert k.set_memory_np_noalias(va, 512) == 0
    found = k.lookup_address(va)
    assert found.level == Level.PMD and not found.present


def test_vmap_maps_4k_ptes_with_a_guard_page_and_refuses_overlaps(gb_machine: Machine) -> None:
    k = gb_machine.kernel
    pfn = (6 << 30) >> 12
    first = k.vmap([pfn, pfn + 7])
    assert [k.lookup_address(first + i * PAGE_SIZE).pfn for i in (0, 1)] == [pfn, pfn + 7]
    assert k.lookup_address(first).level == Level.PTE and k.lookup_address(first + 2 * PAGE_SIZE).flags == 0
    assert k.vmap([pfn + 1]) == first + 3 * PAGE_SIZE  # after the guard page
    placed = k.layout.vmalloc_start + (5 << 30)
    assert k.vmap([pfn + 2], at=placed) == placed and k.lookup_address(placed).pfn == pfn + 2
    assert k.vmap([pfn + 3]) == first + 5 * PAGE_SIZE  # a placed area does not move the next free address
    with pytest.raises(AddressError, match=f"vmap at {placed:#x} overlaps an existing mapping") as err:
        k.vmap([pfn + 4], at=placed)
    assert err.value.hint == "choose another address"  # every refusal says what to do instead
    with pytest.raises(AddressError, match="vmap of no pages") as err:
        k.vmap([])
    assert err.value.hint == "give at least one page"


def test_a_cache_change_that_fails_half_way_flushes_every_tlb_and_every_cache(nogb_machine: Machine) -> None:
    """change_page_attr_set_clr(): after an error with entries already written, cpa_flush_all() flushes every
    CPU's TLB (IPIs to the other seven) and, for a cache-mode change, wbinvd; set_memory_uc() then gives its
    memtype back."""
    k = nogb_machine.kernel
    va = k.va(6 << 30)
    k.pgtable_alloc_fail = True
    step = nogb_machine.step("uc", lambda: k.set_memory_uc(va, 513))  # a whole 2M leaf, then one page to split
    assert step.ret == -Errno.ENOMEM
    assert k.lookup_address(va).flags & (X86.PWT | X86.PCD) == X86.CACHE_UC_MINUS  # the 2M leaf, changed in place
    assert [(f.flush, f.cpus, f.ipis, f.reason) for f in step.events if isinstance(f, Flush)] == [
        (FlushKind.ALL, 8, 7, "cpa_flush_all")]
    assert [(c.how, c.pages) for c in step.events if isinstance(c, CacheFlush)] == [("wbinvd", 0)]
    assert k.memtype == {}


def test_cpa_test_in_array_mode_goes_page_by_page_and_splits_what_range_mode_keeps(nogb_machine: Machine) -> None:
    """CPA_ARRAY (cpa-test.c's change_page_attr_test() with an array): __change_page_attr_set_clr() hands one page
    at a time to __change_page_attr(), so a whole 2M leaf is split where the same range in range mode keeps
    it as one leaf with the new bit."""
    k = nogb_machine.kernel
    leaf, other = k.va(6 << 30), k.va((6 << 30) + Level.PMD.size)
    step = nogb_machine.step("range", lambda: k.set_memory_cpa_test(leaf, 512, True))
    assert step.ret == 0 and step.events[0].func == "change_page_attr_test"  # type: ignore[attr-defined]
    found = k.lookup_address(leaf)
    assert found.level == Level.PMD and found.flags & X86.CPA_TEST
    pages = tuple(other + i * PAGE_SIZE for i in range(512))
    array = nogb_machine.step("array", lambda: k.set_memory_cpa_test(pages, 512, True, array=True))
    assert array.ret == 0 and not [e for e in array.events if isinstance(e, KernelWarning)]  # all page-aligned
    found = k.lookup_address(other + 7 * PAGE_SIZE)
    assert found.level == Level.PTE and found.flags & X86.CPA_TEST
    assert k.set_memory_cpa_test(pages, 512, False, array=True) == 0
    assert not k.lookup_address(other + 7 * PAGE_SIZE).flags & X86.CPA_TEST
    # clearing a bit no entry holds writes nothing, so CPA_FLUSHTLB stays clear and nothing is flushed
    again = nogb_machine.step("clear again", lambda: k.set_memory_cpa_test(other, 4, False))
    assert again.ret == 0 and not [e for e in again.events if isinstance(e, (EntryWrite, Flush))]


def test_an_array_change_of_image_pages_changes_each_high_map_alias_one_page_each(gb_machine: Machine) -> None:
    """cpa_process_alias() after each page of an array call: __change_page_attr_set_clr() set numpages to 1 for
    array mode and the alias request copies it, so each page's own high-map alias is changed, one page at that
    page's address, and nothing between."""
    k = gb_machine.kernel
    data_pa = k.image.sdata + 16 * PAGE_SIZE  # .data pages: inside the high map
    pages = (k.va(data_pa), k.va(data_pa + 2 * PAGE_SIZE))
    step = gb_machine.step("array", lambda: k.set_memory_cpa_test(pages, 2, True, array=True))
    assert step.ret == 0
    for pa in (data_pa, data_pa + 2 * PAGE_SIZE):
        assert k.lookup_address(k.va(pa)).flags & X86.CPA_TEST
        assert k.lookup_address(k.highmap_va(pa)).flags & X86.CPA_TEST
    between = data_pa + PAGE_SIZE
    assert not k.lookup_address(k.va(between)).flags & X86.CPA_TEST
    assert not k.lookup_address(k.highmap_va(between)).flags & X86.CPA_TEST
    assert [e for e in step.events if isinstance(e, Flush)][-1].flush is FlushKind.ALL  # force_flush_all


def test_an_unaligned_address_is_rounded_down_to_its_own_page_with_a_warning(nogb_machine: Machine) -> None:
    """change_page_attr_set_clr(): an address inside a page is a caller bug: WARN_ON_ONCE, then PAGE_MASK; in
    array mode each address is masked, and one that was not aligned warns the same way."""
    k = nogb_machine.kernel
    page = k.va(6 * GiB + 3 * PAGE_SIZE)  # an odd page: rounding must clear the offset only
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(page + 0x123, 1))
    assert step.ret == 0
    assert _warnings(step.events) == [
        "WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c change_page_attr_set_clr (unaligned)"]
    array = nogb_machine.step("array", lambda: k.set_memory_cpa_test((page + 0x10, page + PAGE_SIZE), 2, True,
                                                                      array=True))
    assert _warnings(array.events) == [
        "WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c change_page_attr_set_clr (unaligned)"]
    assert k.lookup_address(page).flags & X86.CPA_TEST
    assert k.lookup_address(page).read_only
    assert k.lookup_address(page - PAGE_SIZE).writable and k.lookup_address(page + PAGE_SIZE).writable


def test_a_4k_entry_write_records_the_entry_before_and_after(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    page = k.va(6 * GiB)
    k.set_memory_ro(page, 1)  # split to 4K first
    before = k.lookup_address(page + PAGE_SIZE).flags
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(page + PAGE_SIZE, 2))
    [write] = [e for e in step.events if isinstance(e, EntryWrite)]
    assert (write.addr, write.level, write.count, write.old) == (page + PAGE_SIZE, Level.PTE, 2, before)
    assert write.new == k.lookup_address(page + PAGE_SIZE).flags and not write.new & X86.RW


def test_each_entry_point_records_its_call_and_refuses_a_user_address(nogb_machine: Machine) -> None:
    k = nogb_machine.kernel
    page = k.va(6 * GiB)
    for name, call in (("set_memory_ro", k.set_memory_ro), ("set_memory_rw", k.set_memory_rw),
                       ("set_memory_np", k.set_memory_np), ("set_memory_p", k.set_memory_p),
                       ("set_memory_nx", k.set_memory_nx), ("set_memory_x", k.set_memory_x),
                       ("set_memory_uc", k.set_memory_uc), ("set_memory_wb", k.set_memory_wb),
                       ("set_memory_rox", k.set_memory_rox)):
        step = nogb_machine.step(name, lambda call=call: call(page, 2))
        assert (step.events[0].func, step.events[0].addr, step.events[0].numpages) == (name, page, 2)  # type: ignore[attr-defined]
    with pytest.raises(AddressError) as err:
        k.set_memory_ro(0x7FFF0000, 1)  # a user address: the model holds only the kernel's page tables
    assert err.value.message == "address 0x7fff0000 is not a kernel address of this machine"
    assert err.value.hint == f"direct-map addresses start at {k.layout.page_offset:#x} (PAGE_OFFSET)"


def test_cpa_flush_names_itself_on_both_of_its_flushes(gb_machine: Machine) -> None:
    """cpa_flush(): a request at or below tlb_single_page_flush_ceiling flushes page by page, a larger one
    flushes everything; both flushes are cpa_flush()'s."""
    k = gb_machine.kernel
    page = k.va(6 * GiB)
    k.set_memory_ro(page, 65)  # split down to 4K first: a split flushes on its own
    k.set_memory_rw(page, 65)
    small = gb_machine.step("ro 1", lambda: k.set_memory_ro(page, 1))
    big = gb_machine.step("ro 64", lambda: k.set_memory_ro(page + PAGE_SIZE, 64))
    assert [(f.flush, f.reason) for f in small.events if isinstance(f, Flush)] == [(FlushKind.PAGES, "cpa_flush")]
    assert [(f.flush, f.reason) for f in big.events if isinstance(f, Flush)] == [(FlushKind.ALL, "cpa_flush")]


def test_the_first_direct_map_page_is_the_direct_map_so_no_alias_forces_a_full_flush(gb_machine: Machine) -> None:
    """cpa_process_alias(): the direct-map alias is skipped when the address is within(PAGE_OFFSET, PAGE_OFFSET +
    max_pfn_mapped pages), both ends as within() takes them: PAGE_OFFSET itself is inside, so a change to pfn 0's
    page has no alias and flushes one page."""
    k = gb_machine.kernel
    assert k.within_direct_map_mapped(k.layout.page_offset)
    assert not k.within_direct_map_mapped(k.direct_map_mapped_end())
    step = gb_machine.step("ro pfn 0", lambda: k.set_memory_ro(k.layout.page_offset, 1))
    assert step.ret == 0 and not k.lookup_address(k.layout.page_offset).writable
    assert [f.flush for f in step.events if isinstance(f, Flush)] == [FlushKind.PAGES]


def test_a_high_map_address_is_a_valid_virtual_address_only_below_kernel_image_size(gb_machine: Machine) -> None:
    """__virt_addr_valid(): a high-map address is valid only below __START_KERNEL_map + KERNEL_IMAGE_SIZE."""
    k = gb_machine.kernel
    top = k.layout.start_kernel_map + k.layout.kernel_image_size
    assert k.valid_virt_pfn(top - PAGE_SIZE) == (k.layout.kernel_image_size - PAGE_SIZE) >> PAGE_SHIFT
    assert k.valid_virt_pfn(top) is None


@pytest.mark.parametrize(("kernel", "ret", "warns"), [("6.1", 0, False), ("7.2", -Errno.EFAULT, True)])
def test_set_direct_map_invalid_noflush_past_max_pfn_mapped_faults_only_as_a_primary_change(
        kernel: str, ret: int, warns: bool) -> None:
    """__set_pages_np() past the direct map's end: before ef9ab81af6e1 (v6.2) it passed checkalias = 0, which
    was also "primary", so __cpa_process_fault() skipped the missing entry; from 6.2 it is a primary change and
    a missing entry outside [PAGE_OFFSET, max_pfn_mapped) and the high map warns and fails with -EFAULT."""
    machine = boot_running(kernel=kernel)
    k = machine.kernel
    end = k.direct_map_mapped_end()
    pfn = (end - k.layout.page_offset) >> PAGE_SHIFT
    step = machine.step("invalid", lambda: k.set_direct_map_invalid_noflush(pfn))
    assert step.ret == ret
    assert _warnings(step.events) == (
        [f"CPA: called for zero pte. vaddr = {end:x} cpa->vaddr = {end:x}"] if warns else [])


def test_the_pages_just_outside_the_high_map_have_no_high_map_alias(gb_machine: Machine) -> None:
    """cpa_process_alias(): only a pfn in [highmap_start_pfn(), highmap_end_pfn()] has a high-map alias, so a
    direct-map change of the page just before or just after it forces no full flush: cpa_flush() goes page by
    page."""
    k = gb_machine.kernel
    first, last = k.image.highmap_pfns()
    for pfn in (first - 1, last + 1):
        va = k.va(pfn << PAGE_SHIFT)
        step = gb_machine.step("ro", lambda va=va: k.set_memory_ro(va, 1))
        assert step.ret == 0
        assert [(f.flush, f.reason) for f in step.events if isinstance(f, Flush) and f.reason == "cpa_flush"] == [
            (FlushKind.PAGES, "cpa_flush")]


def test_a_request_for_no_pages_changes_nothing_and_is_not_refused(gb_machine: Machine) -> None:
    """change_page_attr_set_clr() with numpages 0: the walk has nothing to do, returns 0 and flushes nothing."""
    k = gb_machine.kernel
    step = gb_machine.step("ro 0", lambda: k.set_memory_ro(k.va(6 * GiB), 0))
    assert step.ret == 0 and [type(e).__name__ for e in step.events] == ["Call", "Return"]


def test_set_memory_nx_across_etext_on_6_1_warns_once_per_text_page() -> None:
    """Before v6.2 set_memory_nx() is not a primary change, so the model walks a stretch of alike 4K PTEs at
    once; the kernel's 4K branch of __change_page_attr() still calls static_protections() page by page, so each
    text page up to the one holding _etext - 1 keeps X with its own "Text NX" line (the pages after it are the
    non-present, NX gap before .rodata)."""
    machine = boot_running(kernel="6.1")
    k = machine.kernel
    etext = k.highmap_va(k.image.etext)  # _etext, not page-aligned
    va = (etext & ~(PAGE_SIZE - 1)) - 4 * PAGE_SIZE
    k.set_memory_cpa_test(va, 8, True)  # split the high map's 2M leaf down to 4K first
    k.set_memory_cpa_test(va, 8, False)
    step = machine.step("nx", lambda: k.set_memory_nx(va, 8))
    assert step.ret == 0
    assert [not k.lookup_address(va + i * PAGE_SIZE).flags & X86.NX for i in range(8)] == [True] * 5 + [False] * 3
    lines = _warnings(step.events)
    assert [line.split(": ", 1)[1].split(" req")[0] for line in lines] == [
        f"0x{va + i * PAGE_SIZE:016x} - 0x{va + (i + 1) * PAGE_SIZE - 1:016x} PFN "
        f"{k.valid_virt_pfn(va + i * PAGE_SIZE):x}" for i in range(5)]
    assert all(line.startswith("CPA  protect    Text NX: ") for line in lines)


def test_set_direct_map_valid_noflush_over_rodata_warns_once_per_page(gb_machine: Machine) -> None:
    """__set_pages_p() over .rodata's direct-map alias: _PAGE_RW is refused page by page, one "Rodata RO" line
    each, as the kernel's per-page static_protections() prints them."""
    k = gb_machine.kernel
    lo, _ = k.image.rodata_pfns()
    step = gb_machine.step("valid", lambda: k.set_direct_map_valid_noflush(lo, 3, True))
    assert step.ret == 0
    assert [t.split(" req")[0] for t in _warnings(step.events)] == [
        f"CPA  protect  Rodata RO: 0x{k.va((lo + i) << PAGE_SHIFT):016x} - "
        f"0x{k.va((lo + i + 1) << PAGE_SHIFT) - 1:016x} PFN {lo + i:x}" for i in range(3)]
    assert all(not k.lookup_address(k.va((lo + i) << PAGE_SHIFT)).writable for i in range(3))


def test_a_stretch_that_starts_on_etexts_page_stops_after_that_page() -> None:
    """uniform_protection_pages(): _etext is not page-aligned and the page holding it is text, so a stretch of
    alike 4K PTEs starting on that page ends with it: 6.1's set_memory_nx() (not a primary change, so batched)
    keeps that page executable with a "Text NX" line and sets NX on the next one, as the kernel's page-by-page
    walk does."""
    machine = boot_running(kernel="6.1")
    k = machine.kernel
    last_text = k.highmap_va(k.image.etext) & ~(PAGE_SIZE - 1)
    after = last_text + PAGE_SIZE
    for change in (k.set_memory_p, k.set_memory_x, k.set_memory_ro):  # make the next page alike the text page
        change(after, 1)
    assert k.lookup_address(after).flags == k.lookup_address(last_text).flags
    step = machine.step("nx", lambda: k.set_memory_nx(last_text, 2))
    assert step.ret == 0
    assert not k.lookup_address(last_text).flags & X86.NX and k.lookup_address(after).flags & X86.NX
    assert [t.split(" req")[0] for t in _warnings(step.events)] == [
        f"CPA  protect    Text NX: 0x{last_text:016x} - 0x{after - 1:016x} PFN {k.valid_virt_pfn(last_text):x}"]


def test_a_pud_split_warns_once_per_2m_entry_it_fixes(gb_machine: Machine) -> None:
    """split_set_pte() checks each new entry of a split with one static_protections() call over that entry, so
    a PUD split's 2M entry that breaks a protection is one line with the entry's 2M range, not one a page."""
    k = gb_machine.kernel
    lo, _ = k.image.rodata_pfns()
    va = k.va(lo << PAGE_SHIFT)
    before = len(_warnings(k.log.events))
    assert cpa.static_protections(k, X86.PRESENT | X86.RW, va, lo, 512, 0, cpa.CPA_PROTECT) == X86.PRESENT
    lines = _warnings(k.log.events)[before:]
    assert [line.split(" req")[0] for line in lines] == [
        f"CPA  protect  Rodata RO: 0x{va:016x} - 0x{va + Level.PMD.size - 1:016x} PFN {lo:x}"]


def test_the_4k_path_records_the_stretch_it_checked_by_its_first_address(nogb_machine: Machine) -> None:
    """The 4K branch of __change_page_attr() runs once a page (CPA_STATISTICS' '4K set-checked'); the model's
    PteCheck event names the stretch's first page and how many pages it covered."""
    k = nogb_machine.kernel
    page = k.va(6 * GiB)
    k.set_memory_ro(page, 1)  # split to 4K first
    step = nogb_machine.step("ro", lambda: k.set_memory_ro(page + PAGE_SIZE, 3))
    assert [(e.addr, e.count) for e in step.events if isinstance(e, PteCheck)] == [(page + PAGE_SIZE, 3)]


def test_the_set_direct_map_calls_record_themselves_by_name(nogb_machine: Machine) -> None:
    """set_direct_map_{invalid,default,valid}_noflush() are calls of their own in the record, at the page's
    direct-map address, whatever __set_pages_p()/__set_pages_np() they come down to."""
    k = nogb_machine.kernel
    pfn = (6 * GiB) >> PAGE_SHIFT
    for name, call, pages in (
            ("set_direct_map_invalid_noflush", lambda: k.set_direct_map_invalid_noflush(pfn), 1),
            ("set_direct_map_default_noflush", lambda: k.set_direct_map_default_noflush(pfn), 1),
            ("set_direct_map_valid_noflush", lambda: k.set_direct_map_valid_noflush(pfn, 2, True), 2)):
        step = nogb_machine.step(name, call)
        assert (step.events[0].func, step.events[0].addr, step.events[0].numpages) == (  # type: ignore[attr-defined]
            name, k.page_address(pfn), pages)


def test_virt_addr_valid_ends_with_the_memory_section_that_holds_the_last_ram_page(gb_machine: Machine) -> None:
    """__virt_addr_valid() ends in pfn_valid(), which under SPARSEMEM asks whether the pfn's 128 MiB section holds
    memory: where RAM ends on a section boundary (QEMU's top range, 9 GiB on this machine), the page after it is
    not valid."""
    k = gb_machine.kernel
    end = _ram_end(gb_machine)
    assert end % (128 << 20) == 0
    assert k.virt_addr_valid(k.va(end - PAGE_SIZE)) and not k.virt_addr_valid(k.va(end))


def test_splitting_for_the_last_ram_page_counts_both_splits_as_direct_map_splits(gb_machine: Machine) -> None:
    """__split_large_page() calls split_page_count() when the changed address is valid and its own pfn is mapped
    (pfn_range_is_mapped(pfn, pfn + 1)): the last page of RAM, with nothing mapped after it, counts too."""
    k = gb_machine.kernel
    end = _ram_end(gb_machine)
    step = gb_machine.step("ro", lambda: k.set_memory_ro(k.va(end - PAGE_SIZE), 1))
    assert [(e.level, e.direct) for e in step.events if isinstance(e, Split)] == [(Level.PUD, True), (Level.PMD, True)]
    d = step.delta()
    assert (d["DirectMap1G"], d["DirectMap2M"], d["DirectMap4k"]) == (-1048576, 1048576 - 2048, 2048)


def test_debug_pagealloc_high_map_splits_leave_a_zero_2m_count_alone() -> None:
    """With DEBUG_PAGEALLOC the direct map is all 4K, so direct_pages_count[PG_LEVEL_2M] is 0; split_page_count()
    returns early at a zero count, so boot's splits of the high map's 2M leaves (mark_rodata_ro()) move nothing:
    /proc/meminfo shows DirectMap2M 0 and DirectMap4k the whole direct map."""
    machine = boot_running(debug_pagealloc=True, mem=2 * GiB)
    lines = dict(line.split(":") for line in machine.meminfo_lines() if line.startswith("DirectMap"))
    assert int(lines["DirectMap2M"].split()[0]) == 0
    assert [e for e in machine.log.events if isinstance(e, Split) and e.level == Level.PMD]  # the high map's splits
    mapped_kb = sum(e - s for s, e in machine.kernel.pfn_mapped) * PAGE_SIZE // 1024
    assert int(lines["DirectMap4k"].split()[0]) == mapped_kb
