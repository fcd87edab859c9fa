"""Running a scenario: machine → steps → events → per-step results.

``run_scenario`` boots the scenario's machine, checks every step against it
before running any (addresses outside RAM, unknown mappings, unknown
expectations), then runs the steps in order.  Each step's result is what its
operation returned and how every counter moved, derived from the events it
produced; ``expect`` tables are checked against exactly those figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rofolio.errors import ConfigError, Errno, RofolioError, ScenarioError, ScenarioErrors
from rofolio.events import KernelWarning
from rofolio.machine import BootRecord, Machine, MachineSpec, MMConfig
from rofolio.scenario import schema
from rofolio.scenario.loader import LoadedScenario, _Locator, load, problem_errors
from rofolio.scenario.ops import HANDLERS, Context
from rofolio.tlbreach import direct_map_leaves, run_reach
from rofolio.units import PAGE_SIZE, Level, align_down

__all__ = [
    "SCHEMA",
    "LayoutRun",
    "ScenarioResult",
    "StepRecord",
    "direct_map_layout",
    "iter_gib",
    "run_scenario",
    "spec_of"
]

SCHEMA = "rofolio.scenario/2"



@dataclass(frozen=True, slots=True)
class LayoutRun:
    """One stretch of the direct map for plots: physical range, leaf size, protection."""

    start: int
    end: int
    level: str
    writable: bool
    present: bool


@dataclass
class StepRecord:
    index: int
    op: str
    label: str
    phase: str
    ret: int
    delta: dict[str, int]
    after: dict[str, int]
    leaf_after: str
    checked: bool = False  # the step carried expectations
    oops: str = ""  # the oops text of a fault the step took
    note: str = ""  # what the step found out (the page GUP returned, a value read)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the kernel warned during the step

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "label": self.label, "phase": self.phase,
                "ret": Errno.describe(self.ret), "leaf_after": self.leaf_after, "delta": self.delta,
                "after": self.after, "oops": self.oops, "note": self.note, "warnings": self.warnings,
                "expect_failures": self.failures}


@dataclass
class ScenarioResult:
    """Everything a report shows about one run of one scenario."""

    name: str
    description: str
    seed: int
    start: str
    machine: dict[str, Any]
    boot: dict[str, int]
    steps: list[StepRecord]
    final: dict[str, int]
    meminfo: list[str]
    layouts: dict[str, list[LayoutRun]]
    warnings: list[str]
    inspection: dict[str, Any] = field(default_factory=dict)  # what an inspect() hook found at the end
    mapped_kb: dict[str, int] = field(default_factory=dict)  # what the page tables map at the end, per leaf size
    tlb_reach: dict[str, Any] = field(default_factory=dict)  # rofolio.tlbreach.run_reach(): before and after
    ptdump: dict[str, list[str]] = field(default_factory=dict)  # the direct map's dump before/after, when asked
    notes: list[str] = field(default_factory=list)  # what the reader of an older scenario file must know

    @property
    def failures(self) -> list[str]:
        return [f"step {s.index}: {f}" for s in self.steps for f in s.failures]

    def totals(self) -> dict[str, int]:
        """Sum of every step's change: the scenario's cost, boot excluded."""
        out: dict[str, int] = {}
        for step in self.steps:
            for key, value in step.delta.items():
                out[key] = out.get(key, 0) + value
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "scenario": {"name": self.name, "description": self.description, "seed": self.seed,
                         "start": self.start},
            "machine": self.machine,
            "boot": self.boot,
            "steps": [s.to_dict() for s in self.steps],
            "totals": self.totals(),
            "final": self.final,
            "meminfo": self.meminfo,
            "mapped_kB": self.mapped_kb,
            "tlb_reach": self.tlb_reach,
            "warnings": self.warnings,
            "expect_failures": self.failures,
        } | ({"ptdump": self.ptdump} if self.ptdump else {}) | ({"notes": self.notes} if self.notes else {})

    def _repr_html_(self) -> str:  # rendered by notebooks
        from rofolio.tables import html_tables  # not rofolio.report: results sit below reports

        return html_tables(self)


def spec_of(table: schema.Machine, mm: schema.MM | None = None) -> MachineSpec:
    """The one mapping from a scenario's [machine] and [mm] tables to what a Machine boots."""
    mm = mm or schema.MM()
    mm_config = MMConfig(
        nodes=mm.nodes, movablecore=mm.movablecore, init_on_alloc=mm.init_on_alloc, init_on_free=mm.init_on_free,
        page_poisoning=mm.page_poisoning, transparent_hugepage=mm.thp, use_zero_page=mm.use_zero_page,
        persistent_huge_zero_folio=mm.persistent_huge_zero_folio,
        readonly_huge_zero_folio=mm.readonly_huge_zero_folio, lifetime=mm.lifetime)
    return MachineSpec(
        arch=table.arch, mem=table.mem, memory_map=tuple(table.memory_map) if table.memory_map else None,
        kernel=table.kernel, cpus=table.cpus, debug_pagealloc=table.debug_pagealloc, kfence=table.kfence,
        options=table.options, mm=mm_config)


