"""The `rofolio oracle` command group, without booting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.oracle.cli import oracle_group, suite_sources


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("ROFOLIO_ORACLE_DIR", str(tmp_path))
    return tmp_path


def test_run_without_setup_exits_4_and_says_what_to_do(empty_cache: Path) -> None:
    result = CliRunner().invoke(oracle_group, ["run", "x86-split-costs"])
    assert result.exit_code == 4  # the environment: the oracle is not set up
    assert "the oracle is not set up" in result.output and "rofolio oracle setup" in result.output


def test_boot_without_setup_exits_4(empty_cache: Path) -> None:
    result = CliRunner().invoke(oracle_group, ["boot", "--mem", "8G"])
    assert result.exit_code == 4 and "not set up" in result.output


def test_run_needs_a_scenario() -> None:
    result = CliRunner().invoke(oracle_group, ["run"])
    assert result.exit_code == 2 and "give a scenario" in result.output


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(oracle_group, ["--help"])
    assert result.exit_code == 0
    for command in ("setup", "run", "boot"):
        assert command in result.output
    run_help = CliRunner().invoke(oracle_group, ["run", "--help"]).output
    for option in ("--cpu", "--mem", "--smp", "--json", "--keep-log", "--suite"):
        assert option in run_help


def test_every_oracle_option_has_help_text() -> None:
    import click

    from rofolio.oracle.cli import oracle_group

    for name in oracle_group.list_commands(click.Context(oracle_group)):
        command = oracle_group.get_command(click.Context(oracle_group), name)
        assert command is not None
        bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert bare == [], f"oracle {name}: options without help: {bare}"


def test_the_suite_ships_with_the_package() -> None:
    assert len(suite_sources()) >= 25


def test_the_side_by_side_table_shows_kernel_text_verbatim() -> None:
    from rich.console import Console

    from rofolio.oracle import session
    from rofolio.oracle.cli import render_experiment
    from tests.oracle.conftest import KVER, recorded, recorded_scenarios

    reports = session.recompare(recorded("experiments-8G.serial.log"), recorded("experiments-8G.steps.sh"),
                                recorded_scenarios(), KVER)
    rep = next(r for r in reports if r.name == "x86-22-write-not-present")
    console = Console(record=True, width=240)
    render_experiment(console, rep)
    text = console.export_text()
    assert "x86-22-write-not-present: agree" in text and f"kernel {KVER}" in text
    assert "Oops: 0002 [#N] PREEMPT SMP NOPTI" in text  # brackets are not taken for markup
    assert "4K 0x800ffffdfd3f8060" in text
