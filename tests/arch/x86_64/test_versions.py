"""x86 rules that differ between kernel releases, pinned on both sides of each boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.errors import ConfigError, Errno, ScenarioErrors
from rofolio.events import Flush, FlushKind, KernelWarning
from rofolio.prot import X86
from rofolio.scenario.runner import run_scenario
from rofolio.units import GiB, MiB
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

