"""Values of the wrong TOML type are refused where they stand (file, line, key), never coerced into another run.

Each of these ran before as something else: ``kernel = 6.10`` ran 6.1, ``pages = true`` one page,
``memory_map = []`` the default machine, ``expect = { splits_1g = true }`` checked 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.cli import main

HEAD = 'name = "t"\n[machine]\nmem = "8G"\n'
STEP = '[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n'


def refused(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    """Run the scenario text; it must be refused with exit 2 before anything ran: the error lines."""
    path = tmp_path / "s.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return path, [line for line in result.stderr.splitlines() if line.startswith("rofolio: error: ")]


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    (HEAD + "kernel = 6.10\n" + STEP, 4, "machine.kernel", "kernel is the number 6.1 here, not a version"),
    (HEAD + STEP.replace("pages = 1", "pages = true"), 7, "steps[1].pages",
     "Input should be a valid integer (got true)"),
    (HEAD + STEP.replace("pages = 1", 'pages = "512"'), 7, "steps[1].pages",
     'Input should be a valid integer (got "512")'),
    (HEAD + STEP.replace('pa = "6G"', 'pa = "6G"\noffset = 1.5'), 7, "steps[1].offset",
     "Input should be a valid integer (got 1.5)"),
    ('name = "t"\nseed = "1"\n' + STEP, 2, "seed", 'Input should be a valid integer (got "1")'),
    (HEAD + "cpus = true\n" + STEP, 4, "machine.cpus", "Input should be a valid integer (got true)"),
    (HEAD + 'kfence = "yes"\n' + STEP, 4, "machine.kfence", 'Input should be a valid boolean (got "yes")'),
    ('name = "t"\n[mm]\nnodes = "2"\n' + STEP, 3, "mm.nodes", 'input should be 1 or 2 (got "2")'),
    ('name = "t"\n[machine]\nmemory_map = []\n' + STEP, 3, "machine.memory_map", "memory_map has no ranges"),
    ('name = "t"\n[machine]\nmemory_map = [["4G", "2G"]]\n' + STEP, 3, "machine.memory_map",
     "memory_map range [0x100000000, 0x80000000) ends where or before it starts"),
    ('name = "t"\n[machine]\nmemory_map = [[0, "2G"], ["1G", "3G"]]\n' + STEP, 3, "machine.memory_map",
     "memory_map ranges [0x0, 0x80000000) and [0x40000000, 0xc0000000) overlap"),
    ('name = "t"\n[machine]\nmemory_map = [[0, "32M"]]\n' + STEP, 3, "machine.memory_map",
     "32M of RAM cannot hold the modelled kernel image (give at least 64M)"),
    (HEAD.replace('"8G"', '"16M"') + STEP, 3, "machine.mem",
     "16M of RAM cannot hold the modelled kernel image (give at least 64M)"),
    (HEAD + STEP + "expect = { splits_1g = true }\n", 8, "steps[1].expect.splits_1g",
     "expect.splits_1g must be a whole number, not True"),
    (HEAD + STEP + 'expect = { fault = 1 }\n', 8, "steps[1].expect.fault", "expect.fault must be true or false, not 1"),
    (HEAD + STEP + 'expect = { leaf = 2 }\n', 8, "steps[1].expect.leaf", 'expect.leaf must be a leaf such as "2M RO"'),
])
def test_a_value_of_the_wrong_type_is_named_with_its_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                                  message: str) -> None:
    path, errors = refused(tmp_path, text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"rofolio: error: {path}:{line}: {key}: {message}"), errors


def test_a_quoted_number_gets_the_fix_as_its_hint(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(HEAD + STEP.replace("pages = 1", 'pages = "512"'))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert "rofolio: hint: write it without quotes: pages = 512" in result.stderr.splitlines()


@pytest.mark.parametrize(("text", "line", "key"), [
    ('name = "t"\nx = ' + "[" * 5000 + "]" * 5000 + "\n", 2, "x"),
    (HEAD + '[[steps]]\nop = "alloc"\nas = "a"\nexpect = ' + "{a = " * 3000 + "1" + "}" * 3000 + "\n", 7, "expect"),
])
def test_arrays_nested_thousands_deep_are_refused_at_their_line(tmp_path: Path, text: str, line: int,
                                                                key: str) -> None:
    path, errors = refused(tmp_path, text)  # was a RecursionError: an internal error after reading the file
    assert errors == [f"rofolio: error: {path}:{line}: {key}: arrays or inline tables nested more than 100 deep"]


def test_a_scenario_that_is_a_character_device_is_refused_unread(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "/dev/zero"])  # read without limit, it never ends
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "rofolio: error: /dev/zero: not a regular file"
