"""The rofolio command line.

Every command prints a readable result, or JSON with ``--json``.  How each
command ends (exit status 0 ok, 1 an expectation failed, 2 bad input, 3 an
internal error, 4 the environment failed, 130 interrupted) and what it prints
on stderr is one contract, applied by ``ContractGroup`` in rofolio.exitstatus
and described in docs/errors.md: commands raise, they do not exit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from rofolio.errors import ConfigError, RofolioError, ScenarioError, ScenarioErrors
from rofolio.exitstatus import EPILOG, ContractGroup, ExitStatus, contract_console, expectations_failed, hint_lines
from rofolio.lazycli import deferred_options
from rofolio.units import parse_size

if TYPE_CHECKING:
    from rich.console import Console

    from rofolio.machine import Machine, MachineSpec

# Each command imports what it uses inside its function, and options made from a registry are
# deferred_options: `rofolio --help` loads neither the model nor pydantic nor rich (start-up is a feature;
# tests/test_startup.py checks it).

EXIT_FAILED = ExitStatus.FAILED  # the old names of two of the statuses
EXIT_USAGE = ExitStatus.USAGE
DEFAULT_SCENARIO = "rfc-demo"


class ArchType(click.ParamType):
    """--arch: a name of the architecture registry, read when the option is used (so later entries count)."""

    name = "arch"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        from rofolio.arch import arch_names

        return "[" + "|".join(arch_names()) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from rofolio.arch import arch_entry

        try:
            arch_entry(str(value))
        except RofolioError as err:
            self.fail(f"{err.message} ({err.hint})" if err.hint else err.message, param, ctx)
        return str(value)


_COMMON_OPTIONS = ("arch", "mem", "kernel", "cpus", "debug_pagealloc", "kfence")


_REPEATED = "rofolio.repeated"  # ctx.meta: a machine option's values, in order, when it was given more than once


class _Repeatable(click.Option):
    """A machine option as click parses it (given twice, the last value), keeping every occurrence in the
    context, so that one given twice with different values is refused as two that contradict (_settings())."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        default = kwargs.get("default")
        kwargs["default"] = None if default is None else (default,)
        super().__init__(*args, multiple=True, **kwargs)

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        values = super().process_value(ctx, value)
        if len(values) > 1:
            ctx.meta.setdefault(_REPEATED, {})[self.name] = values
        return values[-1] if values else None