def run_scenario(source: str | Path | LoadedScenario | schema.Scenario, *,
                 progress: Callable[[int, int], None] | None = None, filename: str | None = None,
                 inspect: Callable[[Context], dict[str, Any]] | None = None,
                 on: tuple[MachineSpec, BootRecord | None] | None = None, ptdump: bool = False) -> ScenarioResult:
    """Run a scenario given as a built-in name, a .toml path, a loaded scenario or a parsed Scenario.

    ``progress(done, total)`` is called after each step (the CLI draws a bar with it).  ``on`` runs the
    steps on another machine than the scenario's [machine] (``rofolio run --host``: the model of this
    one, with its boot record); the scenario's [mm] table still applies.  ``ptdump`` keeps the direct
    map's page-table dump before the first step and after the last (``rofolio run --ptdump``).
    """
    if isinstance(source, schema.Scenario):
        loaded = LoadedScenario(source, filename or source.name, filename or source.name)
    else:
        loaded = load(source)
    scenario, name, locator = loaded.scenario, loaded.filename, loaded.locator
    if on is None:
        _check_machine(scenario, name, locator)
        record = scenario.boot.record() if scenario.boot is not None else None
        try:
            machine = Machine.boot(spec_of(scenario.machine, scenario.mm), record=record)
        except ConfigError as err:  # keys each valid alone that the architecture refuses together at boot
            raise ScenarioErrors([ScenarioError(err.message, err.hint, file=name, line=locator.find(("machine",)),
                                                key="machine")]) from err
    else:
        machine = Machine.boot(replace(on[0], mm=spec_of(scenario.machine, scenario.mm).mm), record=on[1])
    if scenario.start == "running":
        machine.finish_boot()
    _check_steps(scenario, machine, name, locator)
    boot = machine.counters.summary()
    layouts = {"before": direct_map_layout(machine)}
    leaves_before = direct_map_leaves(machine)
    dumps = {"before": _ptdump(machine)} if ptdump else {}
    records: list[StepRecord] = []
    ctx = Context(machine)
    for index, step in enumerate(scenario.steps, start=1):
        try:
            records.append(_run_step(ctx, index, step, layouts))
        except RofolioError as err:  # a step that cannot run here (a freed folio, an exited process): stop
            where = ("steps", index - 1, *([err.key] if isinstance(err, ScenarioError) and err.key else []))
            raise ScenarioErrors([ScenarioError(err.message, err.hint, file=name, line=locator.find(where),
                                                key=f"step {index} ({step.op})")]) from err
        if progress:
            progress(index, len(scenario.steps))
    layouts["after"] = direct_map_layout(machine)
    if ptdump:
        dumps["after"] = _ptdump(machine)
    return ScenarioResult(scenario.name, scenario.description, scenario.seed, scenario.start,
                          machine.spec.describe(), boot, records, machine.counters.summary(),
                          machine.meminfo_lines(), layouts, machine.kernel_warnings(), inspect(ctx) if inspect else {},
                          machine.direct_map_mapped_kb(),
                          run_reach(leaves_before, machine, _touched(scenario, ctx)), dumps,
                          _changed_names(loaded) if on is None else [])


def _changed_names(loaded: LoadedScenario) -> list[str]:
    """A note for each name the scenario's own text uses whose meaning changed since an earlier schema
    (``rofolio.arch.CHANGED``): the file runs with today's meaning, and says which that is."""
    import tomllib

    from rofolio.arch import CHANGED

    if not loaded.text:
        return []
    arch = tomllib.loads(loaded.text).get("machine", {}).get("arch")
    if arch not in CHANGED or arch != loaded.scenario.machine.arch:
        return []
    what, hint = CHANGED[arch]
    return [f"{loaded.filename}: {what}; {hint}"]


