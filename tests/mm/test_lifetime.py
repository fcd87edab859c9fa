"""Lifetime models of read-only folios: expected behaviours 26-29, and the standard workload per model."""

from __future__ import annotations

from typing import Any

from rofolio.events import Call, Collapse, KernelWarning
from rofolio.lifetime import run_lifetime_workload
from rofolio.machine import MachineSpec
from rofolio.mm.compaction import compact_memory
from rofolio.mm.direct_access import kernel_write
from rofolio.mm.events import ContentWrite, ContractViolation, FolioReadonly, KernelOops, MigrateFolio
from rofolio.mm.fault import exit_mmap, folio_at, mm_alloc, user_write
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_HIGHUSER_MOVABLE, Gfp
from rofolio.mm.invariants import readonly_folios_writable, readonly_pages_in_free_lists
from rofolio.mm.memory_hotplug import offline_memory_block
from rofolio.mm.migrate import migrate_folio_to, migrate_to_node
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.secretmem import secretmem_fault_folio
from rofolio.units import GiB, MiB
from tests.mm.conftest import boot_mm, events_of


def _user_folio(mm: Any) -> tuple[Any, Folio]:
    p = mm_alloc(mm)
    addr = p.mmap_anon(64 * 1024)
    user_write(mm, p, addr, 0x42)
    folio = folio_at(mm, p, addr)
    assert folio is not None
    return p, folio


# 26 --------------------------------------------------------------------------------------------
def test_read_only_folio_freed_without_restore_faults_in_init_on_free() -> None:
    machine, mm = boot_mm(lifetime="none", init_on_free=True)
    p, folio = _user_folio(mm)
    assert arch_make_folio_readonly(mm, folio) == 0
    mark = len(machine.log.events)
    exit_mmap(mm, p)
    assert [(e.pfn, e.path) for e in events_of(machine, KernelOops, mark)] == [(folio.pfn, "init_on_free")]
    assert folio.leaked


def test_read_only_folio_freed_without_restore_faults_at_the_next_gfp_zero() -> None:
    machine, mm = boot_mm(lifetime="none")
    p, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    exit_mmap(mm, p)
    assert readonly_pages_in_free_lists(mm) != []
    mark = len(machine.log.events)
    again = alloc_pages(mm, GFP_HIGHUSER_MOVABLE | Gfp.ZERO, 0)  # LIFO: the freed page comes straight back
    assert again is None
    assert [(e.pfn, e.path) for e in events_of(machine, KernelOops, mark)] == [(folio.pfn, "__GFP_ZERO")]


def test_model1_restores_write_permission_before_the_free_path_writes() -> None:
    machine, mm = boot_mm(lifetime="model1", init_on_free=True)
    p, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    mark = len(machine.log.events)
    exit_mmap(mm, p)
    events = machine.log.events[mark:]
    restore = next(i for i, e in enumerate(events) if isinstance(e, FolioReadonly) and not e.readonly)
    zeroing = next(i for i, e in enumerate(events) if isinstance(e, ContentWrite) and e.pfn == folio.pfn)
    assert restore < zeroing and machine.counters.faults == 0
    assert readonly_pages_in_free_lists(mm) == [] and machine.kernel.direct_map_writable(folio.pfn)


def test_secretmem_free_folio_restores_the_direct_map_before_zeroing() -> None:
    machine, mm = boot_mm()
    folio = secretmem_fault_folio(mm)
    assert folio is not None and not machine.kernel.direct_map_present(folio.pfn)
    mark = len(machine.log.events)
    folio_put(mm, folio)
    order = [(type(e).__name__, getattr(e, "func", getattr(e, "path", ""))) for e in machine.log.events[mark:]
             if isinstance(e, (Call, ContentWrite))]
    assert order[:2] == [("Call", "set_direct_map_default_noflush"), ("ContentWrite", "secretmem_free_folio")]