def machine_options(defaults: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options that describe the machine, the architectures' own ones read from the registry.

    Without defaults they override a scenario's [machine]; ``-o KEY=VALUE``
    sets any architecture option, the registered flags (``--nogbpages``,
    ``--5level``, ...) are shorthands for some.  They are made from the
    registry when the command is first used (its help, its parsing).
    """

    def d(value: Any) -> Any:
        return value if defaults else None

    def options() -> list[Callable[[Any], Any]]:
        from rofolio.arch import all_options

        def repeatable(*decls: str, **kwargs: Any) -> Callable[[Any], Any]:
            return click.option(*decls, cls=_Repeatable, **kwargs)

        options = [
            repeatable("--arch", type=ArchType(), default=d("x86_64"), show_default=defaults,
                       help="Architecture to model (the names of the architecture registry)."),
            repeatable("--mem", default=d("16G"), show_default=defaults,
                       help="RAM size (binary units: 512M, 8G, 64T); the memory map is the architecture's "
                            "default for that size (QEMU's e820 on x86_64)."),
            repeatable("--kernel", default=d("7.2"), show_default=defaults,
                       help="Kernel version to model: MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192, 6.12.57; "
                            "MAJOR.MINOR is the newest stable of the line the model knows (6.1 is 6.1.192). "
                            "Stable backports count: see docs/fidelity.md, Kernel versions."),
            repeatable("--cpus", default=d(8), show_default=defaults, type=click.IntRange(1, 8192),
                       help="Online CPUs (flush IPIs go to the others)."),
            repeatable("--debug-pagealloc", is_flag=True, default=None,
                       help="DEBUG_PAGEALLOC: the direct map uses 4K pages only."),
            repeatable("--kfence", is_flag=True, default=None, help="KFENCE: its pool is split to 4K at boot."),
        ]
        for key, (option, arches) in all_options().items():
            where = "/".join(arches)
            flag = "--" + key.replace("_", "-")
            if option.kind is bool:
                options.append(repeatable(f"{flag}/--no-{key.replace('_', '-')}", f"opt__{key}", default=None,
                                          help=f"{where}: {option.help}."))
            else:
                kind: Any = click.Choice([str(c) for c in option.choices]) if option.choices else \
                    (click.INT if option.kind is int else click.STRING)
                options.append(repeatable(flag, f"opt__{key}", type=kind, default=None,
                                          help=f"{where}: {option.help}.{_values_said(key, arches)}"))
            for name, value in option.flags:
                options.append(repeatable(name, _flag_param(key, name), is_flag=True, default=None,
                                          help=f"{where}: {key} = {value}."))
        options.append(click.option("-o", "--option", "opt_pairs", multiple=True, metavar="KEY=VALUE",
                                    help="Any option of the architecture, e.g. -o gbpages=false."))
        return options

    return deferred_options(options)


def _values_by_arch(key: str, arches: list[str]) -> dict[str, tuple[Any, ...]]:
    """The values each of ``arches`` takes for its option ``key`` (an option two architectures share may differ:
    rodata)."""
    from rofolio.arch import arch_entry

    return {arch: option.choices for arch in arches if (option := arch_entry(arch).option(key)) is not None}


def _values_said(key: str, arches: list[str]) -> str:
    """`` arm64 takes on|off|noalias|full, riscv64 on|off.`` when the architectures differ; else nothing."""
    values = _values_by_arch(key, arches)
    if len({tuple(map(str, v)) for v in values.values()}) < 2:
        return ""
    said = [f"{arch} {'|'.join(map(str, v))}" for arch, v in values.items()]
    return f"  {said[0].replace(' ', ' takes ', 1)}, {', '.join(said[1:])}."


def _flag_param(key: str, flag: str) -> str:
    """The parameter an architecture's flag sets: an identifier, as click wants (``--very-shiny`` of the
    option ``shiny``: ``flag__shiny__very_shiny``)."""
    return f"flag__{key}__{flag.lstrip('-').replace('-', '_')}"


def _flag_named(param: str, key: str, flags: tuple[tuple[str, Any], ...]) -> str:
    """The flag (``--very-shiny``) whose parameter is ``param``."""
    return next(flag for flag, _ in flags if _flag_param(key, flag) == param)


class _Setting(NamedTuple):
    """One [machine] key set on the command line, by one option as it was typed."""

    key: str
    param: str  # the click parameter (opt__gbpages; -o KEY for a pair): the same one again, the last wins
    option: str  # --mem, --no-gbpages, --nogbpages, -o gbpages
    value: Any  # as typed; a flag's: the value it stands for

    @property
    def shown(self) -> str:
        """The option with its value: ``--mem 8G``, ``--nogbpages``, ``-o gbpages=false``."""
        if self.param.startswith("-o "):
            return f"{self.option}={self.value}"
        if isinstance(self.value, bool) or self.param.startswith("flag__"):
            return self.option
        return f"{self.option} {self.value}"


def _settings(given: dict[str, Any]) -> list[_Setting]:
    """Every machine option on the command line, in the order the help lists them, then the -o pairs."""
    from rofolio.arch import all_options

    ctx = click.get_current_context(silent=True)
    repeated = ctx.meta.get(_REPEATED, {}) if ctx is not None else {}
    out: list[_Setting] = []
    for name, last in given.items():
        for value in repeated.get(name, (last,)):
            if value is None or (value is False and name.startswith("flag__")):
                continue
            if name in _COMMON_OPTIONS or name.startswith("opt__"):
                key = name.removeprefix("opt__")
                negated = value is False and name.startswith("opt__")
                out.append(_Setting(key, name, f"--{'no-' if negated else ''}{key.replace('_', '-')}", value))
            elif name.startswith("flag__"):
                key = name.split("__")[1]
                flags = all_options()[key][0].flags
                flag = _flag_named(name, key, flags)
                out.append(_Setting(key, name, flag, dict(flags)[flag]))
    for pair in given.get("opt_pairs") or ():
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise _command_line_error("-o", f"{pair!r} is not KEY=VALUE", "write e.g. -o gbpages=false")
        out.append(_Setting(key, f"-o {key}", f"-o {key}", value.strip()))
    return out


def _machine_overrides(given: dict[str, Any], arch: str = "x86_64") -> dict[str, Any]:
    """The machine keys the user gave on the command line, typed: common ones and the architecture's options.

    An architecture's option is checked against the values of the machine's architecture: --arch, else ``arch``
    (a scenario's own).  Two options that set one key to different values (``--gbpages --nogbpages``,
    ``--paging 4 --5level``, ``--gbpages -o gbpages=false``, ``--mem 8G --mem 4G``) are a mistake, not a choice
    of the last; the same value twice (``--mem 8G --mem 8192M``) is one setting."""
    from rofolio.arch import all_options, arch_entry

    known = all_options()
    arch = given.get("arch") or arch
    chosen: dict[str, list[tuple[_Setting, Any]]] = {}
    for setting in _settings(given):
        key, value = setting.key, setting.value
        if setting.param.startswith("-o ") and key not in known:
            raise _unknown_pair(key, value, arch, known)
        option = (_values_by_arch(key, [arch]) and arch_entry(arch).option(key)) or known.get(key, (None,))[0]
        try:
            if key == "mem":
                value = parse_size(value)
            elif key == "kernel":
                from rofolio.kversion import KernelVersion

                value = str(KernelVersion.parse(value))
            elif option is not None and not setting.param.startswith("flag__"):
                value = option.convert(value)
        except RofolioError as err:  # said like the values the model refuses later: the option first
            values = _values_by_arch(key, known[key][1]) if key in known else {}
            if option is None or not option.choices:
                raise _command_line_error(setting.option, err.message, err.hint) from None
            raise _command_line_error(setting.option, f"{err.message} ({arch})", "; ".join(
                f"{a} takes {', '.join(map(str, v))}" for a, v in sorted(values.items(), key=lambda i: i[0] != arch)
            )) from None
        chosen.setdefault(key, []).append((setting, value))
    out: dict[str, Any] = {}
    for key, settings in chosen.items():
        (first, value), *others = settings
        for other, other_value in others:
            if other_value != value:
                raise _command_line_error(
                    "", f"{first.shown} and {other.shown} contradict each other ({key} = {_shown(value, key)} "
                        f"against {key} = {_shown(other_value, key)})", "give only one of them")
        out[key] = value
    return out


def _unknown_pair(key: str, value: str, arch: str, known: dict[str, Any]) -> ScenarioError:
    """-o KEY=VALUE for a key no architecture has: a common [machine] key has its own option; else what each
    architecture takes (the machine's first)."""
    if key in _COMMON_OPTIONS:
        flag = f"--{key.replace('_', '-')}"
        hint = f"write {flag} {value} instead of -o {key}={value}"
        if key in ("debug_pagealloc", "kfence"):  # on/off flags that can only turn it on
            hint = (f"write {flag} instead of -o {key}={value}" if value.lower() in ("true", "1", "yes", "on")
                    else f"{flag} only turns it on; without it the machine keeps its own {key} (off by default)")
        return _command_line_error(f"-o {key}", f"{key} is not an architecture option: it has its own, {flag}",
                                   hint)
    if key == "memory_map":
        return _command_line_error(f"-o {key}", "memory_map has no command-line option",
                                   "write it in a scenario's [machine] table (rofolio scenarios --show NAME)")
    takes: dict[str, list[str]] = {}
    for option, (_, arches) in known.items():
        for name in arches:
            takes.setdefault(name, []).append(option)
    order = sorted(takes, key=lambda name: (name != arch, name))  # the machine's own first, then by name
    return _command_line_error(f"-o {key}", "no architecture has this option",
                               "; ".join(f"{name} takes: {', '.join(takes[name])}" for name in order))


def _shown(value: Any, key: str = "") -> str:
    """A machine value as a scenario writes it: true, 4, 'bss', '8G'."""
    if key == "mem":
        from rofolio.units import format_size

        return repr(format_size(value))
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else str(value)


def _command_line_error(option: str, message: str, hint: str = "") -> ScenarioError:
    """A mistake on the command line, said as every other one is: ``command line: OPTION: message``, its hint,
    then where the options are explained (``see 'rofolio run --help'``) when the hint leaves a line for it."""
    ctx = click.get_current_context(silent=True)
    see = f"see '{ctx.command_path} --help'" if ctx is not None and len(hint_lines(hint)) < 2 else ""
    return ScenarioError(message, "; ".join(part for part in (hint, see) if part), file="command line", key=option)


def _named(option: str, look_up: Callable[[], object]) -> None:
    """Look up a name the command line gave, before any work: an unknown one is a mistake of ``option``."""
    try:
        look_up()
    except ConfigError as err:
        raise _command_line_error(option, err.message, err.hint) from None


def _spec(**given: Any) -> MachineSpec:
    """The machine of a command that boots one itself (lifetime, tlb): the one ``_machine`` boots."""
    return _machine(**given).spec


def _machine(**given: Any) -> Machine:
    """The machine of a command that boots one directly (ptdump, meminfo), booted.  Every value is the command
    line's or a default, so what the model refuses is ``command line: OPTION: ...`` for the option it is due to."""
    from rofolio.machine import Machine, MachineSpec

    overrides = _machine_overrides(given)
    typed = _typed_options(given)

    def boot(values: dict[str, Any]) -> Machine:
        values = dict(values)
        return Machine.boot(MachineSpec.build(arch=values.pop("arch", "x86_64"), **values))

    def fails(dropped: set[str], message: str) -> bool:
        """Does the same refusal happen without the dropped options (another one does not count)?"""
        try:
            boot({k: v for k, v in overrides.items() if k not in dropped})
        except ConfigError as other:
            return other.message == message
        return False

    try:
        return boot(overrides)
    except ConfigError as err:
        message = err.message
        keys = _blame(list(typed), lambda dropped: fails(dropped, message)) or list(typed)
        hint = err.hint
        if "is not an option" in err.message:
            hint = (f"drop it, or give an --arch that has it ({err.hint})" if "arch" in typed
                    else f"add --arch for it, or drop it ({err.hint})")
        raise _command_line_error(", ".join(typed[k] for k in keys), err.message, hint) from None


def _blame(keys: list[str], fails: Callable[[set[str]], bool]) -> list[str] | None:
    """The machine keys of the command line a failure is due to: those without which it does not happen, the
    architecture only when no other is (the others' values are checked against it); all of them when it takes
    several together (the architecture again last); None when it happens without any of them (the scenario's own
    [machine])."""
    if fails(set(keys)):
        return None
    cures = [k for k in keys if not fails({k})] or keys
    return [k for k in cures if k != "arch"] or cures


def _blamed(err: ScenarioErrors, loaded: Any, overrides: dict[str, Any], typed: dict[str, str]) -> ScenarioErrors:
    """The problems of a run on the machine the command line describes, each one a value of the command line
    caused said as ``command line: --kernel: ...`` (``typed`` names each [machine] or [mm] key's option); one
    the scenario has on its own keeps FILE:LINE.  Which option caused it is found by running the scenario
    without each (only when it failed)."""
    from rofolio.compare import with_settings
    from rofolio.scenario.runner import run_scenario

    seen: dict[frozenset[str], set[tuple[str, int | None, str, str]] | None] = {}

    def problems_without(dropped: frozenset[str]) -> set[tuple[str, int | None, str, str]] | None:
        """Where the run fails without the dropped options; None when they cannot be dropped alone."""
        if dropped not in seen:
            kept = {k: v for k, v in overrides.items() if k not in dropped}
            try:
                run_scenario(with_settings(loaded, kept))
                seen[dropped] = set()
            except ScenarioErrors as other:
                masked = all(e.file == "command line" for e in other.errors)
                seen[dropped] = None if masked else {(e.file, e.line, e.key, e.message) for e in other.errors}
            except RofolioError:
                seen[dropped] = None
        return seen[dropped]

    out = []
    for e in err.errors:
        where = (e.file, e.line, e.key, e.message)  # the same problem, not another at the same place

        def fails(dropped: set[str], where: tuple[str, int | None, str, str] = where) -> bool:
            problems = problems_without(frozenset(dropped))
            return problems is None or where in problems

        keys = None if e.file == "command line" else _blame(list(overrides), fails)
        if keys is None:
            out.append(e)
            continue
        options = ", ".join(typed[k] for k in keys)
        said = e.message if e.key.split(".")[0] == "machine" else f"{e.message} ({e.location}: {e.key})"
        out.append(_command_line_error(options, said, e.hint.replace(" in [machine]", f" with {options}")))
    return ScenarioErrors(out)


@click.group(cls=ContractGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="rofolio")
def main() -> None:
    """rofolio: what making a folio read-only in the kernel's direct map costs and catches.

    An executable model of the Linux direct map (x86-64 CPA, the arm64 and
    riscv64 linear maps, and the hook's weak default on architectures that
    cannot change direct-map permissions), its splits, counters and TLB
    flushes, run from scenario files and checked against real kernels under
    QEMU (`rofolio oracle`).  Start with `rofolio run` (the RFC demo) and
    `rofolio scenarios`.
    """


@main.command()
@click.argument("source", required=False, default=DEFAULT_SCENARIO)
@machine_options(defaults=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema rofolio.scenario/2).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a self-contained HTML report with plots to this file.")
@click.option("--host", "on_host", is_flag=True,
              help="Run the steps on the model of this machine (see `rofolio host`) instead of [machine].")
@click.option("--host-from", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Like --host, for the machine of a snapshot saved by `rofolio host --save DIR`.")
@click.option("--ptdump", "with_ptdump", is_flag=True,
              help="Also print the direct map's page-table dump before against after the steps (a diff; "
                   "JSON: ptdump.before and ptdump.after).")
def run(source: str, as_json: bool, report: Path | None, on_host: bool, host_from: Path | None,
        with_ptdump: bool, **machine: Any) -> None:
    """Run a scenario: a built-in NAME (see `rofolio scenarios`), a .toml FILE, or - to read it from standard input.

    A built-in's name is the built-in even where a file of that name is here;
    write ./NAME for the file.

    Machine options given here override the scenario's [machine] table.  Two
    options that set one key to different values (--gbpages --nogbpages,
    --paging 4 --5level, --gbpages -o gbpages=false) are an error.
    """
    from rofolio.progress import LazyProgress
    from rofolio.report import html_report
    from rofolio.scenario.loader import load
    from rofolio.scenario.runner import run_scenario

    loaded = load(source)
    overrides = _machine_overrides(machine, loaded.scenario.machine.arch)
    if on_host and host_from is not None:
        raise _command_line_error("", f"--host and --host-from {host_from} contradict each other: --host models "
                                      "this machine, --host-from a snapshot", "give only one of them")
    if (on_host or host_from is not None) and overrides:
        given = " ".join(setting.shown for setting in _settings(machine))
        flag, where = ("--host", "this one") if on_host else ("--host-from", "the snapshot")
        raise _command_line_error("", f"{flag} and {given} contradict each other: {flag} takes the machine from "
                                      f"{where}", f"drop the machine options, or {flag}")
    side = None
    with _report_target(report) as write_report:  # a report that cannot be written fails before the run
        if on_host or host_from is not None:
            from rofolio.host import read_host, spec_of_host

            spec, record, _ = spec_of_host(read_host(host_from))
            with LazyProgress(f"running {loaded.name} on this machine's model") as bar:
                result = run_scenario(loaded, progress=bar, on=(spec, record), ptdump=with_ptdump)
        else:
            with LazyProgress(f"running {loaded.name}") as bar:
                if overrides:
                    scenario = _with_options(loaded, overrides, machine)
                    try:
                        result = run_scenario(scenario, progress=bar, ptdump=with_ptdump)
                    except ScenarioErrors as err:
                        raise _blamed(err, loaded, overrides, _typed_options(machine)) from None
                    _say_dropped(loaded, scenario)
                elif source == DEFAULT_SCENARIO:
                    from rofolio.compare import compare_configs, rfc_machines

                    # the first of the RFC machines is the scenario's own: its row is the run itself
                    side = compare_configs(loaded, rfc_machines(), progress=bar, ptdump=with_ptdump)
                    result = side.rows[0].result
                else:
                    result = run_scenario(loaded, progress=bar, ptdump=with_ptdump)
        if write_report is not None:
            with LazyProgress(f"rendering {report}") as bar:
                write_report(html_report(result, progress=bar))
    if as_json:
        data = result.to_dict()
        if side is not None:
            data["side_by_side"] = [_rfc_row(row.result) for row in side.rows]
        click.echo(json.dumps(data, indent=2))
    else:
        from rofolio.report import print_result

        print_result(result, _console())
        if with_ptdump:
            _print_ptdump_diff(result)
        if side is not None:
            _print_side_by_side(side)
        elif source == DEFAULT_SCENARIO and overrides:
            click.echo(f"note: the RFC step on each machine side by side comes with the demo's own machine; with "
                       f"{' '.join(dict.fromkeys(s.shown for s in _settings(machine)))} it ran on this one machine "
                       f"(rofolio compare {DEFAULT_SCENARIO} --set KEY=V1,V2 compares machines)")
        _said_written(report)
    if result.failures:
        raise expectations_failed(len(result.failures), 1, 1)


@contextmanager
def _report_target(path: Path | None) -> Iterator[Callable[[str], None] | None]:
    """--report FILE: opened before the work starts, so a path that cannot be written fails at once (an
    OSError naming FILE: exit 4), not after the run; a file it created is removed if the command fails."""
    if path is None:
        yield None
        return
    if str(path) in ("", "."):  # click's Path type lets an empty string through, as "."
        raise click.BadParameter("an empty path is not a file", param_hint="'--report'")
    existed = path.exists()
    with path.open("a"):  # creates it, or checks that it can be written
        pass
    done = False

    def write(text: str) -> None:
        nonlocal done
        try:
            path.write_text(text)
        except OSError as err:  # a full disk fails the write, which names no file: name the report, not stdout
            raise OSError(err.errno, err.strerror, str(path)) from err
        done = True

    try:
        yield write
    finally:
        if not done and not existed:
            path.unlink(missing_ok=True)


def _print_ptdump_diff(result: Any) -> None:
    from rofolio.report import ptdump_diff, terminal_text

    out = contract_console(soft_wrap=True)
    out.print("\n[bold]the direct map before and after the steps[/bold] (ptdump, unified diff)")
    for line in ptdump_diff(result):
        style = "red" if line.startswith("-") else "green" if line.startswith("+") else ""
        out.print(f"[{style}]{terminal_text(line)}[/{style}]" if style else terminal_text(line), highlight=False)


def _said_written(report: Path | None) -> None:
    """The last line of a command's text output when it wrote a --report."""
    if report is not None:
        from rofolio.tables import printable

        click.echo(f"report written to {printable(str(report))}")


def _with_options(loaded: Any, overrides: dict[str, Any], given: dict[str, Any]) -> Any:
    """The scenario on the machine the command line describes; a refused option is named as it was typed
    (``--nogbpages``, ``-o gbpages``), not as the [machine] key it sets."""
    try:
        changed = loaded.with_machine(**overrides)
    except ScenarioErrors as err:
        typed = _typed_options(given)
        raise ScenarioErrors([_command_line_error(typed.get(e.key.removeprefix("machine."), e.key), e.message, e.hint)
                              for e in err.errors]) from None
    return changed


def _say_dropped(loaded: Any, changed: Any) -> None:
    """A warning, once the run went ahead, for the scenario's options another --arch does not take."""
    dropped = sorted(set(loaded.scenario.machine.model_fields_set) - set(changed.scenario.machine.model_fields_set)
                     - {"mem", "memory_map"})
    if dropped:
        said = ", ".join(f"{k} = {_shown(getattr(loaded.scenario.machine, k))}" for k in dropped)
        click.echo(f"rofolio: warning: --arch {changed.scenario.machine.arch} drops the scenario's {said} "
                   f"(options of {loaded.scenario.machine.arch} only)", err=True)


def _typed_options(given: dict[str, Any]) -> dict[str, str]:
    """[machine] key -> the option that set it on this command line (not a default the command fills in)."""
    ctx = click.get_current_context(silent=True)
    return {s.key: s.option for s in _settings(given)
            if ctx is None or ctx.get_parameter_source(s.param if s.param in ctx.params else "opt_pairs")
            is not click.core.ParameterSource.DEFAULT}


def _console() -> Console:
    """Where tables go: a terminal's width, or COLUMNS where it is set; 200 columns into a file or a pipe,
    so that a table kept for later is not squeezed.  Prose is not broken into lines (soft wrap): the
    terminal wraps it, and a line stays one line for grep.  A closed stdout ends it with status 141, like
    every command (exitstatus.contract_console)."""
    out = contract_console(soft_wrap=True)
    if out.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return out
    return contract_console(width=200, soft_wrap=True)


def _rfc_row(result: Any) -> dict[str, Any]:
    """The RFC step (the first) of one machine: did the folio end read-only, and what did it cost."""
    step = result.steps[0]
    from rofolio.stats import cost_figures

    d = step.delta
    return {"machine": result.machine["label"], "ret": step.to_dict()["ret"],
            "readonly": step.leaf_after.endswith("RO"), "leaf_after": step.leaf_after,
            **cost_figures(d), "DirectMap1G_kB": d.get("DirectMap1G", 0), "DirectMap2M_kB": d.get("DirectMap2M", 0)}


def _print_side_by_side(side: Any) -> None:
    from rofolio.report import print_table, terminal_text
    from rofolio.tables import num_text

    headers = ["machine", "readonly", "leaf_after", "splits", "pgtables", "entries_written", "flushes",
               "global_flushes", "ipis", "DirectMap1G"]
    rows = []
    for row in side.rows:
        r = _rfc_row(row.result)
        rows.append([terminal_text(r["machine"]), "yes" if r["readonly"] else "no (best effort: stays RW)",
                     r["leaf_after"], *(str(r[k]) for k in headers[3:9]),
                     num_text(r["DirectMap1G_kB"], "DirectMap1G")])
    print_table(_console(), headers, rows, title="the RFC step on each machine the thread discussed", left=3)


@main.command(name="compare")
@click.argument("source")
@click.option("--set", "sets", multiple=True, metavar="KEY=V1,V2",
              help="A [machine] option and the values to try; repeat for a matrix.  A key given again adds its "
                   "values: --set kernel=6.1 --set kernel=6.18 is --set kernel=6.1,6.18.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.compare/1).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a self-contained HTML page of the result to this file.")
def compare_cmd(source: str, sets: tuple[str, ...], as_json: bool, report: Path | None) -> None:
    """Run a scenario under a matrix of configurations and print one table."""
    from rofolio.compare import VariantFailed, compare, parse_settings
    from rofolio.progress import LazyProgress
    from rofolio.report import compare_html, print_compare

    if not sets:
        raise RofolioError("nothing to compare", "give at least one --set KEY=V1,V2")
    settings = parse_settings(list(sets))
    with _report_target(report) as write_report:
        with LazyProgress(f"comparing {source}") as bar:
            try:
                result = compare(source, settings, progress=bar)
            except VariantFailed as err:  # say which --set values the refusal is due to, as run does for options
                typed = {k: f"--set {k}={v}" for k, v in err.config.items() if k in err.overrides}
                raise _blamed(err, err.base, err.overrides, typed) from None
        if write_report is not None:
            write_report(compare_html(result))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_compare(result, _console())
        _said_written(report)
    if any(r.failures for r in result.rows):
        raise expectations_failed(sum(len(r.failures) for r in result.rows),
                                  sum(bool(r.failures) for r in result.rows), len(result.rows))


def _model_option() -> list[Callable[[Any], Any]]:
    """lifetime --model: the names and aliases of the lifetime-model registry."""
    from rofolio.mm.policy import lifetime_model_inputs, lifetime_models

    return [click.option("--model", "models", multiple=True, type=click.Choice(lifetime_model_inputs()),
                         help="Lifetime model(s) to run, by name or alias; all of 1, 2 and broken by default.  "
                         + "; ".join(f"{m.name}: {m.summary}" for m in lifetime_models()) + ".")]


@main.command()
@deferred_options(_model_option)
@machine_options(defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.lifetime/1).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a self-contained HTML page of the result to this file.")
def lifetime(models: tuple[str, ...], as_json: bool, report: Path | None, **machine: Any) -> None:
    """Run the standard lifetime workload under lifetime models 1, 2 and the broken one, side by side.

    Per model and phase: contract violations, faults (oopses), splits, flushes,
    page-table pages and how the DirectMap counters moved.  The "persistent"
    phase boots with CONFIG_PERSISTENT_HUGE_ZERO_FOLIO, two nodes, 1G of
    ZONE_MOVABLE and init_on_free; the "non-persistent" phase frees and
    reallocates the lazy huge zero folio.
    """
    from rofolio.lifetime import run_lifetime_workload
    from rofolio.mm.policy import lifetime_model
    from rofolio.progress import LazyProgress

    spec = _spec(**machine)
    names = [lifetime_model(m).name for m in (models or ("model1", "model2", "broken"))]  # "none" changes nothing
    results = []
    with _report_target(report) as write_report:
        with LazyProgress("lifetime workload") as bar:
            for i, name in enumerate(names, start=1):
                try:
                    results.append(run_lifetime_workload(spec, name))
                except ConfigError as err:  # the workload's own [mm] on a machine too small for it
                    raise _command_line_error("--mem", err.message, err.hint) from None
                bar(i, len(names))
        if write_report is not None:
            from rofolio.report import lifetime_html

            write_report(lifetime_html(results, spec.describe()))
    if as_json:
        click.echo(json.dumps({"schema": "rofolio.lifetime/1", "machine": spec.describe(),
                               "models": [r.to_dict() for r in results]}, indent=2))
        return
    from rofolio.report import lifetime_rows, print_table, terminal_text

    headers, rows = lifetime_rows(results)
    console = _console()
    print_table(console, headers, [[terminal_text(c) for c in row] for row in rows], left=2, keys=2,
                title="lifetime workload: what each model costs and where it breaks")
    console.print("DirectMap*: how the lines moved in the phase (direct_map_delta)", highlight=False)
    _said_written(report)


def _bug_configs() -> Any:
    from rofolio.bugs import CONFIGS

    return CONFIGS


_OUTCOME_STYLE = {"caught": "bold green", "silent corruption": "bold red", "not reachable": "dim"}


@main.command()
@click.option("--bug", "names", multiple=True, metavar="NAME",
              help="Only this bug (id or scenario name; repeatable).  All bugs by default.")
@click.option("--explain", "explain_name", metavar="NAME",
              help="Replay one bug step by step on one configuration (see --config) and say why.")
@deferred_options(lambda: [click.option(
    "--config", "config_key", type=click.Choice([c.key for c in _bug_configs()]),
    help="The configuration --explain replays (default: none).")])
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.bugs/1).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a self-contained HTML page of the result to this file.")
def bugs(names: tuple[str, ...], explain_name: str | None, config_key: str | None, as_json: bool,
         report: Path | None) -> None:
    """Replay real bugs under each protection: caught, silent corruption, or not reachable.

    Each bug (Dirty COW, Huge Dirty COW, Dirty Pipe, a DMA write without
    FOLL_WRITE, a zero-page pin overflow, a write through a vmap alias) is a
    built-in scenario that takes a shared page the way the real bug did and
    writes it.  Every configuration replays the vulnerable kernel's GUP rules
    on top of its protection; "today" replays today's rules.
    """
    from rofolio import bugs as bug_library
    from rofolio.progress import LazyProgress

    if names and explain_name:
        raise _command_line_error(
            "", f"--bug {names[0]} and --explain {explain_name} contradict each other: --explain replays one bug, "
                "--bug picks the rows of the matrix",
            "drop --bug to replay the --explain bug, or --explain for the matrix")
    if config_key and not explain_name:
        raise _command_line_error("--config", "--config picks the configuration of --explain",
                                  "add --explain BUG, or drop --config")
    for option, name in [*(("--bug", n) for n in names), *([("--explain", explain_name)] if explain_name else [])]:
        _named(option, lambda name=name: bug_library.load_bug(name))
    if explain_name:
        config = bug_library.config_named(config_key or "none")
        with _report_target(report) as write_report:
            scenario, verdict = bug_library.explain(explain_name, config)
            if write_report is not None:
                from rofolio.report import html_report

                write_report(html_report(verdict.result))
        if as_json:
            click.echo(json.dumps({"schema": "rofolio.bugs.explain/1", "bug": scenario.bug.model_dump(),
                                   "configuration": {"key": config.key, "name": config.name},
                                   "verdict": verdict.to_dict(), "result": verdict.result.to_dict()}, indent=2))
            return
        from rofolio.report import print_result, terminal_text

        console = _console()
        bug = scenario.bug
        assert bug is not None
        console.print(f"[bold]{terminal_text(bug.title)}[/bold]" + (f" ({bug.cve})" if bug.cve else "")
                      + f" on: {terminal_text(config.name)}")
        for label, text in (("taker", bug.taker), ("writer", bug.writer), ("affected", bug.affected),
                            ("fix", bug.fix), ("reproducer", bug.reproducer), ("notes", bug.notes)):
            if text:
                console.print(f"  {label + ':':<12}{terminal_text(text)}", highlight=False)
        print_result(verdict.result, console)
        style = _OUTCOME_STYLE[verdict.outcome]
        console.print(f"verdict: [{style}]{verdict.outcome}[/{style}]: {terminal_text(verdict.detail)}",
                      highlight=False)
        _said_written(report)
        return
    with _report_target(report) as write_report:
        with LazyProgress("bug matrix") as bar:
            matrix = bug_library.bug_matrix(list(dict.fromkeys(names)) or None, progress=bar)
        if write_report is not None:
            from rofolio.report import bugs_html

            write_report(bugs_html(matrix))
    if as_json:
        click.echo(json.dumps(matrix.to_dict(), indent=2))
        return
    from rofolio.report import BUG_LEGEND, bug_rows, print_table, terminal_text

    headers, rows = bug_rows(matrix)
    style = {"caught": _OUTCOME_STYLE["caught"], "SILENT": _OUTCOME_STYLE["silent corruption"],
             "-": _OUTCOME_STYLE["not reachable"]}
    console = _console()
    print_table(console, headers, [[terminal_text(row[0]), *(f"[{style[c]}]{c}[/{style[c]}]" for c in row[1:])]
                                   for row in rows], title="bug library: would the protection have caught it?")
    console.print(BUG_LEGEND, highlight=False)
    for config in matrix.configs:
        console.print(f"  {config.key:<8}{config.name}", highlight=False)
    console.print("rofolio bugs --explain BUG --config KEY replays one cell step by step.", highlight=False)
    _said_written(report)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of the built-ins; docs/json.md).")
