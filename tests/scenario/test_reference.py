"""rofolio ops (the steps, generated from the schema) and rofolio scenarios --show (a built-in to copy)."""

from __future__ import annotations

import json
import typing
from pathlib import Path

from click.testing import CliRunner

from rofolio.cli import main
from rofolio.scenario import schema
from rofolio.scenario.runner import run_scenario


def invoke(*args: str) -> typing.Any:
    return CliRunner(env={"COLUMNS": "80"}).invoke(main, list(args))


def test_ops_json_lists_every_op_and_every_key_of_the_schema() -> None:
    result = invoke("ops", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "rofolio.ops/1"
    listed = {op: {k["key"] for k in entry["keys"]} for entry in data["ops"] for op in entry["ops"]}
    for model in schema.STEP_TYPES:
        keys = {f.alias or name for name, f in model.model_fields.items()} - {"op", "name", "expect"}
        for op in typing.get_args(model.model_fields["op"].annotation):
            assert listed[op] == keys, op
    assert [k["key"] for k in data["every_step"]] == ["name", "expect"]


def test_ops_gives_types_defaults_bounds_and_units() -> None:
    data = json.loads(invoke("ops", "--json", "set_memory_ro", "alloc", "touch").stdout)
    keys = {(entry["ops"][0], k["key"]): k for entry in data["ops"] for k in entry["keys"]}
    assert keys[("set_memory_ro", "pages")] == {"key": "pages", "type": "integer (>= 1)", "required": True,
                                                "default": None, "unit": "4K pages",
                                                "description": "how many pages from the target"}
    assert keys[("set_memory_ro", "pa")]["unit"] == "bytes"
    assert keys[("alloc", "order")]["type"] == "integer (>= 0, <= 10)"
    assert keys[("alloc", "gfp")]["default"] == "kernel"
    assert keys[("touch", "offset")]["unit"] == "bytes"  # bytes into a region, where set_memory's are pages
    assert [e["exactly_one_of"] for e in data["ops"]] == [["pa", "va", "mapping", "folio"], [], []]


def test_ops_text_fits_80_columns_and_names_the_required_keys() -> None:
    result = invoke("ops")
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "  pages (required)        integer (>= 1); unit: 4K pages" in lines
    assert invoke("ops", "frobnicate").exit_code == 2


def test_show_prints_a_builtin_that_runs_as_a_file_of_its_own(tmp_path: Path) -> None:
    result = invoke("scenarios", "--show", "x86-split-costs")
    assert result.exit_code == 0
    copy = tmp_path / "mine.toml"
    copy.write_text(result.stdout)
    mine, builtin = run_scenario(copy).to_dict(), run_scenario("x86-split-costs").to_dict()
    assert mine["steps"] == builtin["steps"] and mine["final"] == builtin["final"]
    missing = invoke("scenarios", "--show", "nope")
    assert missing.exit_code == 2 and "no built-in scenario named 'nope'" in missing.stderr