def _ptdump(machine: Machine) -> list[str]:
    """The direct map as the architecture's page-table dump prints it; none where it has no dump."""
    try:
        return machine.ptdump_lines()
    except ConfigError:  # an architecture without a modelled ptdump (the weak default)
        return []


def _touched(scenario: schema.Scenario, ctx: Context) -> list[Any]:
    """The folios a run touched: those its steps allocated or named, and the huge zero folio once read-only."""
    named = {getattr(step, "folio", None) for step in scenario.steps}
    out = list(ctx.folios.values())
    hzf = ctx.machine.huge_zero_folio
    if hzf is not None and ("huge_zero_folio" in named or not ctx.machine.direct_map_writable(hzf.pfn)):
        out.append(hzf)
    if "zero_page" in named:
        out.append(ctx.machine.zero_page)
    return out


# ----------------------------------------------------------------- validation
def _check_machine(scenario: schema.Scenario, name: str, locator: _Locator) -> None:
    m = scenario.machine
    if "mem" in m.model_fields_set and m.memory_map:
        raise ScenarioErrors([ScenarioError("give mem or memory_map, not both", "remove one of them",
                                            file=name, line=locator.find(("machine", "mem")), key="machine.mem")])
    # RAM beyond what the architecture can address is not refused: the kernel warns and leaves it unused
    # (x86 e820_end_pfn()), and so does the model's boot, whose warning the result shows.


def _check_steps(scenario: schema.Scenario, machine: Machine, name: str, locator: _Locator) -> None:
    """Refuse, before anything runs, steps that cannot run on this machine."""
    # what the loader checks across steps (names, expectations), again for a scenario made in code
    data = {"start": scenario.start, "steps": [s.model_dump(by_alias=True, exclude_none=True) for s in scenario.steps]}
    errors = problem_errors(data, name, locator)
    memory = machine.memory
    for index, step in enumerate(scenario.steps):
        where = ("steps", index)
        pa = getattr(step, "pa", None)
        if pa is not None:
            first = pa + step.offset * PAGE_SIZE  # type: ignore[union-attr]
            pages = getattr(step, "pages", 1)
            page = align_down(first, PAGE_SIZE)
            if not memory.is_ram(page):
                partly = any(r.start < page + PAGE_SIZE and page < r.end for r in memory.ram)
                errors.append(ScenarioError(
                    f"the page at {page:#x} is only partly RAM on this machine: a step acts on whole pages"
                    if partly else f"physical address {first:#x} is not RAM on this machine",
                    "RAM ranges: " + ", ".join(f"[{r.start:#x}, {r.end:#x})" for r in memory.ram),
                    file=name, line=locator.find((*where, "pa")), key=f"steps[{index + 1}].pa"))
            elif first + pages * PAGE_SIZE > memory.ram[-1].end:
                errors.append(ScenarioError(
                    f"{pages} pages from {first:#x} run past the end of RAM ({memory.ram[-1].end:#x})",
                    "use fewer pages", file=name, line=locator.find((*where, "pages")),
                    key=f"steps[{index + 1}].pages"))
        va = getattr(step, "va", None)
        if va is not None and machine.lookup(va + step.offset * PAGE_SIZE) is None:  # type: ignore[union-attr]
            errors.append(ScenarioError(
                f"virtual address {va:#x} is not mapped on this machine",
                f"direct-map addresses start at {machine.direct_map_bounds()[0]:#x}; or use pa",
                file=name, line=locator.find((*where, "va")), key=f"steps[{index + 1}].va"))
        needs = {schema.SetMemory: step.op, schema.SetDirectMap: step.op, schema.Vmap: "vmap",
                 schema.PgtableAllocFail: "alloc_pgtable_page"}.get(type(step))
        absent = machine.spec.entry.set_memory_absent(needs, machine.spec.kernel) \
            if needs and needs.startswith("set_memory_") else None
        if absent is not None and needs in machine.spec.entry.set_memory_ops:  # not in this kernel release yet
            errors.append(ScenarioError(absent, "choose a newer kernel in [machine]", file=name,
                                        line=locator.find((*where, "op")), key=f"steps[{index + 1}].op"))
        elif needs and not machine.supports(needs):
            errors.append(ScenarioError(
                f"{step.op} is not modelled on {machine.spec.arch}",
                f"{machine.spec.arch} models: " + (", ".join(sorted(machine.spec.entry.set_memory_ops)) or "none of "
                                                   "the set_memory_*() functions"),
                file=name, line=locator.find((*where, "op")), key=f"steps[{index + 1}].op"))
    if errors:
        raise ScenarioErrors(errors)


