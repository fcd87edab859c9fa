"""The command line: results a user can read or parse, and one clear line for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def rofolio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rofolio", *args], capture_output=True, text=True, timeout=120)


def test_run_json_reports_the_rfc_demo_on_a_1g_leaf() -> None:
    out = rofolio("run", "--mem", "8G", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["folio"]["leaf_before"] == "1G RW" and data["folio"]["leaf_after"] == "2M RO"
    delta = data["set_memory_ro"]["delta"]
    assert delta["splits_1g"] == 1 and delta["flushes_all"] == 2 and delta["pgtables_allocated"] == 1
    assert "direct_map_level3_splits" not in delta  # initcall time: not counted in vmstat


def test_run_prints_a_table_without_json() -> None:
    out = rofolio("run", "--mem", "8G", "--nogbpages")
    assert out.returncode == 0, out.stderr
    assert "set_memory_ro(va, 512) returned 0" in out.stdout and "DirectMap2M" in out.stdout


def test_meminfo_prints_proc_meminfo_lines() -> None:
    out = rofolio("meminfo", "--mem", "8G", "--nogbpages")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0].startswith("DirectMap4k:")
    assert "DirectMap1G" not in out.stdout  # only with direct_gbpages


def test_ptdump_json_has_the_low_kernel_mapping() -> None:
    out = rofolio("ptdump", "--mem", "4G", "--json")
    assert json.loads(out.stdout)["ptdump"][0] == "---[ Low Kernel Mapping ]---"


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--arch", "sparc"], "Invalid value for '--arch'"),
    (["run", "--mem", "8Q"], "cannot parse size '8Q'"),
    (["run", "--mem", "16M"], "cannot hold the modelled kernel image"),
    (["run", "--kernel", "banana"], "cannot parse kernel version"),
    (["run", "--kernel", "5.10"], "older than the oldest modelled kernel"),
    (["meminfo", "--cpus", "0"], "Invalid value for '--cpus'"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args: list[str], message: str) -> None:
    out = rofolio(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
