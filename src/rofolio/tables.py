"""Plain HTML tables: what results show in notebooks, and what report pages are built from.

Results (``ScenarioResult``, ``CompareResult``, ``BugMatrix``) render
themselves through ``_repr_html_`` with these helpers, so they never import
``rofolio.report`` (a higher layer; docs/architecture.md).  ``rofolio.report``
uses the same helpers for its pages and keeps the rich text tables and plots.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.units import approx_size

if TYPE_CHECKING:
    from rofolio.scenario.runner import ScenarioResult

__all__ = ["KB_COUNTERS", "STEP_COLUMNS", "html_tables", "num_text", "printable", "ret_text", "table_html",
           "used_columns"]

# The counters step tables show, in this order; a column is called by its counter's JSON name (docs/json.md).
STEP_COLUMNS = ("splits_1g", "splits_2m", "collapses_2m", "pgtables_allocated", "entries_written", "flushes_all",
                "flushes_pages", "flushes_range", "ipis", "DirectMap4k", "DirectMap2M", "DirectMap1G")
KB_COUNTERS = frozenset({"DirectMap4k", "DirectMap2M", "DirectMap1G"})  # kB in JSON, a size by magnitude here


def used_columns(rows: list[dict[str, int]]) -> list[str]:
    """The STEP_COLUMNS some row has a non-zero value in (at least the two split columns)."""
    return [k for k in STEP_COLUMNS if any(r.get(k) for r in rows)] or list(STEP_COLUMNS[:2])


_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


def printable(text: str) -> str:
    """``text`` safe for a terminal: escape sequences (colours, titles, clears) and other control characters
    removed, line breaks and tabs made spaces.  Names come from scenario files, and a file is not trusted to
    drive the terminal it is shown on."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return "".join(c for c in text if unicodedata.category(c) != "Cc")


def ret_text(ret: int) -> str:
    return Errno.describe(ret)


def num_text(value: int, key: str = "") -> str:
    """A change as a table shows it: signed, empty for none; a kB counter as a size by magnitude (+14M, -1G)."""
    if not value:
        return ""
    if key in KB_COUNTERS:
        return ("+" if value > 0 else "-") + approx_size(abs(value) << 10)
    return f"{value:+d}"


def table_html(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned.  Cells are HTML already (escape them)."""
    head = "".join(f"<th class='{'l' if i < left else ''}'>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{c}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_tables(result: ScenarioResult) -> str:
    """The step table as HTML (also what notebooks show for a ScenarioResult)."""
    columns = used_columns([s.delta for s in result.steps])
    headers = ["index", "label", "phase", "ret", "leaf_after", *columns, "expect_failures"]
    rows = []
    for s in result.steps:
        expect = ("<span class='fail'>✗ " + html.escape("; ".join(s.failures)) + "</span>" if s.failures
                  else "<span class='ok'>✓</span>" if s.checked else "")
        rows.append([str(s.index), html.escape(s.label), s.phase, ret_text(s.ret), s.leaf_after]
                    + [num_text(s.delta.get(k, 0), k) for k in columns] + [expect])
    return table_html(headers, rows, left=5)