@click.option("--show", "show", metavar="NAME", help="Print a built-in's TOML, to copy and change.")
def scenarios(as_json: bool, show: str | None) -> None:
    """List the built-in scenarios, or print one (--show NAME) as a template."""
    from rofolio.scenario.loader import builtin_names, builtin_text, parse

    if show is not None:
        if show not in builtin_names():
            raise _command_line_error("--show", f"no built-in scenario named {show!r}",
                                      "built-ins: " + ", ".join(builtin_names()))
        text = builtin_text(show)
        click.echo(json.dumps({"name": show, "toml": text}, indent=2) if as_json else text, nl=False)
        return
    items = []
    for name in builtin_names():
        s = parse(builtin_text(name), f"builtin:{name}")
        items.append({"name": name, "description": s.description, "steps": len(s.steps)})
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    width = max(len(i["name"]) for i in items)
    for item in items:
        click.echo(f"{item['name']:<{width}}  {item['description']}")


@main.command()
@click.argument("names", nargs=-1, metavar="[OP]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.ops/1).")
def ops(names: tuple[str, ...], as_json: bool) -> None:
    """Every scenario step (op), its keys, their types, defaults and units (from the scenario schema)."""
    from rofolio.scenario.reference import SCHEMA, op_reference

    common, entries = op_reference()
    known = sorted(n for e in entries for n in e.ops)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _command_line_error("OP", f"no op named {', '.join(map(repr, unknown))}", "ops: " + ", ".join(known))
    if names:
        entries = [e for e in entries if set(e.ops) & set(names)]
    if as_json:
        click.echo(json.dumps({"schema": SCHEMA, "every_step": [k.to_dict() for k in common],
                               "ops": [e.to_dict() for e in entries]}, indent=2))
        return
    from rofolio.report import ops_text

    click.echo("\n".join(ops_text(common, entries)))


