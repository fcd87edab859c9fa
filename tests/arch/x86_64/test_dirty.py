"""The hardware Dirty bit of x86 kernel entries: a CPU store through a present, writable leaf sets it."""

from __future__ import annotations

import pytest

from rofolio.prot import X86
from rofolio.units import PAGE_SIZE, GiB
from tests.conftest import boot_running


# set_memory_ro() clears _PAGE_DIRTY since f788b71768ff (v6.6) and set_memory_rw() does not set it back;
# the MMU sets it again on the next store (Intel SDM vol. 3, "Accessed and Dirty Flags")
@pytest.mark.parametrize(("kernel", "dirty_after_rw"), [("6.1", True), ("6.6", False)])
def test_a_store_after_an_ro_rw_round_trip_sets_dirty_again(kernel: str, dirty_after_rw: bool) -> None:
    machine = boot_running(kernel=kernel, gbpages=False)
    k = machine.kernel
    va = k.va(6 * GiB)
    k.set_memory_ro(va, 1)
    k.set_memory_rw(va, 1)
    assert bool(k.lookup_address(va).flags & X86.DIRTY) is dirty_after_rw
    assert k.kernel_store(va + 8).ok
    assert k.lookup_address(va).flags == X86.PAGE_KERNEL  # whole again: equal to its neighbours
    assert k.lookup_address(va + PAGE_SIZE).flags == X86.PAGE_KERNEL


def test_a_raw_direct_map_write_by_an_mm_path_sets_dirty_too() -> None:
    machine = boot_running(kernel="6.6", gbpages=False)
    k = machine.kernel
    pfn = (6 * GiB) >> 12
    k.set_memory_ro(k.page_address(pfn), 1)
    k.set_memory_rw(k.page_address(pfn), 1)
    assert machine.direct_map_write(pfn, 0x5A, "test") == 0
    assert k.lookup_address(k.page_address(pfn)).flags & X86.DIRTY


def test_a_store_that_faults_leaves_the_entry_alone() -> None:
    machine = boot_running(kernel="6.6", gbpages=False)
    k = machine.kernel
    va = k.va(6 * GiB)
    k.set_memory_ro(va, 1)
    before = k.lookup_address(va).flags
    assert not k.kernel_store(va).ok
    assert k.lookup_address(va).flags == before and not before & X86.DIRTY
