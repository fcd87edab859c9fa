"""The model's side of an oracle run: the same scenario on the oracle's machine, with what the guest reports.

The machine is the guest's: QEMU's e820 map for ``-m``, kernel = the guest's
series (6.1), cpus = ``-smp``, GB pages and 5-level paging as the guest's CPU
flags say, and ``start = "running"``; the boot record read from the same guest
(rofolio.oracle.record: its initrd and boot-time BPF JIT pack) is the model's input for what the page
allocator and the boot loader placed.  For every step the model reports what the module
reports: the counter changes, the return value or fault, and the direct map
over the same physical ranges as (leaf size, present, RW, NX, cache mode) runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from rofolio.machine import BootRecord, Machine
from rofolio.oracle.errors import OracleError
from rofolio.oracle.guest import Run, cache_mode, coalesce
from rofolio.oracle.translate import Plan
from rofolio.prot import X86
from rofolio.scenario import runner, schema
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level

__all__ = [
    "Change", "ModelRun", "ModelStep", "boot", "diff", "entry_run", "layout", "level_at", "oracle_machine",
    "raw_entry", "run", "runs",
]

def oracle_machine(scenario: schema.Scenario, *, mem: int, kernel: str, cpus: int, gbpages: bool,
                   la57: bool = False, options: dict[str, Any] | None = None) -> schema.Machine:
    """The scenario's [machine] replaced by the oracle guest's (placements come from its boot record);
    ``options``: what the guest kernel's config decides (bootcheck.model_options()), unless the scenario says."""
    data = scenario.machine.model_dump(exclude_unset=True)
    data.pop("memory_map", None)
    return schema.Machine.model_validate({
        **(options or {}), **data, "mem": mem, "kernel": kernel, "cpus": cpus, "gbpages": gbpages,
        "paging": 5 if la57 else 4, "debug_pagealloc": False, "kfence": False,
    })


def boot(machine: schema.Machine, record: BootRecord | None = None) -> Machine:
    m = Machine.boot(runner.spec_of(machine), record=record)
    m.finish_boot()
    return m


def entry_run(start: int, end: int, level: Level, flags: int) -> Run:
    pat = bool(flags & (X86.PAT if level == Level.PTE else X86.PAT_LARGE))
    return Run(start, end, level.leaf_name, bool(flags & X86.PRESENT), bool(flags & X86.RW),
               bool(flags & X86.NX), cache_mode(bool(flags & X86.PCD), bool(flags & X86.PWT), pat),
               bool(flags & X86.GLOBAL), bool(flags & X86.DIRTY))


def runs(m: Machine, pa_start: int, pa_end: int, *, high: bool = False) -> list[Run]:
    """The direct map (or the high kernel map) over [pa_start, pa_end) as the module's scan reports it.

    Addresses are physical; where there is no entry the run is "none".
    """
    lo = m.image_alias(pa_start) if high else m.va(pa_start)
    assert lo is not None, "the high kernel map is x86-64's"
    base = lo - pa_start
    out: list[Run] = []
    at = pa_start
    for leaf in m.leaves(lo, base + pa_end):
        s, e = leaf.start - base, leaf.end - base
        if s > at:
            out.append(Run(at, s, "none"))
        out.append(entry_run(s, e, leaf.level, leaf.flags))
        at = e
    if at < pa_end:
        out.append(Run(at, pa_end, "none"))
    return coalesce(out)


def layout(m: Machine) -> list[Run]:
    """The whole direct map, [0, max_pfn_mapped << PAGE_SHIFT)."""
    return runs(m, 0, m.direct_map_end_pfn << PAGE_SHIFT)


def level_at(m: Machine, va: int) -> Run:
    """lookup_address() of one page as a one-page Run (for vmap mappings)."""
    found = m.lookup(va)
    if found is None or (found.flags == 0 and not found.present):
        return Run(0, 0, "none")
    return entry_run(0, 0, found.level, found.flags)


def raw_entry(m: Machine, va: int) -> str:
    """lookup_address()'s entry for ``va`` as the module prints it: "<level> 0x<value>", or "hole"."""
    found = m.lookup(va)
    if found is None:
        return "hole"
    return f"{found.level.leaf_name} {found.entry:#018x}"


Change = tuple[int, int, tuple[Any, ...], tuple[Any, ...]]


def diff(before: list[Run], after: list[Run]) -> list[Change]:
    """Where two layouts differ: (start, end, attrs before, attrs after), merged."""
    cuts = sorted({r.start for r in before} | {r.end for r in before} | {r.start for r in after} |
                  {r.end for r in after})
    out: list[Change] = []

    def attrs_at(layout_: list[Run], a: int) -> tuple[Any, ...]:
        for r in layout_:
            if r.start <= a < r.end:
                return r.attrs()
        return ("none", False, False, False, "WB", False, False)

    for s, e in pairwise(cuts):
        b, a = attrs_at(before, s), attrs_at(after, s)
        if b == a:
            continue
        if out and out[-1][1] == s and out[-1][2] == b and out[-1][3] == a:
            out[-1] = (out[-1][0], e, b, a)
        else:
            out.append((s, e, b, a))
    return out