@main.command()
@machine_options(defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.ptdump/1).")
@click.option("--all", "all_sections", is_flag=True, help="Also print the high kernel mapping and vmalloc area.")
@click.option("--after-boot/--at-initcalls", default=True, show_default=True,
              help="Dump after mark_rodata_ro() (running), or at initcall time.")
def ptdump(as_json: bool, all_sections: bool, after_boot: bool, **machine: Any) -> None:
    """Print the direct map as /sys/kernel/debug/page_tables/kernel would."""
    m = _machine(**machine)
    if after_boot:
        m.finish_boot()
    lines = m.ptdump_lines(() if all_sections else None)
    if as_json:
        click.echo(json.dumps({"schema": "rofolio.ptdump/1", "machine": m.spec.describe(), "ptdump": lines,
                               "warnings": m.kernel_warnings()}, indent=2))
    else:
        click.echo("\n".join(lines))
        _echo_warnings(m.kernel_warnings())


def _echo_warnings(warnings: list[str]) -> None:
    """What the kernel warned while booting the machine (RAM it cannot use, ...), after the output."""
    for warning in warnings:
        click.echo(f"kernel warning: {warning.splitlines()[0]}")


@main.command()
@machine_options(defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.meminfo/1).")
@click.option("--after-boot/--at-initcalls", default=True, show_default=True,
              help="Counters after mark_rodata_ro() (running), or at initcall time.")