# 27 --------------------------------------------------------------------------------------------
def test_migration_without_the_hook_leaves_the_destination_writable_and_frees_a_read_only_source() -> None:
    machine, mm = boot_mm(lifetime="broken", nodes=2)
    _, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    ret, dst = migrate_to_node(mm, folio, 1)
    assert ret == 0 and dst is not None and dst.nid == 1
    assert mm.page_data[dst.pfn] == 0x42  # the copy read the read-only source fine
    assert not dst.readonly and machine.kernel.direct_map_writable(dst.pfn)
    # the source was the page memblock left free below NODE_DATA(0): it has no free buddy to merge with
    assert readonly_pages_in_free_lists(mm) == [
        f"pfn {folio.pfn:#x} is free (order-0 block {folio.pfn:#x}) but read-only in the direct map"]


def test_model1_migration_carries_the_state_and_restores_the_source() -> None:
    machine, mm = boot_mm(lifetime="model1", nodes=2)
    _, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    ret, dst = migrate_to_node(mm, folio, 1)
    assert ret == 0 and dst is not None and dst.readonly and not machine.kernel.direct_map_writable(dst.pfn)
    assert machine.kernel.direct_map_writable(folio.pfn)
    assert readonly_pages_in_free_lists(mm) == [] and readonly_folios_writable(mm) == []
    changes = [(e.pfn, e.readonly, e.ret) for e in events_of(machine, FolioReadonly)]
    assert changes == [(folio.pfn, True, 0), (dst.pfn, True, 0), (folio.pfn, False, 0)]


def test_secretmem_refuses_migration_with_ebusy() -> None:
    machine, mm = boot_mm()
    folio = secretmem_fault_folio(mm)
    assert folio is not None
    ret, dst = migrate_folio_to(mm, folio, lambda f: alloc_pages(mm, GFP_HIGHUSER_MOVABLE, f.order), "test")
    assert (ret, dst) == (-16, None)
    assert events_of(machine, MigrateFolio)[-1].why == "secretmem_migrate_folio() returns -EBUSY"


# 28 --------------------------------------------------------------------------------------------
def test_model2_fits_the_persistent_huge_zero_folio() -> None:
    machine, mm = boot_mm(lifetime="model2", persistent_huge_zero_folio=True, init_on_free=True)
    hz = mm.huge_zero.folio
    assert hz is not None and hz.readonly and hz.gfp & Gfp.MOVABLE == 0 and not hz.lru
    assert mm.shrinkers == []  # never freed
    for _ in range(2):
        p = mm_alloc(mm)
        user_write(mm, p, p.mmap_anon(4 * MiB) + 2 * MiB, 1)
    compact_memory(mm)
    assert offline_memory_block(mm, hz.pfn << 12) == -16  # has_unmovable_pages(): never migrated
    ret, _ = migrate_folio_to(mm, hz, lambda f: None, "test")
    assert ret == -16 and events_of(machine, MigrateFolio)[-1].why.startswith("not on the LRU")
    assert machine.counters.extra.get("contract_violations", 0) == 0
    assert mm.folio_of(hz.pfn) is hz and hz.readonly and mm.page_data.get(hz.pfn, 0) == 0


def test_model2_refuses_and_warns_about_every_lifetime_event_of_a_read_only_folio() -> None:
    machine, mm = boot_mm(lifetime="model2", nodes=2)
    p, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    assert migrate_to_node(mm, folio, 1) == (-16, None)
    assert kernel_write(mm, folio.pfn, 1, 7) == -16
    exit_mmap(mm, p)
    violations = events_of(machine, ContractViolation)
    assert [(v.what, v.pfn) for v in violations] == [("migrate", folio.pfn), ("write", folio.pfn),
                                                     ("free", folio.pfn)]
    assert violations[0].text.splitlines()[1] == "WARNING: CPU: 0 PID: 1 at mm/util.c folio_readonly_refused"
    assert f"refusing to free read-only folio pfn:{folio.pfn:#x} order:0" in violations[2].text
    assert folio.leaked and folio.readonly and mm.page_data[folio.pfn] == 0x42
    assert machine.counters.faults == 0


