"""The standard lifetime workload: the same life of read-only folios under each lifetime model (``rofolio lifetime``).

Phase "persistent" (CONFIG_PERSISTENT_HUGE_ZERO_FOLIO, two NUMA nodes, movablecore=1G, init_on_free):

1. boot to initcall time; hugepage_init() allocates the persistent huge zero
   folio and the RFC makes it read-only; finish the boot;
2. three processes read-fault 4 MiB THP-eligible regions: huge zero PMDs;
3. memory pressure over the region: compaction of every zone, then an
   attempt to offline the memory block holding the huge zero folio (-EBUSY)
   and the ZONE_MOVABLE block holding a user folio (which succeeds by
   migrating it);
4. one process writes: from v6.13 a new zeroed THP replaces its huge zero PMD
   (do_huge_zero_wp_pmd()); on older kernels the PMD splits and one 4K page
   is COWed;
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

Every phase runs on a ``Machine`` booted from the study's ``MachineSpec``, through the machine's verbs only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rofolio.errors import ConfigError
from rofolio.machine import Machine, MachineSpec, MMConfig
from rofolio.stats import Counters
from rofolio.units import PAGE_SHIFT, PMD_SIZE, GiB, Level, MiB, format_size

__all__ = ["LifetimeResult", "PhaseResult", "nonpersistent_phase", "persistent_phase", "run_lifetime_workload"]


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
    mm: dict[str, Any] = field(default_factory=dict)  # the MM configuration this phase's machine booted with

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
                "invariant_problems": self.invariant_problems, "mm": self.mm}


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


def _region(m: Machine, size: int = 4 * MiB) -> tuple[Any, int]:
    process = m.process()
    return process, m.mmap(process, size)


def persistent_phase(m: Machine, finish_boot: Callable[[], None]) -> dict[str, Any]:
    """Steps 1-5 on a machine booted to initcall time, with mm_core_init() done."""
    notes: dict[str, Any] = {}
    m.run_initcalls()
    hz = m.huge_zero_folio
    notes["huge_zero_pfn"] = hz.pfn if hz else -1
    notes["huge_zero_readonly"] = bool(hz and hz.readonly)
    finish_boot()
    procs = []
    for _ in range(3):
        mms, addr = _region(m)
        for off in range(0, 4 * MiB, PMD_SIZE):
            m.user_read(mms, addr + off)
        procs.append((mms, addr))
    notes["huge_zero_mappings"] = sum(1 for mms, addr in procs for off in (0, PMD_SIZE)
                                      if m.folio_at(mms, addr + off) is hz)
    movable_mms, movable_addr = _region(m, 64 * 1024)
    m.user_write(movable_mms, movable_addr, 0x5A)
    migrated, failed = m.compact()
    notes["compaction"] = {"migrated": migrated, "failed": failed}
    if hz is not None:
        notes["offline_huge_zero_block"] = m.offline(hz.pfn << PAGE_SHIFT)
    user_folio = m.folio_at(movable_mms, movable_addr)
    if user_folio is not None:
        notes["offline_user_block"] = m.offline(user_folio.pfn << PAGE_SHIFT)
    writer, waddr = procs[0]
    m.user_write(writer, waddr + 4096, 0x77)
    notes["after_cow_reads"] = [m.user_read(writer, waddr), m.user_read(writer, waddr + 4096)]
    ro_mms, ro_addr = _region(m, 64 * 1024)
    m.user_write(ro_mms, ro_addr, 0x42)
    folio = m.folio_at(ro_mms, ro_addr)
    assert folio is not None
    notes["user_folio_readonly"] = m.make_readonly(folio, "user folio")
    ret, dst = m.migrate(folio, (folio.nid + 1) % m.nr_nodes)
    notes["user_folio_migrate"] = ret
    notes["destination_readonly"] = bool(dst and dst.readonly)
    m.exit(ro_mms)
    for mms, _ in procs:
        m.exit(mms)
    m.exit(movable_mms)
    return notes


def nonpersistent_phase(m: Machine, finish_boot: Callable[[], None]) -> dict[str, Any]:
    """The lazily allocated huge zero folio made read-only once, freed by the shrinker, reallocated."""
    notes: dict[str, Any] = {}
    m.run_initcalls()
    finish_boot()
    mms, addr = _region(m)
    m.user_read(mms, addr)
    hz = m.huge_zero_folio
    assert hz is not None
    notes["first_pfn"] = hz.pfn
    notes["made_readonly"] = m.make_readonly(hz, "non-persistent huge zero folio, once")
    m.exit(mms)
    notes["shrinker_freed"] = m.shrink()
    pmd_order = Level.PMD.pages.bit_length() - 1  # HPAGE_PMD_ORDER: 9 with 4K pages
    blocker = m.alloc_folio("kernel", pmd_order, label="unmovable kernel allocation")
    notes["blocker_pfn"] = blocker.pfn if blocker else -1
    mms2, addr2 = _region(m)
    m.user_read(mms2, addr2)
    again = m.huge_zero_folio
    notes["second_pfn"] = again.pfn if again else -1
    notes["second_readonly"] = bool(again and again.readonly)
    m.exit(mms2)
    return notes


def _more_ram_hint(spec: MachineSpec, tries: int = 16) -> str:
    """Give the machine more RAM, with the smallest whole number of GiB above ``spec.mem`` that boots this
    phase's machine (the model's own zone rules answer; up to ``tries`` GiB more)."""
    for extra in range(1, tries + 1):
        mem = (spec.mem // GiB + extra) * GiB
        try:
            Machine.boot(replace(spec, mem=mem))
        except ConfigError:
            continue
        return f"give the machine more RAM: {format_size(mem)} is the smallest whole number of GiB that boots it"
    return "give the machine more RAM (ZONE_MOVABLE comes from RAM above 4 GiB)"


def run_lifetime_workload(spec: MachineSpec, model: str, config: MMConfig | None = None) -> LifetimeResult:
    """Run the workload under lifetime ``model`` (a name or alias of the registry) on machines like ``spec``."""
    base = (config or MMConfig()).with_options(lifetime=model, init_on_free=True)
    phases: dict[str, PhaseResult] = {}
    for name, persistent, nodes, movable, body in (("persistent", True, 2, GiB, persistent_phase),
                                                   ("non-persistent", False, 1, 0, nonpersistent_phase)):
        mm = base.with_options(persistent_huge_zero_folio=persistent, nodes=nodes, movablecore=movable)
        try:
            m = Machine.boot(replace(spec, mm=mm))
        except ConfigError as err:  # the phase's own [mm] settings, which the user did not write: say them
            raise ConfigError(f"the workload's {name} phase boots {format_size(spec.mem)} as {nodes} nodes with "
                              f"movablecore={format_size(movable)}: {err.message}",
                              _more_ram_hint(replace(spec, mm=mm))) from None
        booted = Counters()
        at_start = m.counters.copy()
        around_finish: list[Counters] = []

        def finish_boot(m: Machine = m, marks: list[Counters] = around_finish) -> None:
            marks.append(m.counters.copy())
            m.finish_boot()
            marks.append(m.counters.copy())

        notes = body(m, finish_boot)
        excluded = [(booted, at_start), (around_finish[0], around_finish[1])]
        phases[name] = PhaseResult.from_counters(name, m.counters, excluded, notes, m.check_invariants())
        phases[name].mm = m.spec.mm.describe()
    return LifetimeResult(base.lifetime, phases)  # the canonical name, also when given an alias
