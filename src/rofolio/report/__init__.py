"""Reports: readable tables (rich), JSON, and one self-contained HTML page with plots.

Reports only read results; they never reach back into a machine (docs/architecture.md, "Data flows one way").
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rofolio.tables import STEP_COLUMNS, html_tables, printable
from rofolio.tables import num_text as _num
from rofolio.tables import ret_text as _ret
from rofolio.tables import table_html as _table_html
from rofolio.tables import used_columns as _used_columns
from rofolio.units import approx_size

if TYPE_CHECKING:
    from rofolio.bugs import BugMatrix
    from rofolio.compare import CompareResult
    from rofolio.lifetime import LifetimeResult
    from rofolio.scenario.reference import KeyReference, OpReference
    from rofolio.scenario.runner import ScenarioResult
    from rofolio.survey.study import SurveyResult

__all__ = [
    "BUG_LEGEND", "BUG_MARKS", "bug_rows", "bugs_html", "compare_html", "compare_rows", "directmap_overcount",
    "html_report", "html_tables", "lifetime_html", "lifetime_rows", "machine_items", "ops_text", "print_compare",
    "print_result", "print_table", "ptdump_diff", "step_summary", "terminal_text", "warning_headline",
]


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
    known = set(STEP_COLUMNS) | {"flushes", "flushed_pages", "collapses_1g", "pgtables_freed",
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


def terminal_text(text: str) -> str:
    """User text (names, labels, notes) for the terminal: control characters out, rich markup escaped."""
    return escape(printable(text))


def print_result(result: ScenarioResult, console: Console | None = None) -> None:
    console = console or Console(soft_wrap=True)
    out = console.print
    out(f"[bold]{terminal_text(result.name)}[/bold]: {terminal_text(result.description)}".rstrip(": "), highlight=False)
    for note in result.notes:
        out(f"[yellow]note: {terminal_text(note)}[/yellow]", highlight=False)
    m = result.machine
    cpus = f"{m['cpus']} CPU{'s' if m['cpus'] != 1 else ''}"
    out(f"machine: {m['label']}, {approx_size(m['mem_bytes'])}, kernel {m['kernel']}, {cpus}"
        f"{', DEBUG_PAGEALLOC' if m.get('debug_pagealloc') else ''}{', KFENCE' if m.get('kfence') else ''}"
        f"{', PTI' if m.get('pti') == 'on' else ''}; steps start at {result.start}",
        highlight=False)
    for s in result.steps:
        mark = ("  [red]✗ expectation failed[/red]" if s.failures else "  [green]✓ as expected[/green]") \
            if s.checked else ""
        out(f"\n[bold]\\[{s.index}][/bold] {terminal_text(s.label)}{mark}", highlight=False)
        leaf = f", leaf now {s.leaf_after}" if s.leaf_after else ""
        if s.oops:  # the task died in the fault: nothing returned; ret stands for it in the JSON and in expect
            out(f"    oopsed at {s.phase}{leaf} (nothing returns; the step's ret is {_ret(s.ret)})", highlight=False)
        else:
            out(f"    returned {_ret(s.ret)} at {s.phase}{leaf}", highlight=False)
        out(f"    {step_summary(s.delta)}", highlight=False)
        if s.note:
            out(f"    {terminal_text(s.note)}", highlight=False)
        if s.oops:
            out(f"    [red]{terminal_text(s.oops.splitlines()[0])}[/red]", highlight=False)
        for warning in s.warnings:
            out(f"    [yellow]kernel warning: {terminal_text(warning_headline(warning))}[/yellow]", highlight=False)
        for failure in s.failures:
            out(f"    [red]{terminal_text(failure)}[/red]", highlight=False)
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
        out(f"kernel warnings: {len(result.warnings)}, first: {terminal_text(warning_headline(result.warnings[0]))}",
            highlight=False)


def warning_headline(text: str) -> str:
    """A kernel warning on one line: its WARNING line and message, without the "cut here" banner above them
    (the whole splat is in --json)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and "[ cut here ]" not in line]
    return ": ".join(lines) if lines else text.strip()


def ptdump_diff(result: ScenarioResult) -> list[str]:
    """The direct map's page-table dump before the steps against after them, as a unified diff (lines
    that stayed are context): what the steps did to the direct map, in the kernel's own format."""
    import difflib

    if not result.ptdump:
        return []
    before, after = result.ptdump["before"], result.ptdump["after"]
    if not before and not after:
        return [f"{result.machine['arch']} has no modelled page-table dump"]
    diff = list(difflib.unified_diff(before, after, "ptdump before the steps", "ptdump after the steps",
                                     lineterm="", n=1))
    return diff or ["ptdump: the steps left the direct map as it was"]


