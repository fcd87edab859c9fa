"""Start-up is a feature (docs/architecture.md): each command imports only what it uses.

Pinned by what a fresh interpreter has in ``sys.modules``, never by a clock (benchmarks/startup.py times
it): ``import rofolio.units`` loads layer 1 only; ``rofolio --help`` and ``rofolio oracle --help`` load no
model, no scenario schema (pydantic), no arch package, no plots (matplotlib, numpy) and no rich;
``rofolio run --help`` reads the architecture registry for its options and loads nothing else of the model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

import rofolio
from rofolio.cli import main
from rofolio.oracle.cli import oracle_group

HEAVY = ("pydantic", "matplotlib", "numpy", "rich", "sortedcontainers")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def after_command(*args: str) -> set[str]:
    """The modules loaded by ``rofolio ARGS`` (the click main, as the entry point runs it); it must exit 0."""
    return loaded_after(f"from rofolio.cli import main\ntry:\n    main({list(args)!r})\n"
                        "except SystemExit as e:\n    assert e.code == 0, e.code")


def ours(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "rofolio" or m.startswith("rofolio.")}


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_import_rofolio_units_loads_layer_1_only() -> None:
    modules = loaded_after("import rofolio.units")
    assert ours(modules) == {"rofolio", "rofolio.errors", "rofolio.units"}
    assert heavy(modules) == set()


CLI = {"rofolio", "rofolio.cli", "rofolio.errors", "rofolio.exitstatus", "rofolio.lazycli", "rofolio.units"}


@pytest.mark.parametrize(("args", "modules"), [(("--help",), CLI),
                                               (("oracle", "--help"), CLI | {"rofolio.oracle", "rofolio.oracle.cli",
                                                                                 "rofolio.oracle.options"})])
def test_help_loads_no_model_no_schema_and_no_rich(args: tuple[str, ...], modules: set[str]) -> None:
    loaded = after_command(*args)
    assert heavy(loaded) == set()
    assert ours(loaded) == modules


def test_run_help_reads_the_arch_registry_and_nothing_else_of_the_model() -> None:
    modules = after_command("run", "--help")
    assert heavy(modules) == set()
    # the registry and each architecture's entry: not the kernels, the event log or the page table
    assert {m for m in modules if m.startswith("rofolio.arch.")} <= {
        f"rofolio.arch.{name}{part}" for name in ("x86_64", "arm64", "riscv64", "nodirectmap")
        for part in ("", ".entry")}
    assert ours(modules) - {m for m in modules if m.startswith("rofolio.arch")} == CLI | {"rofolio.kversion",
                                                                                       "rofolio.physmem"}


def test_every_exported_name_is_there_on_first_use() -> None:
    namespace: dict[str, object] = {}
    exec("from rofolio import *", namespace)
    for name in rofolio.__all__:
        assert getattr(rofolio, name) is namespace[name]
        assert getattr(rofolio, name).__name__ == name
        assert name in dir(rofolio)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rofolio.nothing  # noqa: B018


def test_rofolio_compare_stays_the_function_when_its_module_is_imported_first() -> None:
    loaded_after("import rofolio.compare\nimport rofolio\nfrom rofolio.compare import CompareResult\n"
                 "assert rofolio.compare.__name__ == 'compare' and callable(rofolio.compare)\n"
                 "assert rofolio.CompareResult is CompareResult")


@pytest.mark.parametrize("group", [main, oracle_group], ids=["rofolio", "oracle"])
def test_the_command_list_shows_each_lazy_command_by_its_own_short_help(group: click.Group) -> None:
    ctx = click.Context(group, info_name=group.name)
    listed = {name: cmd.get_short_help_str(1000) for name, cmd in group.commands.items()}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)  # imports the module of a lazy one
        assert command is not None and command.name == name
        assert listed[name] == command.get_short_help_str(1000), name
        assert group.get_command(ctx, name) is command
