"""``rofolio survey``: every catalogued candidate, made read-only on every machine of the RFC side-by-side.

For each candidate the catalogue gives how it is allocated and how many exist; the study turns that into a
workload on a booted machine (``rofolio.machine`` only) and lets the model say what making them read-only
costs there:

* page-allocator objects: ``count`` folios of the catalogue's order and allocation context, each made
  read-only with arch_make_folio_readonly();
* slab objects: read-only is per page, so the pages the objects live in: ``count`` objects packed into slabs
  of the cache's geometry (objects per slab, slab order), each slab made read-only whole, with every other
  object in it (what one object drags along is the catalogue's slab sharing);
* vmalloc areas: their order-0 pages, whose direct-map aliases the owner would change;
* kernel-image sections: nothing is allocated; mark_rodata_ro() already write-protects them at boot.

The machine runs the lifetime model the candidate's class needs (model 2 for "model2", model 1 otherwise:
a candidate that fits neither is shown under model 1, whose state tracking it would at least need), and the
figures are the events' counters: splits, page-table pages, flushes, IPIs, entries written, DirectMap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rofolio.arch import rfc_machines
from rofolio.machine import Machine, MachineSpec, MMConfig
from rofolio.stats import cost_figures
from rofolio.survey.catalogue import Candidate, ImageSection, PageAllocator, Slab, Vmalloc, load_catalogue
from rofolio.tlbreach import direct_map_leaves, reach_summary, run_reach

__all__ = ["BEST", "SCENARIO_PREFIX", "Cost", "SurveyResult", "SurveyRow", "candidate_workload", "check_candidates",
           "cost_on", "rank_for_model2", "run_survey", "scenario_name", "verdict"]

SCENARIO_PREFIX = "survey-"  # the built-in scenario of a candidate the survey shortlists
CLASS_ORDER = {"model2": 0, "model1": 1, "neither": 2}
BEST = 5  # issue 14: built-in scenarios for the five candidates ranked best for model 2

FIGURES = tuple(cost_figures({}))


@dataclass(frozen=True)
class Workload:
    """What the study allocates for a candidate: ``folios`` allocations of ``order`` in context ``gfp``."""

    folios: int
    order: int
    gfp: str
    zero: bool
    note: str


def _gfp_name(gfp: str) -> tuple[str, bool]:
    """The machine's allocation context for gfp flags as the kernel writes them, and __GFP_ZERO."""
    zero = "__GFP_ZERO" in gfp
    if "GFP_TRANSHUGE" in gfp:
        return "transhuge", zero
    if "HIGHUSER" in gfp and "MOVABLE" in gfp and "~__GFP_MOVABLE" not in gfp:
        return "highuser_movable", zero
    if "GFP_USER" in gfp or "HIGHUSER" in gfp:
        return "user", zero
    return "kernel", zero


def candidate_workload(candidate: Candidate, nr_cpus: int = 8) -> Workload | None:
    """The allocations the candidate's catalogue fields describe; None for a kernel-image section."""
    a, count = candidate.allocation, candidate.typical_count
    if isinstance(a, ImageSection):
        return None
    if isinstance(a, PageAllocator):
        gfp, zero = _gfp_name(a.gfp)
        return Workload(count, a.order, gfp, zero, f"{count} x order-{a.order} folio(s), {a.gfp}")
    if isinstance(a, Slab):
        geometry = a.geometry(nr_cpus=nr_cpus)
        slabs = math.ceil(count / geometry.objects) if count else 0
        return Workload(slabs, geometry.order, "kernel", False,
                        f"{count} object(s) of {a.stride} B in {slabs} order-{geometry.order} slab(s) of "
                        f"{geometry.objects} ({a.cache})")
    assert isinstance(a, Vmalloc)
    return Workload(count * a.pages, 0, "kernel", False,
                    f"{count} vmalloc area(s) of {a.pages} page(s): their direct-map aliases")


@dataclass(frozen=True)
class Cost:
    """What making the workload read-only did on one machine."""

    machine: str
    model: str
    ret: str  # the first object's arch_make_folio_readonly() result
    readonly: bool  # did the first object end read-only
    first: dict[str, int]  # the first object's figures
    total: dict[str, int]  # all of them
    direct_map_kb: dict[str, int]  # the DirectMap change for all of them
    allocated: int  # folios the machine could allocate
    tlb: dict[str, Any] = field(default_factory=dict)  # per preset array: entries before/after (reach_summary())