def print_table(console: Console, headers: list[str], rows: list[list[str]], *, title: str = "", left: int = 1,
                keys: int = 1) -> None:
    """A table that stays readable at the console's width, whatever that is (80 columns included).

    Where the columns fit, a table with nothing cut short; where they do not, one line per row: its first
    ``keys`` cells, then "header value" for every other cell that is not empty, and a line above that says so.
    On a terminal a row wraps at its width; into a pipe or a file it stays one line, as every other line of
    the text output does, so grep and cut see a row whole.  Cells may carry rich markup; the first ``left``
    columns are left-aligned.
    """
    from rich.text import Text

    def width(cell: str) -> int:
        return max(Text.from_markup(line).cell_len for line in cell.split("\n"))

    def need(heads: list[str]) -> int:
        return sum(max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(heads)) + 3 * len(heads) + 1

    # a JSON name may break after its underscores and its DirectMap: splits_ / 1g, DirectMap / 4k
    for heads in (headers, [h.replace("_", "_\n").replace("DirectMap", "DirectMap\n") for h in headers]):
        if need(heads) <= console.width:
            table = Table(title=title or None)
            for i, header in enumerate(heads):
                table.add_column(header, justify="left" if i < left else "right", no_wrap=True)
            for row in rows:
                table.add_row(*row)
            console.print(table)
            return
    whole = not console.is_terminal
    console.print(f"{title + ': ' if title else ''}one line per row (as a table it is {need(headers)} columns wide, "
                  f"more than {console.width}; --json has every figure)", highlight=False, soft_wrap=whole)
    for row in rows:
        rest = ", ".join(f"{h} {c}" for h, c in zip(headers[keys:], row[keys:], strict=True) if c)
        console.print(" ".join(row[:keys]) + ": " + rest, highlight=False, soft_wrap=whole)


def _print_tlb_reach(section: dict[str, object], console: Console) -> None:
    """rofolio.tlbreach.run_reach(): per preset TLB array, the entries and share before and after the steps."""
    from rofolio.tlbreach import tlb_table

    region = ("the touched folios' 1 GiB neighbourhoods and of the whole direct map" if section.get("touched")
              else "the whole direct map")
    console.print(f"\n[bold]TLB reach[/bold] of {region}, before and after the steps "
                  "(entries needed if nothing else were cached, and their share of the array)", highlight=False)
    header, *rows = tlb_table(section)
    print_table(console, header, [[escape(c) for c in row] for row in rows], left=2, keys=2)
    for caveat in section.get("caveats", ()):  # type: ignore[attr-defined]
        console.print(f"  note: {escape(caveat)}", highlight=False)


def compare_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """The compare matrix as plain text cells: the axes, the step columns some row changed, then every other
    counter that differs between rows (a fault, a refused read-only: what tells the rows apart), by JSON name,
    and expect_failures; sizes by magnitude."""
    totals = [r.totals for r in result.rows]
    columns = _used_columns(totals)
    columns += sorted(k for k in {k for t in totals for k in t} - set(columns) - set(STEP_COLUMNS)
                      if len({t.get(k, 0) for t in totals}) > 1)
    rows = [[str(row.settings[k]) for k in result.axes] + [_num(row.totals.get(key, 0), key) for key in columns]
            + [str(len(row.failures))] for row in result.rows]
    return [*result.axes, *columns, "expect_failures"], rows


def _row_names(result: CompareResult) -> list[str]:
    """Each row of a comparison as its settings: 'gbpages=true kernel=6.1'."""
    return [" ".join(f"{a}={row.settings[a]}" for a in result.axes) for row in result.rows]


def _compare_failures(result: CompareResult) -> list[str]:
    """Every expectation that failed, after the settings of its row."""
    return [f"{name}: {f}" for name, row in zip(_row_names(result), result.rows, strict=True) for f in row.failures]