@dataclass
class ModelStep:
    record: runner.StepRecord  # what `rofolio run` reports for the step
    va: int | None  # the model's address for the step (differs from the guest's for vmap mappings)
    runs: list[list[Run]] = field(default_factory=list)  # one list per Command.intervals entry
    high_runs: list[list[Run]] = field(default_factory=list)  # one list per Command.high_intervals entry
    mapping_levels: list[Run] = field(default_factory=list)
    changes: list[Change] | None = None  # snapshot: the change from the experiment's start
    entries: dict[str, str] = field(default_factory=dict)  # "after"/"last": the raw entry, as the module prints it


@dataclass
class ModelRun:
    machine: schema.Machine
    steps: list[ModelStep]
    warnings: list[str]
    expect_failures: list[str]


REPLAYED = ("DirectMap4k", "DirectMap2M", "DirectMap1G", "direct_map_level2_splits", "direct_map_level3_splits",
            "faults")


def run(plan: Plan, machine: schema.Machine, record: BootRecord | None = None) -> ModelRun:
    """Run the plan's scenario on the model, collecting what the guest collects.

    The figures are `rofolio run`'s (``run_scenario``); the layouts come from a
    replay of the same steps on a second machine through the kernel API, which
    must move the same counters, or the replay is reported as broken.
    """
    scenario = plan.scenario.model_copy(update={"machine": machine, "start": "running"})
    result = runner.run_scenario(scenario, filename=plan.name, on=(runner.spec_of(machine), record))
    m = boot(machine, record)
    baseline = layout(m) if any(c.kind == "baseline" for c in plan.commands) else None
    vmaps: dict[str, int] = {}
    steps: list[ModelStep] = []
    for index, step in enumerate(scenario.steps, start=1):
        cmd = plan.step_command(index)
        va = None
        if cmd.mapping is not None:
            va = vmaps[cmd.mapping] + cmd.mapping_offset * PAGE_SIZE
        elif cmd.target_pa is not None:
            va = m.va(cmd.target_pa)
        replay = m.step(step.op, lambda step=step, va=va: _apply(m, step, va, vmaps))
        record = result.steps[index - 1]
        got = {key: replay.delta().get(key, 0) for key in REPLAYED}
        want = {key: record.delta.get(key, 0) for key in REPLAYED}
        if got != want or replay.ret != record.ret:
            raise OracleError(f"internal: replaying step {index} ({step.op}) moved {got} and returned {replay.ret}, "
                              f"but `rofolio run` reports {want} and {record.ret}",
                              "the oracle's replay (rofolio.oracle.model._apply) no longer matches the "
                              "scenario runner; update it")
        ms = ModelStep(record, va, runs=[runs(m, s, e) for s, e in cmd.intervals],
                       high_runs=[runs(m, s, e, high=True) for s, e in cmd.high_intervals],
                       mapping_levels=[level_at(m, vmaps[name] + off * PAGE_SIZE)
                                       for name, off, _ in cmd.mapping_levels])
        if cmd.kind in ("set_memory", "direct_map") and va is not None:
            pages = getattr(step, "pages", 1)
            ms.entries = {"after": raw_entry(m, va), "last": raw_entry(m, va + (pages - 1) * PAGE_SIZE)}
        if cmd.kind == "snapshot" and baseline is not None:
            ms.changes = diff(baseline, layout(m))
        steps.append(ms)
    return ModelRun(machine, steps, list(result.warnings), list(result.failures))


def _apply(m: Machine, step: Any, va: int | None, vmaps: dict[str, int]) -> int:
    """One supported step through the machine's kernel API (the oracle refuses every other op)."""
    assert va is not None or isinstance(step, schema.Snapshot)
    if isinstance(step, schema.SetMemory):
        return m.set_memory(step.op, va, step.pages)  # type: ignore[arg-type]
    if isinstance(step, schema.SetDirectMap):
        return m.set_direct_map(step.op, m.pa(va) >> PAGE_SHIFT)  # type: ignore[arg-type]
    if isinstance(step, schema.Vmap):
        pfn = m.pa(va) >> PAGE_SHIFT  # type: ignore[arg-type]
        vmaps[step.as_] = m.vmap([pfn + i for i in range(step.pages)])
        return 0
    if isinstance(step, schema.Write):
        mapping = "vmalloc" if step.mapping else "direct map"
        return m.kernel_store(va, probe=step.probe, mapping=mapping).ret  # type: ignore[arg-type]
    return 0  # snapshot