def cost_on(spec: MachineSpec, workload: Workload, model: str) -> Cost:
    """Boot ``spec`` under lifetime ``model``, allocate the workload, make it read-only; what it cost."""
    from rofolio.errors import Errno

    m = Machine.boot(replace(spec, mm=MMConfig(lifetime=model)))
    m.finish_boot()
    folios = [f for f in (m.alloc_folio(workload.gfp, workload.order, label="survey", zero=workload.zero,
                                        compound=workload.order > 0) for _ in range(workload.folios)) if f]
    if not folios:
        return Cost(spec.label(), model, "-ENOMEM", False, dict.fromkeys(FIGURES, 0), dict.fromkeys(FIGURES, 0),
                    {}, 0)
    before = m.counters.copy()
    leaves_before = direct_map_leaves(m)
    first = m.step("first", lambda: m.make_readonly(folios[0], "survey"))
    for folio in folios[1:]:
        m.make_readonly(folio, "survey")
    after = m.counters
    total = {k: after.summary()[k] - before.summary().get(k, 0) for k in after.summary()}
    dm = {k: v for k, v in total.items() if k.startswith("DirectMap")}
    return Cost(spec.label(), model, Errno.describe(first.ret), folios[0].readonly, cost_figures(first.delta()),
                cost_figures(total), dm, len(folios), reach_summary(run_reach(leaves_before, m, folios)))


@dataclass
class SurveyRow:
    candidate: Candidate
    workload: Workload | None
    costs: list[Cost] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self)

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"id": c.id, "what": c.what, "relative": c.relative, "class": c.lifetime_class,
                "class_reason": c.class_reason, "typical_count": c.typical_count,
                "pages_per_object": c.pages_per_object,
                "workload": None if self.workload is None else self.workload.note,
                "costs": [{"machine": k.machine, "model": k.model, "ret": k.ret, "readonly": k.readonly,
                           "first": k.first, "total": k.total, "direct_map_kb": k.direct_map_kb,
                           "allocated": k.allocated, "tlb": k.tlb} for k in self.costs],
                "precedents": [p.model_dump() for p in c.precedents], "verdict": self.verdict}


def verdict(row: SurveyRow) -> str:
    """One sentence a reviewer could quote, built from the computed figures and the catalogue's reason."""
    c = row.candidate
    if c.relative:
        return f"{c.id}: a relative that leaves the direct map (or changes its alias) on its own terms; " \
               f"{c.class_reason}"
    if row.workload is None:  # a kernel-image object: whatever its protected sites say made it read-only
        by = [site.at.rsplit(":", 1)[1] + "()" for site in c.sites if site.role == "protected"] or ["mark_rodata_ro()"]
        return f"{c.id}: already read-only in the kernel image ({', '.join(dict.fromkeys(by))}); no runtime cost to add"
    worst = max(row.costs, key=lambda k: (k.total["splits"], k.total["ipis"]), default=None)
    fits = {"model2": "fits lifetime model 2 (the RFC's first step)",
            "model1": "needs lifetime model 1 (core MM must carry the state)",
            "neither": "fits neither model: it is written after it would be made read-only"}[c.lifetime_class]
    cost = "" if worst is None else (
        f"; making its {c.typical_count} object(s) read-only costs at most {worst.total['splits']} split(s), "
        f"{worst.total['pgtables']} page-table page(s) and {worst.total['ipis']} IPI(s) ({worst.machine})")
    return f"{c.id} {fits} ({c.class_reason}){cost}{_tlb_clause(row.costs)}"


