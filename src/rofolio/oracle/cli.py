"""``rofolio oracle``: set up, run scenarios on a real kernel under QEMU, check the boot.

Exit status (docs/errors.md): 0 when model and kernel agree, 1 on any
disagreement (after one summary line), 2 when the request is wrong (a scenario
the oracle must refuse, a bad option), 4 when the environment fails it (not set
up, a missing tool, a guest that did not boot).  ``oracle_group`` is a
``ContractGroup``, so it keeps that contract also when run on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rofolio.exitstatus import ChecksFailed, ContractGroup, contract_console
from rofolio.lazycli import deferred_options
from rofolio.oracle.options import TIMEOUT, check_cpu, check_guest_mem

if TYPE_CHECKING:
    from rich.console import Console

    from rofolio.oracle.bootcheck import BootReport
    from rofolio.oracle.compare import ExperimentReport
    from rofolio.oracle.session import Session

# Each command imports the oracle's modules (and rich) inside its function, so `rofolio --help` and
# `rofolio oracle --help` load none of them (tests/test_startup.py).

__all__ = [
    "boot", "boot_summary", "oracle_group", "render_boot", "render_boot_summary", "render_experiment", "render_summary",
    "run", "setup", "suite_sources",
]

DEFAULT_CPU = "max,-la57"
KERNEL_HELP = ("The guest kernel: debian:6.1 (the system suite's, the default), debian:MAJOR.MINOR from Debian "
               "unstable (e.g. debian:7.2), or built:7.2 / built:7.2+rfc (`rofolio kernel build`, without and "
               "with the RFC series); set it up with `rofolio oracle setup --kernel ...`.")


def _check_kernel(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from rofolio.oracle import setup as oracle_setup
    from rofolio.oracle.errors import OracleError

    try:
        return oracle_setup.check_kernel(value)
    except OracleError as err:
        raise click.BadParameter(f"{err.message}; {err.hint}") from err


def _kernel_options() -> list[Callable[[Any], Any]]:
    from rofolio.oracle.setup import DEFAULT_KERNEL

    return [click.option("--kernel", default=DEFAULT_KERNEL, show_default=True, help=KERNEL_HELP,
                         callback=_check_kernel)]


_kernel_option = deferred_options(_kernel_options)  # --kernel, its default from rofolio.oracle.setup


def _say(text: str) -> None:
    click.echo(f"rofolio oracle: {text}", err=True)


def suite_sources() -> list[str]:
    """The oracle suite shipped with rofolio: src/rofolio/oracle/suite/*.toml."""
    from importlib import resources

    folder = resources.files("rofolio.oracle") / "suite"
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".toml"))  # type: ignore[attr-defined]


def _expand(sources: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for source in sources:
        path = Path(source)
        out += sorted(str(p) for p in path.glob("*.toml")) if path.is_dir() else [source]
    return out


@click.group(name="oracle", cls=ContractGroup)
def oracle_group() -> None:
    """Run scenarios on a real Linux kernel under QEMU and compare it with the model, step by step."""


# Commands defined in their own modules, imported when used; the list in `rofolio oracle --help` shows the
# short help given here (tests/test_startup.py checks it against each command's own).
oracle_group.add_lazy_command(  # Debian's arm64 kernel's boot-time linear map against the model's
    "arm64-boot", "rofolio.oracle.arm64:arm64_boot",
    "arm64: Debian's arm64 kernel under qemu-system-aarch64; its boot-time linear map against the model's.")
oracle_group.add_lazy_command(  # Debian's riscv64 kernel's boot-time linear map against the model's
    "riscv64-boot", "rofolio.oracle.riscv64:riscv64_boot",
    "riscv64: Debian's riscv64 kernel under qemu-system-riscv64; its boot-time linear map against the model's.")
oracle_group.add_lazy_command(  # set_memory_ro/rw and set_direct_map_* on a built 7.2 arm64 kernel
    "arm64-run", "rofolio.oracle.arm64run.command:arm64_run",
    "arm64 at run time: set_memory_ro/rw and set_direct_map_* on a built 7.2 kernel under QEMU, vs the model.")
oracle_group.add_lazy_command(  # the RFC v2 series, unpatched and patched kernels beside the model
    "rfc", "rofolio.oracle.rfc:rfc_command",
    "The RFC v2 series on real kernels: boot the unpatched and the patched 7.2 kernel on each configuration "
    "(x86-64 with and without 1G pages, 1 and 4 CPUs; arm64 rodata=on and off) and print, beside the model's "
    "prediction for the same machine, what the series changed: the boot's direct map, the huge zero folio's "
    "leaf, a user read and write of it, the patch-5 refusals, and a kernel write to it.")


@oracle_group.command()
@click.option("--arch", "arches", multiple=True, type=click.Choice(["x86_64", "arm64", "riscv64"]),
              help="Which oracle to set up (repeatable); x86_64 by default.")
@_kernel_option
def setup(arches: tuple[str, ...], kernel: str) -> None:
    """Install QEMU, busybox and the kernel headers, unpack the kernel image, build the module (as root)."""
    from rofolio.oracle import setup as oracle_setup

    for arch in arches or ("x86_64",):
        if arch == "x86_64" and kernel.startswith("built:"):
            from rofolio.oracle.built import setup_built

            install = setup_built(log=_say, kernel=kernel)
            click.echo(f"x86_64: kernel {install.kver}; cache {install.root}")
        elif arch == "x86_64":
            install = oracle_setup.setup(log=_say, kernel=kernel)
            click.echo(f"x86_64: kernel {install.kver}; cache {install.root}")
        elif arch == "riscv64":
            from rofolio.oracle import riscv64

            rv = riscv64.setup(log=_say)
            click.echo(f"riscv64: kernel {rv.kver}; cache {riscv64.riscv64_dir()}")
        else:
            from rofolio.oracle import arm64

            arm = arm64.setup(log=_say)
            click.echo(f"arm64: kernel {arm.kver}; cache {arm64.arm64_dir()}")


@oracle_group.command()
@click.argument("scenarios", nargs=-1)
@click.option("--suite", is_flag=True, help="Also run the oracle suite (rofolio/oracle/suite/*.toml).")
@click.option("--cpu", default=DEFAULT_CPU, show_default=True, callback=check_cpu,
              help="QEMU -cpu (max,-la57,-pdpe1gb: no 1G pages).")
@click.option("--mem", default=None, callback=check_guest_mem, help="QEMU -m; default: the scenario's mem, else 8G.")
@click.option("--smp", default=1, show_default=True, type=click.IntRange(1, 64), help="QEMU -smp (the model's cpus).")
@click.option("--timeout", default=600.0, show_default=True, type=TIMEOUT, help="Seconds before a boot is killed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (rofolio.oracle/1).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each boot's serial log and /steps.sh in this directory.")
@click.option("--verbose", "-v", is_flag=True, help="Every check of every step, also for many scenarios.")
@_kernel_option
def run(scenarios: tuple[str, ...], suite: bool, cpu: str, mem: str | None, smp: int, timeout: float,
        as_json: bool, keep_log: Path | None, verbose: bool, kernel: str) -> None:
    """Run SCENARIOS (files, directories or built-in names) on the kernel and on the model, side by side."""
    from rofolio.oracle import session
    from rofolio.oracle import setup as oracle_setup

    sources = _expand(scenarios) + (suite_sources() if suite else [])
    if not sources:
        raise click.UsageError("give a scenario (a .toml file, a directory or a built-in name), or --suite")
    install = oracle_setup.load_install(kernel=kernel)
    result = session.run(sources, install, cpu=cpu, mem=mem, smp=smp, timeout=timeout, keep_log=keep_log,
                         progress=None if as_json else _say)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "kernel": install.kver}, indent=1))
    else:
        console = contract_console()
        detailed = verbose or len(result.reports) == 1
        for rep in result.reports:
            if detailed:
                render_experiment(console, rep)
        render_summary(console, result, install.kver)
    if result.agreeing != len(result.reports):
        raise ChecksFailed(f"{len(result.reports) - result.agreeing} of {len(result.reports)} experiment(s) "
                           "disagree with the kernel")


@oracle_group.command()
@click.option("--mem", "mems", multiple=True, callback=check_guest_mem,
              help="QEMU -m, repeatable: boot these sizes (with each --cpu and --smp) instead of the fixed machines.")
@click.option("--cpu", "cpus", multiple=True, callback=check_cpu,
              help="QEMU -cpu for --mem, repeatable [default: max,-la57 and max,-la57,-pdpe1gb].")
@click.option("--smp", "smps", multiple=True, type=click.IntRange(1, 64),
              help="QEMU -smp for --mem, repeatable [default: 1].")
@click.option("--machines", "drawn", default=4, show_default=True, type=click.IntRange(0, 64),
              help="Machines drawn afresh from the seed, beside the fixed (or --mem) ones.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
              help="The seed the drawn machines come from (printed; give it to replay a run).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1, 8),
              help="Guests booted side by side (one alone from 16G).")
@click.option("--timeout", default=180.0, show_default=True, type=TIMEOUT,
              help="Seconds before a guest is killed (it is then booted once more; a guest boots in 5 to 20 s).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (rofolio.oracle.boot/2).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each guest's serial log and its rebuilt host snapshot in this directory.")
@_kernel_option
def boot(mems: tuple[str, ...], cpus: tuple[str, ...], smps: tuple[int, ...], drawn: int, seed: int | None,
         jobs: int, timeout: float, as_json: bool, keep_log: Path | None, kernel: str) -> None:
    """Boot fidelity: the model's boot-time direct map against the kernel's, on fixed and freshly drawn machines.

    Each guest is checked with its boot record (meminfo, vmstat, the page-table walk: exactly), without it (the
    model placing the boot-time users itself: DirectMap1G and the 4K + 2M total exactly, every other difference
    named as a whole placement), and as `rofolio host --from` on the snapshot it printed.
    """
    import secrets

    from rofolio.oracle import bootmatrix, session
    from rofolio.oracle import setup as oracle_setup

    install = oracle_setup.load_install(kernel=kernel)
    if mems:  # each a size the model boots: check_guest_mem() read them with the command line
        machines = [bootmatrix.BootMachine(mem, cpu, smp) for mem in mems
                    for cpu in (cpus or (DEFAULT_CPU, DEFAULT_CPU + ",-pdpe1gb")) for smp in (smps or (1,))]
    else:
        machines = list(bootmatrix.FIXED)
    seed = secrets.randbelow(2**32) if seed is None else seed
    machines += bootmatrix.draw(seed, drawn)
    if drawn:
        _say(f"{drawn} machine(s) drawn from seed {seed} (replay with --seed {seed}): "
             + "; ".join(m.label() for m in machines if m.drawn))
    reports = session.boot_fidelity(install, machines, timeout=timeout, keep_log=keep_log,
                                    progress=None if as_json else _say, jobs=jobs)
    summary = boot_summary(reports)
    if as_json:
        click.echo(json.dumps({"schema": "rofolio.oracle.boot/2", "kernel": install.kver, "seed": seed,
                               "summary": summary, "boots": [r.to_dict() for r in reports]}, indent=1))
    else:
        console = contract_console()
        for rep in reports:
            render_boot(console, rep)
        render_boot_summary(console, reports, summary, install.kver, seed)
    if summary["failures"]:
        raise ChecksFailed("; ".join(summary["failures"]))


def boot_summary(reports: list[BootReport]) -> dict[str, object]:
    """Both figures over the machines, and what makes the run fail: with records, every check of every machine
    agrees; without them, DirectMap1G and the 4K + 2M total agree everywhere and every 4K/2M difference is named
    as a whole placement whose effects add up to it; rofolio host --from explains every guest's residual.  How
    often the split agrees is a figure, not a failure: where boot's earlier allocations left a 6.1 pack's pages
    is history the model does not have (docs/fidelity.md)."""
    n = len(reports)
    own = [r.own for r in reports if r.own is not None]
    host = [r.host for r in reports if r.host is not None]
    out: dict[str, object] = {
        "machines": n, "with_record_agree": sum(r.agree for r in reports),
        "without_record": {"checked": len(own), "agree_1g": sum(o.agree_1g for o in own),
                           "agree_total": sum(o.agree_total for o in own),
                           "agree_split": sum(o.agree_split for o in own),
                           "named_add_up": sum(o.explained for o in own)},
        "host_from_explained": sum(h.explained for h in host),
    }
    failures = []
    if out["with_record_agree"] != n:
        failures.append(f"{n - sum(r.agree for r in reports)} of {n} boot configuration(s) disagree with the "
                        "model booted with their record")
    if len(own) != n or not all(o.agree_1g and o.agree_total and o.explained for o in own):
        bad = n - sum(o.agree_1g and o.agree_total and o.explained for o in own)
        failures.append(f"{bad} of {n} machine(s) without their record disagree on DirectMap1G or the 4K + 2M "
                        "total, or leave a difference unnamed")
    if len(host) != n or not all(h.explained for h in host):
        failures.append(f"rofolio host --from explains {sum(h.explained for h in host)} of {n} guests' residual")
    out["failures"] = failures
    return out


# ------------------------------------------------------------------ output
def _mark(ok: bool) -> str:
    return "[green]agree[/]" if ok else "[bold red]DIFFER[/]"


def render_experiment(console: Console, rep: ExperimentReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    guest = rep.guest
    title = (f"{rep.name}: {'agree' if rep.agree else 'DISAGREE'}   kernel {rep.uname}, "
             f"-cpu {guest.get('cpu')} -m {guest.get('mem')} -smp {guest.get('smp')} (boot {guest.get('boot')})")
    table = Table(title=escape(title), title_justify="left", show_lines=False, expand=False)
    table.add_column("step", no_wrap=True)
    table.add_column("check")
    table.add_column(f"kernel {rep.uname}", overflow="fold")
    table.add_column("model", overflow="fold")
    table.add_column("")
    for step in rep.steps:
        table.add_row(str(step.index), f"[bold]{escape(step.label)}[/]", f"[dim]{escape(step.command)}[/]", "", "",
                      end_section=False)
        for check in step.checks:
            same = check.agree and check.kernel == check.model
            table.add_row("", escape(check.what), escape(check.kernel), "(same)" if same else escape(check.model),
                          _mark(check.agree))
        for err in step.errors:
            table.add_row("", "[red]error[/]", escape(err), "", _mark(False))
        if step.kernel_oops and not step.agree:
            table.add_row("", "kernel oops", escape(step.kernel_oops), escape(step.model_oops), "")
    console.print(table)
    for line in rep.errors:
        console.print(f"  [red]error:[/] {escape(line)}")
    if rep.expectations_count:
        for line in rep.model_expect_failures:
            console.print(f"  [red]model expect:[/] {escape(line)}")
        for line in rep.kernel_expect_failures:
            console.print(f"  [red]kernel expect:[/] {escape(line)}")
    for line in rep.notes():
        console.print(f"  [yellow]note:[/] {escape(line)}")
    delta = {k: v for k, v in (guest.get("insmod_delta") or {}).items() if v}
    console.print(escape(f"  baseline: loading dmoracle.ko moved {delta or 'nothing'} (not compared: the model "
                         "starts after it)"))


def render_summary(console: Console, result: Session, kver: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"rofolio oracle: model vs kernel {kver}", title_justify="left")
    table.add_column("experiment")
    table.add_column("boot", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("checks", justify="right")
    table.add_column("")
    for rep in result.reports:
        checks = [c for s in rep.steps for c in s.checks]
        table.add_row(escape(rep.name), str(rep.guest.get("boot", "")), str(len(rep.steps)),
                      f"{sum(c.agree for c in checks)}/{len(checks)}", _mark(rep.agree))
    console.print(table)
    for rep in result.reports:
        for line in rep.disagreements():
            console.print(f"  [red]{escape(rep.name)}:[/] {escape(line)}")
        for line in rep.notes():
            console.print(f"  [yellow]{escape(rep.name)}:[/] {escape(line)}")
    for info in result.boots:
        insmod = {k: v for k, v in info.get("insmod_delta", {}).items() if v}
        boot_ok = info.get("boot_agrees_with_model")
        console.print(escape(
            f"boot {info['boot']}: -m {info['mem']} -cpu {info['cpu']} -smp {info['smp']}, {len(info['experiments'])} "
            f"experiment(s), {info['wall_s']} s; boot-time direct map "
            f"{'as the model' if boot_ok else 'NOT as the model' if boot_ok is False else 'not checked'}; "
            f"insmod moved {insmod or 'nothing'}: {info.get('insmod_changes', '')}"))
    boots = len(result.boots)
    console.print(f"agreement: {result.agreeing}/{len(result.reports)} experiments agree; {boots} boot(s); "
                  f"{result.wall_s:.1f} s")


def render_boot(console: Console, rep: BootReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = (f"boot -m {rep.mem} -cpu {rep.cpu} -smp {rep.smp}{' (drawn)' if rep.drawn else ''}: "
             f"{'agree' if rep.agree else 'DISAGREE'}   kernel {rep.uname}, GB pages {'on' if rep.gbpages else 'off'}, "
             f"placed {rep.record or 'nothing'} ({rep.wall_s:.1f} s)")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("check")
    table.add_column("kernel", overflow="fold")
    table.add_column("model", overflow="fold")
    table.add_column("")
    for check in rep.checks:
        same = check.agree and check.kernel == check.model
        table.add_row(escape(check.what), escape(check.kernel), "(same)" if same else escape(check.model),
                      _mark(check.agree))
    own = rep.own
    if own is not None:
        kb = " ".join(f"{k}={v}" for k, v in own.model_kb.items())
        table.add_row("without the record: /proc/meminfo", escape(" ".join(f"{k}={v}" for k, v in
                                                                       own.kernel_kb.items())), escape(kb),
                      f"1G {_mark(own.agree_1g)} total {_mark(own.agree_total)} split {_mark(own.agree_split)}")
        for line in own.placed:
            table.add_row("  placed by the model", "", escape(line), "")
        for named in own.named:
            table.add_row("  named difference", escape(named.describe()), "", "")
        for line in own.unattributed:
            table.add_row("  [red]unnamed difference[/]", escape(line), "", _mark(False))
        if own.named or own.unattributed:
            table.add_row("  named differences add up", escape(str(own.difference)), escape(str(own.named_total)),
                          _mark(own.explained))
    if rep.host is not None:
        causes = "; ".join(rep.host.causes) or "none"
        table.add_row("rofolio host --from (snapshot)", escape(f"residual {rep.host.residual_kb}"),
                      escape(rep.host.error or f"causes: {causes}"), _mark(rep.host.explained))
    for note in rep.notes:
        table.add_row("[yellow]note[/]", escape(note), "", "")
    for err in rep.errors:
        table.add_row("[red]error[/]", escape(err), "", _mark(False))
    console.print(table)


def render_boot_summary(console: Console, reports: list[BootReport], summary: dict[str, object], kver: str,
                        seed: int) -> None:
    from rich.markup import escape

    n = len(reports)
    own = summary["without_record"]
    assert isinstance(own, dict)
    console.print(f"boot fidelity (kernel {kver}, {n} machines, seed {seed}):")
    console.print(f"  with boot records: {summary['with_record_agree']}/{n} machines agree exactly "
                  "(meminfo, vmstat, the walk)")
    console.print(f"  without: DirectMap1G {own['agree_1g']}/{n}, 4K+2M total {own['agree_total']}/{n}, "
                  f"4K/2M split {own['agree_split']}/{n}; named differences add up on {own['named_add_up']}/{n}")
    console.print(f"  rofolio host --from on each guest's snapshot: {summary['host_from_explained']}/{n} explained")
    for line in summary["failures"]:  # type: ignore[attr-defined]
        console.print(f"  [red]{escape(line)}[/]")


if __name__ == "__main__":
    oracle_group()
