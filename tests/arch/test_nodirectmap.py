"""The weak default (rofolio.arch.nodirectmap.kernel): an architecture without direct-map permission support."""

from __future__ import annotations

import pytest

from rofolio.arch.nodirectmap.kernel import NoDirectMapConfig, boot
from rofolio.arch.riscv64.pgtable import PAGE_KERNEL
from rofolio.errors import AddressError, Errno
from rofolio.units import PAGE_SHIFT, GiB, Level, MiB

FOLIO_PA = (2 << 30) + GiB + 10 * MiB  # 2M aligned, inside the second GiB of RAM (RAM starts at 2 GiB)


def _figures(k) -> dict[str, int]:  # type: ignore[no-untyped-def]
    c = k.log.counters
    return {**c.summary(), "warnings": c.warnings}


def test_boot_maps_ram_with_the_largest_aligned_leaves() -> None:
    k = boot(NoDirectMapConfig.flat(4 * GiB + 3 * MiB + 4096, phys_offset=2 << 30))
    assert [(r.end - r.start, r.level) for r in k.pt.runs()] == [
        (4 * GiB, Level.PUD), (2 * MiB, Level.PMD), (MiB + 4096, Level.PTE)]
    assert k.log.counters.pgtables_allocated == 3 == sum(k.pt.table_pages().values())
    assert k.lookup(k.va(FOLIO_PA)).flags == PAGE_KERNEL


def test_rfc_demo_on_the_weak_default_reports_eopnotsupp_and_changes_nothing() -> None:
    k = boot(NoDirectMapConfig.flat(4 * GiB))
    before = _figures(k)
    leaf = k.lookup(k.va(FOLIO_PA))
    assert k.make_linear_range_readonly(FOLIO_PA, 2 * MiB) == -Errno.EOPNOTSUPP
    assert _figures(k) == before  # no split, no table, no flush
    assert k.lookup(k.va(FOLIO_PA)) == leaf and leaf.level == Level.PUD and leaf.writable


def test_fallback_helpers_return_0_without_doing_anything() -> None:
    k = boot(NoDirectMapConfig.flat(4 * GiB))
    pfn = FOLIO_PA >> PAGE_SHIFT
    leaf = k.lookup(k.va(FOLIO_PA))
    assert not k.can_set_direct_map()
    assert k.set_direct_map_invalid_noflush(pfn) == 0 and k.kernel_page_present(pfn)
    assert k.set_direct_map_valid_noflush(pfn, 512, False) == 0
    # the trap for a naive hook: set_memory_ro() "succeeds" and the folio is still writable
    assert k.set_memory_ro(k.va(FOLIO_PA), 512) == 0
    assert k.lookup(k.va(FOLIO_PA)) == leaf and leaf.writable


def test_a_range_outside_ram_is_refused() -> None:
    k = boot(NoDirectMapConfig.flat(4 * GiB))
    with pytest.raises(AddressError):
        k.make_linear_range_readonly(0, 2 * MiB)
