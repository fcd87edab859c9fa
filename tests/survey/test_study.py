"""rofolio survey: each candidate's class and what making it read-only costs, computed by the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.machine import MachineSpec
from rofolio.survey.catalogue import load_catalogue
from rofolio.survey.study import candidate_workload, cost_on, run_survey


def _candidate(name: str):  # type: ignore[no-untyped-def]
    return next(c for c in load_catalogue() if c.id == name)


def test_the_persistent_huge_zero_folio_costs_what_the_rfc_demo_shows() -> None:
    row = run_survey(ids=["huge_zero_folio_persistent"]).rows[0]
    assert row.candidate.lifetime_class == "model2"
    costs = {k.machine: k for k in row.costs}
    gb = costs["x86_64 GBPAGES"]  # one 1G -> 2M split, one table page, two global flushes (expected behaviour 1)
    assert (gb.readonly, gb.total["splits"], gb.total["pgtables"], gb.total["global_flushes"]) == (True, 1, 1, 2)
    assert costs["arm64 rodata=full"].total["entries_written"] == 512  # 4K PTEs: no split (behaviour 15)
    assert not costs["nodirectmap (weak default)"].readonly  # the weak default: it stays writable


def test_an_image_section_costs_nothing_at_run_time() -> None:
    row = run_survey(ids=["empty_zero_page"]).rows[0]
    assert row.workload is None and row.costs == [] and "already read-only" in row.verdict


def test_an_image_object_names_what_made_it_read_only() -> None:
    """The IDT is .bss, not .rodata: idt_setup_apic_and_irq_gates()'s set_memory_ro() protects it, which the
    verdict says instead of mark_rodata_ro()."""
    rows = {r.candidate.id: r for r in run_survey(ids=["idt", "empty_zero_page"]).rows}
    assert rows["idt"].verdict.startswith("idt: already read-only in the kernel image "
                                          "(idt_setup_apic_and_irq_gates(), idt_map_in_cea())")
    assert "(mark_rodata_ro())" in rows["empty_zero_page"].verdict


def test_changing_an_allocation_field_changes_the_cost() -> None:
    lazy = _candidate("huge_zero_folio_lazy")
    spec = MachineSpec.build(mem="16G")
    as_is = cost_on(spec, candidate_workload(lazy), "model1")  # type: ignore[arg-type]
    order0 = lazy.model_copy(update={"allocator": lazy.allocator.model_copy(update={"order": 0})})
    smaller = cost_on(spec, candidate_workload(order0), "model1")  # type: ignore[arg-type]
    # a 2M folio in a 1G leaf splits it once; a 4K page splits it to 2M, then its 2M leaf to 4K
    assert (as_is.total["splits"], smaller.total["splits"]) == (1, 2)
    assert (as_is.total["pgtables"], smaller.total["pgtables"]) == (1, 2)


def test_a_slab_object_is_costed_by_the_slabs_it_lives_in() -> None:
    cred = _candidate("cred")
    workload = candidate_workload(cred)
    assert workload is not None and cred.sharing is not None
    assert workload.folios * cred.sharing.objects_per_page >= cred.typical_count  # every object has a page


def test_an_unknown_candidate_is_refused_with_the_choices() -> None:
    from rofolio.errors import ConfigError

    with pytest.raises(ConfigError, match="no candidate named 'snowflake'"):
        run_survey(ids=["snowflake"])


def test_the_command_prints_json_and_a_report(tmp_path: Path) -> None:
    from rofolio.cli import main

    page = tmp_path / "survey.html"
    out = CliRunner().invoke(main, ["survey", "--candidate", "cred", "--json", "--report", str(page)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [c["id"] for c in data["candidates"]] == ["cred"] and data["candidates"][0]["class"] == "neither"
    assert "<img " in page.read_text() and "https://" not in page.read_text()


def test_the_report_opens_in_chromium_without_console_errors(tmp_path: Path) -> None:
    from tests.report.test_html import CHROMIUM, open_in_chromium

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/test installs it)")
    from rofolio.report import survey_html

    page = tmp_path / "survey.html"
    page.write_text(survey_html(run_survey(ids=["huge_zero_folio_persistent", "cred", "bpf_prog_image"])))
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [] and 'data-images-ok="yes"' in dom
