"""CPA rules the random state machine seldom reaches: a range across a hole in the direct map, a large page that
already breaks a static protection, and the cache-mode calls with their memtype bookkeeping
(arch/x86/mm/pat/set_memory.c, arch/x86/mm/pat/memtype.c)."""

from __future__ import annotations

from rofolio.errors import Errno
from rofolio.events import CacheFlush, Flush, FlushKind, KernelWarning
from rofolio.machine import Machine
from rofolio.prot import X86
from rofolio.units import PAGE_SIZE, Level
from tests.conftest import boot_running


def _pci_hole(machine: Machine) -> tuple[int, int]:
    """[end of the RAM below 4 GiB, start of the RAM above it): QEMU's hole, which the direct map leaves none."""
    ram = machine.kernel.config.memory.ram
    below = max(r.end for r in ram if r.end <= 4 << 30)
    above = min(r.start for r in ram if r.start >= below)
    return below, above


def _none(machine: Machine, pa: int) -> bool:
    """No entry, or a none PTE in a table that holds other pages (the hole's first pages share a 2M region)."""
    found = machine.kernel.lookup_address(machine.kernel.va(pa))
    return found is None or found.flags == 0


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
    assert [e.text for e in step.events if isinstance(e, KernelWarning)] == [
        f"CPA: called for zero pte. vaddr = {va:x} cpa->vaddr = {va:x}"]


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
    for p in (region, page, region + Level.PMD.size - PAGE_SIZE):
        found = k.lookup_address(p)
        if k.layout.pa(p) >> 12 >= lo:  # every page of this region from .rodata's start on
            assert found.level == Level.PTE and found.read_only
        assert bool(found.flags & X86.NX) == (p != page)


def test_uc_then_wb_sets_and_clears_the_cache_bits_and_the_memtype(gb_machine: Machine) -> None:
    """set_memory_uc(): memtype_reserve(UC-), PCD on the entries, caches flushed; a second reservation of another
    type is refused with -EBUSY; set_memory_wb() clears the cache bits and frees the memtype."""
    k = gb_machine.kernel
    va = k.va(6 << 30)
    pfn = (6 << 30) >> 12
    step = gb_machine.step("uc", lambda: k.set_memory_uc(va, 2))
    assert step.ret == 0 and k.memtype == {pfn: X86.CACHE_UC_MINUS, pfn + 1: X86.CACHE_UC_MINUS}
    assert k.lookup_address(va).flags & X86.CACHE_MASK == X86.CACHE_UC_MINUS
    assert k.lookup_address(va + 2 * PAGE_SIZE).flags & X86.CACHE_MASK == 0
    assert [e for e in step.events if isinstance(e, CacheFlush)]
    again = gb_machine.step("uc again", lambda: k.set_memory_uc(va + PAGE_SIZE, 1))
    assert again.ret == -Errno.EBUSY and k.memtype[pfn + 1] == X86.CACHE_UC_MINUS
    assert next(e.text for e in again.events if isinstance(e, KernelWarning)).startswith(
        "x86/PAT: reserve_ram_pages_type failed [mem 0x180001000-0x180001fff], track uncached-minus, "
        "req uncached-minus")
    assert k.set_memory_wb(va, 2) == 0
    assert k.memtype == {} and k.lookup_address(va).flags & X86.CACHE_MASK == 0


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
