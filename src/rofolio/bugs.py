"""The bug library: real bugs replayed under every protection the RFC thread discussed.

Each bug is a built-in scenario with a ``[bug]`` table (its CVE, fixing
commit, reproducer, who takes the page and who writes it).  ``bug_matrix()``
runs every bug under every configuration and gives one verdict per cell:

* **caught**: the write faulted (the page was read-only in the mapping the
  store went through); the verdict quotes the oops;
* **silent corruption**: the write landed in a page others share; the verdict
  names who now reads the wrong data (the processes mapping it, every reader
  of the file) or what broke (a refcount);
* **not reachable**: the bug's taker never got the shared page (today's GUP
  rules hand out a private copy; a fixed pipe allocates its own buffer).

Every configuration replays the bug's own mechanism (the GUP rules of the
kernels that had it) on top of a 2026 kernel's protection, which is the
question the RFC asks: would this protection have caught that bug?  One
column, "today's kernel", replays the same steps with today's rules instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from rofolio.errors import ConfigError, Errno, ScenarioError
from rofolio.scenario import schema
from rofolio.scenario.loader import builtin_names, builtin_text, parse
from rofolio.scenario.ops import Context
from rofolio.scenario.runner import ScenarioResult, run_scenario

__all__ = [
    "CONFIGS",
    "WRITERS",
    "BugConfig",
    "BugMatrix",
    "Verdict",
    "bug_matrix",
    "bug_names",
    "config_named",
    "explain",
    "inspector",
    "load_bug",
    "variant",
    "verdict"
]


@dataclass(frozen=True, slots=True)
class BugConfig:
    """One column of the matrix: a machine and MM configuration, and whose GUP rules apply."""

    key: str  # a short column name (the CLI's --config)
    name: str
    machine: dict[str, Any]
    mm: dict[str, Any]
    today: bool = False  # replay with today's rules instead of the vulnerable kernel's


_OFF = {"persistent_huge_zero_folio": True, "readonly_huge_zero_folio": False, "lifetime": "none"}
_RO = {"persistent_huge_zero_folio": True, "readonly_huge_zero_folio": True, "lifetime": "model2"}

CONFIGS: list[BugConfig] = [
    BugConfig("none", "no protection (x86-64)", {"arch": "x86_64"}, _OFF),
    BugConfig("zp-ro", "4K zero page read-only (x86 empty_zero_page in .rodata)",
              {"arch": "x86_64", "zero_page": "rodata"}, _OFF),
    BugConfig("x86", "huge zero folio RO: x86-64 GBPAGES", {"arch": "x86_64", "gbpages": True}, _RO),
    BugConfig("arm64", "huge zero folio RO: arm64 rodata=full", {"arch": "arm64"}, _RO),
    BugConfig("bbml2", "huge zero folio RO: arm64 BBML2", {"arch": "arm64", "bbml2": True}, _RO),
    BugConfig("weak", "huge zero folio RO: weak default (nodirectmap, -EOPNOTSUPP)", {"arch": "nodirectmap"}, _RO),
    BugConfig("model1", "both zero folios read-only, lifetime model 1", {"arch": "x86_64", "zero_page": "rodata"},
              {**_RO, "lifetime": "model1"}),
    BugConfig("model2", "both zero folios read-only, lifetime model 2", {"arch": "x86_64", "zero_page": "rodata"},
              _RO),
    BugConfig("today", "today's GUP and pipe rules, no protection", {"arch": "x86_64"}, _OFF, today=True),
]


@dataclass
class Verdict:
    outcome: str  # "caught", "silent corruption", "not reachable"
    detail: str
    result: ScenarioResult = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "detail": self.detail}


@dataclass
class BugMatrix:
    bugs: list[schema.Bug]
    configs: list[BugConfig]
    cells: dict[tuple[str, str], Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "rofolio.bugs/1",
            "configurations": [{"key": c.key, "name": c.name} for c in self.configs],
            "bugs": [{"id": b.id, "title": b.title, "cve": b.cve, "fix": b.fix, "reproducer": b.reproducer,
                      "verdicts": {c.key: self.cells[(b.id, c.key)].to_dict() for c in self.configs}}
                     for b in self.bugs],
        }


    def _repr_html_(self) -> str:  # rendered by notebooks
        from rofolio.tables import table_html as _table_html  # not rofolio.report: results sit below reports

        rows = [[b.id] + [self.cells[(b.id, c.key)].outcome for c in self.configs] for b in self.bugs]
        return _table_html(["bug"] + [c.key for c in self.configs], rows)


@cache
def _bug_scenarios() -> dict[str, schema.Scenario]:
    """The built-in scenarios that replay a bug, by scenario name."""
    out = {}
    for name in builtin_names():
        scenario = parse(builtin_text(name), f"builtin:{name}")
        if scenario.bug is not None:
            out[name] = scenario
    return out


def bug_names() -> list[str]:
    """The built-in scenarios that replay a bug."""
    return list(_bug_scenarios())


def load_bug(name: str) -> schema.Scenario:
    """A bug by scenario name (bug-dirty-pipe) or bug id (dirty-pipe)."""
    scenarios = _bug_scenarios()
    for scenario_name, scenario in scenarios.items():
        assert scenario.bug is not None
        if name in (scenario_name, scenario.bug.id):
            return scenario
    raise ConfigError(f"no bug named {name!r}",
                        "bugs: " + ", ".join(s.bug.id for s in scenarios.values() if s.bug))


def variant(scenario: schema.Scenario, config: BugConfig) -> schema.Scenario:
    """The bug's scenario on ``config``'s machine (and, for "today", with today's rules)."""
    data = scenario.model_dump(mode="json", by_alias=True, exclude_unset=True)
    machine = {k: v for k, v in data.get("machine", {}).items() if k in ("mem", "kernel", "cpus")}
    data["machine"] = {**machine, **config.machine}
    data["mm"] = {**data.get("mm", {}), **config.mm}
    if config.today:
        for step in data["steps"]:
            if step["op"] in ("gup", "pin_many"):
                step["rules"] = "current"
            if step["op"] == "pipe_write":
                step["stale_can_merge"] = False  # 9d2231c5d74e initialises pipe_buffer flags
    data.pop("bug", None)
    return schema.Scenario.model_validate(data)


def inspector(bug: schema.Bug) -> Callable[[Context], dict[str, Any]]:
    """What the verdict needs from the machine at the end: is the target corrupted, who reads it."""

    def inspect(ctx: Context) -> dict[str, Any]:
        m = ctx.machine
        try:
            target = ctx.folio(bug.target)
        except ScenarioError:  # the scenario never named its target folio
            return {"target": None}
        bad = [pfn for pfn in range(target.pfn, target.end) if m.page_content(pfn) != bug.pristine]
        readers = sorted(name for name, process in ctx.processes.items() if m.alive(process)
                         and any(m.maps(process, pfn) for pfn in bad))
        return {"target": f"{target.pfn:#x}", "corrupted_pages": len(bad), "readers": readers,
                "file": target.mapping == "file", "direct_map_writable": m.direct_map_writable(target.pfn)}

    return inspect


WRITERS = ("write", "pipe_write")  # the steps that store into the page the taker got


def verdict(bug: schema.Bug, result: ScenarioResult) -> Verdict:
    """Corruption first (whatever else happened), then a writer that faulted or was refused, else not reachable."""
    steps = result.steps
    target = bug.target.replace("_", " ")
    overflow = next((s for s in steps if s.delta.get("refcount_overflows")), None)
    if overflow is not None:
        return Verdict("silent corruption", f"the refcount of the {target} wrapped: {overflow.note}; a read-only "
                       "direct map cannot see it, it is in struct page", result)
    found = result.inspection
    if found.get("corrupted_pages"):
        readers = found["readers"]
        who = [f"process{'es' if len(readers) > 1 else ''} {', '.join(readers)}"] if readers else []
        if found.get("file"):
            who.append("every reader of the file (the page cache)")
        elif bug.target in ("huge_zero_folio", "zero_page"):
            who.append("every later zero mapping")
        landed = next((s.note for s in steps if s.op in WRITERS and s.note), "")
        if not landed and found["direct_map_writable"]:
            landed = "its direct-map entry is writable"
        text = ("read by " + " and ".join(who)) if who else f"the {target} now holds other data"
        return Verdict("silent corruption", text + (f"; {landed}" if landed else ""), result)
    writers = [s for s in steps if s.op in WRITERS]
    faulted = next((s for s in writers if s.delta.get("faults")), None)
    if faulted is not None:
        return Verdict("caught", f"step {faulted.index} faulted: {faulted.oops.splitlines()[0] if faulted.oops else ''}"
                       .rstrip(": "), result)
    refused = next((s for s in writers if s.ret < 0), None)
    if refused is not None:
        return Verdict("caught", f"step {refused.index} was refused ({Errno.describe(refused.ret)})"
                       + (f": {refused.note}" if refused.note else ""), result)
    why = next((s.note for s in steps if s.op in ("gup", "pipe_write", "pin_many") and s.note), "")
    return Verdict("not reachable", why or "the write never reached the shared page", result)


def bug_matrix(names: list[str] | None = None, configs: list[BugConfig] | None = None,
               progress: Callable[[int, int], None] | None = None) -> BugMatrix:
    """Every bug under every configuration."""
    scenarios = [load_bug(n) for n in names] if names else list(_bug_scenarios().values())
    configs = configs or CONFIGS
    bugs: list[schema.Bug] = []
    cells: dict[tuple[str, str], Verdict] = {}
    total = len(scenarios) * len(configs)
    done = 0
    for scenario in scenarios:
        assert scenario.bug is not None
        name = scenario.name
        bugs.append(scenario.bug)
        for config in configs:
            result = run_scenario(variant(scenario, config), filename=name, inspect=inspector(scenario.bug))
            cells[(scenario.bug.id, config.key)] = verdict(scenario.bug, result)
            done += 1
            if progress:
                progress(done, total)
    return BugMatrix(bugs, configs, cells)


def config_named(key: str) -> BugConfig:
    for config in CONFIGS:
        if config.key == key:
            return config
    raise ConfigError(f"no configuration named {key!r}", f"configurations: {', '.join(c.key for c in CONFIGS)}")


def explain(name: str, config: BugConfig | None = None) -> tuple[schema.Scenario, Verdict]:
    """One bug on one configuration (the first by default), with its full step trace."""
    scenario = load_bug(name)
    assert scenario.bug is not None
    config = config or CONFIGS[0]
    result = run_scenario(variant(scenario, config), filename=name, inspect=inspector(scenario.bug))
    return scenario, verdict(scenario.bug, result)
