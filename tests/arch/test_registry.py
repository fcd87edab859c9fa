"""An architecture is one registry entry: a throwaway one, defined here alone, works in every command.

Nothing under src/ knows "toyarch": the schema, the command line, compare, the RFC side-by-side, meminfo and
ptdump all find it through ``rofolio.arch``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rofolio.arch import Arch, ArchOption, arch_names, register_arch, unregister_arch
from rofolio.arch.nodirectmap.kernel import NoDirectMapConfig, NoDirectMapKernel, boot
from rofolio.cli import main
from rofolio.events import EventLog
from rofolio.machine import Machine, MachineSpec
from rofolio.units import GiB


class ToyKernel(NoDirectMapKernel):
    """A direct map built once that can make nothing read-only, with its own fault report."""

    arch = "toyarch"

    def oops_text(self, addr: int, write: bool, present: bool, number: int, found: Any) -> str:
        return f"toy oops at {addr:#x} [#{number}]"


class Toy(Arch):
    name = "toyarch"
    summary = "a throwaway architecture registered by a test"
    options = (ArchOption("cpu_speed", 1, "how fast the toy CPU is", kind=int, minimum=1),
               ArchOption("shiny", False, "a toy flag", flags=(("--very-shiny", True),)))
    set_memory_ops = frozenset({"set_memory_ro"})
    ram_base = 4 * GiB
    rfc_machines = ({"shiny": True},)

    def label(self, spec: MachineSpec) -> str:
        return f"toyarch speed={spec.options['cpu_speed']}" + (" shiny" if spec.options["shiny"] else "")

    def boot(self, spec: MachineSpec, memory: Any, log: EventLog, image: Any = None, record: Any = None) -> ToyKernel:
        kernel = boot(NoDirectMapConfig(memory=memory, nr_cpus=spec.cpus), log)
        kernel.__class__ = ToyKernel
        return kernel  # type: ignore[return-value]

    def meminfo_lines(self, kernel: Any) -> list[str]:
        lo, hi = kernel.direct_map_bounds()
        return [f"ToyMap:        {(hi - lo) >> 10:8d} kB"]

    def ptdump_lines(self, kernel: Any, sections: tuple[str, ...] | None) -> list[str]:
        return ["---[ Toy Direct Map ]---"] + [f"{r.start:#x}-{r.end:#x} {r.level.leaf_name}"
                                                 for r in kernel.pt.runs(*kernel.direct_map_bounds())]


@pytest.fixture
def toy() -> Iterator[Arch]:
    entry = register_arch(Toy())
    yield entry
    unregister_arch("toyarch")
    assert "toyarch" not in arch_names()


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_registered_architecture_boots_through_the_machine(toy: Arch) -> None:
    m = Machine.boot(MachineSpec.build(arch="toyarch", mem="2G", cpu_speed=3))
    m.finish_boot()
    assert m.memory.ram[0].start == 4 * GiB  # its own default memory map
    assert m.meminfo_lines() == [f"ToyMap:        {2 * GiB >> 10:8d} kB"]
    assert m.spec.label() == "toyarch speed=3"
    assert m.kernel_store(m.va(4 * GiB)).ok


def test_run_takes_its_options_from_the_command_line(toy: Arch, tmp_path: Any) -> None:
    scenario = tmp_path / "any.toml"
    scenario.write_text('name = "any"\n[[steps]]\nop = "hugepage_init"\n[[steps]]\nop = "compact"\n')
    # its own flags (--very-shiny) exist when it is registered before the command first makes its options;
    # -o always works
    out = json.loads(cli("run", str(scenario), "--arch", "toyarch", "-o", "cpu_speed=7", "-o", "shiny=yes",
                         "--json"))
    assert out["machine"]["arch"] == "toyarch" and out["machine"]["label"] == "toyarch speed=7 shiny"
    assert out["machine"]["cpu_speed"] == 7 and out["machine"]["shiny"] is True
    assert out["meminfo"][0].startswith("ToyMap:")


def test_the_rfc_demo_shows_it_beside_the_built_in_machines(toy: Arch) -> None:
    rows = {r["machine"]: r for r in json.loads(cli("run", "--json"))["side_by_side"]}
    assert rows["toyarch speed=1 shiny"]["readonly"] is False  # the weak default: it stays writable
    assert "x86_64 GBPAGES" in rows


def test_compare_puts_it_on_an_axis(toy: Arch) -> None:
    out = json.loads(cli("compare", "rfc-demo", "--set", "arch=nodirectmap,toyarch", "--json"))
    assert [r["settings"]["arch"] for r in out["rows"]] == ["nodirectmap", "toyarch"]


def test_meminfo_ptdump_and_help_know_it(toy: Arch) -> None:
    assert cli("meminfo", "--arch", "toyarch", "--mem", "1G").startswith("ToyMap:")
    assert cli("ptdump", "--arch", "toyarch", "--mem", "1G").splitlines()[0] == "---[ Toy Direct Map ]---"
    assert "toyarch" in cli("run", "--help")


def test_its_options_are_checked_like_the_built_in_ones(toy: Arch) -> None:
    result = CliRunner().invoke(main, ["meminfo", "--arch", "toyarch", "-o", "cpu_speed=0"])
    assert result.exit_code == 2 and "cpu_speed must be at least 1" in result.output
    result = CliRunner().invoke(main, ["run", "--arch", "toyarch", "--nogbpages"])
    assert result.exit_code == 2 and "gbpages is not an option of toyarch machines" in result.output


def test_a_scenario_names_it_like_any_other(toy: Arch, tmp_path: Any) -> None:
    from rofolio.scenario.loader import parse
    from rofolio.scenario.runner import run_scenario

    scenario = parse('name = "toy"\n[machine]\narch = "toyarch"\nmem = "1G"\ncpu_speed = 2\n'
                     '[[steps]]\nop = "set_memory_ro"\npa = "4G"\npages = 1\nexpect = { ret = 0 }\n', "toy.toml")
    result = run_scenario(scenario)
    assert result.machine["label"] == "toyarch speed=2" and not result.failures


def test_a_schema1_riscv64_scenario_loads_as_riscv64_and_its_result_says_what_changed(tmp_path: Path) -> None:
    """Up to scenario schema 1 arch = "riscv64" was the weak default; a file from then runs on riscv64's own
    rules now (the huge zero folio becomes read-only where the file expected -EOPNOTSUPP), so its old
    expectation fails loudly and the result names the change and what to write instead."""
    from rofolio.scenario.runner import run_scenario

    path = tmp_path / "old.toml"
    path.write_text('name = "old"\nstart = "initcalls"\n[machine]\narch = "riscv64"\nmem = "8G"\n[mm]\n'
                    'persistent_huge_zero_folio = true\n[[steps]]\nop = "hugepage_init"\n'
                    'expect = { ret = "-EOPNOTSUPP" }\n')
    result = run_scenario(str(path))
    assert result.failures == ["step 1: ret is 0, expected -EOPNOTSUPP"]
    assert len(result.notes) == 1 and 'write arch = "nodirectmap" for the weak default' in result.notes[0]
    assert result.to_dict()["notes"] == result.notes
    assert not run_scenario("rfc-demo").notes
