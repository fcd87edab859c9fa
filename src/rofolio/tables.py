"""Plain HTML tables: what results show in notebooks, and what report pages are built from.

Results (``ScenarioResult``, ``CompareResult``, ``BugMatrix``) render
themselves through ``_repr_html_`` with these helpers, so they never import
``rofolio.report`` (a higher layer; docs/architecture.md).  ``rofolio.report``
uses the same helpers for its pages and keeps the rich text tables and plots.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from rofolio.errors import Errno

if TYPE_CHECKING:
    from rofolio.scenario.runner import ScenarioResult

__all__ = ["STEP_COLUMNS", "html_tables", "num_text", "ret_text", "table_html", "used_columns"]

# counter name -> column title, in the order step tables show them
STEP_COLUMNS = [
    ("splits_1g", "1G→2M"), ("splits_2m", "2M→4K"), ("collapses_2m", "coll"), ("pgtables_allocated", "pt+"),
    ("entries_written", "PTEs"), ("flushes_all", "flush all"), ("flushes_pages", "flush pg"),
    ("flushes_range", "flush rng"), ("ipis", "IPIs"), ("DirectMap4k", "Δ4k kB"), ("DirectMap2M", "Δ2M kB"),
    ("DirectMap1G", "Δ1G kB"),
]


def used_columns(rows: list[dict[str, int]]) -> list[tuple[str, str]]:
    """The STEP_COLUMNS some row has a non-zero value in (at least the two split columns)."""
    return [(k, title) for k, title in STEP_COLUMNS if any(r.get(k) for r in rows)] or STEP_COLUMNS[:2]


def ret_text(ret: int) -> str:
    return Errno.describe(ret)


def num_text(value: int) -> str:
    return f"{value:+d}" if value else ""


def table_html(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned.  Cells are HTML already (escape them)."""
    head = "".join(f"<th class='{'l' if i < left else ''}'>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{c}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_tables(result: ScenarioResult) -> str:
    """The step table as HTML (also what notebooks show for a ScenarioResult)."""
    columns = used_columns([s.delta for s in result.steps])
    headers = ["#", "step", "phase", "ret", "leaf after"] + [t for _, t in columns] + ["expect"]
    rows = []
    for s in result.steps:
        expect = ("<span class='fail'>✗ " + html.escape("; ".join(s.failures)) + "</span>" if s.failures
                  else "<span class='ok'>✓</span>" if s.checked else "")
        rows.append([str(s.index), html.escape(s.label), s.phase, ret_text(s.ret), s.leaf_after]
                    + [num_text(s.delta.get(k, 0)) for k, _ in columns] + [expect])
    return table_html(headers, rows, left=5)
