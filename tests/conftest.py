"""Shared fixtures: booted machines in the states the kernel-behaviour tests start from; hypothesis profiles.

Profiles (``HYPOTHESIS_PROFILE``, default ``dev``; scripts/test runs ``ci``):

* ``ci``: derandomized (the same examples every run, no example database), 100 examples of 100 steps for every
  state machine (the first step is its ``@initialize`` rule), every invariant checked after every step;
* ``dev``: random, 20 examples of 50 steps, failures remembered in .hypothesis/ and replayed first;
* ``soak``: random and unbounded, for scripts/soak (which sets the number of examples and the seed).

State machines take their settings from the profile: none assigns ``TestCase.settings``.  The terminal summary
counts, per state machine, the examples run, the rules executed and the fewest and most steps of an example; under
``ci`` a state machine test that passed with fewer than 100 examples or an example shorter than 100 steps fails the
session (a machine whose rules run out, or settings that crept back in).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.stateful
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine

from rofolio.machine import Machine, MachineSpec
from rofolio.units import GiB

CI_EXAMPLES = 100
CI_STEPS = 100
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=CI_EXAMPLES, stateful_step_count=CI_STEPS, derandomize=True,
                          database=None, deadline=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("dev", max_examples=20, stateful_step_count=50, deadline=None,
                          suppress_health_check=_QUIET)
settings.register_profile("soak", max_examples=10**9, stateful_step_count=CI_STEPS, deadline=None, database=None,
                          print_blob=True, report_multiple_bugs=False, suppress_health_check=_QUIET)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
settings.load_profile(PROFILE)
if "MUTANT_UNDER_TEST" in os.environ:  # scripts/mutation: the same examples, but a failure is a kill, not a report
    # to shrink (shrinking a state machine's failure took up to 5 minutes of one mutant's run)
    settings.register_profile(f"{PROFILE}-mutation", settings(settings.default, phases=(
        Phase.explicit, Phase.reuse, Phase.generate)))
    settings.load_profile(f"{PROFILE}-mutation")


@dataclass
class StateMachineRun:
    """One run of a state machine as a test: its examples (steps of each), wall time and how it ended."""

    machine: str
    test: str
    module: str = ""
    steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    passed: bool = False


RUNS: list[StateMachineRun] = []
_current: list[StateMachineRun] = []
_test: list[str] = [""]
_run_state_machine_as_test = hypothesis.stateful.run_state_machine_as_test
_check_invariants = RuleBasedStateMachine.check_invariants


def _counted_run_state_machine_as_test(factory: Any, *args: Any, **kwargs: Any) -> None:
    run = StateMachineRun(getattr(factory, "__qualname__", repr(factory)), _test[0], getattr(factory, "__module__", ""))
    RUNS.append(run)
    _current.append(run)
    if PROFILE == "ci":  # every example runs the whole stateful_step_count (hypothesis may stop one early)
        chosen = kwargs.get("settings") or factory.TestCase.settings
        kwargs["_min_steps"] = max(kwargs.get("_min_steps", 0), chosen.stateful_step_count)
    start = time.perf_counter()
    try:
        _run_state_machine_as_test(factory, *args, **kwargs)
        run.passed = True
    finally:
        run.seconds = time.perf_counter() - start
        _current.pop()


def _counted_check_invariants(self: RuleBasedStateMachine, *args: Any, **kwargs: Any) -> None:
    """hypothesis checks the invariants once before the first step and once after every step: count them."""
    if _current:
        steps = _current[-1].steps
        if "_rofolio_counted" not in self.__dict__:  # a new example
            self.__dict__["_rofolio_counted"] = True
            steps.append(0)
        else:
            steps[-1] += 1
    _check_invariants(self, *args, **kwargs)


# runTest of every RuleBasedStateMachine.TestCase calls the module's run_state_machine_as_test; the test modules
# import this name after conftest.py has replaced it
hypothesis.stateful.run_state_machine_as_test = _counted_run_state_machine_as_test
RuleBasedStateMachine.check_invariants = _counted_check_invariants  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutmut (scripts/mutation) the quickest tests first: a mutant dies in the first test that notices it
    (-x), and only one the unit tests miss reaches the state machines."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from its mutants/ folder, where it keeps this
    if "MUTANT_UNDER_TEST" not in os.environ or not stats.exists():
        return
    duration = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: duration.get(item.nodeid, 0.0))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _test[0] = item.nodeid
    try:
        return (yield)
    finally:
        _test[0] = ""


def _shallow(run: StateMachineRun) -> str | None:
    """Why a passing run under ``ci`` is shallower than the profile promises, or None."""
    full = sum(n >= CI_STEPS for n in run.steps)
    if full < CI_EXAMPLES:
        return f"{full} examples of {CI_STEPS} steps (ci runs {CI_EXAMPLES})"
    return None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not RUNS:
        return
    tr = terminalreporter
    tr.section(f"hypothesis state machines (profile {PROFILE})")
    for run in RUNS:
        most = max(run.steps, default=0)
        full = sum(n == most for n in run.steps)
        tr.write_line(f"{run.machine}: {sum(run.steps)} rules executed in {len(run.steps)} examples ({full} of "
                      f"{most} steps), invariants checked after every step, {run.seconds:.1f} s"
                      f"{'' if run.passed else ' (stopped by a failure)'}  [{run.test}]")
    shallow = [(run, why) for run in RUNS if run.passed and (why := _shallow(run))] if PROFILE == "ci" else []
    for run, why in shallow:
        tr.write_line(f"{run.machine} ran {why} in {run.test}: state machines take their settings from the "
                      f"profile", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if PROFILE == "ci" and any(run.passed and _shallow(run) for run in RUNS) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def boot_running(**options: object) -> Machine:
    """A machine after boot (SYSTEM_RUNNING), like a test module loaded into a live kernel."""
    options.setdefault("mem", 8 * GiB)
    machine = Machine.boot(MachineSpec.build(**options))  # type: ignore[arg-type]
    machine.finish_boot()
    return machine


@pytest.fixture
def gb_machine() -> Machine:
    """x86-64, 8 GiB, GBPAGES, 8 CPUs, the default kernel (7.2)."""
    return boot_running()


@pytest.fixture
def nogb_machine() -> Machine:
    """x86-64, 8 GiB, nogbpages: the direct map above 2M is all 2M leaves."""
    return boot_running(gbpages=False)
