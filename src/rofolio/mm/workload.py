"""The standard lifetime workload: the same life of read-only folios under each lifetime model.

Phase "persistent" (CONFIG_PERSISTENT_HUGE_ZERO_FOLIO, two NUMA nodes, movablecore=1G, init_on_free):

1. boot to initcall time; hugepage_init() allocates the persistent huge zero
   folio and the RFC makes it read-only; finish the boot;
2. three processes read-fault 4 MiB THP-eligible regions: huge zero PMDs;
3. memory pressure over the region: compaction of every zone, then an
   attempt to offline the memory block holding the huge zero folio (-EBUSY)
   and the ZONE_MOVABLE block holding a user folio (which succeeds by
   migrating it);
4. one process writes: the huge zero PMD splits and one 4K page is COWed;
5. a user folio is made read-only (model 1's use), migrated to the other
   node, and freed when its process exits.

Phase "non-persistent" (the same machine without the persistent config):
a process maps the lazily allocated huge zero folio, which is then made
read-only once (what the RFC does, without the guarantee that the folio
lives forever); the process exits, the "thp-zero" shrinker frees the folio,
an unmovable allocation takes its block and the next read fault reallocates
the huge zero folio at a new pfn, which is not read-only any more.

``LifetimeResult`` reports per phase the contract violations, faults (oopses),
splits, flushes, page-table pages and the DirectMap counters at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rofolio.mm.compaction import compact_memory
from rofolio.mm.config import MMConfig
from rofolio.mm.fault import exit_mmap, folio_at, mm_alloc, user_read, user_write
from rofolio.mm.gfp import GFP_KERNEL, HPAGE_PMD_ORDER
from rofolio.mm.invariants import check_all
from rofolio.mm.memory_hotplug import offline_memory_block
from rofolio.mm.migrate import migrate_to_node
from rofolio.mm.page_alloc import alloc_pages
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.shrinker import shrink_slab
from rofolio.mm.state import MMState
from rofolio.mm.zero_page import hugepage_init
from rofolio.stats import Counters
from rofolio.units import PAGE_SHIFT, PMD_SIZE, GiB, Level, MiB

# boots a machine whose MM uses the given configuration, stopped at initcall time (mm_core_init() done);
# returns its MM state and the function that finishes its boot
BootFn = Callable[[MMConfig], tuple[MMState, Callable[[], None]]]


@dataclass
class PhaseResult:
    """What one phase's workload did, from its counters (all derived from events).

    The figures count what the workload caused: the arch's own boot work
    (before mm_core_init() and inside finish_boot()) is subtracted.
    ``direct_map`` is /proc/meminfo's DirectMap lines at the end,
    ``direct_map_delta`` the workload's share of them.
    """

    name: str
    violations: int
    faults: int
    splits: int
    flushes: int
    pgtables: int
    direct_map: dict[str, int]
    direct_map_delta: dict[str, int]
    notes: dict[str, Any] = field(default_factory=dict)
    invariant_problems: list[str] = field(default_factory=list)

    @classmethod
    def from_counters(cls, name: str, end: Counters, excluded: list[tuple[Counters, Counters]],
                      notes: dict[str, Any], problems: list[str]) -> PhaseResult:
        """``excluded``: (before, after) counter pairs around work that is not the workload's."""
        def figure(get: Callable[[Counters], int]) -> int:
            return get(end) - sum(get(after) - get(before) for before, after in excluded)

        meminfo = end.meminfo_kb()
        delta = {key: figure(lambda c, key=key: c.meminfo_kb()[key]) for key in meminfo}
        return cls(name, figure(lambda c: c.extra.get("contract_violations", 0)), figure(lambda c: c.faults),
                   figure(lambda c: c.splits[Level.PUD] + c.splits[Level.PMD]), figure(lambda c: c.flushes),
                   figure(lambda c: c.pgtables_allocated), meminfo, delta, notes, problems)

    def to_dict(self) -> dict[str, Any]:
        return {"violations": self.violations, "faults": self.faults, "splits": self.splits,
                "flushes": self.flushes, "pgtables": self.pgtables, **self.direct_map,
                "direct_map_delta": self.direct_map_delta, "notes": self.notes,
                "invariant_problems": self.invariant_problems}


@dataclass
class LifetimeResult:
    model: str
    phases: dict[str, PhaseResult]

    @property
    def violations(self) -> int:
        return sum(p.violations for p in self.phases.values())

    @property
    def faults(self) -> int:
        return sum(p.faults for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "violations": self.violations, "faults": self.faults,
                "phases": {name: p.to_dict() for name, p in self.phases.items()}}


def _region(mm: MMState, size: int = 4 * MiB) -> tuple[Any, int]:
    mms = mm_alloc(mm)
    return mms, mms.mmap_anon(size)


