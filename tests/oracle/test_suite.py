"""The oracle suite: ordinary scenario files that the model passes and the oracle can run."""

from __future__ import annotations

import pytest

from rofolio.kversion import KernelVersion
from rofolio.oracle.cli import suite_sources
from rofolio.oracle.translate import refusals
from rofolio.scenario.loader import load
from rofolio.scenario.runner import run_scenario

SUITE = suite_sources()


def test_the_suite_has_at_least_25_experiments() -> None:
    assert len(SUITE) >= 25


@pytest.mark.parametrize("path", SUITE, ids=lambda p: p.rsplit("/", 1)[-1][:-5])
def test_each_experiment_passes_on_the_model_and_can_run_on_the_kernel(path: str) -> None:
    scenario = load(path).scenario
    assert KernelVersion.parse(scenario.machine.kernel).series == "6.1" and scenario.machine.cpus == 1
    assert scenario.start == "running"
    assert refusals(scenario, KernelVersion.parse("6.1")) == []
    result = run_scenario(path)
    assert result.failures == []
    assert any(step.expect for step in scenario.steps)
