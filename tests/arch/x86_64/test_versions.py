"""x86 rules that differ between kernel releases, pinned on both sides of each boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.errors import ConfigError, Errno, ScenarioErrors
from rofolio.events import Flush, FlushKind, KernelWarning, Phase
from rofolio.machine import Machine, MachineSpec
from rofolio.prot import X86
from rofolio.scenario.runner import run_scenario
from rofolio.units import PAGE_SIZE, GiB, MiB
from tests.conftest import boot_running

ROX_STEP = ('name = "rox"\n[machine]\nmem = "8G"\nkernel = "{kernel}"\n'
            '[[steps]]\nop = "set_memory_rox"\npa = "6G"\npages = 1\n')


# set_memory_rox() ---------------------------------------------------------------------------------
# 60463628c9e0 ("x86/mm: Implement native set_memory_rox()") (v6.2)
def test_set_memory_rox_step_is_refused_before_anything_runs_on_6_1(tmp_path: Path) -> None:
    path = tmp_path / "rox.toml"
    path.write_text(ROX_STEP.format(kernel="6.1"))
    with pytest.raises(ScenarioErrors) as err:
        run_scenario(path)
    assert str(err.value).endswith("rox.toml:6: steps[1].op: set_memory_rox() does not exist before Linux 6.2; "
                                   "this machine runs 6.1.192 (choose a newer kernel in [machine])")


def test_set_memory_rox_step_runs_on_6_2(tmp_path: Path) -> None:
    path = tmp_path / "rox.toml"
    path.write_text(ROX_STEP.format(kernel="6.2"))
    result = run_scenario(path)
    assert [s.ret for s in result.steps] == [0]


def test_machine_supports_set_memory_rox_from_6_2_only() -> None:
    old, new = boot_running(kernel="6.1"), boot_running(kernel="6.2")
    assert not old.supports("set_memory_rox") and new.supports("set_memory_rox")
    assert old.supports("set_memory_ro")
    with pytest.raises(ConfigError, match=r"set_memory_rox\(\) does not exist before Linux 6.2"):
        old.set_memory("set_memory_rox", old.page_address(0x180000), 1)


# set_memory_x() / set_memory_nx(): alias processing and "primary" -----------------------------------
# before v6.2 change_page_attr_set_clr() ran an _PAGE_NX-only change with checkalias = 0;
# d597416683d5 ("x86/mm: Inhibit _PAGE_NX changes from cpa_process_alias()") (v6.2)
@pytest.mark.parametrize(("kernel", "flushes"), [("6.1", [(FlushKind.PAGES, 1)]), ("6.2", [(FlushKind.ALL, 0)])])
def test_set_memory_x_on_a_vmalloc_page_forces_a_full_flush_only_from_6_2(
        kernel: str, flushes: list[tuple[FlushKind, int]]) -> None:
    machine = boot_running(kernel=kernel)
    k = machine.kernel
    vaddr = k.vmap([(6 * GiB) >> 12])
    step = machine.step("x", lambda: k.set_memory_x(vaddr, 1))
    assert [(f.flush, f.pages) for f in step.events if isinstance(f, Flush)] == flushes
    assert not k.lookup_address(vaddr).flags & X86.NX
    assert k.lookup_address(k.page_address((6 * GiB) >> 12)).flags & X86.NX  # the direct map keeps NX


@pytest.mark.parametrize(("kernel", "ret", "warnings"), [
    ("6.1", 0, []),  # non-primary: __cpa_process_fault() skips the hole
    ("6.2", -Errno.EFAULT, ["CPA: called for zero pte. vaddr = ffffc90000400000 cpa->vaddr = ffffc90000400000"]),
])
def test_set_memory_nx_on_an_unmapped_vmalloc_address_fails_only_from_6_2(
        kernel: str, ret: int, warnings: list[str]) -> None:
    machine = boot_running(kernel=kernel)
    k = machine.kernel
    hole = k.layout.vmalloc_start + 4 * MiB
    step = machine.step("nx", lambda: k.set_memory_nx(hole, 1))
    assert step.ret == ret
    assert [e.text for e in step.events if isinstance(e, KernelWarning)] == warnings


# verify_rwx(): the W^X warning ----------------------------------------------------------------------
# 652c5bf380ad ("x86/mm: Refuse W^X violations"), eased to a warning by c5129ecc12a3 (both v6.1)
@pytest.mark.parametrize("kernel", ["6.1", "6.6"])
def test_set_memory_x_on_a_writable_direct_map_page_warns_w_x_once_from_6_1(kernel: str) -> None:
    machine = boot_running(kernel=kernel, gbpages=False)
    k = machine.kernel
    va = k.va(6 * GiB)  # inside a 2M leaf: 1 page splits it, then the 4K entry changes
    first = machine.step("x", lambda: k.set_memory_x(va, 1))
    second = machine.step("x", lambda: k.set_memory_x(va + PAGE_SIZE, 1))
    assert first.ret == 0 and not k.lookup_address(va).flags & X86.NX  # allowed anyway
    assert [e.text for e in first.events if isinstance(e, KernelWarning)] == [
        "CPA detected W^X violation: 8000000000000163 -> 0000000000000163 range: "
        "0xffff888180000000 - 0xffff888180000fff PFN 180000"]
    assert not [e for e in second.events if isinstance(e, KernelWarning)]  # WARN_ONCE


# a970174d7a10 ("x86/mm: Do not verify W^X at boot up") (v6.1-rc3), reverted by 414ebf148cb5 (v6.2)
@pytest.mark.parametrize(("kernel", "warned"), [("6.1", False), ("6.2", True)])
def test_a_w_x_change_while_system_booting_warns_only_from_6_2(kernel: str, warned: bool) -> None:
    machine = Machine.boot(MachineSpec.build(mem=8 * GiB, kernel=kernel, gbpages=False))
    k = machine.kernel
    k.phase = Phase.BOOTING  # as setup_arch() runs, before rest_init()
    step = machine.step("x", lambda: k.set_memory_x(k.va(6 * GiB), 1))
    assert any("W^X" in e.text for e in step.events if isinstance(e, KernelWarning)) is warned



# The oops banner by version -------------------------------------------------------------------------
# __die_header(): "Oops: " prefix since f9f62a877da1 (v6.10); PREEMPT leaves the banner with 96389cf36591 (v6.15)
@pytest.mark.parametrize(("kernel", "banner"), [
    ("6.1", "Oops: 0003 [#1] PREEMPT SMP NOPTI"),  # as the recorded Debian 6.1.192 oops prints it
    ("6.9", "Oops: 0003 [#1] PREEMPT SMP NOPTI"),
    ("6.10", "Oops: Oops: 0003 [#1] PREEMPT SMP NOPTI"),
    ("6.14", "Oops: Oops: 0003 [#1] PREEMPT SMP NOPTI"),
    ("6.15", "Oops: Oops: 0003 [#1] SMP NOPTI"),
])
def test_the_oops_banner_of_a_store_to_a_read_only_direct_map_page_by_version(kernel: str, banner: str) -> None:
    machine = boot_running(kernel=kernel, gbpages=False)
    k = machine.kernel
    va = k.va(6 * GiB)
    k.set_memory_ro(va, 512)  # the whole 2M leaf stays large
    lines = k.kernel_store(va + 16 * PAGE_SIZE).fault.text.splitlines()
    assert lines[-2:] == [f"PGD ?067 P4D ?067 PUD ?067 PMD {k.lookup_address(va).entry:x}", banner]
