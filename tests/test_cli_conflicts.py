"""Command-line mistakes a new user makes: contradictory options, values the command line gave that the model
refuses, and what the help promises; each one is said as `command line: OPTION: ...` with a hint (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rofolio.cli import main


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="rofolio")


def assert_usage_error(args: list[str], lines: list[str]) -> None:
    """``rofolio ARGS`` exits 2 with ``lines`` (the error, its hints), then ``see 'rofolio CMD --help'``."""
    result = invoke(*args)
    assert result.exit_code == 2
    error, *hints = lines
    assert result.stderr.splitlines() == [f"rofolio: error: {error}", *(f"rofolio: hint: {h}" for h in hints),
                                          f"rofolio: hint: see 'rofolio {args[0]} --help'"]


# ------------------------------------------------------------------ contradictory options
@pytest.mark.parametrize(("args", "first"), [
    (["run", "--gbpages", "--nogbpages"],
     "--gbpages and --nogbpages contradict each other (gbpages = true against gbpages = false)"),
    (["run", "--paging", "4", "--5level"],
     "--paging 4 and --5level contradict each other (paging = 4 against paging = 5)"),
    (["run", "--gbpages", "-o", "gbpages=false"],
     "--gbpages and -o gbpages=false contradict each other (gbpages = true against gbpages = false)"),
    (["meminfo", "--no-gbpages", "-o", "gbpages=true"],
     "--no-gbpages and -o gbpages=true contradict each other (gbpages = false against gbpages = true)"),
    # one option given twice with different values is the same mistake, not a choice of the last
    (["run", "--gbpages", "--no-gbpages"],
     "--gbpages and --no-gbpages contradict each other (gbpages = true against gbpages = false)"),
    (["run", "-o", "paging=4", "-o", "paging=5"],
     "-o paging=4 and -o paging=5 contradict each other (paging = 4 against paging = 5)"),
    (["meminfo", "--mem", "4G", "--mem", "8G"],
     "--mem 4G and --mem 8G contradict each other (mem = '4G' against mem = '8G')"),
    (["meminfo", "--kernel", "6.1", "--kernel", "7.2"],
     "--kernel 6.1 and --kernel 7.2 contradict each other (kernel = '6.1.192' against kernel = '7.2')"),
])
def test_options_that_contradict_each_other_are_a_usage_error(args: list[str], first: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"rofolio: error: command line: {first}",
                                          "rofolio: hint: give only one of them",
                                          f"rofolio: hint: see 'rofolio {args[0]} --help'"]
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["--gbpages", "-o", "gbpages=true"], ["--nogbpages", "--no-gbpages"],
                                  ["--paging", "5", "--5level"], ["--mem", "8G", "--mem", "8192M"],
                                  ["--kernel", "6.1", "--kernel", "6.1.192"], ["-o", "paging=5", "-o", "paging=5"],
                                  ["-o", "gbpages=1", "--gbpages"], ["-o", "gbpages=0", "--nogbpages"]])
def test_options_that_agree_or_one_option_given_twice_alike_are_not_a_mistake(args: list[str]) -> None:
    result = invoke("meminfo", *args, "--json")
    assert result.exit_code == 0, result.stderr


def test_bug_and_explain_together_are_a_usage_error() -> None:
    result = invoke("bugs", "--bug", "huge-dirty-cow", "--explain", "dirty-pipe")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == ("rofolio: error: command line: --bug huge-dirty-cow and --explain dirty-pipe contradict each "
                        "other: --explain replays one bug, --bug picks the rows of the matrix")
    assert lines[1:] == ["rofolio: hint: drop --bug to replay the --explain bug, or --explain for the matrix",
                         "rofolio: hint: see 'rofolio bugs --help'"]


def test_compare_takes_a_key_given_twice_as_one_axis_with_the_values_of_both() -> None:
    result = invoke("compare", "rfc-demo", "--set", "kernel=6.1", "--set", "kernel=6.18,6.1", "--json")
    assert result.exit_code == 0, result.stderr
    assert [row["settings"] for row in json.loads(result.stdout)["rows"]] == [{"kernel": "6.1"}, {"kernel": "6.18"}]
    assert "--set kernel=6.1 --set kernel=6.18 is --set kernel=6.1,6.18" in " ".join(
        invoke("compare", "--help").stdout.split())


def test_compare_takes_a_list_value_whole_and_it_replaces_the_scenarios_own_ram() -> None:
    """memory_map's value is a list: commas inside brackets do not separate values, and giving RAM as a
    memory map drops the scenario's mem (rfc-demo has mem = "16G"), as run --mem would replace it."""
    result = invoke("compare", "rfc-demo", "--set", 'memory_map=[[0,"2G"],["4G","8G"]],[[0,"8G"]]', "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [row["settings"]["memory_map"] for row in rows] == ['[[0,"2G"],["4G","8G"]]', '[[0,"8G"]]']
    assert rows[0]["final"] != rows[1]["final"]  # another machine: its DirectMap lines differ


# ------------------------------------------------------------------ a value that does not parse names its option
@pytest.mark.parametrize(("args", "lines"), [
    (["run", "--mem", "3X"],
     ["command line: --mem: cannot parse size '3X'",
      "write a number with an optional binary unit (4096, 512M, 8G, 64T) or hex (0x180000000)"]),
    (["run", "--kernel", "garbage"], ["command line: --kernel: cannot parse kernel version 'garbage'",
                                      "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"]),
    (["run", "-o", "gbpages=maybe"], ["command line: -o gbpages: gbpages takes true or false (on the command line "
                                      "also yes/no, on/off, 1/0), not 'maybe'",
                                      "1G direct-map pages: the CPU has pdpe1gb and the command line has no nogbpages "
                                      "(probe_page_size_mask())"]),
    (["meminfo", "--tlb-single-page-flush-ceiling", "-5"],
     ["command line: --tlb-single-page-flush-ceiling: tlb_single_page_flush_ceiling must be at least 0",
      "flushes of more pages become a full flush (arch/x86/mm/tlb.c; tunable in debugfs)"]),
    (["run", "--mem", "0"],
     ["command line: --mem: 0B of RAM cannot hold the modelled kernel image (give at least 64M)"]),
])
def test_a_value_the_command_line_gave_is_blamed_on_its_option(args: list[str], lines: list[str]) -> None:
    assert_usage_error(args, lines)


# ------------------------------------------------------------------ the model refuses a value the command line gave
@pytest.mark.parametrize(("args", "lines"), [
    (["run", "--arch", "arm64", "--kernel", "6.1"],
     ["command line: --kernel: the arm64 model starts at kernel 6.18, not 6.1.192",
      "use 6.18 or newer (BBML2 block mappings and rodata=on/noalias)"]),
    (["meminfo", "--arch", "arm64", "--kernel", "6.1"],
     ["command line: --kernel: the arm64 model starts at kernel 6.18, not 6.1.192",
      "use 6.18 or newer (BBML2 block mappings and rodata=on/noalias)"]),
    (["lifetime", "--mem", "0"], ["command line: --mem: 0B of RAM cannot hold the modelled kernel image",
                                  "give at least 64M"]),
    # the workload's own ZONE_MOVABLE does not fit: said with the settings the user never wrote
    (["lifetime", "--mem", "6G"], ["command line: --mem: the workload's persistent phase boots 6G as 2 nodes with "
                                   "movablecore=1G: node 0's share of movablecore, 512M, reaches below 4 GiB",
                                   "give the machine more RAM: 7G is the smallest whole number of GiB that boots it"]),
    # two bad values: each is blamed for its own refusal, not the architecture for both
    (["meminfo", "--arch", "arm64", "--kernel", "6.1", "--mem", "1P"],
     ["command line: --kernel: the arm64 model starts at kernel 6.18, not 6.1.192",
      "use 6.18 or newer (BBML2 block mappings and rodata=on/noalias)"]),
    (["run", "--arch", "arm64", "--kernel", "6.1", "--mem", "1P"],
     ["command line: --kernel: the arm64 model starts at kernel 6.18, not 6.1.192",
      "use 6.18 or newer (BBML2 block mappings and rodata=on/noalias)"]),
    (["meminfo", "--arch", "arm64", "--gbpages", "--kernel", "6.1"],
     ["command line: --gbpages: gbpages is not an option of arm64 machines",
      "drop it, or give an --arch that has it (arm64 takes: rodata, bbml2, secondary_without_bbml2, realm, "
      "tlb_range)"]),
])
def test_a_machine_the_model_refuses_is_blamed_on_the_option_that_made_it(args: list[str], lines: list[str]) -> None:
    assert_usage_error(args, lines)


@pytest.mark.parametrize("arch", [["--set", "arch=arm64"], ["--set", "arch=x86_64,arm64"]])
def test_compare_blames_a_refused_machine_on_the_set_value_that_made_it(arch: list[str]) -> None:
    assert_usage_error(["compare", "rfc-demo", *arch, "--set", "kernel=6.1"],
                       ["command line: --set kernel=6.1: the arm64 model starts at kernel 6.18, not 6.1.192",
                        "use 6.18 or newer (BBML2 block mappings and rodata=on/noalias)"])


def test_compare_blames_an_mm_value_the_machine_refuses_on_its_set() -> None:
    result = invoke("compare", "rfc-demo", "--set", "movablecore=14G")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "rofolio: error: command line: --set movablecore=14G: movablecore=14G reaches below 4 GiB",
        "rofolio: hint: ZONE_MOVABLE is taken from ZONE_NORMAL"]
    more = invoke("compare", "rfc-demo", "--set", "movablecore=100G")  # rfc-demo's 16G cannot hold it at all
    assert more.stderr.splitlines()[0] == ("rofolio: error: command line: --set movablecore=100G: movablecore=100G "
                                           "is more than the 16.0G of RAM the machine has")