def _tlb_clause(costs: list[Cost]) -> str:
    """The largest growth, over machines and CPU presets, of the second-level TLB entries (all its arrays
    together) the objects' 1 GiB neighbourhoods need; a 1G page a core smashes into 2M entries is counted
    as the core stores it."""
    grown = []
    for k in costs:
        for preset, arrays in k.tlb.items():
            l2 = [a for a in arrays.values() if a["level"] == "L2" and "touched" in a]
            if l2:
                before, after = (sum(a["touched"][i] for a in l2) for i in (0, 1))
                grown.append((after - before, preset, k.machine, before, after, sum(a["entries"] for a in l2)))
    if not grown:
        return ""
    delta, preset, machine, before, after, entries = max(grown, key=lambda g: (g[0], g[1], g[2]))
    if delta <= 0:
        return "; the second-level TLB entries its neighbourhood needs do not grow on any CPU preset"
    return (f"; its 1 GiB neighbourhood then needs {after} second-level TLB entries instead of {before} on "
            f"{preset} ({machine}; {after * 100 / entries:.1f}% of its {entries} second-level entries, every page "
            "size together)")


@dataclass
class SurveyResult:
    machines: list[str]
    rows: list[SurveyRow]

    def shortlist(self) -> list[dict[str, Any]]:
        """The BEST candidates to make read-only first (rank_for_model2()): those lifetime model 2 takes as
        they are, then those that need model 1, each class by its worst-machine cost; with the built-in
        scenario that runs each."""
        return [{"rank": i, "id": r.candidate.id, "class": r.candidate.lifetime_class,
                 "scenario": scenario_name(r.candidate.id)}
                for i, r in enumerate(rank_for_model2(self)[:BEST], start=1)]

    def shortlist_lines(self) -> list[str]:
        """The shortlist as text: one line per candidate."""
        fits = {"model2": "fits lifetime model 2", "model1": "needs lifetime model 1"}
        return [f"{s['rank']}. {s['id']}: {fits.get(s['class'], s['class'])}; rofolio run {s['scenario']}"
                for s in self.shortlist()]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "rofolio.survey/2", "machines": self.machines, "candidates": [r.to_dict() for r in self.rows],
                "shortlist": self.shortlist()}


def check_candidates(ids: Sequence[str]) -> list[Candidate]:
    """The catalogue, once every id of ``ids`` is in it (ConfigError naming the others and the choices)."""
    from rofolio.errors import ConfigError

    catalogue = load_catalogue()
    known = {c.id for c in catalogue}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise ConfigError(f"no candidate named {', '.join(map(repr, unknown))}",
                          "candidates: " + ", ".join(sorted(known)))
    return catalogue


def run_survey(mem: int = 16 << 30, machines: list[dict[str, Any]] | None = None, ids: list[str] | None = None,
               progress: Callable[[int, int], None] | None = None) -> SurveyResult:
    """Every candidate (or those of ``ids``) on every RFC machine (or ``machines``: [machine] keys)."""
    catalogue = check_candidates(ids or ())
    chosen = [c for c in catalogue if not ids or c.id in ids]
    specs = [MachineSpec.build(mem=mem, **config) for config in (machines or rfc_machines())]
    rows: list[SurveyRow] = []
    for i, candidate in enumerate(chosen, start=1):
        workload = candidate_workload(candidate)
        row = SurveyRow(candidate, workload)
        if workload is not None and workload.folios:
            model = "model2" if candidate.lifetime_class == "model2" else "model1"
            row.costs = [cost_on(spec, workload, model) for spec in specs]
        rows.append(row)
        if progress:
            progress(i, len(chosen))
    return SurveyResult([s.label() for s in specs], rows)


def rank_for_model2(result: SurveyResult) -> list[SurveyRow]:
    """The candidates with something to make read-only at run time, best first for lifetime model 2: its
    class first (model 2 fits as it is; model 1 needs core MM to carry the state; neither fits), then what
    making the typical count read-only costs on the worst machine (splits, IPIs, page-table pages)."""
    def key(row: SurveyRow) -> tuple[int, int, int, int, str]:
        worst = [max((k.total[f] for k in row.costs), default=0) for f in ("splits", "ipis", "pgtables")]
        return (CLASS_ORDER[row.candidate.lifetime_class], *worst, row.candidate.id)  # type: ignore[return-value]

    return sorted((r for r in result.rows if r.costs and not r.candidate.relative), key=key)


def scenario_name(candidate_id: str) -> str:
    """The built-in scenario that runs a ranked candidate's first object (``rofolio run NAME``)."""
    return SCENARIO_PREFIX + candidate_id.replace("_", "-")
