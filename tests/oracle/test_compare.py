"""Model and kernel side by side, on a recorded boot: agreement, and each kind of disagreement flagged."""

from __future__ import annotations

import pytest

from rofolio.kversion import KernelVersion
from rofolio.oracle import compare, guest, session
from rofolio.oracle import model as oracle_model
from rofolio.oracle.errors import OracleError
from rofolio.oracle.translate import translate
from rofolio.scenario.loader import parse
from tests.oracle.conftest import KVER, recorded, recorded_scenarios


def _recompare(serial: str | None = None):  # type: ignore[no-untyped-def]
    return session.recompare(serial or recorded("experiments-8G.serial.log"), recorded("experiments-8G.steps.sh"),
                             recorded_scenarios(), KVER)


def test_the_recorded_boot_agrees_with_the_model_step_by_step() -> None:
    reports = _recompare()
    assert sorted(r.name for r in reports) == [
        "x86-10-write-fault-in-1g", "x86-17-np-p-2m-leaf", "x86-22-write-not-present", "x86-24-vmap-alias",
        "x86-26-snapshot-direct-primary", "x86-29-rodata-alias", "x86-32-uc-twice-ebusy"]
    for rep in reports:
        assert rep.agree, rep.disagreements()
        assert rep.uname == KVER
        assert rep.expectations_count  # the suite's machine is the oracle's
    checks = {c.what for rep in reports for s in rep.steps for c in s.checks}
    assert {"DirectMap4k", "DirectMap2M", "DirectMap1G", "direct_map_level2_splits", "direct_map_level3_splits",
            "ret", "fault", "oops address", "oops access", "oops error code", "oops page table", "oops banner",
            "direct map change since the start", "buf page 0"} <= checks
    assert any(what.startswith("high map alias of") for what in checks)


def test_the_oops_is_read_from_the_kernel_log_of_the_step() -> None:
    step = _by_name()["x86-10-write-fault-in-1g"].steps[3]
    assert step.kernel_oops.startswith("BUG: unable to handle page fault for address: ffff888040a10000")
    assert next(c for c in step.checks if c.what == "oops error code").kernel == \
        "#PF: error_code(0x0003) - permissions violation"


def test_the_page_table_line_agrees_by_who_made_each_table_where_the_record_has_no_table_pages() -> None:
    # boot's tables (_PAGE_TABLE, ..067) and the CPA split's (_KERNPG_TABLE, ..063), then the leaf
    step = _by_name()["x86-22-write-not-present"].steps[1]
    check = next(c for c in step.checks if c.what == "oops page table")
    assert check.model == "PGD ?067 P4D ?067 PUD ?063 PMD ?063 PTE 800ffffdfd3f8060" == check.kernel


def test_a_table_made_by_another_hand_is_a_disagreement() -> None:
    tampered = _tamper("PUD 237da2063 PMD 101fdf063", "PUD 237da2067 PMD 101fdf063", count=2)
    step = _by_name(tampered)["x86-22-write-not-present"].steps[1]
    assert not next(c for c in step.checks if c.what == "oops page table").agree


def _by_name(serial: str | None = None):  # type: ignore[no-untyped-def]
    return {r.name: r for r in _recompare(serial)}


def _tamper(old: str, new: str, count: int = 1) -> str:
    text = recorded("experiments-8G.serial.log")
    assert old in text
    return text.replace(old, new, count)


def test_a_counter_that_moved_differently_is_a_disagreement() -> None:
    # x86-10 step 2 (ro 0 0 512): the kernel split [1G, 2G) to 2M; pretend it had split to 4K too
    serial = _tamper("  after: DirectMap4k=28544 DirectMap2M=5214208 DirectMap1G=5242880",
                     "  after: DirectMap4k=30592 DirectMap2M=5212160 DirectMap1G=5242880")
    rep = _by_name(serial)["x86-10-write-fault-in-1g"]
    assert not rep.agree
    assert any("DirectMap4k: kernel +2048, model +0" in d for d in rep.disagreements())


def test_a_different_leaf_in_a_scan_is_a_disagreement() -> None:
    serial = _tamper("run pa=0x40a00000-0x40c00000 level=2M P=1 RW=0",
                     "run pa=0x40a00000-0x40c00000 level=2M P=1 RW=1")
    rep = _by_name(serial)["x86-10-write-fault-in-1g"]
    bad = [c for s in rep.steps for c in s.checks if not c.agree]
    assert bad and all(c.what == "direct map [0x40a00000,0x40c00000)" for c in bad)
    assert "2M RW" in bad[0].kernel and "2M RO" in bad[0].model


def test_a_different_oops_is_a_disagreement() -> None:
    # the first oops of the boot, on the console and in the kernel log the step copied
    serial = _tamper("#PF: error_code(0x0003) - permissions violation", "#PF: error_code(0x0002) - not-present page", 2)
    rep = _by_name(serial)["x86-10-write-fault-in-1g"]
    assert [c.what for s in rep.steps for c in s.checks if not c.agree] == ["oops error code"]


