"""Counters derived from the event stream.

``Counters.apply`` is the one place where an event turns into numbers.  The
DirectMap counters are the kernel's ``direct_pages_count[]``
(arch/x86/mm/pat/set_memory.c), which boot fills with ``update_page_count()``
and ``split_page_count()`` / ``collapse_page_count()`` adjust; the vmstat
counters are ``direct_map_level{2,3}_{splits,collapses}`` (mm/vmstat.c); the
CPA statistics are those of CONFIG_X86_CPA_STATISTICS (``cpa_stats`` in
debugfs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rofolio.units import PTRS_PER_TABLE, Level

if TYPE_CHECKING:  # events are folded by their ``kind``, so events can own the log that folds them
    from rofolio.events import Event

__all__ = [
    "_EXTRA_COUNTS", "_HANDLERS", "Counters", "cost_figures", "counter_names", "fold_rows", "is_counter",
    "register_handler",
]


@dataclass
class Counters:
    """Every number rofolio reports about a machine, folded from its events."""

    direct_pages: dict[Level, int] = field(default_factory=lambda: {lv: 0 for lv in Level})
    splits: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    collapses: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    vmstat_splits: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    vmstat_collapses: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    pgtables_allocated: int = 0
    pgtables_freed: int = 0
    pgtable_alloc_failures: int = 0
    entries_written: int = 0
    flushes_all: int = 0
    flushes_pages: int = 0
    flushes_range: int = 0
    flushes_local: int = 0
    flushed_pages: int = 0
    ipis: int = 0
    cache_flushes: int = 0
    warnings: int = 0
    faults: int = 0
    oopses: int = 0  # faults that printed an oops (not probes): the die counter's "[#N]"
    cpa_checked: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    cpa_sameprot: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    cpa_preserved: dict[Level, int] = field(default_factory=lambda: {Level.PMD: 0, Level.PUD: 0})
    cpa_4k_checked: int = 0
    # counts kept by layers above the architecture (mm, faults): name -> value, via register_handler()
    extra: dict[str, int] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        """Fold one event (an EventLog folds whole columns of them: ``fold_rows()``)."""
        fold_rows(self, type(event), [tuple(getattr(event, f.name) for f in fields(event))])

    @classmethod
    def folded(cls, events: Iterable[Event]) -> Counters:
        """The counters of a machine that saw ``events`` from boot, folded one event at a time."""
        out = cls()
        for event in events:
            out.apply(event)
        return out

    @property
    def flushes(self) -> int:
        """Every TLB flush operation, of any kind."""
        return self.flushes_all + self.flushes_pages + self.flushes_range + self.flushes_local

    @property
    def pgtables(self) -> int:
        """Page-table pages allocated and not freed since counting began."""
        return self.pgtables_allocated - self.pgtables_freed

    def copy(self) -> Counters:
        out = Counters()
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(out, f.name, dict(value) if isinstance(value, dict) else value)
        return out

    def meminfo_kb(self) -> dict[str, int]:
        """DirectMap lines in kB as arch_report_meminfo() computes them (count << 2, << 11, << 20)."""
        return {
            "DirectMap4k": self.direct_pages[Level.PTE] << 2,
            "DirectMap2M": self.direct_pages[Level.PMD] << 11,
            "DirectMap1G": self.direct_pages[Level.PUD] << 20,
        }

    def vmstat(self) -> dict[str, int]:
        return {
            "direct_map_level2_splits": self.vmstat_splits[Level.PMD],
            "direct_map_level3_splits": self.vmstat_splits[Level.PUD],
            "direct_map_level2_collapses": self.vmstat_collapses[Level.PMD],
            "direct_map_level3_collapses": self.vmstat_collapses[Level.PUD],
        }

    def cpa_stats(self) -> dict[str, int]:
        """The lines of debugfs x86/cpa_stats (set_memory.c cpastats_show)."""
        return {
            "1G pages checked": self.cpa_checked[Level.PUD],
            "1G pages sameprot": self.cpa_sameprot[Level.PUD],
            "1G pages preserved": self.cpa_preserved[Level.PUD],
            "2M pages checked": self.cpa_checked[Level.PMD],
            "2M pages sameprot": self.cpa_sameprot[Level.PMD],
            "2M pages preserved": self.cpa_preserved[Level.PMD],
            "4K pages set-checked": self.cpa_4k_checked,
        }

    def bump(self, name: str, by: int = 1) -> None:
        """Add to one of the ``extra`` counts (for handlers registered by higher layers)."""
        self.extra[name] = self.extra.get(name, 0) + by

    def summary(self) -> dict[str, Any]:
        """The cost figures a report shows, as a flat JSON-friendly dict."""
        return {
            **dict(sorted(self.extra.items())),
            "splits_1g": self.splits[Level.PUD],
            "splits_2m": self.splits[Level.PMD],
            "collapses_1g": self.collapses[Level.PUD],
            "collapses_2m": self.collapses[Level.PMD],
            "pgtables_allocated": self.pgtables_allocated,
            "pgtables_freed": self.pgtables_freed,
            "pgtable_alloc_failures": self.pgtable_alloc_failures,
            "entries_written": self.entries_written,
            "flushes": self.flushes,
            "flushes_all": self.flushes_all,
            "flushes_pages": self.flushes_pages,
            "flushes_range": self.flushes_range,
            "flushes_local": self.flushes_local,
            "flushed_pages": self.flushed_pages,
            "ipis": self.ipis,
            "faults": self.faults,
            **self.meminfo_kb(),
            **self.vmstat(),
        }


# Each fold takes the new rows of one event type's column: the events' field values, in field order (the
# unpacking names them, and fails loudly if an event type gains or loses a field).
Rows = list[tuple[Any, ...]]


def _boot_mapping(c: Counters, rows: Rows) -> None:
    for _start, _end, level, counted in rows:
        c.direct_pages[level] += counted


def _split(c: Counters, rows: Rows) -> None:
    for _addr, level, direct, vmstat, count in rows:
        c.splits[level] += count
        if direct:  # split_page_count()
            c.direct_pages[level] -= count
            c.direct_pages[Level(level - 1)] += PTRS_PER_TABLE * count
        if vmstat:
            c.vmstat_splits[level] += count


def _collapse(c: Counters, rows: Rows) -> None:
    for _addr, level, direct, vmstat in rows:
        c.collapses[level] += 1
        if direct:  # collapse_page_count()
            c.direct_pages[level] += 1
            c.direct_pages[Level(level - 1)] -= PTRS_PER_TABLE
        if vmstat:
            c.vmstat_collapses[level] += 1


def _pgtable_alloc(c: Counters, rows: Rows) -> None:
    c.pgtables_allocated += sum(count for _level, count in rows)


def _pgtable_alloc_failed(c: Counters, rows: Rows) -> None:
    c.pgtable_alloc_failures += len(rows)


def _pgtable_free(c: Counters, rows: Rows) -> None:
    c.pgtables_freed += sum(count for _level, count in rows)


def _entry_write(c: Counters, rows: Rows) -> None:
    c.entries_written += sum(count for _addr, _level, count, _old, _new in rows)


def _flush(c: Counters, rows: Rows) -> None:
    # FlushKind is a StrEnum: counted by value, so stats needs no run-time events import
    kinds = Counter(kind for kind, _pages, _cpus, _ipis, _reason in rows)
    c.flushes_all += kinds["all"]
    c.flushes_pages += kinds["pages"]
    c.flushes_range += kinds["range"]
    c.flushes_local += len(rows) - kinds["all"] - kinds["pages"] - kinds["range"]
    c.flushed_pages += sum(pages for _kind, pages, _cpus, _ipis, _reason in rows)
    c.ipis += sum(ipis for _kind, _pages, _cpus, ipis, _reason in rows)


def _cache_flush(c: Counters, rows: Rows) -> None:
    c.cache_flushes += len(rows)


def _fault(c: Counters, rows: Rows) -> None:
    c.faults += len(rows)
    c.oopses += sum(bool(text) for _addr, _access, _reason, _mapping, text in rows)


def _warning(c: Counters, rows: Rows) -> None:
    c.warnings += len(rows)


def _large_page_check(c: Counters, rows: Rows) -> None:
    for (level, outcome), n in Counter((level, outcome) for _addr, level, outcome in rows).items():
        c.cpa_checked[level] += n
        if outcome == "sameprot":
            c.cpa_sameprot[level] += n
        elif outcome == "preserved":
            c.cpa_preserved[level] += n


def _pte_check(c: Counters, rows: Rows) -> None:
    c.cpa_4k_checked += sum(count for _addr, count in rows)


def register_handler(event_type: type[Event], handler: Callable[[Counters, Any], None],
                     counts: tuple[str, ...] = ()) -> None:
    """Let a higher layer (mm, faults) fold its own event types into ``Counters.extra``.

    ``counts`` names the ``extra`` counters the handler may bump; a name ending
    in ``*`` stands for every name with that prefix.  Scenario expectations may
    use exactly these names.
    """
    _HANDLERS[event_type.kind] = handler
    _EXTRA_COUNTS.update(counts)


def is_counter(name: str) -> bool:
    """True for a name a report or an expectation may use: a summary key or a registered extra count."""
    if name in Counters().summary():
        return True
    return name in _EXTRA_COUNTS or any(c.endswith("*") and name.startswith(c[:-1]) for c in _EXTRA_COUNTS)


def counter_names() -> list[str]:
    return sorted(set(Counters().summary()) | _EXTRA_COUNTS)


_EXTRA_COUNTS: set[str] = set()


# Event.kind -> fold of its rows; the kinds are the events' JSON names (rofolio.events), so no run-time import of events
_COLUMN_FOLDS: dict[str, Callable[[Counters, Rows], None]] = {
    "boot_mapping": _boot_mapping,
    "split": _split,
    "collapse": _collapse,
    "pgtable_alloc": _pgtable_alloc,
    "pgtable_alloc_failed": _pgtable_alloc_failed,
    "pgtable_free": _pgtable_free,
    "entry_write": _entry_write,
    "flush": _flush,
    "cache_flush": _cache_flush,
    "warning": _warning,
    "fault": _fault,
    "large_page_check": _large_page_check,
    "pte_check": _pte_check,
}
# Event.kind -> fold of one event, for the types of higher layers (register_handler())
_HANDLERS: dict[str, Callable[[Counters, Any], None]] = {}


def fold_rows(c: Counters, event_type: type[Event], rows: Rows) -> None:
    """Fold events of one type, given as the tuples of their field values, into ``c``."""
    column = _COLUMN_FOLDS.get(event_type.kind)
    if column is not None:
        column(c, rows)
        return
    handler = _HANDLERS.get(event_type.kind)
    if handler is not None:
        for row in rows:
            handler(c, event_type(*row))


def cost_figures(delta: dict[str, int]) -> dict[str, int]:
    """What a permission change cost, from a counter delta: splits (of both sizes), page-table pages,
    entries written, flushes (and the global ones among them), IPIs."""
    return {"splits": delta.get("splits_1g", 0) + delta.get("splits_2m", 0),
            "pgtables": delta.get("pgtables_allocated", 0), "entries_written": delta.get("entries_written", 0),
            "flushes": delta.get("flushes", 0), "global_flushes": delta.get("flushes_all", 0),
            "ipis": delta.get("ipis", 0)}