def print_compare(result: CompareResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{terminal_text(result.scenario)}[/bold]: {len(result.rows)} configurations")
    headers, rows = compare_rows(result)
    styled = [[terminal_text(c) for c in row[:-1]] + [f"[red]{row[-1]}[/red]" if row[-1] != "0" else "0"]
              for row in rows]
    print_table(console, headers, styled, left=len(result.axes), keys=len(result.axes))
    failed = _compare_failures(result)
    if failed:
        console.print("\n[red]expectations that failed[/red]:")
        for failure in failed:
            console.print(f"  {terminal_text(failure)}", highlight=False)


def lifetime_rows(results: list[LifetimeResult]) -> tuple[list[str], list[list[str]]]:
    """The lifetime study as plain text cells, one row per model and phase; DirectMap*: the phase's change."""
    headers = ["model", "phase", "violations", "faults", "splits", "flushes", "pgtables", "DirectMap4k",
               "DirectMap2M", "DirectMap1G", "invariant_problems"]
    rows = []
    for result in results:
        for phase_name, p in result.to_dict()["phases"].items():
            d = p["direct_map_delta"]
            problems = p["invariant_problems"]
            rows.append([result.model, phase_name, *(str(p[k]) for k in headers[2:7]),
                         *(_num(d[k], k) for k in headers[7:10]),
                         "0" if not problems else f"{len(problems)}: {problems[0]}"])
    return headers, rows


BUG_MARKS = {"caught": "caught", "silent corruption": "SILENT", "not reachable": "-"}
BUG_LEGEND = ("caught: the store faulted; SILENT: the shared page (or its refcount) was corrupted; "
              "-: the bug cannot reach the page")


def bug_rows(matrix: BugMatrix) -> tuple[list[str], list[list[str]]]:
    """The bug matrix as plain text cells: a row per bug (id), a column per configuration (its key)."""
    rows = [[b.id, *(BUG_MARKS[matrix.cells[(b.id, c.key)].outcome] for c in matrix.configs)] for b in matrix.bugs]
    return ["id", *(c.key for c in matrix.configs)], rows


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


def machine_items(machine: dict[str, object]) -> list[tuple[str, str]]:
    """A machine description (MachineSpec.describe()) as (key, value) text a reader takes in: nested tables
    flattened (mm.nodes), sizes by magnitude with their bytes, true/false and none as a scenario writes them."""
    out: list[tuple[str, str]] = []
    for key, value in machine.items():
        if isinstance(value, dict):
            out += machine_items({f"{key}.{k}": v for k, v in value.items()})
        elif value is None:
            out.append((key, "none"))
        elif isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        elif isinstance(value, int) and (key.endswith("_bytes") or key.endswith("movablecore")) and value:
            out.append((key, f"{approx_size(value)} ({value} bytes)"))
        elif isinstance(value, list | tuple):
            out.append((key, ", ".join(str(v) for v in value) or "none"))
        else:
            out.append((key, str(value)))
    return out


def _page(title: str, heading: str, body: list[str]) -> str:
    """A self-contained HTML page (inline style and images, a script that marks whether every image loaded)."""
    return "".join(["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
                    f"<title>rofolio: {html.escape(title)}</title><style>{_CSS}</style></head><body>",
                    f"<h1>{html.escape(heading)}</h1>", *body, f"<script>{_CHECK_IMAGES}</script></body></html>"])


def _cells_html(rows: list[list[str]]) -> list[list[str]]:
    return [[html.escape(c) for c in row] for row in rows]


def compare_html(result: CompareResult) -> str:
    """rofolio compare as a page: the matrix, and the splits, flushes and IPIs of every configuration."""
    from rofolio.report import plots

    headers, rows = compare_rows(result)
    plotted = [(name, [(key, row.totals.get(key, 0)) for key in ("splits_1g", "splits_2m", "flushes_all", "ipis")])
               for name, row in zip(_row_names(result), result.rows, strict=True)]
    failures = _compare_failures(result)
    return _page(f"compare {result.scenario}", f"{result.scenario}: {len(result.rows)} configurations", [
        "<h2>Totals over the steps</h2>", _table_html(headers, _cells_html(rows), left=len(result.axes)),
        "<h2>Splits, flushes and IPIs</h2>",
        _img(plots.grouped_bars(plotted, "change over the steps"), "splits, flushes and IPIs per configuration"),
        ("<h2 class='fail'>Expectations that failed</h2><ul>"
         + "".join(f"<li>{html.escape(f)}</li>" for f in failures) + "</ul>") if failures else ""])


# the lifetime notes that are a kernel function's return value (0 or -errno), said as the step table says them
_RETURN_NOTES = {"offline_huge_zero_block", "offline_user_block", "user_folio_readonly", "user_folio_migrate",
                 "made_readonly"}


def _note_text(key: str, value: object) -> str:
    """One observation of a lifetime phase for a person: yes/no, errno names, pfns in hex, no Python reprs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_note_text(str(k), v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_note_text(key, v) for v in value)
    if isinstance(value, int) and key in _RETURN_NOTES:
        return _ret(value)
    if isinstance(value, int) and key.endswith("pfn"):
        return f"{value:#x}" if value >= 0 else "none"
    return str(value)


def lifetime_html(results: list[LifetimeResult], machine: dict[str, object]) -> str:
    """rofolio lifetime as a page: the machine, every model and phase, what each phase observed."""
    headers, rows = lifetime_rows(results)
    notes = [f"<h3>{html.escape(r.model)}, {html.escape(name)}</h3><ul>"
             + "".join(f"<li><code>{html.escape(str(k))}</code>: {html.escape(_note_text(str(k), v))}</li>"
                       for k, v in p.notes.items())
             + "".join(f"<li class='fail'>{html.escape(x)}</li>" for x in p.invariant_problems) + "</ul>"
             for r in results for name, p in r.phases.items()]
    machine_rows = _cells_html([list(item) for item in machine_items(machine)])
    return _page("lifetime", "Lifetime models on one workload", [
        "<h2>Machine</h2>", _table_html(["key", "value"], machine_rows, left=2),
        "<h2>Cost and breakage per model and phase</h2>", _table_html(headers, _cells_html(rows), left=2),
        "<p>DirectMap*: how the lines moved in the phase (direct_map_delta).</p>",
        "<h2>What each phase observed</h2>", *notes])


def bugs_html(matrix: BugMatrix) -> str:
    """rofolio bugs as a page: the matrix, each verdict's detail, the configurations."""
    headers, rows = bug_rows(matrix)
    style = {"caught": "ok", "SILENT": "fail", "-": ""}
    cells = [[html.escape(row[0])] + [f"<span class='{style[c]}'>{html.escape(c)}</span>" for c in row[1:]]
             for row in rows]
    details = [f"<h3>{html.escape(b.id)}: {html.escape(b.title)}</h3><ul>"
               + "".join(f"<li><code>{html.escape(c.key)}</code> {html.escape(matrix.cells[(b.id, c.key)].outcome)}: "
                         f"{html.escape(matrix.cells[(b.id, c.key)].detail)}</li>" for c in matrix.configs) + "</ul>"
               for b in matrix.bugs]
    return _page("bugs", "Real bugs under each protection", [
        _table_html(headers, cells), f"<p>{html.escape(BUG_LEGEND)}</p>",
        _table_html(["key", "configuration"], _cells_html([[c.key, c.name] for c in matrix.configs])),
        "<h2>Each verdict</h2>", *details])


def html_report(result: ScenarioResult, progress: Callable[[int, int], None] | None = None) -> str:
    """One self-contained page: machine, steps, totals, plots (inline PNG), warnings.

    ``progress(done, total)`` is called as each part is rendered (the plots take the time).
    """
    from rofolio.report import plots

    stages: list[Callable[[], str]] = [
        lambda: html_tables(result),
        lambda: _img(plots.layout_strips(result.layouts["before"], result.layouts["after"], result.name),
                     "direct map before and after"),
        lambda: _img(plots.directmap_over_steps(result), "DirectMap counters"),
        lambda: _img(plots.flushes_per_step(result), "flushes and IPIs per step"),
    ]
    done: list[str] = []
    for stage in stages:
        done.append(stage())
        if progress:
            progress(len(done), len(stages))
    steps, strips, directmap, flushes = done
    machine_rows = [[html.escape(k), html.escape(v)] for k, v in machine_items(result.machine)]
    totals = [[html.escape(k), html.escape(_num(v, k))] for k, v in result.totals().items()]
    parts = [
        f"<p>{html.escape(result.description)}</p>",
        "<h2>Machine</h2>", _table_html(["key", "value"], machine_rows, left=2),
        f"<h2>Steps</h2><p>Steps start at <code>{html.escape(result.start)}</code>.</p>", steps,
        "<h2>Totals over the steps</h2>", _table_html(["counter", "change"], totals),
        "<h2>/proc/meminfo after the steps</h2><pre>" + html.escape("\n".join(result.meminfo)) + "</pre>",
        f"<p>{html.escape(directmap_overcount(_meminfo_kb(result.final), result.mapped_kb))}</p>"
        if result.meminfo else "",
        "<h2>Direct map</h2>", strips,
        "<h2>Counters over the steps</h2>", directmap, flushes,
    ]
    if result.failures:
        parts.append("<h2 class='fail'>Expectations that failed</h2><ul>"
                     + "".join(f"<li>{html.escape(f)}</li>" for f in result.failures) + "</ul>")
    if result.warnings:
        parts.append("<h2>Kernel warnings</h2><pre>" + html.escape("\n".join(result.warnings)) + "</pre>")
    return _page(result.name, result.name, parts)


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
    return _page("survey", "Which kernel objects want a read-only direct map", [
        "<h2>Verdicts</h2><ul>" + "".join(f"<li>{html.escape(r.verdict)}</li>" for r in result.rows) + "</ul>",
        "<h2>Cost on each machine of the RFC side-by-side</h2>", _table_html(head, rows, left=3),
        "<h2>IPIs</h2>", _img(plots.grouped_bars(plotted, "IPIs to make the typical count read-only"),
                             "IPIs per candidate and machine")])
