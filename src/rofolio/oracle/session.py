"""Running experiments on the guest: grouping into boots, booting, comparing each with the model.

Several scenarios share one boot when they cannot see each other: the same
guest (memory, CPU, -smp) and disjoint *footprints*.  A footprint is every
boot-time leaf a scenario's pages lie in: the whole 1 GiB for a 1G leaf (a
split anywhere in it changes it all), else the 4 MiB block (2M leaves, and the
MAX_ORDER block alloc_contig_range() isolates).  Results stay per scenario:
each is compared with its own model run on a freshly booted model machine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rofolio.errors import RofolioError
from rofolio.machine import BootRecord
from rofolio.oracle import bootcheck, guest
from rofolio.oracle import model as oracle_model
from rofolio.oracle.bootmatrix import BootMachine, run_all
from rofolio.oracle.compare import ExperimentReport, compare_experiment, describe_changes
from rofolio.oracle.errors import OracleError, Refusal
from rofolio.oracle.record import record_of
from rofolio.oracle.setup import Install
from rofolio.oracle.translate import MAX_SLOTS, Plan, kernel_series, translate
from rofolio.scenario import schema
from rofolio.scenario.loader import load
from rofolio.units import PAGE_SIZE, GiB, Level, align_down, format_size, parse_size

__all__ = [
    "Experiment", "Session", "boot_fidelity", "compare_boot", "footprint", "group", "insmod_changes",
    "load_experiments", "overridden", "predicted_gbpages", "predicted_la57", "prepare", "qemu_mem", "recompare",
    "run",
]

MAX_GRAB_PAGES = (2 * GiB) // PAGE_SIZE  # pages taken per boot (each GiB costs ~4-7 s of TCG time)


@dataclass
class Experiment:
    scenario: schema.Scenario
    source: str
    mem: int
    cpu: str
    plan: Plan | None = None
    footprint: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class Session:
    """The outcome of one `rofolio oracle run`: one report per experiment, and the boots."""

    reports: list[ExperimentReport]
    boots: list[dict[str, Any]]
    wall_s: float

    @property
    def agreeing(self) -> int:
        return sum(r.agree for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "rofolio.oracle/1", "agreement": f"{self.agreeing}/{len(self.reports)}",
                "agree": self.agreeing == len(self.reports), "wall_s": round(self.wall_s, 1),
                "boots": self.boots, "experiments": [r.to_dict() for r in self.reports]}


def qemu_mem(size: int) -> str:
    """A size for QEMU's -m: 8G, 1536M."""
    if size % GiB == 0:
        return f"{size // GiB}G"
    if size % (1 << 20):
        raise OracleError(f"{format_size(size)} is not a whole number of MiB", "QEMU's -m takes MiB")
    return f"{size >> 20}M"


def predicted_gbpages(cpu: str) -> bool:
    """Whether a -cpu string gives pdpe1gb (checked against the guest's flags after boot)."""
    parts = cpu.split(",")
    flags = parts[1:]
    if "-pdpe1gb" in flags or "pdpe1gb=off" in flags:
        return False
    if "+pdpe1gb" in flags or "pdpe1gb=on" in flags:
        return True
    return parts[0] not in ("qemu64", "kvm64", "qemu32", "kvm32", "pentium", "pentium2", "pentium3", "486")


def predicted_la57(cpu: str) -> bool:
    parts = cpu.split(",")
    return parts[0] == "max" and "-la57" not in parts[1:] and "la57=off" not in parts[1:]


def load_experiments(sources: list[str], mem: str | None, cpu: str) -> list[Experiment]:
    """Scenarios with the guest each needs: -m from --mem, else the scenario's mem, else 8G; a scenario
    that sets gbpages = false gets a CPU without pdpe1gb."""
    out = []
    for source in sources:
        loaded = load(source)
        scenario, name = loaded.scenario, loaded.name
        given = scenario.machine.model_fields_set
        if mem is not None:
            size = parse_size(mem)
        elif "mem" in given:
            size = scenario.machine.mem
        else:
            size = 8 * GiB
        guest_cpu = cpu
        if "gbpages" in given and not scenario.machine.options["gbpages"] and predicted_gbpages(cpu):
            guest_cpu = cpu + ",-pdpe1gb"
        out.append(Experiment(scenario, name, size, guest_cpu))
    return out


