"""Kernel against model, step by step: what each side did, the checks, and the report of a run.

The kernel's side of a step is read from the module's lines (``kernel_observation``); the model's comes
from ``replay``.  A step agrees when every check agrees:

* return values of set_memory_*() and set_direct_map_*(), of a probe's read and write, of a peek;
* the leaf of every page of the slot afterwards, through the vmalloc address and through the linear alias:
  level, the descriptor without its output address, and the page frame (the guard page after the area:
  the descriptor only, as the two sides' vmalloc addresses differ);
* a plain store or load: whether it oopsed, and the oops text from "Unable to handle kernel" to "Internal
  error:" without show_pte()'s two lines (the table addresses), each side's own access address replaced
  by ``<va>``; a load's byte; a peek's byte;
* warnings: which source file and function warned.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from rofolio.oracle.arm64run.guestboot import StepLog
from rofolio.oracle.arm64run.replay import LeafState, Observation, leaf_from_desc
from rofolio.oracle.arm64run.suite import ALLOC_VERBS, STATE_VERBS, Experiment, Step
from rofolio.oracle.compare import Check

__all__ = ["ExperimentResult", "StepResult", "compare_step", "kernel_observation", "oops_key"]

_GUEST_CMD = {"set_memory_ro": "ro", "set_memory_rw": "rw", "set_direct_map_invalid": "dminv",
              "set_direct_map_default": "dmdef"}
_KERNEL_WARNING = re.compile(r"^WARNING: (?:CPU: \d+ PID: \d+ at )?(\S+?):\d+ (?:at )?(\w+)\+")
_MODEL_WARNING = re.compile(r"^WARNING: CPU: \d+ at (\S+) (\w+)")


def _int(text: str | None) -> int | None:
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def kernel_observation(step: Step, log: StepLog | None) -> Observation:
    """What the guest's module printed for ``step``, as an Observation."""
    obs = Observation()
    if log is None:
        obs.error = "the guest printed nothing for this step"
        return obs
    verb = step.verb
    cmd = _GUEST_CMD.get(verb, verb)
    records = log.records(cmd)
    missing = [r for r in records if r.get("ret") == "missing"]
    if missing:
        obs.error = f"the kernel has no {missing[0].get('sym')}"
        return obs
    if verb in ALLOC_VERBS:
        if not records or records[-1].get("ret") != "0":
            obs.error = f"{verb} failed in the guest: {records[-1] if records else 'no result line'}"
            return obs
        obs.va = _int(records[-1].get("va"))
        obs.pfns = [int(p["pfn"], 16) for p in log.tagged("page") if p.get("cmd") == cmd]
    elif verb in ("store", "load"):
        before = [r for r in records if r.get("phase") == "before"]
        done = [r for r in records if r.get("phase") == "done"]
        if not before:
            obs.error = f"no {verb} line from the module"
            return obs
        obs.va = _int(before[0].get("va"))
        obs.faulted = not done
        if done and verb == "load":
            obs.value = _int(done[0].get("val"))
        obs.oops = _shown_oops(log.oops() or [])
    else:
        if not records:
            obs.error = f"no {cmd} result line from the module"
            return obs
        r = records[-1]
        obs.va = _int(r.get("va"))
        if verb == "probe":
            obs.read, obs.ret = _int(r.get("read")), _int(r.get("write"))
        else:
            obs.ret = _int(r.get("ret"))
            if verb == "peek":
                obs.value = _int(r.get("val"))
    obs.warnings = log.warnings()
    if verb in STATE_VERBS:
        for leaf in log.tagged("leaf"):
            key = "guard" if leaf.get("map") == "guard" else f"{leaf.get('i')}:{leaf.get('map')}"
            obs.leaves[key] = leaf_from_desc(leaf.get("level", "none"), int(leaf.get("desc", "0"), 16))
    return obs


def _shown_oops(lines: list[str]) -> list[str]:
    """The oops without show_pte()'s lines: swapper_pg_dir's address and the raw entries vary by boot."""
    return [line for line in lines if not line.startswith(("swapper pgtable:", "["))]


def oops_key(lines: list[str], va: int | None) -> list[str]:
    """The oops lines compared: the access address replaced by <va> (the sides' vmalloc addresses differ)."""
    if va is None:
        return list(lines)
    return [line.replace(f"{va:016x}", "<va>") for line in lines]


