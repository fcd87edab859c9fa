"""rofolio oracle arm64-run: the arm64 run-time experiments, read from serial logs recorded on Linux 7.2.

The logs in data/arm64run/ were recorded with ``rofolio oracle arm64-run --keep-log DIR`` on the tinyconfig 7.2
kernel ``rofolio kernel build --arch arm64`` makes, under qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on
-m 1G (TCG), one boot per rodata= value; data/arm64run/suite/ holds the experiment files as they were when
the logs were recorded, so a later change to the shipped suite does not invalidate them.  Reading a log needs
no QEMU; the last test (``-m oracle``) boots for real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rofolio.errors import ScenarioError
from rofolio.oracle.arm64run import boots, guestboot, suite
from rofolio.oracle.arm64run.replay import leaf_from_desc
from rofolio.oracle.arm64run.verdict import oops_key

DATA = Path(__file__).parent / "data" / "arm64run"


def recorded_suite() -> list[suite.Experiment]:
    return suite.load_suite(sorted(str(p) for p in (DATA / "suite").glob("*.toml")))


def recorded_boot(rodata: str) -> tuple[boots.BootResult, list]:
    log = guestboot.parse_serial((DATA / f"arm64run-rodata-{rodata}.serial.log").read_text())
    return boots.compare_boot(rodata, log, 0.0, recorded_suite())


# ------------------------------------------------------------------- the suite
def test_the_shipped_suite_has_at_least_12_guest_experiments_and_the_bbml2_rows_are_model_only() -> None:
    experiments = suite.load_suite()
    guest = [e for e in experiments if not e.model_only]
    assert len(guest) >= 12
    assert {e.name for e in experiments if e.model_only} == {"bbml2-ro-splits-alias", "bbml2-direct-map-invalid"}
    assert all(e.machine == {"bbml2": True} and "cpu_supports_bbml2_noabort()" in e.model_only
               for e in experiments if e.model_only)
    for rodata in suite.RODATA:  # every boot fits the module's slots
        assert guestboot.placements(experiments, rodata)


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\nshows = "y"\nsource = ["z"]\n[[steps]]\ndo = "ro"\nslot = 0\n', "unknown verb 'ro'"),
    ('name = "x"\nshows = "y"\nsource = ["z"]\n[[steps]]\ndo = "set_memory_ro"\nslot = 0\npages = 1\n',
     "slot 0 is used before it is made"),
    ('name = "x"\nshows = "y"\nsource = ["z"]\nrodata = ["full"]\n[[steps]]\ndo = "page"\nslot = 0\n',
     "'rodata' is a list of on, noalias, off"),
    ('name = "x"\nshows = "y"\nsource = ["z"]\n[[steps]]\ndo = "vmalloc"\nslot = 0\npages = 65\n',
     "an area of 1 to 64 pages"),
    ('name = "x"\nshows = "y"\nsource = ["z"]\nmachine = {bbml2 = true}\n[[steps]]\ndo = "page"\nslot = 0\n',
     "only a model-only experiment sets machine options"),
])
def test_a_bad_experiment_is_refused_with_its_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as err:
        suite.load("bad.toml", text)
    assert str(err.value).startswith("bad.toml:")


def test_guest_commands_use_the_experiments_own_slots() -> None:
    e = suite.load("t.toml", 'name = "t"\nshows = "s"\nsource = ["k"]\n[[steps]]\ndo = "vmalloc"\nslot = 1\n'
                              'pages = 2\n[[steps]]\ndo = "set_memory_ro"\nslot = 1\noff = 1\npages = 1\ndelta = 16\n'
                              '[[steps]]\ndo = "store"\nslot = 1\nvia = "lm"\nvalue = 90\n')
    assert [guestboot.guest_commands(s, 10) for s in e.steps] == [
        ["vmalloc 11 2", "state 11"], ["ro 11 1 1 16", "state 11"], ["store 11 0 lm 90"]]


def test_a_descriptor_is_split_into_attributes_and_page_frame() -> None:
    leaf = leaf_from_desc("pte", 0x0060000042403783)
    assert (leaf.attrs, leaf.pfn, leaf.valid, leaf.read_only) == (0x0060000000000783, 0x42403, True, True)
    assert leaf_from_desc("pte", 0).describe() == "pte empty"
    assert oops_key(["at virtual address ffff800080a4d000"], 0xFFFF800080A4D000) == ["at virtual address <va>"]


# ------------------------------------------------------------- recorded boots
@pytest.mark.parametrize(("rodata", "experiments"), [("on", 21), ("noalias", 22), ("off", 22)])
def test_every_recorded_experiment_agrees_with_the_model(rodata: str, experiments: int) -> None:
    boot, results = recorded_boot(rodata)
    assert boot.uname == "7.2.13-rofolio" and boot.agree, boot.checks
    assert len(results) == experiments
    assert [r.disagreements() for r in results if not r.agree] == []
    # can_set_direct_map() is rodata_full here (no DEBUG_PAGEALLOC, no KFENCE, not a realm)
    assert boot.facts["can_set_direct_map"] == boot.facts["rodata_full"] == ("1" if rodata == "on" else "0")


def test_qemu_max_is_not_a_bbml2_noabort_cpu() -> None:
    boot, _ = recorded_boot("on")
    assert (boot.facts["midr"], boot.facts["implementer"], boot.facts["bbml2_noabort"]) == ("0x000f0510", "0x00", "0")


def _result(results: list, name: str):
    return next(r for r in results if r.experiment.name == name)


def _leaves(result, step: int) -> dict[str, str]:
    return {c.what: c.kernel for c in result.steps[step].checks if c.what.startswith("page ")}


def test_the_kernel_changes_only_the_aliases_of_the_pages_in_the_range() -> None:
    # change_memory_common() walks area->pages[] from the range's first page (the model walked the whole area)
    _, results = recorded_boot("on")
    leaves = _leaves(_result(results, "ro-part-of-area"), 1)
    read_only = sorted(int(what.split()[1]) for what, desc in leaves.items()
                       if what.endswith("linear alias") and " RO " in desc)
    assert read_only == [2, 3, 4]


def test_kernel_mappings_carry_the_software_dirty_bit() -> None:
    # _PAGE_KERNEL = PROT_NORMAL | PTE_DIRTY (arch/arm64/include/asm/pgtable-prot.h): bit 55 in every descriptor
    _, results = recorded_boot("noalias")
    leaves = _leaves(_result(results, "ro-whole-area"), 0)
    assert leaves["page 0 at the slot address"].startswith("pte RW 0x00e8000000000703")
    assert leaves["page 0 linear alias"].startswith("pmd RW 0x00e8000000000705")


def test_a_store_to_a_read_only_vmalloc_page_prints_the_models_oops_line_for_line() -> None:
    _, results = recorded_boot("on")
    step = _result(results, "store-through-vmalloc-ro").steps[2]
    assert step.agree
    kernel = oops_key(step.kernel_oops, int(step.kernel_oops[0].rsplit(" ", 1)[1], 16))
    assert kernel == [
        "Unable to handle kernel write to read-only memory at virtual address <va>",
        "Mem abort info:", "  ESR = 0x000000009600004f", "  EC = 0x25: DABT (current EL), IL = 32 bits",
        "  SET = 0, FnV = 0", "  EA = 0, S1PTW = 0", "  FSC = 0x0f: level 3 permission fault", "Data abort info:",
        "  ISV = 0, ISS = 0x0000004f, ISS2 = 0x00000000", "  CM = 0, WnR = 1, TnD = 0, TagAccess = 0",
        "  GCS = 0, Overlay = 0, DirtyBit = 0", "Internal error: Oops: 000000009600004f [#1]  SMP"]


@pytest.mark.parametrize(("rodata", "fsc"), [("on", "  FSC = 0x0f: level 3 permission fault"),
                                             ("noalias", "  FSC = 0x0e: level 2 permission fault"),
                                             ("off", "  FSC = 0x0e: level 2 permission fault")])
def test_a_store_to_the_text_alias_faults_at_the_level_of_its_leaf(rodata: str, fsc: str) -> None:
    _, results = recorded_boot(rodata)
    step = _result(results, "store-through-text-alias").steps[1]
    assert step.agree and fsc in step.kernel_oops


def test_the_alias_of_a_read_only_vmalloc_page_stays_writable_without_rodata_full() -> None:
    for rodata, outcome in (("on", "oops"), ("noalias", "went through"), ("off", "went through")):
        _, results = recorded_boot(rodata)
        store = _result(results, "store-through-alias-ro")
        assert next(c.kernel for c in store.steps[2].checks) == outcome
        if outcome == "went through":  # the vmalloc mapping reads the byte stored through the alias
            assert [(c.what, c.kernel) for c in store.steps[3].checks] == [("return value", "0"),
                                                                           ("byte read", str(0xA5))]


def test_a_changed_kernel_line_is_a_disagreement() -> None:
    # the comparison can fail: one descriptor bit changed in the recorded log is reported
    text = (DATA / "arm64run-rodata-on.serial.log").read_text()
    first = next(line for line in text.splitlines()
                 if line.startswith("  k: ") and "map=vm" in line and "level=pte desc=0x00e8" in line)
    log = guestboot.parse_serial(text.replace(first, first.replace("desc=0x00e8", "desc=0x0068"), 1))
    _, results = boots.compare_boot("on", log, 0.0, recorded_suite())
    assert sum(not r.agree for r in results) == 1
    [line] = [d for r in results for d in r.disagreements()]
    assert "kernel pte RW 0x0068000000000703" in line and "model pte RW 0x00e8000000000703" in line


def test_a_boot_that_did_not_finish_fails_every_experiment_of_it() -> None:
    text = (DATA / "arm64run-rodata-off.serial.log").read_text().split("=== ORACLE END")[0]
    boot, results = boots.compare_boot("off", guestboot.parse_serial(text), 0.0, recorded_suite())
    assert not boot.agree and results and all(not r.agree for r in results)


def test_the_json_of_a_run_names_every_row() -> None:
    run = boots.RunResult("7.2.13-rofolio")
    for rodata in suite.RODATA:
        boot, results = recorded_boot(rodata)
        run.boots.append(boot)
        run.results += results
    run.results += [boots.model_only_result(e, "on") for e in recorded_suite() if e.model_only]
    data = json.loads(json.dumps(run.to_dict()))
    assert (data["agreement"], data["experiments"], data["model_only"], data["agree"]) == ("65/65", 22, 2, True)
    bbml2 = [r for r in data["results"] if r["model_only"]]
    assert {r["agree"] for r in bbml2} == {None}
    # the model-only rows: with BBML2 the alias block is split to a read-only PTE
    assert bbml2[0]["steps"][1]["checks"][1] == {"what": "page 0 linear alias", "kernel": "(not run)",
                                                 "model": bbml2[0]["steps"][1]["checks"][1]["model"], "agree": True}
    assert bbml2[0]["steps"][1]["checks"][1]["model"].startswith("pte RO")


@pytest.mark.oracle
@pytest.mark.skipif(os.environ.get("ROFOLIO_ORACLE") != "1",
                    reason="builds (or takes from the cache) the arm64 7.2 kernel and boots it under QEMU: set "
                           "ROFOLIO_ORACLE=1 (after `rofolio oracle setup --arch arm64`)")
def test_a_real_boot_agrees_with_the_model() -> None:
    experiments = [e for e in suite.load_suite() if e.name in (
        "ro-part-of-area", "store-through-alias-ro", "load-through-invalid-alias", "store-through-text-alias")]
    result = boots.run(experiments, ["on"])
    assert [b.uname for b in result.boots] == [result.kernel] and result.boots[0].agree
    assert (result.agreeing, len(result.compared)) == (4, 4), [r.disagreements() for r in result.results]
