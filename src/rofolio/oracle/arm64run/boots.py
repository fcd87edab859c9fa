"""One guest boot per rodata= value, the model beside it, and the result of a whole run.

``run()`` builds (or takes from the cache) the kernel and the module, boots once per ``rodata=`` value, and
compares every experiment step by step; model-only experiments run on their own machines.
"""


from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rofolio.oracle.arm64run.guestboot import BootLog, parse_serial, placements, run_boot, step_id, steps_script
from rofolio.oracle.arm64run.replay import ModelBoot, Observation
from rofolio.oracle.arm64run.suite import ALLOC_VERBS, RODATA, Experiment, load_suite
from rofolio.oracle.arm64run.verdict import (
    ExperimentResult,
    StepResult,
    compare_step,
    kernel_observation,
)
from rofolio.oracle.compare import Check
from rofolio.oracle.guest import keep

__all__ = ["SCHEMA", "BootResult", "RunResult", "compare_boot", "model_only_result", "run"]

SCHEMA = "rofolio.oracle.arm64run/1"


@dataclass
class BootResult:
    """One guest boot: its identity, what the module's info says beside the model, its cost."""

    rodata: str
    uname: str = ""
    wall_s: float = 0.0
    experiments: int = 0
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        return not self.errors and all(c.agree for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"rodata": self.rodata, "uname": self.uname, "wall_s": self.wall_s, "experiments": self.experiments,
                "agree": self.agree, "errors": self.errors, "facts": self.facts,
                "checks": [asdict(c) for c in self.checks]}


@dataclass
class RunResult:
    kernel: str
    boots: list[BootResult] = field(default_factory=list)
    results: list[ExperimentResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def compared(self) -> list[ExperimentResult]:
        return [r for r in self.results if not r.model_only]

    @property
    def agreeing(self) -> int:
        return sum(r.agree for r in self.compared)

    @property
    def agree(self) -> bool:
        return self.agreeing == len(self.compared) and all(b.agree for b in self.boots)

    def to_dict(self) -> dict[str, Any]:
        names = {r.experiment.name for r in self.compared}
        return {"schema": SCHEMA, "kernel": self.kernel, "wall_s": self.wall_s,
                "agreement": f"{self.agreeing}/{len(self.compared)}", "experiments": len(names),
                "model_only": len(self.results) - len(self.compared), "agree": self.agree,
                "boots": [b.to_dict() for b in self.boots], "results": [r.to_dict() for r in self.results]}


def compare_boot(rodata: str, log: BootLog, serial_wall_s: float, experiments: list[Experiment],
                 ) -> tuple[BootResult, list[ExperimentResult]]:
    """The kernel's boot log of one rodata= value against a model machine that follows it."""
    plan = placements(experiments, rodata)
    boot = BootResult(rodata, log.uname or "", serial_wall_s, len(plan), errors=list(log.errors))
    boot.facts = {k: log.info[k] for k in ("rodata_full", "can_set_direct_map", "bbml2_noabort", "midr",
                                           "implementer", "part", "phys_offset") if k in log.info}
    boot.facts["RAM"] = ", ".join(f"[{s:#x}, {e:#x})" for s, e in log.ram)
    results = [ExperimentResult(p.experiment, rodata, boot=f"rodata={rodata}") for p in plan]
    if log.errors:
        for r in results:
            r.errors.append(f"the rodata={rodata} boot failed: {'; '.join(log.errors)}")
        return boot, results
    release = (log.uname or "7.2").split("-")[0]
    model = ModelBoot(rodata, kernel=".".join(release.split(".")[:2]), ram=log.ram, image=log.image,
                      source=f"the rodata={rodata} guest ({log.uname})")
    # what the module's info says about the kernel, beside the same machine's model
    kernel_csdm, model_csdm = log.info.get("can_set_direct_map"), model.can_set_direct_map()
    boot.checks.append(Check("can_set_direct_map()", {"1": "True", "0": "False"}.get(kernel_csdm or "", "?"),
                             str(model_csdm), kernel_csdm == str(int(model_csdm))))
    boot.checks.append(Check("cpu_supports_bbml2_noabort()", {"1": "True", "0": "False"}.get(
        log.info.get("bbml2_noabort", ""), "?"), "False (the machine option bbml2 is off)",
        log.info.get("bbml2_noabort") == "0"))
    for p, res in zip(plan, results, strict=True):
        for j, step in enumerate(p.experiment.steps):
            klog = log.steps.get(step_id(p.index, j))
            kernel = kernel_observation(step, klog)
            pfns = kernel.pfns if step.verb in ALLOC_VERBS and not kernel.error else None
            if step.verb in ALLOC_VERBS and pfns is None:
                res.steps.append(compare_step(j, step, kernel, Observation(error="not run: the guest's allocation "
                                                                                 "failed")))
                break
            res.steps.append(compare_step(j, step, kernel, model.run(step, p.base, pfns)))
    return boot, results


def model_only_result(e: Experiment, rodata: str) -> ExperimentResult:
    """A model-only experiment on its own machine (the experiment's options), with its pages from the model."""
    res = ExperimentResult(e, rodata)
    model = ModelBoot(rodata, options=e.machine, source="model")
    for j, step in enumerate(e.steps):
        obs = model.run(step, 0)
        sr = StepResult(j, step.label())
        if obs.error:
            sr.errors.append(f"model: {obs.error}")
        sr.checks = [c for c in compare_step(j, step, obs, obs).checks]
        for c in sr.checks:
            c.kernel = "(not run)"
        sr.model_oops = obs.oops
        res.steps.append(sr)
    return res


def run(experiments: list[Experiment] | None = None, rodatas: list[str] | None = None, *, rfc: bool = False,
        timeout: float = 300.0, keep_log: Path | None = None, built: Any = None,
        progress: Callable[[str], None] = lambda _line: None) -> RunResult:
    """Build (or take from the cache) the kernel and the module, boot once per rodata= value, compare.

    ``built``: a kernelbuild ``Built`` to boot instead of asking ``kernelbuild.build()`` for one."""
    from rofolio import kernelbuild
    from rofolio.oracle import arm64
    from rofolio.oracle.kmodule import module_for

    t0 = time.monotonic()
    experiments = experiments if experiments is not None else load_suite()
    rodatas = rodatas or list(RODATA)
    install = arm64.load_install()  # Debian's static arm64 busybox and qemu-system-aarch64
    if built is None:
        built = kernelbuild.build("arm64", rfc=rfc, log=progress)
    module = module_for(built, "dmoracle_arm64.c", progress)
    out = RunResult(built.release)
    for rodata in rodatas:
        plan = placements(experiments, rodata)
        if not plan:
            continue
        progress(f"booting {built.release} under qemu-system-aarch64 -cpu max with rodata={rodata}: "
                 f"{len(plan)} experiment(s)")
        guest = run_boot(install.qemu, built.image, install.busybox, str(module), rodata, steps_script(plan),
                         timeout)
        keep(keep_log, f"arm64run-rodata-{rodata}.serial.log", guest.serial)
        log = parse_serial(guest.serial)
        if guest.timed_out:
            log.errors.insert(0, f"QEMU timed out after {timeout:.0f} s")
        boot, results = compare_boot(rodata, log, guest.wall_s, experiments)
        progress(f"rodata={rodata}: {sum(r.agree for r in results)}/{len(results)} agree ({guest.wall_s:.1f} s)")
        out.boots.append(boot)
        out.results += results
    for e in experiments:
        if e.model_only:
            out.results += [model_only_result(e, rodata) for rodata in e.rodata if rodata in rodatas]
    out.wall_s = round(time.monotonic() - t0, 1)
    return out
