"""The event log: events kept as rows and built when read, counters folded from them (docs/architecture.md)."""

from __future__ import annotations

import random

import pytest

from rofolio.events import (
    BootMapping,
    Call,
    Collapse,
    EntryWrite,
    EventLog,
    Flush,
    FlushKind,
    KernelWarning,
    PteCheck,
    Return,
    Split,
)
from rofolio.machine import Machine
from rofolio.stats import Counters
from rofolio.units import GiB, Level
from tests.conftest import boot_running

OPS = ["set_memory_ro", "set_memory_rw", "set_memory_np", "set_memory_p", "set_memory_nx", "set_memory_x",
       "set_memory_4k", "set_memory_rox"]


def churn(machine: Machine, calls: int, seed: int) -> None:
    """Random set_memory_*() calls of 1 to 600 pages on [4 GiB, 6 GiB), then a folio made read-only and stored to."""
    rng = random.Random(seed)
    for _ in range(calls):
        pa = 4 * GiB + rng.randrange(0, 2 * GiB >> 12) * 4096
        machine.set_memory(rng.choice(OPS), machine.kernel.va(pa), rng.choice([1, 1, 1, 3, 512, 600]))
    folio = machine.alloc_folio("kernel", 0)
    assert folio is not None
    machine.make_readonly(folio)
    machine.kernel_store(machine.kernel.page_address(folio.pfn), probe=True)


def test_the_counters_are_a_fold_of_the_retained_events() -> None:
    machine = boot_running()
    churn(machine, 400, seed=15)
    events = list(machine.log.events)
    assert len(events) == machine.log.appended > 2000
    # the same fold, one typed event at a time from boot: nothing counts what no event says
    assert machine.counters == Counters.folded(events)
    # and a few figures summed by hand from the events themselves
    c = machine.counters
    assert c.entries_written == sum(e.count for e in events if isinstance(e, EntryWrite))
    assert c.cpa_4k_checked == sum(e.count for e in events if isinstance(e, PteCheck))
    flushes = [e for e in events if isinstance(e, Flush)]
    assert (c.flushes_all, c.flushes_pages) == (sum(e.flush is FlushKind.ALL for e in flushes),
                                                sum(e.flush is FlushKind.PAGES for e in flushes))
    assert c.ipis == sum(e.ipis for e in flushes)
    splits = [e for e in events if isinstance(e, Split)]
    assert c.splits[Level.PMD] == sum(e.count for e in splits if e.level == Level.PMD) > 0
    assert c.warnings == sum(isinstance(e, KernelWarning) for e in events)
    assert c.extra["folios_made_readonly"] == 1


def test_a_log_that_keeps_no_events_folds_the_same_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = boot_running()
    monkeypatch.setattr(EventLog, "FOLD_EVERY", 100)  # fold and drop many times in this short run
    dropped = Machine.boot(kept.spec, retain_events=False)
    dropped.finish_boot()
    churn(kept, 300, seed=7)
    churn(dropped, 300, seed=7)
    assert dropped.log.events == [] and dropped.log.appended == kept.log.appended
    assert dropped.kernel.log._dropped > 20 * 100  # it did drop, many times
    assert dropped.counters == kept.counters


def test_events_are_built_in_the_order_they_were_appended() -> None:
    log = EventLog()
    log.append(Call("set_memory_ro", 0x1000, 1))
    log.add(PteCheck, 0x1000, 1)
    log.add(EntryWrite, 0x1000, Level.PTE, 1, 0x63, 0x61)
    log.add(PteCheck, 0x2000, 2)
    log.append(Return("set_memory_ro", 0))
    assert log.events[1:4] == [PteCheck(0x1000, 1), EntryWrite(0x1000, Level.PTE, 1, 0x63, 0x61),
                               PteCheck(0x2000, 2)]
    assert log.events[-1] == Return("set_memory_ro", 0) and log.events[3] == PteCheck(0x2000, 2)
    assert [e.kind for e in log.events] == ["call", "pte_check", "entry_write", "pte_check", "return"]
    assert log.to_dicts(3) == [{"event": "pte_check", "addr": 0x2000, "count": 2},
                               {"event": "return", "func": "set_memory_ro", "ret": 0}]
    assert log.counters.cpa_4k_checked == 3 and log.counters.entries_written == 1


def test_a_fold_of_some_columns_counts_what_they_move_and_leaves_the_rest_for_the_full_fold() -> None:
    """split_page_count() reads direct_pages_count[] in the middle of a run: it folds only boot mappings, splits
    and collapses; the other columns are folded once, later, and nothing is counted twice."""
    log = EventLog()
    log.add(BootMapping, 0, 1 << 30, Level.PUD, 1)
    log.add(Split, 0, Level.PUD, True, True, 1)
    log.add(EntryWrite, 0x1000, Level.PTE, 1, 0x63, 0x61)
    part = log.counters_of(BootMapping, Split, Collapse)
    assert (part.direct_pages[Level.PUD], part.direct_pages[Level.PMD]) == (0, 512)
    assert part.entries_written == 0  # not folded yet
    log.add(Split, 0, Level.PMD, True, True, 1)
    log.add(EntryWrite, 0x2000, Level.PTE, 1, 0x63, 0x61)
    full = log.counters
    assert (full.direct_pages[Level.PMD], full.direct_pages[Level.PTE]) == (511, 512)
    assert full.splits[Level.PUD] == full.splits[Level.PMD] == 1 and full.entries_written == 2
    assert full == Counters.folded(list(log.events))