def test_a_step_the_guest_never_ran_is_an_error() -> None:
    text = recorded("experiments-8G.serial.log")
    cut = text.index("--- STEP 7.1:")
    reports = _recompare(text[:cut])
    assert all(r.agree for r in reports[:6])
    assert not reports[6].agree
    assert any("never ran 7.1" in e for e in reports[6].errors)


def test_a_probe_return_value_is_compared() -> None:
    serial = _tamper("ret=-14\n", "ret=0\n")
    reps = _recompare(serial)
    assert any(c.what == "ret" and c.kernel == "0" and c.model == "-EFAULT"
               for r in reps for s in r.steps for c in s.checks if not c.agree)


def test_kept_steps_must_match_the_scenarios() -> None:
    with pytest.raises(OracleError, match="no longer translate"):
        session.recompare(recorded("experiments-8G.serial.log"),
                          recorded("experiments-8G.steps.sh").replace("ro 0 0 512", "ro 0 0 511"),
                          recorded_scenarios(), KVER)


def test_expectations_for_another_machine_are_notes_not_failures() -> None:
    rep = compare.ExperimentReport("s", "s.toml", KVER, {}, {})
    rep.model_expect_failures = ["step 1: ipis changed by 0, expected 14"]
    assert not rep.agree
    rep.overridden = {"cpus": (8, 1)}
    assert rep.agree and rep.disagreements() == []
    assert "cpus 8 -> 1" in rep.notes()[0]


def test_oops_lines_take_the_whole_page_table_line_of_the_dump() -> None:
    lines = compare.oops_lines("BUG: unable to handle page fault for address: ffff888040a10000\n"
                               "#PF: supervisor write access in kernel mode\n"
                               "#PF: error_code(0x0003) - permissions violation\n"
                               "PGD 4401067 P4D 4401067 PUD 102500063 PMD 8000000040a001e1 \n"
                               "Oops: 0003 [#2] PREEMPT SMP NOPTI\n")
    assert lines["page table"] == "PGD 4401067 P4D 4401067 PUD 102500063 PMD 8000000040a001e1"
    assert lines["banner"] == "Oops: 0003 [#N] PREEMPT SMP NOPTI"
    assert compare.oops_lines("PTE 8000000203841161\n")["page table"] == "PTE 8000000203841161"


def test_table_addresses_the_model_does_not_place_are_compared_by_their_flags_only() -> None:
    kernel = "PGD 4401067 P4D 4401067 PUD 237da2063 PMD 101fdf063 PTE 800ffffdfd3f8060"
    assert compare.unplaced_tables(kernel, "PGD ?067 P4D ?067 PUD ?063 PMD ?063 PTE 800ffffdfd3f8060") == (
        "PGD ?067 P4D ?067 PUD ?063 PMD ?063 PTE 800ffffdfd3f8060")
    # a table the model does place keeps its address; a boot-made table (_PAGE_TABLE) is not a split's
    assert compare.unplaced_tables(kernel, "PGD 4401067 P4D 4401067 PUD ?067 PMD ?063 PTE 800ffffdfd3f8060") == (
        "PGD 4401067 P4D 4401067 PUD ?063 PMD ?063 PTE 800ffffdfd3f8060")
    # lines of different depth are left as they are, to differ
    assert compare.unplaced_tables(kernel, "PGD ?067 P4D ?067 PUD ?063 PMD 8000000040a001e1") == kernel


def test_a_snapshot_compares_changes_not_absolute_layouts() -> None:
    before = [guest.Run(0, 0x200000, "2M", True, True, True), guest.Run(0x200000, 0x400000, "2M", True, True, True)]
    after = [guest.Run(0, 0x200000, "2M", True, True, True), guest.Run(0x200000, 0x201000, "4K", True, False, True),
             guest.Run(0x201000, 0x400000, "4K", True, True, True)]
    changes = oracle_model.diff(before, after)
    assert [(s, e) for s, e, _, _ in changes] == [(0x200000, 0x201000), (0x201000, 0x400000)]
    assert oracle_model.diff(after, after) == []


def test_model_runs_report_missing_entries_as_none() -> None:
    from rofolio.oracle.guest import parse_log
    from rofolio.oracle.record import record_of

    sc = parse('name = "t"\n[machine]\nmem = "8G"\n[[steps]]\nop = "snapshot"\n')
    record = record_of(parse_log(recorded("boot-8G-max-la57.serial.log")))  # its BPF pack split [4G, 5G)
    m = oracle_model.boot(oracle_model.oracle_machine(sc, mem=8 << 30, kernel="6.1", cpus=1, gbpages=True), record)
    runs = oracle_model.runs(m, 0xBFE00000, 0x100200000)
    assert [(r.start, r.end, r.level) for r in runs] == [
        (0xBFE00000, 0xBFFE0000, "4K"), (0xBFFE0000, 0x100000000, "none"), (0x100000000, 0x100200000, "2M")]
    high = oracle_model.runs(m, 0x1000000, 0x1200000, high=True)
    assert [r.describe() for r in high] == ["2M RO X WB G D"]


