"""Reports: readable tables (rich), JSON, and one self-contained HTML page with plots.

Reports only read results; they never reach back into a machine (docs/architecture.md, "Data flows one way").
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rofolio.tables import STEP_COLUMNS, html_tables
from rofolio.tables import num_text as _num
from rofolio.tables import ret_text as _ret
from rofolio.tables import table_html as _table_html
from rofolio.tables import used_columns as _used_columns
from rofolio.units import approx_size

if TYPE_CHECKING:
    from rofolio.compare import CompareResult
    from rofolio.scenario.reference import KeyReference, OpReference
    from rofolio.scenario.runner import ScenarioResult
    from rofolio.survey.study import SurveyResult

__all__ = ["directmap_overcount", "html_report", "html_tables", "ops_text", "print_compare", "print_result",
           "step_summary"]


def step_summary(delta: dict[str, int]) -> str:
    """One line of what a step changed: splits, page tables, flushes, IPIs, DirectMap."""
    parts = []
    splits = [f"{title} {delta[k]:+d}" for k, title in (("splits_1g", "1G→2M"), ("splits_2m", "2M→4K"),
                                                        ("collapses_2m", "4K→2M"), ("collapses_1g", "2M→1G"))
              if delta.get(k)]
    if splits:
        parts.append("splits " + ", ".join(splits))
    if delta.get("pgtables_allocated") or delta.get("pgtables_freed"):
        parts.append(f"page tables +{delta.get('pgtables_allocated', 0)}/-{delta.get('pgtables_freed', 0)}")
    if delta.get("entries_written"):
        parts.append(f"entries written {delta['entries_written']}")
    flushes = [f"{delta[k]} {title}" for k, title in (("flushes_all", "global"), ("flushes_pages", "per-page"),
                                                      ("flushes_range", "ranged"), ("flushes_local", "local"))
               if delta.get(k)]
    if flushes:
        parts.append("flushes " + ", ".join(flushes))
    if delta.get("ipis"):
        parts.append(f"IPIs {delta['ipis']}")
    dm = [f"{k[9:]} {delta[k]:+d}" for k in ("DirectMap4k", "DirectMap2M", "DirectMap1G") if delta.get(k)]
    if dm:
        parts.append("DirectMap " + " ".join(dm) + " kB")
    vm_keys = sorted(k for k in delta if k.startswith("direct_map_level") and delta[k])
    parts += [f"vmstat {k} {delta[k]:+d}" for k in vm_keys]
    known = {k for k, _ in STEP_COLUMNS} | {"flushes", "flushed_pages", "collapses_1g", "pgtables_freed",
                                           "flushes_local"} | set(vm_keys)
    parts += [f"{k} {v:+d}" for k, v in sorted(delta.items()) if k not in known and v]
    return " · ".join(parts) if parts else "no change"


_LEAVES = (("DirectMap4k", "4k"), ("DirectMap2M", "2M"), ("DirectMap1G", "1G"))


def directmap_overcount(counted_kb: dict[str, int], mapped_kb: dict[str, int]) -> str:
    """In words: what the DirectMap lines count against what the page tables map (both in kB).

    The lines are the kernel's running count (direct_pages_count[]), not a measure of the page tables: boot
    counts again every leaf init_mem_mapping() revisits, and splits of the kernel image's high mapping are
    counted as direct-map splits (docs/fidelity.md, finding 5).  Wherever the lines are printed, this says so.
    """
    counted, mapped = sum(counted_kb.values()), sum(mapped_kb.values())
    levels = ", ".join(f"{short} {counted_kb.get(key, 0)}/{mapped_kb.get(key, 0)}" for key, short in _LEAVES)
    head = (f"DirectMap lines count {counted} kB ({approx_size(counted << 10)}); the page tables map {mapped} kB "
            f"({approx_size(mapped << 10)}) (counted/mapped: {levels} kB)")
    if counted_kb == mapped_kb:
        return head + ": the count is what is mapped"
    why = []
    if counted > mapped:
        why.append(f"{counted - mapped} kB more in all, as boot counts again each leaf init_mem_mapping() revisits")
    elif counted < mapped:
        why.append(f"{mapped - counted} kB less in all")
    high = counted_kb.get("DirectMap4k", 0) - mapped_kb.get("DirectMap4k", 0)
    if high > 0:
        why.append(f"{high} kB of 4k are splits of the kernel image's high mapping, which the kernel counts as "
                   "direct-map splits")
    return f"{head}: {'; '.join(why) or 'the same total, split differently'} (docs/fidelity.md, finding 5)"


def _meminfo_kb(counters: dict[str, int]) -> dict[str, int]:
    return {key: counters.get(key, 0) for key, _ in _LEAVES}


def print_result(result: ScenarioResult, console: Console | None = None) -> None:
    console = console or Console(soft_wrap=True)
    out = console.print
    out(f"[bold]{escape(result.name)}[/bold]: {escape(result.description)}".rstrip(": "), highlight=False)
    m = result.machine
    out(f"machine: {m['label']}, {approx_size(m['mem_bytes'])}, kernel {m['kernel']}, {m['cpus']} CPUs"
        f"{', DEBUG_PAGEALLOC' if m.get('debug_pagealloc') else ''}; steps start at {result.start}",
        highlight=False)
    for s in result.steps:
        mark = ("  [red]✗ expectation failed[/red]" if s.failures else "  [green]✓ as expected[/green]") \
            if s.checked else ""
        out(f"\n[bold]\\[{s.index}][/bold] {escape(s.label)}{mark}", highlight=False)
        leaf = f", leaf now {s.leaf_after}" if s.leaf_after else ""
        out(f"    returned {_ret(s.ret)} at {s.phase}{leaf}", highlight=False)
        out(f"    {step_summary(s.delta)}", highlight=False)
        if s.note:
            out(f"    {escape(s.note)}", highlight=False)
        if s.oops:
            out(f"    [red]{escape(s.oops.splitlines()[0])}[/red]", highlight=False)
        for warning in s.warnings:
            out(f"    [yellow]kernel warning: {escape(warning.splitlines()[0])}[/yellow]", highlight=False)
        for failure in s.failures:
            out(f"    [red]{escape(failure)}[/red]", highlight=False)
    if result.meminfo:
        out("\n[bold]after the steps[/bold]: " + "; ".join(" ".join(line.split()) for line in result.meminfo),
            highlight=False)
        out(directmap_overcount(_meminfo_kb(result.final), result.mapped_kb), highlight=False)
    else:
        out(f"\n[bold]after the steps[/bold]: {m['arch']} prints no DirectMap lines in /proc/meminfo", highlight=False)
    out("[bold]all steps together[/bold]: " + step_summary(result.totals()), highlight=False)
    if result.tlb_reach:
        _print_tlb_reach(result.tlb_reach, console)
    if result.warnings:
        out(f"kernel warnings: {len(result.warnings)}, first: {escape(result.warnings[0].splitlines()[0])}",
            highlight=False)


def _print_tlb_reach(section: dict[str, object], console: Console) -> None:
    """rofolio.tlbreach.run_reach(): per preset TLB array, the entries and share before and after the steps."""
    from rofolio.tlbreach import tlb_lines

    region = "the touched folios' 1 GiB neighbourhoods" if section.get("touched") else "the direct map"
    console.print(f"\n[bold]TLB reach[/bold] of {region} and of the whole direct map, before and after the steps "
                  "(entries needed if nothing else were cached, and their share of the array)", highlight=False)
    for line in tlb_lines(section):
        console.print(escape(line), highlight=False)


def print_compare(result: CompareResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{result.scenario}[/bold]: {len(result.rows)} configurations")
    table = Table()
    for key in result.axes:
        table.add_column(key)
    columns = _used_columns([r.totals for r in result.rows])
    for _, title in columns:
        table.add_column(title, justify="right")
    table.add_column("expect")
    for row in result.rows:
        cells = [str(row.settings[k]) for k in result.axes]
        cells += [_num(row.totals.get(key, 0)) for key, _ in columns]
        cells.append(f"[red]{len(row.failures)} failed[/red]" if row.failures else "ok")
        table.add_row(*cells)
    console.print(table)


def ops_text(common: list[KeyReference], ops: list[OpReference], width: int = 80) -> list[str]:
    """The reference of scenario steps (rofolio.scenario.reference) as text lines no wider than ``width``."""
    import textwrap

    from rofolio.scenario.loader import toml_text

    def key_lines(k: KeyReference) -> list[str]:
        head = f"  {k.key} (required)" if k.required else \
            f"  {k.key}" + ("" if k.default is None else f" = {toml_text(k.default)}")
        kind = k.type + (f"; unit: {k.unit}" if k.unit else "")
        out = textwrap.wrap(f"{head:<26}{kind}", width, subsequent_indent=" " * 26)
        return out + textwrap.wrap(k.description, width, initial_indent=" " * 6, subsequent_indent=" " * 6)

    lines = ["Every step takes op, and may take:"]
    for k in common:
        lines += key_lines(k)
    for op in ops:
        lines += ["", *textwrap.wrap(", ".join(op.ops), width)]
        if op.summary:
            lines += textwrap.wrap(op.summary, width, initial_indent="  ", subsequent_indent="  ")
        if op.one_of:
            lines.append(f"  the target: exactly one of {', '.join(op.one_of)}")
        for k in op.keys:
            lines += key_lines(k)
    return lines


# ----------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#1a202c}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #cbd5e0;padding:3px 7px;text-align:right}
th{background:#edf2f7} td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #e2e8f0;margin:0.5em 0}
.fail{color:#c53030} .ok{color:#2f855a} code{background:#edf2f7;padding:1px 4px}
"""