def _warned(lines: list[str], pattern: re.Pattern[str]) -> list[str]:
    out = []
    for line in lines:
        m = pattern.match(line)
        out.append(f"{m[1].rsplit('/', 1)[-1]} {m[2]}" if m else line)
    return out


@dataclass
class StepResult:
    index: int
    label: str
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kernel_oops: list[str] = field(default_factory=list)
    model_oops: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.errors and all(c.agree for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.index, "label": self.label, "agree": self.agree, "errors": self.errors,
                "checks": [asdict(c) for c in self.checks], "kernel_oops": self.kernel_oops,
                "model_oops": self.model_oops}


def _leaf_checks(kernel: dict[str, LeafState], model: dict[str, LeafState]) -> list[Check]:
    out = []
    for key in sorted(set(kernel) | set(model), key=lambda k: (k == "guard", k)):
        k, m = kernel.get(key), model.get(key)
        if key == "guard":  # the guard's table may exist on one side only: compare the descriptor
            same = (k.attrs if k else None) == (m.attrs if m else None)
            what = "guard page after the area"
        else:
            same = k == m
            i, via = key.split(":")
            what = f"page {i} {'at the slot address' if via == 'vm' else 'linear alias'}"
        out.append(Check(what, k.describe() if k else "(not reported)", m.describe() if m else "(not reported)",
                         same))
    return out


def compare_step(index: int, step: Step, kernel: Observation, model: Observation) -> StepResult:
    res = StepResult(index, step.label())
    for side, obs in (("kernel", kernel), ("model", model)):
        if obs.error:
            res.errors.append(f"{side}: {obs.error}")
    if res.errors:
        return res
    verb = step.verb

    def check(what: str, k: Any, m: Any) -> None:
        res.checks.append(Check(what, str(k), str(m), k == m))

    if verb in ALLOC_VERBS:
        check("pages", len(kernel.pfns), len(model.pfns))
    elif verb == "probe":
        check("copy_from_kernel_nofault()", kernel.read, model.read)
        check("copy_to_kernel_nofault()", kernel.ret, model.ret)
    elif verb in ("store", "load"):
        outcome = {True: "oops", False: "went through", None: "?"}
        check(f"plain {verb}", outcome[kernel.faulted], outcome[model.faulted])
        if verb == "load" and not kernel.faulted and not model.faulted:
            check("byte read", kernel.value, model.value)
        res.kernel_oops, res.model_oops = kernel.oops, model.oops
        if kernel.faulted or model.faulted:
            k_text, m_text = oops_key(kernel.oops, kernel.va), oops_key(model.oops, model.va)
            same = k_text == m_text
            differ = next((f"{a} | {b}" for a, b in zip(k_text, m_text, strict=False) if a != b), "")
            res.checks.append(Check("oops text", f"{len(k_text)} lines" + ("" if same else f": {differ}"),
                                    f"{len(m_text)} lines", same))
    else:
        check("return value", kernel.ret, model.ret)
        if verb == "peek" and kernel.ret == 0 and model.ret == 0:
            check("byte read", kernel.value, model.value)
    k_warn, m_warn = _warned(kernel.warnings, _KERNEL_WARNING), _warned(model.warnings, _MODEL_WARNING)
    if k_warn or m_warn:
        check("warnings", "; ".join(k_warn) or "none", "; ".join(m_warn) or "none")
    res.checks.extend(_leaf_checks(kernel.leaves, model.leaves))
    return res


@dataclass
class ExperimentResult:
    experiment: Experiment
    rodata: str
    steps: list[StepResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    boot: str = ""  # which boot ran it ("" for a model-only row)

    @property
    def model_only(self) -> bool:
        return bool(self.experiment.model_only)

    @property
    def agree(self) -> bool:
        return not self.model_only and not self.errors and all(s.agree for s in self.steps)

    def disagreements(self) -> list[str]:
        out = list(self.errors)
        for s in self.steps:
            out += [f"step {s.index} ({s.label}): {e}" for e in s.errors]
            out += [f"step {s.index} ({s.label}): {c.what}: kernel {c.kernel}, model {c.model}"
                    for c in s.checks if not c.agree]
        return out

    def to_dict(self) -> dict[str, Any]:
        e = self.experiment
        return {"name": e.name, "rodata": self.rodata, "shows": e.shows, "source": list(e.source),
                "model_only": e.model_only or None, "boot": self.boot or None,
                "agree": None if self.model_only else self.agree, "errors": self.errors,
                "steps": [s.to_dict() for s in self.steps]}
