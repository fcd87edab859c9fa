"""The generic arch_make_folio_readonly(): best effort, the weak default, and the RFC's first user."""

from __future__ import annotations

from typing import Any

from rofolio.mm.events import FolioReadonly
from rofolio.mm.gfp import GFP_KERNEL
from rofolio.mm.page_alloc import alloc_pages
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.zero_page import hugepage_init
from tests.mm.conftest import boot_mm, events_of


class NoHookKernel:
    """An arch kernel without arch_make_folio_readonly(): what the weak default sees."""

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel

    def __getattr__(self, name: str) -> Any:
        if name == "arch_make_folio_readonly":
            raise AttributeError(name)
        return getattr(self._kernel, name)


def test_weak_default_leaves_the_folio_writable() -> None:
    machine, mm = boot_mm(initcalls=False)
    folio = alloc_pages(mm, GFP_KERNEL, 0)
    assert folio is not None
    mm.kernel = NoHookKernel(machine.kernel)  # type: ignore[assignment]
    assert arch_make_folio_readonly(mm, folio, "test") == -95
    assert not folio.readonly and machine.kernel.direct_map_writable(folio.pfn)
    event = events_of(machine, FolioReadonly)[-1]
    assert (event.ret, event.why) == (-95, "test: weak default arch_make_folio_readonly() failed with "
                                            "-EOPNOTSUPP: the folio stays writable")


def test_page_table_allocation_failure_keeps_the_persistent_folio_writable() -> None:
    machine, mm = boot_mm(running=False, initcalls=False, persistent_huge_zero_folio=True)
    machine.kernel.pgtable_alloc_fail = True  # the 1G -> 2M split cannot get its table page
    hugepage_init(mm)
    hz = mm.huge_zero.folio
    assert hz is not None and not hz.readonly and machine.kernel.direct_map_writable(hz.pfn)
    event = events_of(machine, FolioReadonly)[-1]
    assert event.ret == -12 and event.why.endswith("failed with -ENOMEM: the folio stays writable")
    assert machine.counters.extra["folio_readonly_failures"] == 1


def test_persistent_folio_read_only_once_at_initcall_time_splits_its_1g_leaf() -> None:
    machine, mm = boot_mm(running=False, initcalls=False, persistent_huge_zero_folio=True)
    step = machine.step("hugepage_init", lambda: hugepage_init(mm))
    d = step.delta()
    assert d["splits_1g"] == 1 and "splits_2m" not in d and d["pgtables_allocated"] == 1
    assert d["DirectMap1G"] == -1048576 and d["DirectMap2M"] == 1048576
    assert "direct_map_level3_splits" not in d  # initcall time: SYSTEM_RUNNING not reached (behaviour 7)
    assert d["folios_made_readonly"] == 1 and d["pages_allocated"] == 512
    hz = mm.huge_zero.folio
    assert hz is not None and hz.readonly
    assert all(not machine.kernel.direct_map_writable(p) for p in range(hz.pfn, hz.end))
    assert machine.kernel.direct_map_writable(hz.end)