_CHECK_IMAGES = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = imgs.length > 0;
  for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || imgs[i].naturalWidth === 0) ok = false; }
  document.body.setAttribute('data-images-ok', ok ? 'yes' : 'no');
});
"""


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def html_report(result: ScenarioResult) -> str:
    """One self-contained page: machine, steps, totals, plots (inline PNG), warnings."""
    from rofolio.report import plots

    m = result.machine
    machine_rows = [[html.escape(str(k)), html.escape(str(v))] for k, v in m.items()]
    totals = [[html.escape(k), f"{v:+d}"] for k, v in result.totals().items()]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>rofolio: {html.escape(result.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(result.name)}</h1><p>{html.escape(result.description)}</p>",
        "<h2>Machine</h2>", _table_html(["option", "value"], machine_rows, left=2),
        f"<h2>Steps</h2><p>Steps start at <code>{html.escape(result.start)}</code>.</p>", html_tables(result),
        "<h2>Totals over the steps</h2>", _table_html(["counter", "change"], totals),
        "<h2>/proc/meminfo after the steps</h2><pre>" + html.escape("\n".join(result.meminfo)) + "</pre>",
        "<h2>Direct map</h2>",
        _img(plots.layout_strips(result.layouts["before"], result.layouts["after"], result.name),
             "direct map before and after"),
        "<h2>Counters over the steps</h2>", _img(plots.directmap_over_steps(result), "DirectMap counters"),
        _img(plots.flushes_per_step(result), "flushes and IPIs per step"),
    ]
    if result.failures:
        parts.append("<h2 class='fail'>Expectations that failed</h2><ul>"
                     + "".join(f"<li>{html.escape(f)}</li>" for f in result.failures) + "</ul>")
    if result.warnings:
        parts.append("<h2>Kernel warnings</h2><pre>" + html.escape("\n".join(result.warnings)) + "</pre>")
    parts.append(f"<script>{_CHECK_IMAGES}</script></body></html>")
    return "".join(parts)


def survey_html(result: SurveyResult) -> str:
    """The survey as one self-contained page: the verdicts, the figures per machine, a plot of the IPIs."""
    from rofolio.report import plots

    head = ["candidate", "class", "workload", *result.machines]
    rows = []
    for row in result.rows:
        costs = {k.machine: k for k in row.costs}
        cells = [html.escape(row.candidate.id), html.escape(row.candidate.lifetime_class),
                 html.escape(row.workload.note if row.workload else "kernel image: already read-only")]
        for machine in result.machines:
            k = costs.get(machine)
            cells.append("" if k is None else html.escape(
                f"{'RO' if k.readonly else 'stays RW (' + k.ret + ')'}: {k.total['splits']} splits, "
                f"{k.total['pgtables']} tables, {k.total['flushes']} flushes, {k.total['ipis']} IPIs"))
        rows.append(cells)
    plotted = [(r.candidate.id, [(k.machine, k.total["ipis"]) for k in r.costs]) for r in result.rows if r.costs]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>rofolio: survey</title><style>{_CSS}</style></head><body>",
        "<h1>Which kernel objects want a read-only direct map</h1>",
        "<h2>Verdicts</h2><ul>" + "".join(f"<li>{html.escape(r.verdict)}</li>" for r in result.rows) + "</ul>",
        "<h2>Cost on each machine of the RFC side-by-side</h2>", _table_html(head, rows, left=3),
        "<h2>IPIs</h2>", _img(plots.survey_costs(plotted), "IPIs per candidate and machine"),
        f"<script>{_CHECK_IMAGES}</script></body></html>",
    ]
    return "".join(parts)
