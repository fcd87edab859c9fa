"""scripts/soak's capture path: a failure it finds becomes a test that replays the shrunk steps and fails alike."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests import soak


class OverflowingCounter(RuleBasedStateMachine):
    """A toy with a planted bug: the counter must stay below 1000, and nothing stops ``add`` from passing it."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @rule(n=st.integers(0, 600), label=st.sampled_from(["a", "é"]))
    def add(self, n: int, label: str) -> None:
        self.total += n

    @invariant()
    def below_1000(self) -> None:
        assert self.total < 1000, f"total {self.total}"


def test_a_found_failure_is_pinned_as_a_test_that_replays_it(tmp_path: Path) -> None:
    failure = soak.explore(OverflowingCounter, seed=1, examples=200)
    assert failure is not None
    assert failure.error == "AssertionError: total 1000"  # shrunk to the boundary
    source = Path(__file__).read_text().splitlines()
    planted = next(i for i, line in enumerate(source, start=1) if "assert self.total < 1000" in line)
    assert failure.where == f"tests/test_soak.py:{planted}"
    assert failure.program[0] == "state = OverflowingCounter()" and failure.program[-1] == "state.teardown()"
    assert [line for line in failure.program if line.startswith("state.add")] == [
        "state.add(label='a', n=400)", "state.add(label='a', n=600)"]
    assert failure.program.count("state.below_1000()") == 3  # before the first step and after each

    path = soak.write_pinned(failure, tmp_path)
    assert path is not None and path.name == f"test_soak_overflowing_counter_{failure.signature}.py"
    assert soak.write_pinned(failure, tmp_path) is None  # the same failure again: already pinned
    lint = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--config",
                           str(soak.ROOT / "pyproject.toml"), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout  # a pinned file is committed as it is written
    spec = importlib.util.spec_from_file_location("pinned", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(AssertionError, match="total 1000"):
        getattr(module, f"test_overflowing_counter_soak_{failure.signature}")()


def test_soak_takes_the_state_machines_pytest_runs_and_not_the_planted_failure() -> None:
    names = {m.__name__ for m in soak.state_machines()}
    assert {"CpaAgainstDense", "LinearMapMachine", "Model1Lifetime", "Model2Lifetime"} <= names
    assert "BrokenLifetime" not in names and "OverflowingCounter" not in names
