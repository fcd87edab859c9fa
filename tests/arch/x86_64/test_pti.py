"""PTI on x86-64: the pti machine option, the direct map's Global bit and the oops banner."""

from __future__ import annotations

import pytest

from rofolio.errors import ConfigError
from rofolio.machine import MachineSpec
from rofolio.prot import X86
from rofolio.units import GiB
from tests.conftest import boot_running


# PTI -------------------------------------------------------------------------------------------------
# pti_check_boottime_disable() (arch/x86/mm/pti.c); probe_page_size_mask() drops _PAGE_GLOBAL from
# __default_kernel_pte_mask under PTI (arch/x86/mm/init.c); __die_header() prints PTI or NOPTI
@pytest.mark.parametrize(("pti", "on"), [("auto", False), ("off", False), ("on", True)])
def test_pti_option_decides_global_direct_map_entries_and_the_oops_banner(pti: str, on: bool) -> None:
    machine = boot_running(pti=pti, kernel="6.1")  # the banner of the recorded 6.1 oopses
    k = machine.kernel
    assert k.pti is on
    va = k.va(6 * GiB)
    assert bool(k.lookup_address(va).flags & X86.GLOBAL) is not on
    assert bool(k.lookup_address(k.vmap([(6 * GiB) >> 12])).flags & X86.GLOBAL) is not on
    k.set_memory_ro(va, 1)
    outcome = k.kernel_store(va)
    assert outcome.fault.text.splitlines()[-1] == ("Oops: 0003 [#1] PREEMPT SMP PTI" if on
                                                   else "Oops: 0003 [#1] PREEMPT SMP NOPTI")


def test_pti_option_takes_auto_on_or_off() -> None:
    with pytest.raises(ConfigError, match="pti = 'yes' is not one of 'auto', 'on', 'off'"):
        boot_running(pti="yes")
    assert MachineSpec.build(mem=8 * GiB).options["pti"] == "auto"


def test_the_oops_banner_says_debug_pagealloc_when_it_is_enabled() -> None:
    machine = boot_running(debug_pagealloc=True, kernel="6.1")
    k = machine.kernel
    va = k.va(6 * GiB)  # a free page: DEBUG_PAGEALLOC unmapped it
    assert k.kernel_store(va).fault.text.splitlines()[-1] == "Oops: 0002 [#1] PREEMPT SMP DEBUG_PAGEALLOC NOPTI"