def test_compare_blames_a_step_a_set_kernel_lacks_on_it_and_a_problem_of_the_file_on_the_file(
        tmp_path: Path) -> None:
    result = invoke("compare", "x86-collapse", "--set", "kernel=6.1.0,7.2")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "rofolio: error: command line: --set kernel=6.1.0: set_memory_rox() does not exist before Linux 6.2; this "
        "machine runs 6.1.0 (builtin:x86-collapse:25: steps[3].op)")
    path = tmp_path / "old.toml"
    path.write_text('name = "old"\n[machine]\nkernel = "6.1"\n[[steps]]\nop = "set_memory_rox"\npa = "1G"\n'
                    'pages = 1\n')
    result = invoke("compare", str(path), "--set", "cpus=2,4")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"rofolio: error: {path}:5: steps[1].op: set_memory_rox() does not exist before Linux 6.2; this machine "
        "runs 6.1.192")


def test_a_step_a_command_line_kernel_lacks_is_blamed_on_kernel_with_the_step_it_stops() -> None:
    result = invoke("run", "x86-collapse", "--kernel", "6.1.0")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:3] == [
        "rofolio: error: command line: --kernel: set_memory_rox() does not exist before Linux 6.2; this machine runs "
        "6.1.0 (builtin:x86-collapse:25: steps[3].op)",
        "rofolio: hint: choose a newer kernel with --kernel", "rofolio: hint: see 'rofolio run --help'"]