def persistent_phase(mm: MMState, finish_boot: Callable[[], None]) -> dict[str, Any]:
    """Steps 1-5 on a machine booted to initcall time, with mm_core_init() done."""
    notes: dict[str, Any] = {}
    hugepage_init(mm)
    hz = mm.huge_zero.folio
    notes["huge_zero_pfn"] = hz.pfn if hz else -1
    notes["huge_zero_readonly"] = bool(hz and hz.readonly)
    finish_boot()
    procs = []
    for _ in range(3):
        mms, addr = _region(mm)
        for off in range(0, 4 * MiB, PMD_SIZE):
            user_read(mm, mms, addr + off)
        procs.append((mms, addr))
    notes["huge_zero_mappings"] = sum(1 for mms, addr in procs for off in (0, PMD_SIZE)
                                      if folio_at(mm, mms, addr + off) is hz)
    movable_mms, movable_addr = _region(mm, 64 * 1024)
    user_write(mm, movable_mms, movable_addr, 0x5A)
    migrated, failed = compact_memory(mm)
    notes["compaction"] = {"migrated": migrated, "failed": failed}
    if hz is not None:
        notes["offline_huge_zero_block"] = offline_memory_block(mm, hz.pfn << PAGE_SHIFT)
    user_folio = folio_at(mm, movable_mms, movable_addr)
    if user_folio is not None:
        notes["offline_user_block"] = offline_memory_block(mm, user_folio.pfn << PAGE_SHIFT)
    writer, waddr = procs[0]
    user_write(mm, writer, waddr + 4096, 0x77)
    notes["after_cow_reads"] = [user_read(mm, writer, waddr), user_read(mm, writer, waddr + 4096)]
    ro_mms, ro_addr = _region(mm, 64 * 1024)
    user_write(mm, ro_mms, ro_addr, 0x42)
    folio = folio_at(mm, ro_mms, ro_addr)
    assert folio is not None
    notes["user_folio_readonly"] = arch_make_folio_readonly(mm, folio, "user folio")
    other = (folio.nid + 1) % len(mm.nodes)
    ret, dst = migrate_to_node(mm, folio, other)
    notes["user_folio_migrate"] = ret
    notes["destination_readonly"] = bool(dst and dst.readonly)
    exit_mmap(mm, ro_mms)
    for mms, _ in procs:
        exit_mmap(mm, mms)
    exit_mmap(mm, movable_mms)
    return notes


def nonpersistent_phase(mm: MMState, finish_boot: Callable[[], None]) -> dict[str, Any]:
    """The lazily allocated huge zero folio made read-only once, freed by the shrinker, reallocated."""
    notes: dict[str, Any] = {}
    hugepage_init(mm)
    finish_boot()
    mms, addr = _region(mm)
    user_read(mm, mms, addr)
    hz = mm.huge_zero.folio
    assert hz is not None
    notes["first_pfn"] = hz.pfn
    notes["made_readonly"] = arch_make_folio_readonly(mm, hz, "non-persistent huge zero folio, once")
    exit_mmap(mm, mms)
    notes["shrinker_freed"] = shrink_slab(mm)
    blocker = alloc_pages(mm, GFP_KERNEL, HPAGE_PMD_ORDER, label="unmovable kernel allocation")
    notes["blocker_pfn"] = blocker.pfn if blocker else -1
    mms2, addr2 = _region(mm)
    user_read(mm, mms2, addr2)
    again = mm.huge_zero.folio
    notes["second_pfn"] = again.pfn if again else -1
    notes["second_readonly"] = bool(again and again.readonly)
    exit_mmap(mm, mms2)
    return notes


def run_lifetime_workload_on(boot: BootFn, model: str, config: MMConfig | None = None) -> LifetimeResult:
    """The workload on machines from ``boot``, one per phase, under lifetime ``model`` (a name or alias)."""
    base = (config or MMConfig()).with_options(lifetime=model, init_on_free=True)
    phases: dict[str, PhaseResult] = {}
    for name, persistent, nodes, movable, body in (("persistent", True, 2, GiB, persistent_phase),
                                                   ("non-persistent", False, 1, 0, nonpersistent_phase)):
        mm, finish = boot(base.with_options(persistent_huge_zero_folio=persistent, nodes=nodes,
                                            movablecore=movable))
        log = mm.kernel.log
        booted = Counters()
        at_start = log.counters.copy()
        around_finish: list[Counters] = []

        def finish_boot(finish: Callable[[], None] = finish, marks: list[Counters] = around_finish,
                        log: Any = log) -> None:
            marks.append(log.counters.copy())
            finish()
            marks.append(log.counters.copy())

        notes = body(mm, finish_boot)
        excluded = [(booted, at_start), (around_finish[0], around_finish[1])]
        phases[name] = PhaseResult.from_counters(name, log.counters, excluded, notes, check_all(mm))
    return LifetimeResult(base.lifetime, phases)  # the canonical name, also when given an alias