def meminfo(as_json: bool, after_boot: bool, **machine: Any) -> None:
    """Print the DirectMap lines of /proc/meminfo and the direct_map_* lines of /proc/vmstat."""
    m = _machine(**machine)
    if after_boot:
        m.finish_boot()
    c = m.counters
    if as_json:
        click.echo(json.dumps({"schema": "rofolio.meminfo/1", "machine": m.spec.describe(),
                               # arch_report_meminfo() and the direct_map vmstat lines are x86's: null elsewhere
                               "meminfo_kb": c.meminfo_kb() if m.meminfo_lines() else None,
                               "meminfo_lines": m.meminfo_lines(),
                               "vmstat": m.vmstat_lines() if m.meminfo_lines() else None,
                               "mapped_kB": m.direct_map_mapped_kb(), "pgtables": c.pgtables,
                               "boot_placements": [p.describe() for p in m.boot_placements],
                               "warnings": m.kernel_warnings()}, indent=2))
        return
    lines = m.meminfo_lines()
    if not lines:
        click.echo(m.spec.entry.meminfo_absent())
        _echo_warnings(m.kernel_warnings())
        return
    from rofolio.report import directmap_overcount

    click.echo("\n".join(lines))
    for key, value in m.vmstat_lines().items():
        click.echo(f"{key} {value}")
    click.echo(directmap_overcount(c.meminfo_kb(), m.direct_map_mapped_kb()))
    for placement in m.boot_placements:  # the boot-time users, and who placed them (no record: the model)
        click.echo(f"boot-time user: {placement.describe()}")
    _echo_warnings(m.kernel_warnings())