def test_a_problem_of_the_file_itself_keeps_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"  # set_memory_rox() on the file's own 6.1: --cpus has nothing to do with it
    path.write_text('name = "old"\n[machine]\nkernel = "6.1"\n[[steps]]\nop = "set_memory_rox"\npa = "1G"\npages = 1\n')
    result = invoke("run", str(path), "--cpus", "4")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        f"rofolio: error: {path}:5: steps[1].op: set_memory_rox() does not exist before Linux 6.2; this machine "
        "runs 6.1.192", "rofolio: hint: choose a newer kernel in [machine]"]


# ------------------------------------------------------------------ the help and the errors agree with the behaviour
def test_rodata_says_which_values_each_architecture_takes_in_the_help_and_the_error() -> None:
    help_text = " ".join(invoke("run", "--help").stdout.split())
    assert "arm64 takes on|off|noalias|full, riscv64 on|off." in help_text
    result = invoke("run", "--arch", "riscv64", "--rodata", "noalias")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "rofolio: error: command line: --rodata: rodata = 'noalias' is not one of 'on', 'off' (riscv64)",
        "rofolio: hint: riscv64 takes on, off", "rofolio: hint: arm64 takes on, off, noalias, full"]
    assert invoke("meminfo", "--arch", "arm64", "--rodata", "noalias").exit_code == 0


