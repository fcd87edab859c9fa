"""Tables and plots that stay readable: 80 columns, names without control characters, plots of 10,000 steps.

At 80 columns every bugs row read "dirt…" and every compare figure "+5…"; a scenario name carrying ANSI
escapes reached the terminal; the report drew one bar and one x label per step (10 s for 1,000 steps,
killed at 110 s for 10,000), with the 4k line flat on a GiB axis and fractional ticks on counts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from rofolio.cli import main
from rofolio.mm.warn import warning_text
from rofolio.report import html_report, machine_items, print_table, warning_headline
from rofolio.report.plots import PER_STEP_LIMIT, directmap_figure, flush_series, flushes_figure
from rofolio.scenario.loader import parse
from rofolio.scenario.runner import run_scenario
from rofolio.tables import printable


def invoke(*args: str, columns: int = 80) -> Any:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(main, list(args))


def render(headers: list[str], rows: list[list[str]], width: int, terminal: bool = True) -> list[str]:
    console = Console(width=width, record=True, force_terminal=terminal)
    print_table(console, headers, rows, title="t")
    return console.export_text().splitlines()


def test_a_table_that_fits_is_a_table_with_nothing_cut() -> None:
    lines = render(["id", "splits_1g"], [["huge-dirty-cow", "+1"]], 80)
    assert any("huge-dirty-cow" in line for line in lines) and "…" not in "".join(lines)


def test_a_table_too_wide_is_one_line_per_row_and_says_so() -> None:
    headers = ["id", *(f"config{i}" for i in range(12))]
    rows = [["dirty-cow-zero-page", *(["SILENT"] * 12)]]
    lines = render(headers, rows, 80)
    assert lines[0].startswith("t: one line per row (as a table it is ")
    text = " ".join(lines)
    assert "dirty-cow-zero-page: config0 SILENT" in text and "config11 SILENT" in text
    assert max(map(len, lines)) <= 80 and "…" not in text  # a terminal wraps a row at its width
    piped = render(headers, rows, 80, terminal=False)  # a pipe or a file keeps each row on one line
    assert len(piped) == 2 and piped[1].startswith("dirty-cow-zero-page: config0 SILENT") and "…" not in piped[1]


@pytest.mark.parametrize("args", [
    ["bugs", "--bug", "dirty-cow", "--bug", "huge-dirty-cow"], ["lifetime", "--mem", "8G", "--model", "1"],
    ["compare", "rfc-demo", "--set", "gbpages=true,false"], ["run"], ["tlb"], ["run", "x86-split-costs"],
])
def test_every_table_is_readable_at_80_columns(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout  # nothing cut short
    tables = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= 80 for line in tables)


@pytest.mark.parametrize("args", [["run"], ["tlb"], ["bugs", "--bug", "dirty-cow"]])
def test_into_a_pipe_every_table_is_drawn_at_200_columns(args: list[str]) -> None:
    """No COLUMNS and no terminal: a table kept in a file is not squeezed to the 80 columns of nothing
    (run's TLB table was: it went one line per row)."""
    result = CliRunner(env={"COLUMNS": ""}).invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "one line per row" not in result.stdout
    assert any(line[:1] == "┏" and len(line) > 80 for line in result.stdout.splitlines())


def test_column_names_are_the_json_names() -> None:
    text = invoke("compare", "rfc-demo", "--set", "gbpages=true,false", columns=250).stdout
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    data = json.loads(invoke("compare", "rfc-demo", "--set", "gbpages=true,false", "--json").stdout)
    assert names[0] == "gbpages" and names[-1] == "expect_failures"
    assert set(names[1:-1]) <= set(data["rows"][0]["totals"])  # splits_1g, ipis, DirectMap4k, ...
    assert "splits_1g" in names and "DirectMap1G" in names


def test_control_characters_in_names_do_not_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "ansi.toml"
    path.write_text('name = "evil\\u001b[31mRED\\u001b[0m\\u0007"\ndescription = "d\\u001b]0;title\\u0007x"\n'
                    '[machine]\nmem = "8G"\n[[steps]]\nname = "st\\u001b[2Jep"\nop = "set_memory_ro"\npa = "6G"\n'
                    "pages = 1\n")
    out = invoke("run", str(path)).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert out.splitlines()[0] == "evilRED: dx" and "[1] step" in out
    assert printable("a\x9bb\tc\x1b[0m") == "ab c"


def many_steps(steps: int) -> Any:
    text = ['name = "many"', "[machine]", 'mem = "8G"']
    for i in range(steps):
        text += ["[[steps]]", f'op = "{"set_memory_ro" if i % 2 == 0 else "set_memory_rw"}"',
                 f"pa = {0x100000000 + (i // 2) * 0x7000:#x}", "pages = 1"]
    return run_scenario(parse("\n".join(text) + "\n", "many.toml"))


def test_flushes_are_per_step_up_to_200_steps_and_running_totals_above() -> None:
    short, long = many_steps(PER_STEP_LIMIT), many_steps(PER_STEP_LIMIT + 1)
    per_step, series = flush_series(short)
    assert per_step and len(series["IPIs"]) == 200
    per_step, totals = flush_series(long)
    assert not per_step
    ipis = [s.delta.get("ipis", 0) for s in long.steps]
    assert totals["IPIs"][-1] == sum(ipis) and totals["IPIs"][99] == sum(ipis[:100])


def test_the_plots_use_the_unit_of_each_line_and_whole_ticks_for_counts() -> None:
    result = run_scenario("x86-split-costs")
    fig = directmap_figure(result)
    assert [ax.get_ylabel() for ax in fig.axes] == ["DirectMap4k\nMiB", "DirectMap2M\nGiB", "DirectMap1G\nGiB"]
    flushes = flushes_figure(result)
    flushes.canvas.draw()
    for ax in flushes.axes:
        assert all(float(t).is_integer() for t in ax.get_yticks()), ax.get_yticks()
    assert all(float(t).is_integer() for t in flushes.axes[0].get_xticks())


def test_the_report_renders_in_parts_with_progress_and_a_readable_machine_table() -> None:
    result = run_scenario("x86-split-costs")
    calls: list[tuple[int, int]] = []
    page = html_report(result, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    items = dict(machine_items(result.machine))
    assert items["mem_bytes"] == "8G (8589934592 bytes)" and items["mm.nodes"] == "1"
    assert items["gbpages"] == "true" and not any(v in ("None", "True", "False") or "{" in v for v in items.values())
    assert "DirectMap lines count " in page


def test_a_kernel_warning_is_shown_by_its_warning_line_and_message_not_its_banner(tmp_path: Path) -> None:
    """WARN() prints a "cut here" banner first; the step line and the closing summary show what follows it."""
    assert warning_headline(warning_text("mm/util.c folio_readonly_refused", "refusing to free")) == \
        "WARNING: CPU: 0 PID: 1 at mm/util.c folio_readonly_refused: refusing to free"
    path = tmp_path / "w.toml"
    path.write_text('name = "w"\n[machine]\nmem = "8G"\n[mm]\npersistent_huge_zero_folio = true\n'
                    '[[steps]]\nop = "hugepage_init"\n[[steps]]\nop = "free"\nfolio = "huge_zero_folio"\n')
    out = CliRunner().invoke(main, ["run", str(path)]).stdout
    shown = [line.strip() for line in out.splitlines() if "kernel warning" in line]
    assert len(shown) == 2 and all("refusing to free read-only folio" in line for line in shown)
    assert "cut here" not in out


def test_the_lifetime_page_says_each_observation_for_a_person() -> None:
    """Return values as errno names, pfns in hex, yes/no: no Python reprs (True, {'migrated': 0, ...})."""
    from rofolio.lifetime import run_lifetime_workload
    from rofolio.machine import MachineSpec
    from rofolio.report import lifetime_html

    result = run_lifetime_workload(MachineSpec.build(mem=8 << 30), "model2")
    page = lifetime_html([result], {})
    observed = re.findall(r"<li><code>(\w+)</code>: ([^<]*)</li>", page)
    said = dict(observed[:10])
    assert said["huge_zero_readonly"] == "yes" and said["huge_zero_pfn"] == "0x100000"
    assert said["offline_huge_zero_block"] == "-EBUSY" and said["compaction"] == "migrated 0, failed 0"
    assert not any(v in ("True", "False") or "{" in v or "[" in v for _, v in observed)


def test_compare_shows_every_counter_that_tells_the_rows_apart() -> None:
    """Huge Dirty COW with the huge zero folio read-only or not: the same splits (none), but one row faults;
    the fault is what the comparison is for, so it is a column."""
    text = invoke("compare", "bug-huge-dirty-cow", "--set", "persistent_huge_zero_folio=true",
                  "--set", "readonly_huge_zero_folio=true,false", columns=250).stdout
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    assert {"faults", "oops_in_cpu"} <= set(names) and "pages_allocated" not in names  # the same in both rows


def test_compare_says_which_expectations_failed_and_writes_flags_as_the_command_line_does() -> None:
    text = invoke("compare", "arm64-bbml2", "--set", "bbml2=true,false", columns=250).stdout
    assert "expectations that failed:" in text
    assert "  bbml2=false: step 2: leaf is '4K RO', expected '2M RO'" in text.splitlines()
    flags = json.loads(invoke("compare", "rfc-demo", "--set", "nogbpages=true,false", "--json").stdout)
    assert [row["settings"]["gbpages"] for row in flags["rows"]] == ["false", "true"]  # not Python's False/True


def test_the_machine_line_says_kfence_and_forced_pti() -> None:
    text = invoke("run", "x86-split-costs", "--kfence", "--pti", "on", columns=200).stdout
    assert "machine: x86_64 GBPAGES, 8G, kernel 7.2, 8 CPUs, KFENCE, PTI; steps start at running" in text