@main.command()
@click.option("--candidate", "ids", multiple=True, metavar="ID",
              help="Only this candidate (repeatable); all of the catalogue by default.")
@click.option("--mem", default="16G", show_default=True, help="RAM of every machine of the side-by-side.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.survey/2).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML page with the verdicts, the table and a plot.")
def survey(ids: tuple[str, ...], mem: str, as_json: bool, report: Path | None) -> None:
    """Make the case: which kernel objects want a read-only direct map, and what it costs on each machine.

    For every candidate of the catalogue (its allocation, count, lifetime facts
    and precedents, each cited from Linux 7.2 or measured): its lifetime class
    (fits model 2, needs model 1, or neither), and what making the typical
    count read-only costs on every machine of the RFC side-by-side, computed by
    the model from a workload built from the catalogue's allocation fields.
    """

    from rofolio.progress import LazyProgress
    from rofolio.survey.study import check_candidates, run_survey

    _named("--candidate", lambda: check_candidates(ids))
    with _report_target(report) as write_report:
        with LazyProgress("survey") as bar:
            result = run_survey(parse_size(mem), ids=list(ids) or None, progress=bar)
        if write_report is not None:
            from rofolio.report import survey_html

            write_report(survey_html(result))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rofolio.report import print_table, terminal_text

    console = _console()
    rows = []
    for row in result.rows:
        costs = {k.machine: k for k in row.costs}
        cells = []
        for machine in result.machines:
            k = costs.get(machine)
            cells.append("-" if k is None else
                         (f"{k.total['ipis']} / {k.total['splits']}" if k.readonly else f"RW ({k.ret})"))
        rows.append([terminal_text(row.candidate.id), row.candidate.lifetime_class, *cells])
    print_table(console, ["candidate", "lifetime_class", *map(terminal_text, result.machines)], rows, left=2,
                title="candidates for a read-only direct map: class, and ipis / splits for the typical count")
    for row in result.rows:
        console.print(f"- {terminal_text(row.verdict)}", highlight=False)
    console.print("\nshortlist: the candidates to make read-only first (those lifetime model 2 takes as they are, "
                  "then those that need model 1; each class by its worst-machine cost):", highlight=False)
    for line in result.shortlist_lines():
        console.print(terminal_text(line), highlight=False)
    _said_written(report)