def footprint(m: Any, ranges: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Boot-time leaves (1G regions, else 4M blocks) that the physical ranges touch."""
    out: set[tuple[int, int]] = set()
    for start, end in ranges:
        a = align_down(start, Level.PMD.size)
        while a < end:
            found = m.lookup(m.va(a))
            if found is not None and found.level == Level.PUD:
                region = align_down(a, Level.PUD.size)
                out.add((region, Level.PUD.size))
                a = region + Level.PUD.size
            else:
                out.add((align_down(a, 4 << 20), 4 << 20))
                a += Level.PMD.size
    return out


def _disjoint(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> bool:
    return not any(s1 < s2 + z2 and s2 < s1 + z1 for s1, z1 in a for s2, z2 in b)


def group(experiments: list[Experiment]) -> list[list[Experiment]]:
    """First fit decreasing: experiments that hold the most 1G leaves are placed first; each joins the
    first boot with the same guest that it cannot interfere with."""
    groups: list[list[Experiment]] = []

    def weight(exp: Experiment) -> tuple[int, int]:
        assert exp.plan is not None
        return (-sum(size == Level.PUD.size for _, size in exp.footprint), -exp.plan.grabbed_pages)

    for exp in sorted(experiments, key=weight):
        assert exp.plan is not None
        for g in groups:
            if (g[0].mem, g[0].cpu) != (exp.mem, exp.cpu):
                continue
            if not all(_disjoint(exp.footprint, other.footprint) for other in g):
                continue
            if sum(o.plan.slots for o in g if o.plan) + exp.plan.slots > MAX_SLOTS:
                continue
            if sum(o.plan.grabbed_pages for o in g if o.plan) + exp.plan.grabbed_pages > MAX_GRAB_PAGES:
                continue
            g.append(exp)
            break
        else:
            groups.append([exp])
    return groups


def _record_path(install: Install, mem: int, cpu: str, smp: int) -> Path:
    return Path(install.root) / "records" / f"{mem >> 20}M-{cpu.replace(',', '_')}-smp{smp}.json"


def remember_record(install: Install, mem: int, cpu: str, smp: int, log: guest.GuestLog) -> None:
    """Keep what this guest's boot placed, for grouping the next run's experiments before any boot."""
    record = record_of(log, "guest")
    if not record.bpf_packs and record.initrd is None:
        return
    path = _record_path(install, mem, cpu, smp)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"initrd": record.initrd, "bpf_packs": record.bpf_packs}))
    except OSError:
        pass  # a cache: grouping is only more cautious without it


def known_record(install: Install, mem: int, cpu: str, smp: int) -> BootRecord | None:
    """The placements an earlier boot of the same guest (kernel, -m, -cpu, -smp) showed, or None."""
    try:
        data = json.loads(_record_path(install, mem, cpu, smp).read_text())
    except (OSError, ValueError):
        return None
    initrd = tuple(data["initrd"]) if data.get("initrd") else None
    packs = tuple((va, tuple(tuple(s) for s in pages)) for va, pages in data.get("bpf_packs", ()))
    return BootRecord(initrd=initrd, bpf_packs=packs, source=f"an earlier boot ({mem >> 20}M, {cpu})")  # type: ignore[arg-type]


def kernel_options(install: Install) -> dict[str, Any]:
    """The model's machine options the guest kernel's config decides (bootcheck.model_options())."""
    text, _ = bootcheck.guest_config(install.root, install.kver)
    return bootcheck.model_options(bootcheck.config_options(text))


def prepare(experiments: list[Experiment], install: Install, smp: int) -> None:
    """Translate every experiment (refusing what cannot run) and compute its footprint."""
    kernel = kernel_series(install.kver)
    options = kernel_options(install)
    problems: list[str] = []
    booted: dict[tuple[int, str], Any] = {}
    for exp in experiments:
        try:
            exp.plan = translate(exp.scenario, kernel, name=exp.scenario.name)
        except Refusal as err:
            problems.append(err.message)
            continue
        machine = oracle_model.oracle_machine(exp.scenario, mem=exp.mem, kernel=install.kernel_series, cpus=smp,
                                              gbpages=predicted_gbpages(exp.cpu), la57=predicted_la57(exp.cpu),
                                              options=options)
        key = (exp.mem, exp.cpu)
        if key not in booted:  # what an earlier boot of this guest placed, if one was seen; else nothing
            booted[key] = oracle_model.boot(machine, known_record(install, exp.mem, exp.cpu, smp))
        exp.footprint = footprint(booted[key], exp.plan.touched)
    if problems:
        raise Refusal("\n".join(problems), "change the scenarios, or run them on the model only with `rofolio run`")


def run(sources: list[str], install: Install, *, cpu: str = "max,-la57", mem: str | None = None, smp: int = 1,
        timeout: float = 600.0, keep_log: Path | None = None,
        progress: Callable[[str], None] | None = None) -> Session:
    """Run scenarios on the guest and on the model; one report per scenario."""
    t0 = time.monotonic()
    say = progress or (lambda _text: None)
    experiments = load_experiments(sources, mem, cpu)
    prepare(experiments, install, smp)
    groups = group(experiments)
    kernel = kernel_series(install.kver)
    order = {id(exp): i for i, exp in enumerate(experiments)}
    reports: list[tuple[int, ExperimentReport]] = []
    boots: list[dict[str, Any]] = []
    exp_no = 0
    for number, members in enumerate(groups, start=1):
        plans: list[tuple[Experiment, Plan]] = []
        slot = 0
        for exp in members:
            exp_no += 1
            plan = translate(exp.scenario, kernel, name=exp.scenario.name, exp=exp_no, slot_base=slot)
            slot += plan.slots
            plans.append((exp, plan))
        cpu_used = members[0].cpu
        config = guest.GuestConfig(cpu=cpu_used, mem=qemu_mem(members[0].mem), smp=smp, timeout=timeout)
        script = "".join(p.script() for _, p in plans)
        say(f"boot {number}/{len(groups)}: {len(plans)} experiment(s), -m {config.mem} -cpu {cpu_used} -smp {smp}")
        b, log = guest.boot_to_init(install, config, script)
        for note in b.notes:
            say(f"boot {number}/{len(groups)}: {note}")
        remember_record(install, members[0].mem, cpu_used, smp, log)
        info = {"boot": number, "mem": config.mem, "cpu": cpu_used, "smp": smp,
                "experiments": [p.name for _, p in plans], "notes": list(b.notes), "qemu_command": b.command,
                "qemu_returncode": b.returncode, "timed_out": b.timed_out, "wall_s": b.wall_s, "uname": log.uname,
                "cpuflags_pdpe1gb": log.gbpages, "cpuflags_la57": log.la57, "insmod_rc": log.insmod_rc,
                "boot_counters": log.boot_counters, "after_insmod": log.after_insmod,
                "insmod_delta": {k: log.after_insmod.get(k, 0) - log.boot_counters.get(k, 0)
                                 for k in log.after_insmod}}
        if keep_log is not None:
            info["serial_log"] = str(guest.keep(keep_log, f"boot{number}.serial.log", b.serial))
            guest.keep(keep_log, f"boot{number}.steps.sh", script)
        problem = _guest_problem(b, log, install)
        info["insmod_changes"] = insmod_changes(log)
        exact = str(kernel_series(install.kver, log.version))  # the guest's release, from /proc/version
        boot_reports, boot_check = compare_boot(plans, log, exact, smp=smp, cpu=cpu_used,
                                                wall_s=b.wall_s, problem=problem, boot=number,
                                                options=kernel_options(install))
        info["boot_agrees_with_model"] = boot_check.agree if boot_check else None
        info["boot_checks"] = [c.__dict__ for c in boot_check.checks if not c.agree] if boot_check else []
        boots.append(info)
        reports += [(order[id(exp)], rep) for (exp, _), rep in zip(plans, boot_reports, strict=True)]
    return Session([rep for _, rep in sorted(reports, key=lambda item: item[0])], boots, time.monotonic() - t0)


def insmod_changes(log: guest.GuestLog) -> str:
    """What loading dmoracle.ko did to the direct map: the kc walk before against the module's scan after."""
    after = log.after_insmod_scan()
    if not after or not log.walk_direct:
        return "not measured"
    end = max(r.end for r in after)
    return describe_changes(oracle_model.diff(guest.clip(log.walk_direct, 0, end), after))


def compare_boot(plans: list[tuple[Experiment, Plan]], log: guest.GuestLog, kernel: str, *, smp: int, cpu: str,
                 wall_s: float = 0.0, problem: str | None = None, boot: int | None = None,
                 options: dict[str, Any] | None = None,
                 ) -> tuple[list[ExperimentReport], bootcheck.BootReport | None]:
    """Compare every experiment of one boot with its model run; also the boot itself (when walked).
    ``options``: the machine options the guest kernel's config decides."""
    first = plans[0][0]
    machine = oracle_model.oracle_machine(first.scenario, mem=first.mem, kernel=kernel, cpus=smp,
                                          gbpages=log.gbpages if log.cpuflags else predicted_gbpages(cpu),
                                          la57=log.la57, options=options)
    boot_check = None
    if problem is None and not log.la57 and log.walk_direct:
        boot_check = bootcheck.check_boot(log, machine, mem=qemu_mem(first.mem), cpu=cpu)
    guest_info = {"cpu": cpu, "mem": qemu_mem(first.mem), "smp": smp, "boot": boot, "wall_s": wall_s,
                  "insmod_delta": {k: log.after_insmod.get(k, 0) - log.boot_counters.get(k, 0)
                                   for k in log.after_insmod}}
    reports = []
    for exp, plan in plans:
        mach = oracle_model.oracle_machine(exp.scenario, mem=exp.mem, kernel=kernel, cpus=smp,
                                           gbpages=machine.options["gbpages"], la57=machine.options["paging"] == 5,
                                           options=options)
        try:
            model_run = oracle_model.run(plan, mach, record_of(log, "guest"))
        except RofolioError as err:
            rep = ExperimentReport(plan.name, exp.source, log.uname or "?", guest_info, mach.model_dump(mode="json"))
            rep.errors.append(f"the model cannot run it: {err}")
            reports.append(rep)
            continue
        rep = compare_experiment(plan, log, model_run, source=exp.source, guest=guest_info)
        rep.overridden = overridden(exp.scenario.machine, mach)
        if problem:
            rep.errors.insert(0, problem)
        reports.append(rep)
    return reports, boot_check


def recompare(serial: str, steps_sh: str, sources: list[str], kver: str, *, cpu: str = "max,-la57",
              mem: str | None = None, smp: int = 1) -> list[ExperimentReport]:
    """Compare a kept boot again (``--keep-log``), without booting: e.g. after a change to the model.

    ``sources`` must include every scenario the kept /steps.sh ran; they are matched by name.
    """
    by_name = {e.scenario.name: e for e in load_experiments(sources, mem, cpu)}
    kernel = kernel_series(kver)
    plans: list[tuple[Experiment, Plan]] = []
    slot = 0
    for line in steps_sh.splitlines():
        m = re.match(r'echo "=== EXP (\d+) (\S+)"$', line)
        if not m:
            continue
        if m.group(2) not in by_name:
            raise OracleError(f"the kept steps ran {m.group(2)!r}, which is not among the scenarios given",
                              "give every scenario of that boot")
        exp = by_name[m.group(2)]
        plan = translate(exp.scenario, kernel, name=exp.scenario.name, exp=int(m.group(1)), slot_base=slot)
        slot += plan.slots
        plans.append((exp, plan))
    if "".join(p.script() for _, p in plans) != steps_sh:
        raise OracleError("these scenarios no longer translate to the kept /steps.sh",
                          "the scenarios or the translator changed since the log was kept; run the oracle again")
    log = guest.parse_log(serial)
    series = str(kernel_series(kver, log.version))  # the guest's exact release where /proc/version gives it
    reports, _ = compare_boot(plans, log, series, smp=smp, cpu=plans[0][0].cpu if plans else cpu)
    return reports


MACHINE_FIELDS = ("mem", "kernel", "cpus", "gbpages", "paging")


def overridden(own: schema.Machine, oracle: schema.Machine) -> dict[str, tuple[Any, Any]]:
    """The [machine] values the oracle's guest replaced."""
    a, b = {**own.model_dump(), **own.options}, {**oracle.model_dump(), **oracle.options}
    return {f: (a[f], b[f]) for f in MACHINE_FIELDS if a[f] != b[f]}


def _guest_problem(b: guest.Boot, log: guest.GuestLog, install: Install, module: bool = True) -> str | None:
    if b.timed_out:
        return f"QEMU timed out after {b.wall_s} s"
    if not log.began:
        return f"the guest never reached /init (QEMU exit {b.returncode}: {b.stderr[-300:]})"
    if log.panic:
        return "the kernel panicked"
    if not log.complete:
        return "the guest stopped before the end of /init"
    if log.uname != install.kver:
        return f"the guest runs {log.uname}, not the set-up {install.kver}"
    if module and log.insmod_rc != 0:
        return f"insmod dmoracle.ko failed (exit {log.insmod_rc})"
    return None


def boot_fidelity(install: Install, machines: list[BootMachine], *, timeout: float = 180.0,
                  keep_log: Path | None = None, progress: Callable[[str], None] | None = None,
                  jobs: int = 2) -> list[bootcheck.BootReport]:
    """Boot every machine without the module (two at a time, 16G and more alone) and check it three ways: the
    model with the guest's record, the model placing the boot-time users itself, and `rofolio host --from` on
    the snapshot the guest printed.

    A guest that never reaches /init, or whose kernel panics after it (no module is loaded), is booted once more
    (guest.boot_to_init()) and the report notes it.  Before /init: seen twice in CI runs of Debian 7.2 with -smp 2
    and two guests at a time, a hang at -m 1536M and a panic at 3G, while the same machines booted in 7 to 9 s in
    24 boots afterwards.  After /init: a panic at -m 22G -smp 2 with a mutation run beside it.  A second failure
    is an error as before."""
    import tempfile

    say = progress or (lambda _text: None)
    empty = schema.Scenario(name="boot", steps=[schema.Snapshot(op="snapshot")])
    config_text, config_from = bootcheck.guest_config(install.root, install.kver)
    config = bootcheck.config_options(config_text)
    for m in machines:
        if predicted_la57(m.cpu):
            raise OracleError(f"-cpu {m.cpu} gives 5-level paging, which the kc walker does not read",
                              "add -la57, e.g. --cpu max,-la57")

    def one(m: BootMachine) -> bootcheck.BootReport:
        say(f"boot {m.label()} (no module){' (drawn)' if m.drawn else ''}")
        b, log = guest.boot_to_init(install, guest.GuestConfig(cpu=m.cpu, mem=m.mem, smp=m.smp, timeout=timeout), None)
        for note in b.notes:
            say(f"{m.label()}: {note}")
        remember_record(install, m.size, m.cpu, m.smp, log)
        name = f"boot-{m.mem}-{m.cpu.replace(',', '_')}-smp{m.smp}"
        guest.keep(keep_log, f"{name}.serial.log", b.serial)
        exact = str(kernel_series(install.kver, log.version))  # the guest's release, from /proc/version
        machine = oracle_model.oracle_machine(empty, mem=m.size, kernel=exact, cpus=m.smp,
                                              gbpages=log.gbpages if log.cpuflags else predicted_gbpages(m.cpu))
        rep = bootcheck.check_boot(log, machine, mem=m.mem, cpu=m.cpu)
        rep.wall_s, rep.smp, rep.drawn, rep.notes = b.wall_s, m.smp, m.drawn, list(b.notes)
        problem = _guest_problem(b, log, install, module=False)
        if problem:
            rep.errors.insert(0, problem)
            return rep
        rep.own = bootcheck.check_own_placement(log, machine, config)
        if not config_text:
            rep.errors.append(f"no kernel config for rofolio host --from ({config_from})")
        elif keep_log is not None:
            rep.host = bootcheck.check_host(log, keep_log / f"{name}.snapshot", config_text)
        else:
            with tempfile.TemporaryDirectory(prefix="rofolio-snapshot-") as tmp:
                rep.host = bootcheck.check_host(log, Path(tmp), config_text)
                rep.host.snapshot = ""
        say(f"done {m.label()}: {b.wall_s} s")
        return rep

    return run_all(machines, one, jobs)
