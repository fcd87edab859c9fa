"""What the model does with a questionable step: what the kernel does.

Where the kernel warns and carries on (a double free's "Bad page state", RAM beyond MAXMEM), the run
carries on and shows the kernel's warning on the step, in the text and in the JSON ``warnings``.  Where a
step is impossible (a folio used after it was freed, a process used after it exited), the run stops with
exit 2 and ``FILE:LINE: step N (op): ...``, the line being the key that names what is gone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rofolio.cli import main

HEAD = 'name = "t"\n[machine]\nmem = "8G"\n'
ALLOC_FREE = '[[steps]]\nop = "alloc"\nas = "a"\n[[steps]]\nop = "free"\nfolio = "a"\n'  # lines 4-9
PROCESS = ('[[steps]]\nop = "process"\nas = "p"\n[[steps]]\nop = "mmap"\nprocess = "p"\nas = "r"\n'
           '[[steps]]\nop = "exit"\nprocess = "p"\n')  # lines 4-13


def run(tmp_path: Path, text: str, *args: str) -> tuple[Path, Result]:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path, CliRunner().invoke(main, ["run", str(path), *args])


@pytest.mark.parametrize(("then", "step", "line", "message"), [
    ('[[steps]]\nop = "make_readonly"\nfolio = "a"\n', "step 3 (make_readonly)", 12,
     "folio 'a' has been freed: an earlier step put its last reference"),
    ('[[steps]]\nop = "write"\nfolio = "a"\n', "step 3 (write)", 12, "folio 'a' has been freed"),
    ('[[steps]]\nop = "migrate"\nfolio = "a"\nto_node = 0\n', "step 3 (migrate)", 12, "folio 'a' has been freed"),
    ('[[steps]]\nop = "pin"\nfolio = "a"\n', "step 3 (pin)", 12, "folio 'a' has been freed"),
])
def test_a_freed_folio_cannot_be_used_again(tmp_path: Path, then: str, step: str, line: int, message: str) -> None:
    path, result = run(tmp_path, HEAD + ALLOC_FREE + then)  # ran on before: made read-only, written, pinned
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0].startswith(f"rofolio: error: {path}:{line}: {step}: {message}")


@pytest.mark.parametrize(("then", "step", "line", "message"), [
    ('[[steps]]\nop = "exit"\nprocess = "p"\n', "step 4 (exit)", 16,
     "process 'p' has exited: an earlier exit step ended it"),  # was a KeyError: an internal error
    ('[[steps]]\nop = "touch"\nregion = "r"\nwrite = true\n', "step 4 (touch)", 16,
     "region 'r' belongs to process 'p', which has exited"),  # ran: a fault in a process that is gone
    ('[[steps]]\nop = "mmap"\nprocess = "p"\nas = "r2"\n', "step 4 (mmap)", 16, "process 'p' has exited"),
])
def test_an_exited_process_cannot_be_used_again(tmp_path: Path, then: str, step: str, line: int,
                                                message: str) -> None:
    path, result = run(tmp_path, HEAD + PROCESS + then)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0].startswith(f"rofolio: error: {path}:{line}: {step}: {message}")


def test_a_double_free_is_the_kernels_bad_page_report_and_the_run_goes_on(tmp_path: Path) -> None:
    text = HEAD + ALLOC_FREE + '[[steps]]\nop = "free"\nfolio = "a"\n'  # was a ValueError: an internal error
    _, result = run(tmp_path, text, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    warnings = data["steps"][2]["warnings"]
    assert len(warnings) == 1 and data["warnings"] == warnings
    first, second = warnings[0].splitlines()
    assert re.fullmatch(r"BUG: Bad page state in process rofolio  pfn:[0-9a-f]{5,}", first)
    # the put takes the count below zero (folio_put_testzero() without CONFIG_DEBUG_VM); the folio as it was before
    assert second.startswith("page dumped because: nonzero _refcount (folio_put after the last reference takes "
                             "the count to -1; before it: folio pfn:")
    assert data["steps"][2]["delta"] == {} and data["totals"]["pages_freed"] == 1  # freed once
    _, text_result = run(tmp_path, text)
    assert f"kernel warning: {first}" in text_result.stdout


def test_a_write_touch_returns_0_not_the_pfn_it_wrote(tmp_path: Path) -> None:
    text = HEAD + PROCESS.split('[[steps]]\nop = "exit"')[0] + '[[steps]]\nop = "touch"\nregion = "r"\nwrite = true\n'
    _, result = run(tmp_path, text, "--json")
    assert json.loads(result.stdout)["steps"][2]["ret"] == "0"  # was "1048576", the pfn


@pytest.mark.parametrize(("mem", "paging", "dropped", "maxmem"), [
    ("128T", [], "65537G", "64T, MAX_PHYSMEM_BITS 46"),  # QEMU's e820 starts the top of RAM at 4G
    ("10E", ["--5level"], "10.0E", "4P, MAX_PHYSMEM_BITS 52"),  # MAXMEM is 1 << 52 with la57, not 32P
])
def test_ram_beyond_maxmem_runs_with_the_kernels_warning(tmp_path: Path, mem: str, paging: list[str],
                                                         dropped: str, maxmem: str) -> None:
    result = CliRunner().invoke(main, ["run", "x86-split-costs", "--mem", mem, *paging, "--json"])
    assert result.exit_code == 0, result.output  # was refused (4-level) or cut to 32P without a word (5-level)
    warning = json.loads(result.stdout)["warnings"][0]
    assert warning.endswith(f": {dropped} of RAM above MAXMEM ({maxmem}) is not used")
    meminfo = CliRunner().invoke(main, ["meminfo", "--mem", mem, *paging])
    assert meminfo.stdout.splitlines()[-1].startswith("kernel warning: e820: last_pfn clamped to max_arch_pfn")


def test_an_unaligned_address_reaches_the_kernel_which_warns_and_rounds_it_down(tmp_path: Path) -> None:
    text = HEAD + '[[steps]]\nop = "set_memory_ro"\npa = 0x180000123\npages = 1\n'  # was rounded without a word
    _, result = run(tmp_path, text, "--json")
    assert result.exit_code == 0, result.output
    step = json.loads(result.stdout)["steps"][0]
    assert step["warnings"] == ["WARNING: CPU: 0 at arch/x86/mm/pat/set_memory.c change_page_attr_set_clr "
                                "(unaligned)"]
    assert step["leaf_after"] == "4K RO" and step["delta"]["splits_2m"] == 1  # the page it rounds down to


def test_the_huge_zero_folio_before_it_exists_says_what_allocates_it(tmp_path: Path) -> None:
    """mm/huge_memory.c: hugepage_init() allocates the huge zero folio only when it is persistent; otherwise the
    first read fault of a huge page does, and the hint says so rather than pointing at hugepage_init."""
    _, result = run(tmp_path, HEAD + '[[steps]]\nop = "hugepage_init"\n[[steps]]\nop = "make_readonly"\n'
                    'folio = "huge_zero_folio"\n')
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].endswith("step 2 (make_readonly): folio 'huge_zero_folio' does not exist at this step")
    assert lines[1:] == ["rofolio: hint: hugepage_init allocates it only with [mm] persistent_huge_zero_folio = true",
                         "rofolio: hint: else the first read fault of a huge page does (a read or touch step of an "
                         "mmap region)"]


@pytest.mark.parametrize(("steps", "step", "line", "message"), [
    ('[[steps]]\nop = "alloc"\nnode = 1\nas = "a"\n', "step 1 (alloc)", 6,
     "node = 1, but this machine has 1 NUMA node"),  # was an IndexError: an internal error
    ('[[steps]]\nop = "alloc"\nas = "a"\n[[steps]]\nop = "migrate"\nfolio = "a"\nto_node = 1\n', "step 2 (migrate)",
     10, "to_node = 1, but this machine has 1 NUMA node"),  # was -EBUSY, as if the kernel had refused it
    ('[[steps]]\nop = "free"\nfolio = "zero_page"\n', "step 1 (free)", 6,
     "folio 'zero_page' is a reserved page (empty_zero_page)"),  # was a ValueError: an internal error
])
def test_a_step_that_names_what_the_machine_lacks_is_bad_input(tmp_path: Path, steps: str, step: str, line: int,
                                                                message: str) -> None:
    path, result = run(tmp_path, HEAD + steps)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0].startswith(f"rofolio: error: {path}:{line}: {step}: {message}")


def test_a_store_that_oopses_is_shown_as_an_oops_not_a_return(tmp_path: Path) -> None:
    """The task dies in the fault; only a probe (copy_to_kernel_nofault()) returns -EFAULT."""
    steps = '[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n[[steps]]\nop = "write"\npa = "6G"\n'
    _, result = run(tmp_path, HEAD + steps)
    assert result.exit_code == 0, result.output
    assert "    oopsed at running, leaf now 4K RO (nothing returns; the step's ret is -EFAULT)" in result.stdout
    _, probed = run(tmp_path, HEAD + steps + "probe = true\n")
    assert "    returned -EFAULT at running" in probed.stdout and "oopsed" not in probed.stdout


def test_a_step_aimed_at_a_folio_that_reaches_past_its_end_says_so(tmp_path: Path) -> None:
    """The kernel takes the neighbours as asked (set_memory_ro() has no idea of folios); the run says it."""
    steps = '[[steps]]\nop = "alloc"\nas = "a"\n[[steps]]\nop = "set_memory_ro"\nfolio = "a"\npages = 3\n'
    _, result = run(tmp_path, HEAD + steps, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"][1]["note"] == ("pages 0 to 2 of folio 'a', which has 1: 2 pages past "
                                                             "its end changed as well")