@main.command(name="tlb")
@machine_options(defaults=True)
@click.option("--preset", "preset_names", multiple=True, metavar="NAME",
              help="A CPU's TLBs (repeatable; default: every preset for the machine's architecture; "
                   "see rofolio.tlbreach presets).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.tlbreach/1).")
def tlb(preset_names: tuple[str, ...], as_json: bool, **machine: Any) -> None:
    """TLB entries the huge zero folio's 1 GiB of direct map and the whole direct map take, before and after
    the RFC makes the folio read-only, per CPU preset (capacities with their sources)."""
    from rofolio.tlbreach import presets as tlb_presets
    from rofolio.tlbreach import tlb_reach_report, tlb_table

    unknown = sorted(set(preset_names) - set(tlb_presets()))
    if unknown:
        raise _command_line_error("--preset", f"no TLB preset named {', '.join(map(repr, unknown))}",
                                  "presets: " + ", ".join(sorted(tlb_presets())))
    result = tlb_reach_report(_spec(**machine), list(preset_names) or None)
    for caveat in result["caveats"]:  # a core that could not run this machine: shown, but not silently
        click.echo(f"rofolio: warning: {caveat}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rofolio.report import print_table, terminal_text

    console = _console()
    console.print(terminal_text(result["label"]), highlight=False)
    header, *rows = tlb_table(result)
    print_table(console, header, [[terminal_text(c) for c in row] for row in rows], left=2, keys=2)
    _echo_warnings(result["warnings"])


@main.command()
@click.option("--from", "from_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model the machine of a snapshot (a directory written by --save) instead of this one.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also save the files read (a snapshot for --from) into this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.host/1).")
def host(from_dir: Path | None, save_dir: Path | None, as_json: bool) -> None:
    """The model of the machine rofolio runs on, beside its live /proc/meminfo and /proc/vmstat.

    Reads the firmware memory map, the kernel log's RAMDISK line, the command
    line, the config, the CPU flags and the version; boots the model of that
    machine; prints the model's DirectMap lines beside the live ones, the live
    ones as they were at boot (vmstat's splits and collapses since
    SYSTEM_RUNNING undone), and the difference named as whole placements.
    """

    from rofolio.host import host_report, read_host, save_host
    from rofolio.report import terminal_text

    if save_dir is not None and save_dir.is_dir() and any(save_dir.iterdir()):
        raise _command_line_error("--save", f"{terminal_text(str(save_dir))} is not empty",
                                  "give a new or empty directory: a file left in it would be read back as this "
                                  "machine's")
    snapshot = read_host(from_dir)
    if save_dir is not None:
        save_host(snapshot, save_dir)
    report, model = host_report(snapshot)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console = _console()
        console.print(f"[bold]{terminal_text(report.source)}[/bold]: {terminal_text(report.machine['label'])}, "
                      f"kernel {terminal_text(str(report.machine['kernel']))}", highlight=False)
        for line in report.decided:
            console.print(f"  {terminal_text(line)}", highlight=False)
        from rofolio.report import directmap_overcount, print_table

        print_table(console, ["line", "live_kb", "at_boot_kb", "model_kb", "residual_kb"],
                    [[key, str(report.live.get(key, 0)), str(report.at_boot[key]), str(report.model[key]),
                      f"{report.residual[key]:+d}"] for key in ("DirectMap4k", "DirectMap2M", "DirectMap1G")],
                    title="DirectMap: " + ("the live machine now" if report.source == "live" else
                                           "the machine when saved") + " and at boot, the model at boot")

        console.print(f"the model at boot: {directmap_overcount(report.model, model.direct_map_mapped_kb())}",
                      highlight=False)
        console.print("vmstat since SYSTEM_RUNNING: " + ", ".join(f"{k} {v}" for k, v in report.vmstat.items()),
                      highlight=False)
        if not report.causes:
            console.print("the model agrees with the machine's boot", highlight=False)
        for cause in report.causes:
            console.print(f"residual: {terminal_text(cause.describe())}", highlight=False)
        if report.causes and report.alias_changers:
            console.print("  users of set_memory_*() on vmalloc pages this machine has now (vmallocinfo): "
                          + ", ".join(f"{n} x {terminal_text(w)}" for w, n in report.alias_changers.items()),
                          highlight=False)
        if save_dir is not None:
            console.print(f"snapshot saved to {terminal_text(str(save_dir))}", highlight=False)
    if not report.explained:
        from rofolio.errors import ChecksFailed

        raise ChecksFailed("the residual is not made of whole placements: the model does not explain this boot")


# ``rofolio oracle ...``: the same scenarios on a real kernel under QEMU (rofolio.oracle.cli, imported when used;
# the list in `rofolio --help` shows this short help, tests/test_startup.py checks it against the group's own)
main.add_lazy_command("oracle", "rofolio.oracle.cli:oracle_group",
                      "Run scenarios on a real Linux kernel under QEMU and compare it with the model, step by step.")


def _register_kernel() -> None:
    """``rofolio kernel build``: Linux 7.2 from linux-source-7.2 for QEMU, with or without the RFC series
    (rofolio.kernelbuild; docs/kernel-build.md)."""

    def arch_option() -> list[Callable[[Any], Any]]:
        from rofolio.kernelbuild.kbuild import TARGETS

        return [click.option("--arch", required=True, type=click.Choice(list(TARGETS)),
                             help="The architecture to build for.")]

    @main.group(name="kernel", cls=ContractGroup)
    def kernel_group() -> None:
        """Linux kernels built from source for the oracle (Debian's linux-source-7.2, tinyconfig + a fragment)."""

    @kernel_group.command(name="build")
    @deferred_options(arch_option)
    @click.option("--rfc", is_flag=True, help="Apply the RFC v2 series (package data) first.")
    @click.option("--config", "fragment", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  metavar="FRAGMENT", help="A Kconfig fragment merged after rofolio's (part of the cache key).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (schema rofolio.kernelbuild/1).")
    @click.option("--force", is_flag=True, help="Build again from an empty output directory.")
    def kernel_build(arch: str, rfc: bool, fragment: Path | None, as_json: bool, force: bool) -> None:
        """Build Linux 7.2 (tinyconfig + rofolio's fragment), or find it built; progress on stderr."""
        from rofolio.kernelbuild import build

        built = build(arch, rfc=rfc, fragment=fragment, force=force,
                      log=lambda line: click.echo(f"rofolio kernel: {line}", err=True))
        if as_json:
            click.echo(json.dumps(built.to_dict(), indent=1))
            return
        when = f"{'cached: ' if built.cached else ''}built in {built.build_seconds:.0f} s on {built.built_at}"
        click.echo(f"Linux {built.release} for {built.arch} ({built.parts['source']}, tinyconfig + fragment"
                   f"{f', {len(built.patches)} RFC patches' if built.patches else ''})")
        click.echo(f"  image   {built.image} ({built.image_bytes / 2**20:.1f} MiB)")
        click.echo(f"  config  {built.config}")
        click.echo(f"  module  make -C {built.out} {' '.join(built.make_vars)} M=DIR modules")
        click.echo(f"  {when}")


_register_kernel()
