"""The bug library: each real bug under each protection, and the verdicts issue 7 pins down.

Huge Dirty COW (CVE-2017-1000405, fixed by a8f97366452e) wrote into
the huge zero page (a read-only direct map turns that into an oops); Dirty
COW and Dirty Pipe wrote page-cache pages (outside the protection); DMA never
goes through a CPU page table; a writable vmap alias is a second way in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rofolio import bugs
from rofolio.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden" / "bug-matrix.json"


@pytest.fixture(scope="module")
def matrix() -> bugs.BugMatrix:
    return bugs.bug_matrix()


def outcome(matrix: bugs.BugMatrix, bug: str, config: str) -> str:
    return matrix.cells[(bug, config)].outcome


def test_huge_dirty_cow_silently_corrupts_what_thp04s_second_mapping_reads_without_protection(
        matrix: bugs.BugMatrix) -> None:
    cell = matrix.cells[("huge-dirty-cow", "none")]
    assert cell.outcome == "silent corruption"
    assert cell.result.inspection["readers"] == ["attacker", "thp04_reader"]
    last = cell.result.steps[-1]
    assert last.note == "read 0x41"  # the LTP check fails: the second huge-zero mapping no longer reads 0


@pytest.mark.parametrize("config", ["x86", "arm64", "bbml2"])
def test_huge_dirty_cow_faults_when_the_huge_zero_folio_is_read_only(matrix: bugs.BugMatrix, config: str) -> None:
    cell = matrix.cells[("huge-dirty-cow", config)]
    assert cell.outcome == "caught"
    assert cell.result.steps[-1].note == "read 0x0"  # thp04 passes: the store never landed


def test_huge_dirty_cow_oops_texts_are_the_architectures(matrix: bugs.BugMatrix) -> None:
    x86 = matrix.cells[("huge-dirty-cow", "x86")].result
    arm = matrix.cells[("huge-dirty-cow", "arm64")].result
    x86_oops = next(s.oops for s in x86.steps if s.oops)
    arm_oops = next(s.oops for s in arm.steps if s.oops)
    assert x86_oops.startswith("BUG: unable to handle page fault for address: ffff888")
    assert "#PF: supervisor write access in kernel mode" in x86_oops
    assert "#PF: error_code(0x0003) - permissions violation" in x86_oops
    assert arm_oops.startswith("Unable to handle kernel write to read-only memory at virtual address ffff")


def test_huge_dirty_cow_is_silent_on_the_weak_default(matrix: bugs.BugMatrix) -> None:
    cell = matrix.cells[("huge-dirty-cow", "weak")]
    assert cell.outcome == "silent corruption"
    assert cell.result.inspection["direct_map_writable"] is True  # the weak default said -EOPNOTSUPP
    assert cell.detail.endswith("landed in pfn 0x100000 through the direct map")


def test_huge_dirty_cow_is_not_reachable_with_todays_gup_which_hands_out_a_copy(matrix: bugs.BugMatrix) -> None:
    cell = matrix.cells[("huge-dirty-cow", "today")]
    assert cell.outcome == "not reachable"
    assert cell.detail == "got anon page of mm 1 (a private COW copy: the retry kept FOLL_WRITE)"


@pytest.mark.parametrize("bug", ["dirty-cow", "dirty-pipe"])
def test_page_cache_bugs_are_not_claimed_caught_by_zero_folio_protection(matrix: bugs.BugMatrix, bug: str) -> None:
    for config in matrix.configs:
        if config.today:
            continue
        cell = matrix.cells[(bug, config.key)]
        assert cell.outcome == "silent corruption", config.key
        assert cell.result.inspection["file"] is True and cell.result.inspection["corrupted_pages"] == 1
        assert cell.result.inspection["readers"] == (["attacker", "reader"] if bug == "dirty-cow" else ["reader"])


def test_dma_is_never_caught_by_a_read_only_cpu_direct_map(matrix: bugs.BugMatrix) -> None:
    for config in matrix.configs:
        cell = matrix.cells[("dma-without-foll-write", config.key)]
        assert cell.outcome == "silent corruption", config.key
        assert "DMA" in cell.detail


def test_a_writable_vmap_alias_is_not_caught_and_the_report_names_it(matrix: bugs.BugMatrix) -> None:
    for config in matrix.configs:
        cell = matrix.cells[("vmap-alias-write", config.key)]
        assert cell.outcome == "silent corruption", config.key
        assert "vmalloc alias 'alias'" in cell.detail


def test_the_vmap_alias_write_lands_although_the_direct_map_is_read_only(matrix: bugs.BugMatrix) -> None:
    result = matrix.cells[("vmap-alias-write", "x86")].result
    assert result.inspection["direct_map_writable"] is False
    assert result.inspection["corrupted_pages"] == 1


def test_the_4k_zero_page_in_rodata_catches_dirty_cow_on_the_zero_page_but_hzf_protection_alone_does_not(
        matrix: bugs.BugMatrix) -> None:
    assert outcome(matrix, "dirty-cow-zero-page", "zp-ro") == "caught"
    assert outcome(matrix, "dirty-cow-zero-page", "x86") == "silent corruption"


def test_zero_page_pins_wrap_the_refcount_which_no_page_protection_sees(matrix: bugs.BugMatrix) -> None:
    for config in matrix.configs:
        cell = matrix.cells[("zero-page-pin", config.key)]
        if config.today:
            assert cell.outcome == "not reachable"
            assert cell.detail == "pin_user_pages() leaves the zero page unpinned (\"mm: Don't pin ZERO_PAGE\")"
        else:
            assert cell.outcome == "silent corruption"
            assert cell.detail.startswith("the refcount of the zero page wrapped: refcount 1 -> 2147483649 ")
            assert cell.result.steps[-1].ret == -12  # the 8 pins after the wrap were refused


def test_the_whole_matrix_matches_the_golden_file(matrix: bugs.BugMatrix) -> None:
    text = json.dumps(matrix.to_dict(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("ROFOLIO_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_a_bug_is_found_by_id_or_scenario_name() -> None:
    for name in ("dirty-pipe", "bug-dirty-pipe"):
        scenario = bugs.load_bug(name)
        assert scenario.name == "bug-dirty-pipe" and scenario.bug is not None and scenario.bug.id == "dirty-pipe"


def test_an_unknown_bug_or_configuration_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no bug named 'nope'"):
        bugs.load_bug("nope")
    with pytest.raises(ConfigError, match="configurations: none"):
        bugs.config_named("nope")


def test_a_bug_named_twice_is_one_row() -> None:
    from click.testing import CliRunner

    from rofolio.cli import main

    result = CliRunner().invoke(main, ["bugs", "--bug", "dirty-pipe", "--bug", "dirty-pipe", "--json"])
    assert result.exit_code == 0, result.output
    assert [b["id"] for b in json.loads(result.stdout)["bugs"]] == ["dirty-pipe"]