def test_a_replay_that_does_not_match_the_runner_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = parse('name = "t"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n')
    plan = translate(sc, KernelVersion.parse("6.1"))
    machine = oracle_model.oracle_machine(sc, mem=8 << 30, kernel="6.1", cpus=1, gbpages=True)
    monkeypatch.setattr(oracle_model, "_apply", lambda m, step, va, vmaps: 0)  # a replay that does nothing
    with pytest.raises(OracleError, match="replaying step 1"):
        oracle_model.run(plan, machine)


def test_raw_entries_of_not_present_pages_hold_the_inverted_pfn() -> None:
    """L1TF: pfn_pte() inverts the pfn of a non-present entry; the model's Lookup.entry does the same."""
    reports = _by_name()
    checks = {s.index: {c.what: c for c in s.checks} for s in reports["x86-22-write-not-present"].steps}
    invalid = checks[1]["entry of the first page"]  # set_direct_map_invalid_noflush on pa 0x202c07000
    assert invalid.agree and invalid.kernel == "4K 0x800ffffdfd3f8060"
    restored = checks[3]["entry of the first page"]  # set_direct_map_default_noflush: present, GLOBAL lost
    assert restored.agree and restored.kernel == "4K 0x8000000202c07063"
    np_leaf = {c.what: c for c in reports["x86-17-np-p-2m-leaf"].steps[0].checks}["entry of the first page"]
    assert np_leaf.agree and np_leaf.kernel == "2M 0x800ffffdfe7ff062"  # not present: no PSE, no GLOBAL either


def test_the_banner_is_compared_after_v6_10_too() -> None:
    """page_fault_oops() prints "Oops: Oops: 0003 ..." since f9f62a877da1 (v6.10): the banner is still read."""
    lines = compare.oops_lines("BUG: unable to handle page fault for address: ffff888100200000\n"
                               "Oops: Oops: 0003 [#1] SMP NOPTI\n")
    assert lines["banner"] == "Oops: Oops: 0003 [#N] SMP NOPTI"
    checks = compare.compare_oops("Oops: Oops: 0003 [#1] SMP\n", "Oops: Oops: 0003 [#1] SMP NOPTI\n", None, None)
    assert [c.what for c in checks if not c.agree] == ["oops banner"]


def test_a_kernel_built_without_page_table_isolation_names_neither_pti_nor_nopti() -> None:
    """__die_header() prints PTI or NOPTI only with CONFIG_MITIGATION_PAGE_TABLE_ISOLATION (the tinyconfig-based
    kernels rofolio builds lack it); the oracle reads that from the guest kernel's config."""
    from rofolio.oracle import bootcheck

    assert bootcheck.model_options({"CONFIG_MITIGATION_PAGE_TABLE_ISOLATION": "y"}) == {}
    assert bootcheck.model_options({"CONFIG_PAGE_TABLE_ISOLATION": "y"}) == {}  # its name before v6.9
    assert bootcheck.model_options({"CONFIG_SMP": "y"}) == {"pti": "unbuilt"}
    assert bootcheck.model_options({}) == {}
    scenario = parse('name = "w"\n[[steps]]\nop = "snapshot"\n')
    for options, banner in (({}, "SMP NOPTI"), ({"pti": "unbuilt"}, "SMP")):
        machine = oracle_model.oracle_machine(scenario, mem=2 << 30, kernel="7.2", cpus=1, gbpages=True,
                                              options=options)
        m = oracle_model.boot(machine)
        va = m.va(0x40000000)
        assert m.set_memory("set_memory_ro", va, 1) == 0
        text = m.kernel_store(va).fault.text
        assert text.splitlines()[-1].endswith(f"[#1] {banner}")


def test_a_writable_page_that_only_became_dirty_outside_the_experiment_is_a_background_store() -> None:
    """A store through a present, writable entry sets _PAGE_DIRTY whenever the kernel makes it; where the model
    changed nothing, such a change is set aside and named, and every other change is still compared."""
    clean_rw = ("4K", True, True, True, "WB", False, False)
    dirty_rw = (*clean_rw[:6], True)
    clean_ro = ("4K", True, False, True, "WB", True, False)
    split = ((0x200000, 0x201000, ("2M", True, True, True, "WB", True, True), clean_ro),)
    store = (0x102503000, 0x102504000, clean_rw, dirty_rw)
    compared, stores = compare.background_stores([store, *split], list(split))
    assert (compared, stores) == (list(split), [store])
    # not a store: a read-only entry cannot take one, the model changed that page, or more than Dirty moved
    ro_dirty = (0x300000, 0x301000, clean_ro, (*clean_ro[:6], True))
    on_model = (0x200000, 0x201000, clean_rw, dirty_rw)
    more = (0x400000, 0x401000, clean_rw, ("4K", True, True, False, "WB", False, True))
    for change in (ro_dirty, on_model, more):
        assert compare.background_stores([change], list(split)) == ([change], [])
