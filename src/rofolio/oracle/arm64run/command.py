"""``rofolio oracle arm64-run``: the arm64 run-time experiments on a built 7.2 kernel and on the model.

Exit status (docs/errors.md): 0 every experiment agrees, 1 one or more disagree (after one summary line),
2 a bad request (an unknown experiment name, an experiment file that cannot run), 4 the environment failed
(no arm64 setup, a failed kernel or module build, a guest that did not boot or timed out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rofolio.errors import ChecksFailed, RofolioError
from rofolio.exitstatus import contract_console
from rofolio.oracle.arm64run.suite import RODATA, load_suite
from rofolio.oracle.options import TIMEOUT

if TYPE_CHECKING:
    from rofolio.oracle.arm64run.boots import RunResult
    from rofolio.oracle.arm64run.verdict import ExperimentResult

__all__ = ["arm64_run", "render", "render_experiment"]


def _say(text: str) -> None:
    click.echo(f"rofolio oracle: {text}", err=True)


def _mark(r: ExperimentResult | None) -> str:
    if r is None:
        return "[dim]-[/]"
    if r.model_only:
        return "[yellow]model only[/]"
    return "[green]agree[/]" if r.agree else "[bold red]DIFFER[/]"


def render_experiment(console: Console, r: ExperimentResult) -> None:
    e = r.experiment
    title = f"{e.name} (rodata={r.rodata}): " + ("model only" if r.model_only else
                                                 "agree" if r.agree else "DISAGREE")
    table = Table(title=escape(title), title_justify="left")
    for name in ("step", "check", "kernel", "model", ""):
        table.add_column(name, overflow="fold")
    for s in r.steps:
        table.add_row(str(s.index), f"[bold]{escape(s.label)}[/]", "", "", "")
        for c in s.checks:
            mark = "" if r.model_only else ("[green]agree[/]" if c.agree else "[bold red]DIFFER[/]")
            same = c.agree and c.kernel == c.model
            table.add_row("", escape(c.what), escape(c.kernel), "(same)" if same else escape(c.model), mark)
        for err in s.errors:
            table.add_row("", "[red]error[/]", escape(err), "", "[bold red]DIFFER[/]")
        if s.kernel_oops and not s.agree:
            table.add_row("", "kernel oops", escape("\n".join(s.kernel_oops)), escape("\n".join(s.model_oops)), "")
    console.print(table)
    for err in r.errors:
        console.print(f"  [red]error:[/] {escape(err)}")
    if r.model_only:
        console.print(f"  [yellow]model only:[/] {escape(' '.join(e.model_only.split()))}")


def render(console: Console, result: RunResult, verbose: bool) -> None:
    names = list(dict.fromkeys(r.experiment.name for r in result.results))
    cells = {(r.experiment.name, r.rodata): r for r in result.results}
    for r in result.results:
        if verbose or (not r.model_only and not r.agree):
            render_experiment(console, r)
    table = Table(title=f"rofolio oracle arm64-run: model vs kernel {result.kernel}, per rodata= value",
                  title_justify="left")
    table.add_column("experiment", no_wrap=True)
    for rodata in RODATA:
        table.add_column(rodata, no_wrap=True)
    table.add_column("what it shows", overflow="fold" if verbose else "ellipsis", no_wrap=not verbose,
                     max_width=None if verbose else max(20, console.width - 66))
    for name in names:
        e = next(r.experiment for r in result.results if r.experiment.name == name)
        table.add_row(escape(name), *(_mark(cells.get((name, rodata))) for rodata in RODATA),
                      escape(e.shows if verbose else e.shows.split(": ")[0].split(". ")[0]))
    console.print(table)
    for r in result.results:
        for line in r.disagreements():
            console.print(f"  [red]{escape(r.experiment.name)} rodata={r.rodata}:[/] {escape(line)}")
    for b in result.boots:
        facts = ", ".join(f"{k} {v}" for k, v in b.facts.items())
        checks = "; ".join(f"{c.what} kernel {c.kernel} model {c.model}" for c in b.checks)
        console.print(escape(f"boot rodata={b.rodata}: {b.uname}, {b.experiments} experiment(s), {b.wall_s} s; "
                             f"{facts}; {checks}{'' if b.agree else ' (DISAGREE)'}"))
        for err in b.errors:
            console.print(f"  [red]error:[/] {escape(err)}")
    reasons = {' '.join(r.experiment.model_only.split()) for r in result.results if r.model_only}
    for reason in sorted(reasons):
        midr = ", ".join(sorted({f"MIDR_EL1 {b.facts['midr']}, cpu_supports_bbml2_noabort() = "
                                 f"{b.facts.get('bbml2_noabort')}" for b in result.boots if 'midr' in b.facts}))
        console.print(escape(f"model only: {reason}" + (f" (this run's guest: {midr})" if midr else "")))
    console.print(f"arm64 at run time: {result.agreeing}/{len(result.compared)} experiment runs agree "
                  f"({len(set(r.experiment.name for r in result.compared))} experiments x rodata values), "
                  f"{len(result.results) - len(result.compared)} model-only row(s); {len(result.boots)} boot(s), "
                  f"{result.wall_s:.1f} s")


@click.command(name="arm64-run")
@click.option("--rodata", "rodatas", multiple=True, type=click.Choice(RODATA),
              help="rodata= of a boot, repeatable [default: on, noalias and off].")
@click.option("--experiment", "names", multiple=True, help="Run only this experiment (repeatable).")
@click.option("--rfc", is_flag=True, help="Boot the kernel with the RFC v2 series (built:7.2+rfc).")
@click.option("--timeout", default=300.0, show_default=True, type=TIMEOUT, help="Seconds before a boot is killed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (rofolio.oracle.arm64run/1).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each boot's serial console log in this directory.")
@click.option("--verbose", "-v", is_flag=True, help="Every check of every experiment.")
def arm64_run(rodatas: tuple[str, ...], names: tuple[str, ...], rfc: bool, timeout: float, as_json: bool,
              keep_log: Path | None, verbose: bool) -> None:
    """arm64 at run time: set_memory_ro/rw and set_direct_map_* on a built 7.2 kernel under QEMU, vs the model."""
    experiments = load_suite()
    if names:
        known = {e.name for e in experiments}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RofolioError(f"no arm64 experiment named {', '.join(unknown)}",
                               f"choose from: {', '.join(sorted(known))}")
        experiments = [e for e in experiments if e.name in names]
    from rofolio.oracle.arm64run.boots import run

    result = run(experiments, list(rodatas) or None, rfc=rfc, timeout=timeout, keep_log=keep_log,
                 progress=_say)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        render(contract_console(), result, verbose)
    if not result.agree:
        raise ChecksFailed(f"{len(result.compared) - result.agreeing} of {len(result.compared)} arm64 experiment "
                           f"run(s) disagree with the model" + ("" if all(b.agree for b in result.boots) else
                                                                " (and a boot check)"))