def test_o_names_what_it_takes_and_where_a_common_key_goes() -> None:
    result = invoke("run", "-o", "mem=8G")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "rofolio: error: command line: -o mem: mem is not an architecture option: it has its own, --mem",
        "rofolio: hint: write --mem 8G instead of -o mem=8G", "rofolio: hint: see 'rofolio run --help'"]
    result = invoke("meminfo", "--arch", "arm64", "-o", "shiny=true")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[:2] == ["rofolio: error: command line: -o shiny: no architecture has this option",
                         "rofolio: hint: arm64 takes: rodata, bbml2, secondary_without_bbml2, realm, tlb_range"]
    assert lines[2].startswith("rofolio: hint: riscv64 takes: rodata, sv, kfence_sample_interval; "
                               "x86_64 takes: gbpages, paging, ")  # the others by name, whatever was imported first
    result = invoke("run", "-o", "debug_pagealloc=false")  # the flag only turns it on: no "write --flag"
    assert result.exit_code == 2 and result.stderr.splitlines()[1:] == [
        "rofolio: hint: --debug-pagealloc only turns it on",
        "rofolio: hint: without it the machine keeps its own debug_pagealloc (off by default)"]
    assert_usage_error(["run", "-o", "=1"], ["command line: -o: '=1' is not KEY=VALUE", "write e.g. -o gbpages=false"])


def test_the_top_level_help_lists_every_exit_status_docs_errors_md_has() -> None:
    text = " ".join(invoke("--help").stdout.split())
    documented = Path(__file__).parents[1].joinpath("docs", "errors.md").read_text()
    said = text.split("Exit status:", 1)[1]
    for status in (0, 1, 2, 3, 4, 130, 141):
        assert f"| {status} |" in documented
        assert re.search(rf"(^|; ){status} \w", said.strip()), status  # "; 141 stdout was closed ..."


def test_the_readme_counts_the_machines_of_the_side_by_side() -> None:
    words = {"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
    readme = Path(__file__).parents[1].joinpath("README.md").read_text()
    said = re.search(r"the RFC step on (\w+) machines side by side", readme)
    assert said is not None
    rows = json.loads(invoke("run", "--json").stdout)["side_by_side"]
    assert words[said.group(1)] == len(rows)


@pytest.mark.parametrize(("args", "first"), [
    (["--host", "--mem", "8G", "--nogbpages"],
     "--host and --mem 8G --nogbpages contradict each other: --host takes the machine from this one"),
    (["--host-from", "snap", "--kernel", "6.1"],
     "--host-from and --kernel 6.1 contradict each other: --host-from takes the machine from the snapshot"),
    (["--host", "--host-from", "snap"],
     "--host and --host-from snap contradict each other: --host models this machine, --host-from a snapshot"),
])
def test_host_and_a_machine_of_the_command_line_contradict_each_other(args: list[str], first: str) -> None:
    result = invoke("run", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"rofolio: error: command line: {first}"


def test_another_architecture_says_which_options_of_the_scenario_it_drops() -> None:
    result = invoke("run", "arm64-bbml2", "--arch", "x86_64", "--json")
    assert "rofolio: warning: --arch x86_64 drops the scenario's bbml2 = true (options of arm64 only)" in result.stderr
    assert "drops" not in invoke("run", "x86-split-costs", "--arch", "x86_64", "--json").stderr
