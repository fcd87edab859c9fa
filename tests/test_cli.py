"""The command line: results a user can read or parse, and one clear line for every mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def rofolio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rofolio", *args], capture_output=True, text=True, timeout=120)


def test_run_json_reports_the_rfc_demo_on_a_1g_leaf() -> None:
    out = rofolio("run", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["schema"] == "rofolio.scenario/2" and data["scenario"]["name"] == "rfc-demo"
    first = data["steps"][0]
    assert first["leaf_after"] == "2M RO" and first["phase"] == "scheduling"
    assert first["delta"]["splits_1g"] == 1 and first["delta"]["flushes_all"] == 2
    assert "direct_map_level3_splits" not in first["delta"]  # initcall time: not counted in vmstat


def test_run_machine_options_override_the_scenario() -> None:
    out = rofolio("run", "--nogbpages", "--json")
    first = json.loads(out.stdout)["steps"][0]
    assert first["leaf_after"] == "2M RO" and "splits_1g" not in first["delta"]


def test_run_prints_readable_steps_without_json() -> None:
    out = rofolio("run", "x86-split-costs")
    assert out.returncode == 0, out.stderr
    assert "✓ as expected" in out.stdout and "DirectMap" in out.stdout


def test_compare_prints_one_row_per_configuration() -> None:
    out = rofolio("compare", "rfc-demo", "--set", "gbpages=true,false", "--set", "kernel=6.1,6.18", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert [(r["settings"]["gbpages"], r["settings"]["kernel"]) for r in rows] == [
        ("true", "6.1"), ("true", "6.18"), ("false", "6.1"), ("false", "6.18")]
    assert rows[0]["totals"]["splits_1g"] == 1 and rows[2]["totals"].get("splits_1g", 0) == 0


def test_scenarios_lists_the_builtins() -> None:
    out = rofolio("scenarios")
    assert out.returncode == 0 and out.stdout.splitlines()[0].split()[0]
    assert "rfc-demo" in out.stdout and "x86-split-costs" in out.stdout


def test_expectation_failure_exits_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "wrong.toml"
    path.write_text('name = "w"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = "6G"\n'
                    'pages = 512\nexpect = { splits_1g = 0 }\n')
    out = rofolio("run", str(path))
    assert out.returncode == 1 and "splits_1g changed by 1, expected 0" in out.stdout


def test_meminfo_prints_proc_meminfo_lines() -> None:
    out = rofolio("meminfo", "--mem", "8G", "--nogbpages")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].startswith("DirectMap4k:")
    assert "DirectMap1G" not in out.stdout  # only with direct_gbpages


def test_meminfo_prints_the_vmstat_lines_of_the_kernel_asked_for() -> None:
    # 41d88484c71c (v6.15) added direct_map_level{2,3}_collapses to /proc/vmstat with CPA_COLLAPSE
    for kernel, lines in (("6.1", ["direct_map_level2_splits", "direct_map_level3_splits"]),
                          ("7.2", ["direct_map_level2_splits", "direct_map_level3_splits",
                                   "direct_map_level2_collapses", "direct_map_level3_collapses"])):
        out = rofolio("meminfo", "--mem", "4G", "--kernel", kernel)
        assert [line.split()[0] for line in out.stdout.splitlines() if line.startswith("direct_map")] == lines
        out = rofolio("meminfo", "--mem", "4G", "--kernel", kernel, "--json")
        assert list(json.loads(out.stdout)["vmstat"]) == lines


def test_ptdump_json_has_the_low_kernel_mapping() -> None:
    out = rofolio("ptdump", "--mem", "4G", "--json")
    assert json.loads(out.stdout)["ptdump"][0] == "---[ Low Kernel Mapping ]---"


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--arch", "sparc"], "Invalid value for '--arch'"),
    (["run", "--mem", "8Q"], "cannot parse size '8Q'"),
    (["run", "--mem", "16M"], "cannot hold the modelled kernel image"),
    (["run", "x86-split-costs", "--mem", "2G"], "physical address 0x180000000 is not RAM on this machine"),
    (["meminfo", "--mem", "16M"], "cannot hold the modelled kernel image"),
    (["compare", "rfc-demo", "--set", "gbpage=true"], "unknown key 'gbpage'"),
    (["compare", "rfc-demo"], "nothing to compare"),
    (["run", "--kernel", "banana"], "cannot parse kernel version"),
    (["run", "--kernel", "5.10"], "older than the oldest modelled kernel"),
    (["meminfo", "--cpus", "0"], "Invalid value for '--cpus'"),
    (["bugs", "--bug", "heartbleed"], "rofolio: error: command line: --bug: no bug named 'heartbleed'"),
    (["bugs", "--explain", "heartbleed"], "rofolio: error: command line: --explain: no bug named 'heartbleed'"),
    (["survey", "--candidate", "snowflake"], "command line: --candidate: no candidate named 'snowflake'"),
    (["scenarios", "--show", "nope"], "rofolio: error: command line: --show: no built-in scenario named 'nope'"),
    (["ops", "nope"], "rofolio: error: command line: OP: no op named 'nope'"),
    (["kernel", "build"], "rofolio: error: command line: Missing option '--arch'. Choose from: x86_64, arm64\n"),
    # the oracle's guest options are checked before anything is set up or booted
    (["oracle", "run", "--mem", "0", "x86-split-costs"], "Invalid value for '--mem': 0B of RAM cannot hold"),
    (["oracle", "run", "--timeout", "0", "x86-split-costs"], "Invalid value for '--timeout': 0.0 is not in the range"),
    (["oracle", "run", "--cpu", " ", "x86-split-costs"], "Invalid value for '--cpu': an empty CPU model"),
    (["oracle", "boot", "--mem", "32M"], "Invalid value for '--mem': 32M of RAM cannot hold"),
    (["oracle", "riscv64-boot", "--timeout", "-1"], "Invalid value for '--timeout': -1.0 is not in the range"),
    (["bugs", "--explain", "dirty-pipe", "--config", "sparc"], "Invalid value for '--config'"),
    (["bugs", "--config", "x86"], "--config picks the configuration of --explain"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args: list[str], message: str) -> None:
    out = rofolio(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_lifetime_runs_the_three_models_side_by_side() -> None:
    out = rofolio("lifetime", "--mem", "8G", "--json")
    assert out.returncode == 0, out.stderr
    models = {m["model"]: m for m in json.loads(out.stdout)["models"]}
    assert set(models) == {"model1", "model2", "broken"}
    assert models["model1"]["violations"] == 0 and models["model1"]["faults"] == 0
    assert models["model2"]["violations"] > 0  # it refuses what model 1 carries through
    assert models["broken"]["faults"] > 0  # the counterexample: a read-only page left behind, written later


def test_a_scenario_can_come_from_standard_input_and_its_errors_name_it() -> None:
    def run_stdin(text: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rofolio", "run", "-", *args], input=text, capture_output=True,
                              text=True, timeout=120)

    template = rofolio("scenarios", "--show", "x86-split-costs").stdout
    out = run_stdin(template, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scenario"]["name"] == "x86-split-costs"
    closed = subprocess.run([sys.executable, "-m", "rofolio", "run", "-"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0))
    assert closed.returncode == 2 and "rofolio: error: <stdin>: standard input is closed" in closed.stderr
    bad = run_stdin(template.replace('mem = "8G"', 'mem = "8Q"'))
    assert bad.returncode == 2 and "rofolio: error: <stdin>:" in bad.stderr and "cannot parse size '8Q'" in bad.stderr


def test_the_demo_on_a_machine_of_the_command_line_says_where_its_side_by_side_went() -> None:
    out = rofolio("run", "--cpus", "2")
    assert out.returncode == 0, out.stderr
    assert "RFC step on each machine" not in out.stdout.split("note:")[0]
    assert out.stdout.splitlines()[-1].startswith("note: the RFC step on each machine side by side comes with the "
                                                  "demo's own machine; with --cpus 2 it ran on this one machine")


def test_default_run_shows_the_rfc_step_on_every_machine_side_by_side() -> None:
    out = rofolio("run", "--json")
    rows = {r["machine"]: r for r in json.loads(out.stdout)["side_by_side"]}
    assert rows["x86_64 GBPAGES"] == {"machine": "x86_64 GBPAGES", "ret": "0", "readonly": True, "leaf_after": "2M RO",
                                      "splits": 1, "pgtables": 1, "entries_written": 1, "flushes": 2,
                                      "global_flushes": 2, "ipis": 14, "DirectMap1G_kB": -1048576,
                                      "DirectMap2M_kB": 1048576}
    assert (rows["x86_64 nogbpages"]["splits"], rows["x86_64 nogbpages"]["flushes"]) == (0, 1)
    arm = rows["arm64 rodata=full"]
    assert (arm["readonly"], arm["splits"], arm["entries_written"], arm["ipis"]) == (True, 0, 512, 0)
    bbml2 = rows["arm64 rodata=full BBML2"]
    assert (bbml2["readonly"], bbml2["splits"], bbml2["pgtables"], bbml2["entries_written"]) == (True, 1, 1, 17)
    for weak in ("arm64 rodata=off", "nodirectmap (weak default)"):
        assert rows[weak]["readonly"] is False and rows[weak]["entries_written"] == 0  # best effort
    # riscv64's set_memory_ro() of the linear address: one 1G split, the 2M entry written by both walks of
    # __set_memory(), one flush_tlb_all() to the 7 other harts
    riscv = rows["riscv64 Sv48"]
    assert (riscv["readonly"], riscv["leaf_after"], riscv["splits"], riscv["pgtables"], riscv["entries_written"],
            riscv["global_flushes"], riscv["ipis"]) == (True, "2M RO", 1, 1, 2, 1, 7)


def test_bugs_prints_the_matrix_as_json_for_one_bug() -> None:
    out = rofolio("bugs", "--bug", "huge-dirty-cow", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [b["id"] for b in data["bugs"]] == ["huge-dirty-cow"]
    verdicts = data["bugs"][0]["verdicts"]
    assert verdicts["none"]["outcome"] == "silent corruption"
    assert verdicts["x86"]["outcome"] == "caught"
    assert verdicts["weak"]["outcome"] == "silent corruption"


def test_bugs_explain_prints_the_shape_and_the_trace() -> None:
    out = rofolio("bugs", "--explain", "vmap-alias-write", "--config", "x86")
    assert out.returncode == 0, out.stderr
    assert "taker:" in out.stdout and "writer:" in out.stdout
    assert "through the vmalloc alias 'alias'" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("verdict: silent corruption")


# ------------------------------------------------ what a new user hit (issue 16): each pinned here
def invoke(*args: str) -> Any:
    from click.testing import CliRunner

    from rofolio.cli import main

    return CliRunner().invoke(main, list(args))


def test_json_with_report_writes_the_report_for_the_default_scenario(tmp_path: Path) -> None:
    report = tmp_path / "out.html"
    result = invoke("run", "--json", "--report", str(report))  # wrote nothing and said nothing
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["side_by_side"]
    assert report.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("target", ["missing-dir/out.html", "/proc/out.html"])
def test_a_report_that_cannot_be_created_fails_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              target: str) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the scenario ran although its report cannot be written")

    monkeypatch.setattr("rofolio.scenario.runner.run_scenario", never)
    path = target if target.startswith("/") else str(tmp_path / target)
    result = invoke("run", "x86-split-costs", "--report", path)
    assert result.exit_code == 4
    assert result.stderr.splitlines()[0] == f"rofolio: error: {path}: No such file or directory"


@pytest.mark.parametrize(("mem", "shown"), [("128M", "128M"), ("512M", "512M"), ("3584M", "3584M"), ("8G", "8G")])
def test_the_machine_line_gives_small_machines_their_size(mem: str, shown: str) -> None:
    result = invoke("run", "--mem", mem)  # 128M and 512M printed as "0G"
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith(f"machine: x86_64 GBPAGES, {shown}, ")


def test_a_memory_map_machine_is_described_by_its_ram(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('name = "m"\n[machine]\nmemory_map = [[0, "2G"], ["4G", "10G"]]\n'
                    '[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n')
    data = json.loads(invoke("run", str(path), "--json").stdout)
    assert data["machine"]["mem_bytes"] == 8 << 30  # was 16 GiB, the default mem
    assert invoke("run", str(path)).stdout.splitlines()[1].startswith("machine: x86_64 GBPAGES, 8G, ")


def test_the_directmap_over_count_is_said_in_words_where_the_lines_are_printed() -> None:
    meminfo = invoke("meminfo", "--mem", "8G").stdout.splitlines()
    words = meminfo[7]  # after the three DirectMap lines and the four vmstat lines
    counted = sum(int(line.split()[1]) for line in meminfo[:3])
    assert words.startswith(f"DirectMap lines count {counted} kB (10.0G); the page tables map ")
    assert "kB more in all, as boot counts again each leaf init_mem_mapping() revisits" in words
    data = json.loads(invoke("meminfo", "--mem", "8G", "--json").stdout)
    assert sum(data["mapped_kB"].values()) < sum(data["meminfo_kb"].values())  # the kernel's own over-count
    run = invoke("run", "x86-split-costs").stdout.splitlines()
    after = next(i for i, line in enumerate(run) if line.startswith("after the steps: DirectMap4k"))
    assert run[after + 1].startswith("DirectMap lines count ")
    assert invoke("meminfo", "--mem", "8G", "--nogbpages").stdout.splitlines()[-1].endswith(
        "kB of 4k are splits of the kernel image's high mapping, which the kernel counts as direct-map splits "
        "(docs/fidelity.md, finding 5)")


@pytest.mark.parametrize(("args", "first"), [
    (["run", "--arch", "arm64", "--nogbpages"], "command line: --nogbpages: gbpages is not an option of arm64"),
    (["run", "--arch", "arm64", "-o", "gbpages=false"], "command line: -o gbpages: gbpages is not an option of arm64"),
    (["run", "x86-split-costs", "--arch", "arm64", "--5level"], "command line: --5level: paging is not an option"),
    (["meminfo", "--arch", "arm64", "--nogbpages"], "command line: --nogbpages: gbpages is not an option of arm64"),
    (["run", "--mem", "16M"], "command line: --mem: 16M of RAM cannot hold the modelled kernel image (give at "
                              "least 64M)"),
])
def test_a_refused_machine_option_is_named_as_it_was_typed(args: list[str], first: str) -> None:
    result = invoke(*args)  # said machine.gbpages, a scenario key the user never wrote
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"rofolio: error: {first}" or \
        result.stderr.splitlines()[0].startswith(f"rofolio: error: {first}")


@pytest.mark.parametrize("mem", ["1K", "8M", "16M", "40M", "63M"])
def test_the_least_ram_is_one_figure_whatever_was_given(mem: str) -> None:
    result = invoke("meminfo", "--mem", mem)  # 16M in one message, 64M in another; 64M itself was refused
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        f"rofolio: error: command line: --mem: {mem} of RAM cannot hold the modelled kernel image",
        "rofolio: hint: give at least 64M"]
    assert invoke("meminfo", "--mem", "64M").exit_code == 0


def test_run_ptdump_shows_the_direct_map_before_against_after(tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text('name = "one"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n')
    data = json.loads(invoke("run", str(path), "--ptdump", "--json").stdout)
    before, after = data["ptdump"]["before"], data["ptdump"]["after"]
    assert before[0] == after[0] == "---[ Low Kernel Mapping ]---"
    gone = [line for line in before if line not in after]
    new = [line for line in after if line not in before]
    assert any(line.split()[0] == "0xffff888180000000-0xffff888180001000" and " ro " in line for line in new)
    assert any(line.endswith("pud") and " RW " in line for line in gone)  # the 1G leaf that was split
    text = invoke("run", str(path), "--ptdump").stdout.splitlines()
    diff = text[text.index("the direct map before and after the steps (ptdump, unified diff)") + 1:]
    assert diff[:2] == ["--- ptdump before the steps", "+++ ptdump after the steps"]
    assert {f"-{line}" for line in gone} <= set(diff) and {f"+{line}" for line in new} <= set(diff)
    assert "ptdump" not in json.loads(invoke("run", str(path), "--json").stdout)  # only when asked
    weak = invoke("run", str(path), "--arch", "nodirectmap", "--ptdump").stdout
    assert "nodirectmap has no modelled page-table dump" in weak


def test_a_report_opened_early_is_removed_when_the_command_then_fails(tmp_path: Path) -> None:
    report = tmp_path / "new.html"
    result = invoke("run", "--arch", "arm64", "--nogbpages", "--report", str(report))
    assert result.exit_code == 2 and not report.exists()  # opened before the run, gone with the refusal
