"""Mistakes found when the file loads, all of them in one run: names used before a step gives them, expectations
no step can meet, and an unquoted kernel version echoed as the file spells it.

Each ran before as something else: ``expect = { ret = "zero" }`` ran and failed as if the model disagreed
(exit 1), a name used too early was one error per run with neither line nor hint, and one bad [machine] key
hid every such error in the steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rofolio.errors import Errno, ScenarioErrors
from rofolio.scenario import schema
from rofolio.scenario.loader import parse
from rofolio.units import Level

HEAD = 'name = "t"\n[machine]\nmem = "8G"\n'
STEP = '[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n'  # lines 4-7 after HEAD


def run(tmp_path: Path, text: str) -> tuple[Path, Result]:
    from rofolio.cli import main

    path = tmp_path / "s.toml"
    path.write_text(text)
    return path, CliRunner().invoke(main, ["run", str(path)])


def problems(result: Result) -> list[tuple[str, list[str]]]:
    """Each error line with the hint lines after it."""
    out: list[tuple[str, list[str]]] = []
    for line in result.stderr.splitlines():
        if line.startswith("rofolio: error: "):
            out.append((line.removeprefix("rofolio: error: "), []))
        elif line.startswith("rofolio: hint: ") and out:
            out[-1][1].append(line.removeprefix("rofolio: hint: "))
    return out


# ------------------------------------------------------------------------------------------------ expectations

def test_impossible_expect_values_are_bad_input_with_the_allowed_forms(tmp_path: Path) -> None:
    path, result = run(tmp_path, HEAD + STEP + 'expect = { ret = "zero", leaf = "3M RO" }\n')
    assert result.exit_code == 2, result.output  # was 1: "ret is 0, expected zero" as if the model disagreed
    assert result.stdout == ""
    (ret, ret_hint), (leaf, leaf_hint) = problems(result)
    assert ret == f'{path}:8: steps[1].expect.ret: expect.ret is "zero", which no step returns'
    assert '"-ENOMEM"' in ret_hint[0] and '"-EOPNOTSUPP"' in ret_hint[0] and "a number" in ret_hint[0]
    assert leaf == f"{path}:8: steps[1].expect.leaf: expect.leaf is \"3M RO\", which no step's leaf reads as"
    assert "4K, 2M, 1G" in leaf_hint[0] and "RO, RW or not-present" in leaf_hint[0]


@pytest.mark.parametrize("value", ['ret = "ENOMEM"', 'ret = "-enomem"', 'ret = "-12"', 'ret = "007"',
                                   'leaf = "2m ro"', 'leaf = "2M"', 'leaf = "4K not present"'])
def test_a_misspelt_expect_value_is_refused(tmp_path: Path, value: str) -> None:
    _, result = run(tmp_path, HEAD + STEP + f"expect = {{ {value} }}\n")
    assert result.exit_code == 2, result.output
    assert "which no step" in result.stderr


def test_every_value_the_runner_can_produce_is_accepted() -> None:
    # the allowed forms come from what the runner prints: Errno.describe() and leaf_text() over every Level
    rets = [0, -12, 7, *(f"-{e.name}" for e in Errno), "0", "-5"]  # the result prints -5, not -12, as is
    leaves = ["none", *(f"{level.leaf_name} {form}" for level in Level for form in ("RO", "RW", "not-present"))]
    steps = "".join(STEP + f"expect = {{ ret = {schema_value(r)}, leaf = \"{leaf}\" }}\n"
                    for r, leaf in zip(rets * 3, leaves, strict=False))
    assert len(parse(HEAD + steps).steps) == len(leaves)


def schema_value(value: int | str) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


def test_a_scenario_made_in_code_gets_the_same_expect_check_when_it_runs() -> None:
    from rofolio.scenario.runner import run_scenario

    step = schema.SetMemory(op="set_memory_ro", pa=6 << 30, pages=1, expect={"leaf": "3M RO"})
    scenario = schema.Scenario(name="t", machine=schema.Machine(mem=8 << 30), steps=[step])
    with pytest.raises(ScenarioErrors, match="which no step's leaf reads as"):
        run_scenario(scenario)


def test_expect_leaf_on_a_step_without_an_address_is_refused_at_load(tmp_path: Path) -> None:
    text = 'name = "t"\nstart = "initcalls"\n[machine]\nmem = "8G"\n[[steps]]\nop = "phase"\nto = "running"\n'
    _, result = run(tmp_path, text + 'expect = { leaf = "2M RW" }\n')
    assert result.exit_code == 2, result.output
    [(message, hint)] = problems(result)
    assert message.endswith('steps[1].expect.leaf: expect.leaf on an op = "phase" step, which acts on no kernel '
                            "address")
    assert "leaf on a step that names a page" in hint[0]


ADDRESSLESS = """name = "t"
start = "initcalls"
[machine]
mem = "8G"
[[steps]]
op = "pgtable_alloc_fail"
fail = false
[[steps]]
op = "phase"
to = "running"
[[steps]]
op = "snapshot"
[[steps]]
op = "compact"
[[steps]]
op = "shrink"
[[steps]]
op = "process"
as = "p"
[[steps]]
op = "mmap"
process = "p"
as = "r"
[[steps]]
op = "read"
region = "r"
[[steps]]
op = "exit"
process = "p"
"""


def test_the_addressless_steps_are_those_whose_result_reads_no_leaf() -> None:
    from rofolio.scenario.runner import run_scenario

    result = run_scenario(parse(ADDRESSLESS))
    assert {r.op for r in result.steps} == schema.ADDRESSLESS_OPS
    assert all(r.leaf_after == "" for r in result.steps)


# ------------------------------------------------------------------------------------------------------- names

NAMES = '''name = "t"
[machine]
mem = "8G"
paging = 6

[[steps]]
op = "make_readonly"
folio = "nosuchfolio"

[[steps]]
op = "alloc"
as = "a"

[[steps]]
op = "set_memory_ro"
mapping = "nomap"
pages = 1

[[steps]]
op = "mmap"
process = "p"
as = "r"

[[steps]]
op = "process"
as = "p"

[[steps]]
op = "free"
folio = "b"
'''


def test_every_name_problem_comes_in_one_run_with_line_key_and_hint_beside_a_machine_error(tmp_path: Path) -> None:
    path, result = run(tmp_path, NAMES)
    assert result.exit_code == 2, result.output
    assert problems(result) == [
        (f"{path}:4: machine.paging: paging = 6 is not one of 4, 5", []),  # it hid every error below
        (f"{path}:8: steps[1].folio: uses folio 'nosuchfolio' before a step names it",
         ["the folio names given before step 1: huge_zero_folio, zero_page",
          'name one with as = "nosuchfolio" on an earlier alloc, file, gup, migrate, pin, secretmem or touch step']),
        (f"{path}:16: steps[3].mapping: uses mapping 'nomap' before a step names it",
         ["no mapping is named before step 3", 'name one with as = "nomap" on an earlier vmap step']),
        (f"{path}:21: steps[4].process: uses process 'p' before a step names it",
         ["step 5 names it: move that step before step 4"]),
        (f"{path}:30: steps[6].folio: uses folio 'b' before a step names it",
         ["the folio names given before step 6: huge_zero_folio, zero_page, a",
          'name one with as = "b" on an earlier alloc, file, gup, migrate, pin, secretmem or touch step']),
    ]


def test_a_step_with_an_unknown_op_gives_its_name_so_later_uses_add_no_errors(tmp_path: Path) -> None:
    path, result = run(tmp_path, HEAD + '[[steps]]\nop = "aloc"\nas = "a"\n[[steps]]\nop = "free"\nfolio = "a"\n')
    assert [p[0] for p in problems(result)] == [f"{path}:5: steps[1]: unknown op 'aloc'"]


def test_phase_steps_are_checked_beside_a_machine_error(tmp_path: Path) -> None:
    path, result = run(tmp_path, HEAD + "paging = 6\n" + '[[steps]]\nop = "phase"\nto = "running"\n')
    assert [p[0] for p in problems(result)] == [f"{path}:4: machine.paging: paging = 6 is not one of 4, 5",
                                                f'{path}:5: steps[1]: start = "running" (the default) already '
                                                'boots fully']


def test_expect_and_type_errors_of_steps_come_beside_a_machine_error(tmp_path: Path) -> None:
    _, result = run(tmp_path, HEAD + "paging = 6\n" + STEP.replace("pages = 1", "pages = 0")
                       + 'expect = { leaf = "3M" }\n')
    assert [p[0].split(": ")[1] for p in problems(result)] == ["machine.paging", "steps[1].pages",
                                                                "steps[1].expect.leaf"]


# ------------------------------------------------------------------------------------------------------ kernel

@pytest.mark.parametrize(("written", "number", "hints"), [
    ("6.10", "6.1", ['quote the version: kernel = "6.10"', "unquoted, 6.10 is the number 6.1"]),
    ("6.18", "6.18", ['quote the version: kernel = "6.18"']),  # was: quote the version (kernel = "6.10")
    ("6.20  # the newest", "6.2", ['quote the version: kernel = "6.20"', "unquoted, 6.20 is the number 6.2"]),
])
def test_an_unquoted_kernel_version_is_echoed_as_written(tmp_path: Path, written: str, number: str,
                                                         hints: list[str]) -> None:
    path, result = run(tmp_path, HEAD + f"kernel = {written}\n" + STEP)
    assert result.exit_code == 2, result.output
    assert problems(result) == [(f"{path}:4: machine.kernel: kernel is the number {number} here, not a version",
                                 hints)]


def test_without_the_text_the_kernel_hint_invents_no_version() -> None:
    from rofolio.scenario.loader import validate

    with pytest.raises(ScenarioErrors) as caught:
        validate({"name": "t", "machine": {"kernel": 6.1}, "steps": [{"op": "compact"}]}, "command line")
    (message, hint), = caught.value.problems()
    assert message == "command line: machine.kernel: kernel is the number 6.1 here, not a version"
    assert "6.10" not in hint and 'kernel = "6.1"' in hint and "trailing zeros" in hint
