"""x86 rules that differ between kernel releases, pinned on both sides of each boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.errors import ConfigError, ScenarioErrors
from rofolio.scenario.runner import run_scenario
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