# ------------------------------------------------------------------- running
def _label(step: Any) -> str:
    """A readable default name: the op and its operands."""
    parts = [step.op]
    for key in ("pa", "va"):
        value = getattr(step, key, None)
        if value is not None:
            parts.append(f"{key}={value:#x}")
    for key in ("mapping", "folio", "process", "region", "to", "gfp", "via"):
        value = getattr(step, key, None)
        if value is not None:
            parts.append(f"{key}={value}")
    for key in ("order", "pages", "offset", "to_node", "length"):
        value = getattr(step, key, None)
        if value:
            parts.append(f"{key}={value:#x}" if key == "length" else f"{key}={value}")
    for key in ("probe", "write", "longterm", "fail", "zero"):
        if getattr(step, key, False):
            parts.append(key)
    name = getattr(step, "as_", None)
    if name:
        parts.append(f"as {name}")
    return " ".join(parts)


def _run_step(ctx: Context, index: int, step: Any, layouts: dict[str, list[LayoutRun]]) -> StepRecord:
    machine = ctx.machine
    va: int | None = None

    def operation() -> int:
        nonlocal va
        ctx.note = ""
        ret, va = HANDLERS[type(step)](ctx, step)
        return ret

    result = machine.step(step.op, operation)
    if isinstance(step, schema.Snapshot):
        layouts[step.name or f"step {index}"] = direct_map_layout(machine)
    leaf = _describe_leaf(machine.lookup(va)) if va is not None else ""
    record = StepRecord(index, step.op, step.name or _label(step), str(machine.phase), result.ret, result.delta(),
                        result.after.summary(), leaf)
    faults = [e for e in result.events if e.kind == "fault"]
    record.oops = faults[0].text if faults else ""  # type: ignore[attr-defined]
    record.note = ctx.note
    record.warnings = [e.text for e in result.events if isinstance(e, KernelWarning)]
    record.checked = bool(step.expect)
    record.failures = _check_expect(step.expect or {}, record)
    return record


def _describe_leaf(found: Any) -> str:
    return schema.leaf_text(None) if found is None else schema.leaf_text(found.level, found.present, found.writable)


def _check_expect(expect: dict[str, Any], record: StepRecord) -> list[str]:
    failures = []
    for key, want in expect.items():
        if key == "ret":
            got: Any = Errno.describe(record.ret)
            want_text = Errno.describe(want) if isinstance(want, int) else str(want)
            if got != want_text:
                failures.append(f"ret is {got}, expected {want_text}")
        elif key == "leaf":
            if record.leaf_after != want:
                failures.append(f"leaf is {record.leaf_after!r}, expected {want!r}")
        elif key == "fault":
            faulted = bool(record.delta.get("faults", 0))
            if faulted is not bool(want):
                failures.append(f"the step {'faulted' if faulted else 'did not fault'}, expected "
                                f"{'a fault' if want else 'no fault'}")
        else:
            got = record.delta.get(key, 0)
            if got != want:
                failures.append(f"{key} changed by {got}, expected {want}")
    return failures


# ------------------------------------------------------------------ layouts
def direct_map_layout(machine: Machine) -> list[LayoutRun]:
    """The direct map as (physical range, leaf size, RW/RO, present) stretches."""
    lo, hi = machine.direct_map_bounds()
    out: list[LayoutRun] = []
    for leaf in machine.leaves(lo, hi):
        start, end, level = machine.pa(leaf.start), machine.pa(leaf.end), leaf.level.leaf_name
        if out and out[-1].end == start and out[-1].level == level and \
                out[-1].writable == leaf.writable and out[-1].present == leaf.present:
            out[-1] = LayoutRun(out[-1].start, end, level, leaf.writable, leaf.present)
        else:
            out.append(LayoutRun(start, end, level, leaf.writable, leaf.present))
    return out


def iter_gib(layout: list[LayoutRun]) -> Iterator[tuple[int, list[LayoutRun]]]:
    """Group a layout by GiB of physical address (for the per-GiB strips)."""
    gib = Level.PUD.size
    by: dict[int, list[LayoutRun]] = {}
    for run in layout:
        a = run.start
        while a < run.end:
            g = a // gib
            b = min(run.end, (g + 1) * gib)
            by.setdefault(g, []).append(LayoutRun(a, b, run.level, run.writable, run.present))
            a = b
    yield from sorted(by.items())