# 29 --------------------------------------------------------------------------------------------
def test_restore_on_free_does_not_re_form_large_direct_map_leaves() -> None:
    machine, mm = boot_mm(lifetime="model1")
    _, folio = _user_folio(mm)
    before = machine.counters.meminfo_kb()
    arch_make_folio_readonly(mm, folio)
    split = machine.counters.meminfo_kb()
    assert split["DirectMap1G"] == before["DirectMap1G"] - 1048576  # 1G -> 2M -> 4K for one 4K page
    assert split["DirectMap4k"] == before["DirectMap4k"] + 2048
    mark = len(machine.log.events)
    for proc in list(mm.processes.values()):
        exit_mmap(mm, proc)
    restores = [e for e in events_of(machine, FolioReadonly, mark) if not e.readonly]
    assert [(e.pfn, e.ret, e.reformed) for e in restores] == [(folio.pfn, 0, False)]
    assert not events_of(machine, Collapse, mark)
    assert machine.counters.meminfo_kb() == split  # DirectMap stays fragmented after the restore


# the workload ------------------------------------------------------------------------------------
def test_lifetime_workload_figures_per_model() -> None:
    spec = MachineSpec.build(mem=8 * GiB)
    figures = {}
    for model in ("model1", "model2", "broken", "none"):
        result = run_lifetime_workload(spec, model).to_dict()
        figures[model] = [(name, p["violations"], p["faults"], p["splits"], p["flushes"], p["pgtables"],
                           p["direct_map_delta"]["DirectMap1G"], p["direct_map_delta"]["DirectMap4k"])
                          for name, p in result["phases"].items()]
        assert all(not p["invariant_problems"] for p in result["phases"].values())
        persistent = result["phases"]["persistent"]["notes"]
        assert persistent["huge_zero_readonly"] and persistent["huge_zero_mappings"] == 6
        assert persistent["offline_huge_zero_block"] == -16 and persistent["offline_user_block"] == 0
        assert persistent["after_cow_reads"] == [0, 0x77]
        # each phase says the machine it booted, not the command line's
        assert [(p["mm"]["nodes"], p["mm"]["persistent_huge_zero_folio"], p["mm"]["lifetime"])
                for p in result["phases"].values()] == [(2, True, model), (1, False, model)]
    # persistent: the huge zero folio splits [4G, 5G) once; the read-only user page splits one 2M leaf; model 1
    # also makes the destination on node 1 read-only (two more splits) and restores twice (flushes, no collapse)
    assert figures == {
        "model1": [("persistent", 0, 0, 4, 9, 4, -2097152, 4096), ("non-persistent", 0, 0, 1, 3, 1, -1048576, 0)],
        "model2": [("persistent", 2, 0, 2, 4, 2, -1048576, 2048), ("non-persistent", 1, 0, 1, 2, 1, -1048576, 0)],
        "broken": [("persistent", 0, 1, 2, 4, 2, -1048576, 2048), ("non-persistent", 0, 0, 1, 3, 1, -1048576, 0)],
        "none": [("persistent", 0, 1, 2, 4, 2, -1048576, 2048), ("non-persistent", 0, 1, 1, 2, 1, -1048576, 0)],
    }


def test_model2_warns_once_per_folio_and_operation_but_refuses_every_time() -> None:
    """RFC v2 patch 5: the xarray's mark per operation limits the WARN, never the refusal."""
    machine, mm = boot_mm(lifetime="model2", nodes=2)
    _, folio = _user_folio(mm)
    arch_make_folio_readonly(mm, folio)
    assert migrate_to_node(mm, folio, 1) == (-16, None)
    assert migrate_to_node(mm, folio, 1) == (-16, None)
    assert [v.what for v in events_of(machine, ContractViolation)] == ["migrate", "migrate"]
    warned = [w.text for w in events_of(machine, KernelWarning) if "read-only folio" in w.text]
    assert len(warned) == 1 and "refusing to migrate" in warned[0]


def test_model2_names_the_path_that_tried_to_free_a_read_only_folio() -> None:
    """The warning says who called: the free path is what a developer looks for in the report."""
    machine, mm = boot_mm(lifetime="model2")
    folio = alloc_pages(mm, GFP_HIGHUSER_MOVABLE, 0, label="a page")
    assert folio is not None
    arch_make_folio_readonly(mm, folio)
    folio_put(mm, folio, "some_driver_release")
    [warned] = [w.text for w in events_of(machine, KernelWarning) if "read-only folio" in w.text]
    assert warned.splitlines()[-1] == "caller: some_driver_release (a page)"
    assert folio.leaked and not mm.is_free(folio.pfn)  # refused: never freed, its pages leak
