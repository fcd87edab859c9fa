"""The rofolio command line.

Every command prints a readable result, or JSON with ``--json``.  A mistake in
the arguments prints one line saying what was wrong and how to fix it, and
exits with status 2; it never prints a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from rofolio.errors import RofolioError
from rofolio.machine import SUPPORTED_ARCHES, Machine, MachineSpec

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"rofolio: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RofolioError into one clear line and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RofolioError as err:
            _fail(str(err))

    return wrapper


def machine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options that describe the machine, shared by every command."""
    options = [
        click.option("--arch", type=click.Choice(SUPPORTED_ARCHES), default="x86_64", show_default=True,
                     help="Architecture to model."),
        click.option("--mem", default="16G", show_default=True,
                     help="RAM size (binary units: 512M, 8G, 64T); the e820 map is QEMU's for that size."),
        click.option("--nogbpages", is_flag=True, help="No 1G direct-map pages (nogbpages, or a CPU without pdpe1gb)."),
        click.option("--5level", "la57", is_flag=True, help="5-level paging (direct map at 0xff11000000000000)."),
        click.option("--debug-pagealloc", is_flag=True, help="DEBUG_PAGEALLOC: the direct map uses 4K pages only."),
        click.option("--kernel", default="6.18", show_default=True,
                     help="Kernel version whose behaviour to model: 6.1 (no collapse, RO keeps Dirty), "
                          "6.6+ (RO clears Dirty), 6.15+ (CPA collapse)."),
        click.option("--cpus", default=8, show_default=True, type=click.IntRange(1, 8192),
                     help="Online CPUs (flush IPIs go to the others)."),
        click.option("--kfence", is_flag=True, help="KFENCE enabled: its 2M pool is split to 4K at boot."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _spec(arch: str, mem: str, nogbpages: bool, la57: bool, debug_pagealloc: bool, kernel: str,
          cpus: int, kfence: bool) -> MachineSpec:
    spec = MachineSpec.parse(arch=arch, mem=mem, gbpages=not nogbpages, la57=la57,
                             debug_pagealloc=debug_pagealloc, kernel=kernel, cpus=cpus, kfence=kfence)
    from rofolio.kversion import KernelVersion

    KernelVersion.parse(kernel)
    return spec


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rofolio")
def main() -> None:
    """rofolio: what making a folio read-only in the kernel's direct map costs and catches.

    An executable model of the Linux direct map (x86-64 CPA), its splits,
    counters and TLB flushes, checked against the kernel's own rules.
    """


@main.command()
@machine_options
@click.option("--all", "all_sections", is_flag=True, help="Also print the high kernel mapping and vmalloc area.")
@click.option("--after-boot/--at-initcalls", default=True, show_default=True,
              help="Dump after mark_rodata_ro() (running), or at initcall time.")
@user_errors
def ptdump(as_json: bool, all_sections: bool, after_boot: bool, **machine: Any) -> None:
    """Print the direct map as /sys/kernel/debug/page_tables/kernel would."""
    m = Machine.boot(_spec(**machine))
    if after_boot:
        m.finish_boot()
    sections = () if all_sections else ("Low Kernel Mapping",)
    lines = m.ptdump_lines(sections)
    if as_json:
        click.echo(json.dumps({"machine": m.spec.describe(), "ptdump": lines}, indent=2))
    else:
        click.echo("\n".join(lines))


@main.command()
@machine_options
@click.option("--after-boot/--at-initcalls", default=True, show_default=True,
              help="Counters after mark_rodata_ro() (running), or at initcall time.")
@user_errors
def meminfo(as_json: bool, after_boot: bool, **machine: Any) -> None:
    """Print the DirectMap lines of /proc/meminfo and the direct_map_* lines of /proc/vmstat."""
    m = Machine.boot(_spec(**machine))
    if after_boot:
        m.finish_boot()
    c = m.counters
    if as_json:
        click.echo(json.dumps({"machine": m.spec.describe(), "meminfo_kb": c.meminfo_kb(),
                               "meminfo_lines": m.meminfo_lines(), "vmstat": c.vmstat(),
                               "pgtables": c.pgtables}, indent=2))
        return
    click.echo("\n".join(m.meminfo_lines()))
    for key, value in c.vmstat().items():
        click.echo(f"{key} {value}")


@main.command()
@machine_options
@user_errors
def run(as_json: bool, **machine: Any) -> None:
    """Run the RFC demo: make an order-9 folio read-only in the direct map and show what changed."""
    from rofolio.demo import run_demo

    result = run_demo(_spec(**machine))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_demo(result)


def _print_demo(result: Any) -> None:
    console = Console()
    spec = result.spec
    console.print(f"[bold]rofolio run[/bold]: make a 2M folio read-only in the {spec.arch} direct map "
                  "(the RFC's set_memory_ro() from thp_shrinker_init)")
    console.print(f"machine: {spec.arch}, {spec.mem >> 30}G (QEMU e820), "
                  f"{'GBPAGES' if spec.gbpages else 'no GBPAGES'}, {5 if spec.la57 else 4}-level paging, "
                  f"kernel {spec.kernel}, {spec.cpus} CPUs"
                  f"{', DEBUG_PAGEALLOC' if spec.debug_pagealloc else ''}")
    console.print(f"folio:   order 9 at pa {result.folio_pa:#x} (va {result.folio_va:#x}); "
                  f"leaf before: {result.leaf_before}, after: {result.leaf_after}")
    step = result.step
    console.print(f"set_memory_ro(va, 512) returned {step.to_dict()['ret']}")
    table = Table(title="What it cost")
    table.add_column("counter")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    b, a = step.before.summary(), step.after.summary()
    for key in ("DirectMap4k", "DirectMap2M", "DirectMap1G", "splits_1g", "splits_2m", "pgtables_allocated",
                "entries_written", "flushes_all", "flushes_pages", "ipis",
                "direct_map_level3_splits", "direct_map_level2_splits"):
        unit = " kB" if key.startswith("DirectMap") else ""
        change = a[key] - b[key]
        table.add_row(key, f"{b[key]}{unit}", f"{a[key]}{unit}", f"{change:+d}" if change else "")
    console.print(table)
    console.print("vmstat direct_map_* splits are counted only once the system is running "
                  "(split_page_count(): system_state == SYSTEM_RUNNING).")
    console.print("[bold]Direct map around the folio after boot (ptdump):[/bold]")
    for line in result.ptdump_after:
        console.print(line, highlight=False)
