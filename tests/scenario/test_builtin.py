"""Built-in scenarios: every one runs and meets its own expectations; rfc-demo's JSON is pinned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rofolio.scenario.loader import builtin_names
from rofolio.scenario.runner import run_scenario

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_scenario_runs_and_meets_its_expectations(name: str) -> None:
    result = run_scenario(name)
    assert result.steps
    assert result.failures == []


def test_every_expected_behaviour_scenario_checks_something() -> None:
    for name in builtin_names():
        if name == "rfc-demo" or name.startswith("bug-"):  # bug replays are checked by their verdicts (test_bugs)
            continue
        result = run_scenario(name)
        assert any(step.checked for step in result.steps), name


def _json(name: str) -> str:
    return json.dumps(run_scenario(name).to_dict(), indent=2, sort_keys=True) + "\n"


def test_rfc_demo_json_matches_the_golden_file() -> None:
    text = _json("rfc-demo")
    golden = GOLDEN / "rfc-demo.json"
    if os.environ.get("ROFOLIO_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "rfc-demo output changed; set ROFOLIO_UPDATE_GOLDEN=1 if intended"


def test_two_runs_with_the_same_seed_give_byte_identical_json() -> None:
    assert _json("rfc-demo") == _json("rfc-demo")
    assert _json("x86-split-costs") == _json("x86-split-costs")


def test_rfc_demo_splits_one_1g_page_and_is_not_counted_in_vmstat() -> None:
    step = run_scenario("rfc-demo").steps[0]
    assert step.ret == 0 and step.leaf_after == "2M RO"
    assert step.delta["splits_1g"] == 1 and step.delta["flushes_all"] == 2
    assert "direct_map_level3_splits" not in step.delta


@pytest.mark.parametrize(("machine", "ret"), [
    ({"arch": "x86_64"}, "0"),
    ({"arch": "arm64"}, "0"),  # rodata=full: can_set_direct_map()
    ({"arch": "arm64", "rodata": "off"}, "-ENOSYS"),  # behaviour 18: memfd_secret() refuses
    ({"arch": "nodirectmap"}, "-ENOSYS"),  # no ARCH_HAS_SET_DIRECT_MAP: no secretmem at all
])
def test_memfd_secret_needs_a_direct_map_it_can_change(machine: dict[str, str], ret: str) -> None:
    from rofolio.scenario.loader import parse

    scenario = parse('name = "secret"\n[[steps]]\nop = "secretmem"\nas = "s"\n', "secret.toml")
    first = run_scenario(scenario.model_copy(update={"machine": type(scenario.machine)(**machine)})).steps[0]
    assert first.to_dict()["ret"] == ret
    assert first.leaf_after == ("4K not-present" if ret == "0" else "")


def test_a_builtin_name_is_the_builtin_even_beside_a_file_of_that_name(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A file called rfc-demo in the current directory does not replace the demo `rofolio run` runs; ./rfc-demo
    names the file."""
    from rofolio.scenario.loader import builtin_text, load

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rfc-demo").write_text(builtin_text("x86-split-costs").replace('name = "x86-split-costs"',
                                                                                'name = "mine"'))
    assert load("rfc-demo").scenario.name == "rfc-demo"
    assert load("./rfc-demo").scenario.name == "mine"
