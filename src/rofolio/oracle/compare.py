"""Model and kernel side by side: per step, what each reported, and whether they agree.

Loading the module already changes the kernel's direct map (``module_enable_ro()``
on the module's text splits the 2M leaf holding its alias), so nothing is
compared in absolute terms: per step the *changes* of the DirectMap lines and
of the vmstat split counters, the return value (or the fault), and the direct
map over the step's pages widened to whole 2 MiB regions, as runs of (leaf
size, present, RW, NX, cache mode).  A ``snapshot`` compares the change of the
whole direct map since the experiment started.  Fault outcomes: the first lines
of the kernel's oops against the model's Fault text (the oops counter ``[#N]``
is not compared: later oopses in one boot count up), and a probe's -EFAULT
against the model's return value.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rofolio.errors import Errno
from rofolio.oracle.guest import GuestLog, GuestStep, Run
from rofolio.oracle.model import Change, ModelRun, ModelStep, diff
from rofolio.oracle.translate import Command, Plan
from rofolio.scenario.schema import leaf_text
from rofolio.units import Level

__all__ = [
    "Check",
    "ExperimentReport",
    "StepReport",
    "compare_experiment",
    "compare_oops",
    "compare_step",
    "describe_changes",
    "describe_ret",
    "describe_runs",
    "kernel_expect",
    "leaf_name",
    "leaf_of",
    "oops_lines",
    "signed",
    "unplaced_tables",
]

COUNTERS = ("DirectMap4k", "DirectMap2M", "DirectMap1G", "direct_map_level2_splits", "direct_map_level3_splits")
KERNEL_EXPECT = ("ret", "leaf", "fault", *COUNTERS)


@dataclass
class Check:
    what: str
    kernel: str
    model: str
    agree: bool


@dataclass
class StepReport:
    id: str
    index: int | None
    label: str
    command: str
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kernel_oops: str = ""
    model_oops: str = ""

    @property
    def agree(self) -> bool:
        return not self.errors and all(c.agree for c in self.checks)

    def disagreements(self) -> list[str]:
        out = [f"step {self.index or self.id}: {e}" for e in self.errors]
        out += [f"step {self.index or self.id}: {c.what}: kernel {c.kernel}, model {c.model}"
                for c in self.checks if not c.agree]
        return out


@dataclass
class ExperimentReport:
    name: str
    source: str
    uname: str
    guest: dict[str, Any]  # cpu, mem, smp, qemu command, boot number, wall time
    machine: dict[str, Any]  # the model's [machine]
    steps: list[StepReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    model_expect_failures: list[str] = field(default_factory=list)
    kernel_expect_failures: list[str] = field(default_factory=list)
    model_warnings: list[str] = field(default_factory=list)
    # [machine] values the oracle replaced (scenario value, oracle value): expectations written for
    # another machine are reported, not counted
    overridden: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def expectations_count(self) -> bool:
        return not self.overridden

    @property
    def agree(self) -> bool:
        expect_ok = not self.expectations_count or not (self.model_expect_failures or self.kernel_expect_failures)
        return not self.errors and expect_ok and all(s.agree for s in self.steps)

    def disagreements(self) -> list[str]:
        out = list(self.errors)
        for s in self.steps:
            out += s.disagreements()
        if self.expectations_count:
            out += [f"model expect: {f}" for f in self.model_expect_failures]
            out += [f"kernel expect: {f}" for f in self.kernel_expect_failures]
        return out

    def notes(self) -> list[str]:
        if self.expectations_count or not (self.model_expect_failures or self.kernel_expect_failures):
            return []
        changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.overridden.items())
        return [f"expectations written for the scenario's own machine, not counted ({changed}): {f}"
                for f in [*(f"model: {x}" for x in self.model_expect_failures),
                          *(f"kernel: {x}" for x in self.kernel_expect_failures)]]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "uname": self.uname, "agree": self.agree,
                "guest": self.guest, "machine": self.machine,
                "steps": [{**asdict(s), "agree": s.agree} for s in self.steps],
                "errors": self.errors, "model_expect_failures": self.model_expect_failures,
                "kernel_expect_failures": self.kernel_expect_failures, "model_warnings": self.model_warnings,
                "overridden": {k: list(v) for k, v in self.overridden.items()},
                "disagreements": self.disagreements(), "notes": self.notes()}


# ---------------------------------------------------------------- helpers
def signed(n: int) -> str:
    return f"{n:+d}"


def describe_runs(runs: list[Run]) -> str:
    return "; ".join(f"[{r.start:#x},{r.end:#x}) {r.describe()}" for r in runs) or "(nothing)"


def background_stores(kernel: list[Change], model: list[Change]) -> tuple[list[Change], list[Change]]:
    """The kernel's changes split into those to compare with the model's and background stores: a present,
    writable entry that only gained _PAGE_DIRTY, where the model changed nothing.  The MMU sets Dirty on any
    store through a writable entry (Intel SDM vol. 3, "Accessed and Dirty Flags"); set_memory_ro() (since
    f788b71768ff, v6.6) and __set_pages_np() (since c1fcf41cf37f, v6.15) clear it and set_memory_rw() and
    __set_pages_p() do not set it again, so a page the kernel gave back to the page allocator (a BPF JIT pack's,
    execmem's) is made Dirty by whatever next writes to it, at a time the experiment does not decide.  Such a
    store says nothing about the rule under test; anything else the model did not do stays a difference."""
    def touched(s: int, e: int) -> bool:
        return any(ms < e and s < me for ms, me, _, _ in model)

    compared, stores = [], []
    for change in kernel:
        s, e, before, after = change
        was = Run(s, e, *before)
        store = (was.present and was.rw and not was.dirty and replace(was, dirty=True).attrs() == after
                 and not touched(s, e))
        (stores if store else compared).append(change)
    return compared, stores


def describe_changes(changes: list[Change]) -> str:
    def attrs(a: tuple[Any, ...]) -> str:
        return Run(0, 0, *a).describe()

    return "; ".join(f"[{s:#x},{e:#x}) {attrs(b)} -> {attrs(a)}" for s, e, b, a in changes) or "no change"


def describe_ret(ret: int | str | None) -> str:
    if isinstance(ret, int):
        return Errno.describe(ret)
    return str(ret)


def leaf_of(runs: list[Run], pa: int) -> str:
    """The leaf holding ``pa`` as the scenario runner names it ('2M RO', '4K not-present', 'none')."""
    for r in runs:
        if r.start <= pa < r.end:
            return leaf_name(r)
    return "none"


_LEVELS = {level.leaf_name: level for level in Level}


def leaf_name(r: Run) -> str:
    """A guest run's leaf in the scenario runner's words (schema.leaf_text(), which expect.leaf is checked by)."""
    return leaf_text(_LEVELS.get(r.level), r.present, r.rw)


_OOPS_LINES = (
    ("address", re.compile(r"^BUG: unable to handle page fault for address: ([0-9a-f]+)")),
    ("access", re.compile(r"^#PF: (supervisor|user) (read|write|instruction fetch) access")),
    ("error code", re.compile(r"^#PF: error_code\(0x[0-9a-f]+\)")),
    ("banner", re.compile(r"^(?:Oops: )?Oops: [0-9a-f]{4}")),  # "Oops: Oops: 0003" since f9f62a877da1 (v6.10)
)
_ENTRY = re.compile(r"^(PGD|P4D|PUD|PMD|PTE) [0-9a-f]+$")


def oops_lines(text: str) -> dict[str, str]:
    """The comparable first lines of an x86 oops: address, access, error code, the page-table line
    (dump_pagetable(): "PGD v P4D v PUD v PMD v [PTE v]", or one entry alone), banner."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        for key, pattern in _OOPS_LINES:
            if key not in out and pattern.match(line):
                out[key] = re.sub(r"\[#\d+\]", "[#N]", line)
        if "page table" not in out:
            tokens = line.split()
            if tokens and tokens[0] == "PGD" and len(tokens) % 2 == 0:
                out["page table"] = " ".join(tokens)
            elif _ENTRY.match(line):
                out["page table"] = line
    return out


def unplaced_tables(kernel_line: str, model_line: str) -> str:
    """The kernel's page-table line with the table addresses the model does not know (it prints ``?`` and
    the entry's flags: where a table page lies is a placement) replaced the same way."""
    k, m = kernel_line.split(), model_line.split()
    if len(k) != len(m) or k[0::2] != m[0::2]:
        return kernel_line
    out = []
    for kv_, mv in zip(k, m, strict=True):
        if mv.startswith("?") and re.fullmatch(r"[0-9a-f]+", kv_):
            kv_ = f"?{int(kv_, 16) & 0xFFF:03x}"
        out.append(kv_)
    return " ".join(out)


# ---------------------------------------------------------------- compare
def compare_experiment(plan: Plan, log: GuestLog, model: ModelRun, *, source: str = "",
                       guest: dict[str, Any] | None = None) -> ExperimentReport:
    report = ExperimentReport(plan.name, source, log.uname or "?", guest or {},
                              model.machine.model_dump(mode="json"))
    report.model_expect_failures = model.expect_failures
    report.model_warnings = model.warnings
    scans: dict[str, list[Run]] = {}
    for cmd in plan.commands:
        ks = log.step(cmd.id)
        if ks is None:
            report.errors.append(f"the guest never ran {cmd.id} ({cmd.command})"
                                 + (": the kernel panicked" if log.panic else ""))
            continue
        if cmd.kind == "grab":
            ret = ks.ret()
            if ret != 0:
                g = next(g for g in plan.grabs if cmd.command == g.command())
                report.errors.append(f"alloc_contig_range() of {g.pages} pages at {g.pa:#x} returned "
                                     f"{describe_ret(ret)}: those pages are in use on the guest; choose others")
            moved = {k: v for k, v in ks.delta().items() if v}
            if moved:
                report.errors.append(f"taking pages changed the counters: {moved}")
            continue
        if cmd.kind == "baseline":
            found = ks.scans()
            if not found:
                report.errors.append("the baseline scan printed nothing")
            else:
                scans["base"] = found[0].runs
            continue
        assert cmd.step is not None
        ms = model.steps[cmd.step - 1]
        step_report = compare_step(cmd, ks, ms, scans.get("base"))
        report.steps.append(step_report)
        scenario_step = plan.scenario.steps[cmd.step - 1]
        if scenario_step.expect:
            report.kernel_expect_failures += [f"step {cmd.step}: {f}"
                                              for f in kernel_expect(scenario_step.expect, cmd, ks)]
    return report


def compare_step(cmd: Command, ks: GuestStep, ms: ModelStep, baseline: list[Run] | None) -> StepReport:
    rec = ms.record
    rep = StepReport(cmd.id, cmd.step, rec.label, cmd.command)
    kdelta = ks.delta()
    for key in COUNTERS:
        k, m = kdelta.get(key, 0), rec.delta.get(key, 0)
        rep.checks.append(Check(key, signed(k), signed(m), k == m))
    if ks.rc is None and not ks.after:
        rep.errors.append("the step did not finish on the guest")
        return rep
    if cmd.kind in ("set_memory", "direct_map", "probe", "vmap"):
        ret = ks.ret()
        if ret == "missing":
            result = ks.result() or {}
            rep.errors.append(f"the kernel has no {result.get('sym', '?')} (the module found no such symbol)")
        elif ret is None:
            rep.errors.append(f"the module printed no result for {cmd.command!r}"
                              + (f": {ks.module[-1]}" if ks.module else ""))
        else:
            rep.checks.append(Check("ret", describe_ret(ret), describe_ret(rec.ret), ret == rec.ret))
    if cmd.kind == "write":
        kernel_oops = ks.oops() or ""
        stored = any(r.get("phase") == "stored" for r in ks.results())
        faulted = bool(kernel_oops) or not stored
        model_faulted = rec.delta.get("faults", 0) > 0
        rep.checks.append(Check("fault", "oops" if faulted else "stored", "oops" if model_faulted else "stored",
                                faulted == model_faulted))
        rep.kernel_oops, rep.model_oops = kernel_oops, rec.oops
        if faulted and model_faulted:
            rep.checks += compare_oops(kernel_oops, rec.oops, _kernel_va(cmd, ks), ms.va)
    scans = ks.scans()
    for mapping, intervals, model_runs in (("direct", cmd.intervals, ms.runs),
                                           ("high", cmd.high_intervals, ms.high_runs)):
        for i, (start, end) in enumerate(intervals):
            found = [s for s in scans if s.map == mapping and s.start == start and s.end == end]
            where = f"{'direct map' if mapping == 'direct' else 'high map alias of'} [{start:#x},{end:#x})"
            if not found:
                rep.errors.append(f"no scan of the {where} on the guest")
                continue
            krun, mrun = found[0].runs, model_runs[i]
            same = [(*r.attrs(), r.start, r.end) for r in krun] == [(*r.attrs(), r.start, r.end) for r in mrun]
            rep.checks.append(Check(where, describe_runs(krun), describe_runs(mrun), same))
    states = ks.states()
    for when, what in (("after", "entry of the first page"), ("last", "entry of the last page")):
        if when in ms.entries and when in states:
            d = states[when]
            kentry = "hole" if d.get("level") == "hole" else f"{d.get('level')} {d.get('pte', '0x0')}"
            if d.get("level") == "none":
                kentry = "4K 0x0000000000000000"
            rep.checks.append(Check(what, kentry, ms.entries[when], kentry == ms.entries[when]))
    levels = ks.levels()
    for j, (name, off, _) in enumerate(cmd.mapping_levels):
        if j >= len(levels):
            rep.errors.append(f"no level of {name}+{off} on the guest")
            continue
        kr = _level_run(levels[j])
        mr = ms.mapping_levels[j]
        rep.checks.append(Check(f"{name} page {off}", kr.describe(), mr.describe(), kr.attrs() == mr.attrs()))
    if cmd.kind == "snapshot":
        found = [s for s in scans if s.map == "direct"]
        if baseline is None or not found:
            rep.errors.append("no baseline or snapshot scan on the guest")
        else:
            mchanges = ms.changes or []
            kchanges, stores = background_stores(diff(baseline, found[0].runs), mchanges)
            ktext = describe_changes(kchanges)
            if stores:
                ktext += f" (and {len(stores)} background store(s) set Dirty: {describe_changes(stores)})"
            rep.checks.append(Check("direct map change since the start", ktext, describe_changes(mchanges),
                                    kchanges == mchanges))
    return rep


def _level_run(d: dict[str, str]) -> Run:
    from rofolio.oracle.guest import parse_run

    return parse_run(d, 0, 0)


def _kernel_va(cmd: Command, ks: GuestStep) -> int | None:
    for r in ks.results():
        if r.get("cmd") == "write" and "va" in r:
            return int(r["va"], 16)
    return None


def compare_oops(kernel_text: str, model_text: str, kernel_va: int | None, model_va: int | None) -> list[Check]:
    """Each line the model's oops claims, against the same line of the kernel's.

    For a vmap mapping the two addresses differ (each side has its own vmalloc
    layout): the model's address is replaced by the guest's before comparing.
    """
    if kernel_va is not None and model_va is not None and kernel_va != model_va:
        model_text = model_text.replace(f"{model_va:016x}", f"{kernel_va:016x}")
    k, m = oops_lines(kernel_text), oops_lines(model_text)
    if "page table" in k and "page table" in m:
        k["page table"] = unplaced_tables(k["page table"], m["page table"])
    checks = []
    for key in ("address", "access", "error code", "page table", "banner"):
        if key not in m:
            continue  # the model does not claim this line
        checks.append(Check(f"oops {key}", k.get(key, "(no such line)"), m[key], k.get(key) == m[key]))
    return checks


def kernel_expect(expect: dict[str, Any], cmd: Command, ks: GuestStep) -> list[str]:
    """The scenario's expectations that the kernel can show, checked against the kernel."""
    failures = []
    delta = ks.delta()
    scans = ks.scans()
    for key, want in expect.items():
        if key not in KERNEL_EXPECT:
            continue
        if key == "ret":
            got = describe_ret(ks.ret())
            want_text = Errno.describe(want) if isinstance(want, int) else str(want)
            if got != want_text:
                failures.append(f"ret is {got}, expected {want_text}")
        elif key == "fault":
            faulted = bool(ks.oops()) or (cmd.kind == "write" and not any(r.get("phase") == "stored"
                                                                          for r in ks.results()))
            if cmd.kind == "probe":
                faulted = ks.ret() == -Errno.EFAULT
            if faulted is not bool(want):
                failures.append(f"the step {'faulted' if faulted else 'did not fault'}, expected "
                                f"{'a fault' if want else 'no fault'}")
        elif key == "leaf":
            if cmd.mapping is not None:
                levels = ks.levels()
                got = leaf_name(_level_run(levels[0])) if levels else "none"
            else:
                runs = next((s.runs for s in scans if s.map == "direct" and cmd.target_pa is not None
                             and s.start <= cmd.target_pa < s.end), [])
                got = leaf_of(runs, cmd.target_pa or 0)
            if got != want:
                failures.append(f"leaf is {got!r}, expected {want!r}")
        else:
            got_n = delta.get(key, 0)
            if got_n != want:
                failures.append(f"{key} changed by {got_n}, expected {want}")
    return failures
