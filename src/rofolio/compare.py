"""The same scenario under several configurations: a matrix, one row per combination.

``compare(source, {"gbpages": ["true", "false"], "model": ["1", "2"]})``
runs every combination of the values and returns one row per run with its
settings, the totals of its steps and its expectation failures.  Keys name
[machine] options of the scenario file (``arch``, ``mem``, ``gbpages``,
``paging``, ``kernel``, ``cpus``, ``debug_pagealloc``, ``kfence``, ...) or
[mm] options (``lifetime``, alias ``model``; ``persistent_huge_zero_folio``,
``init_on_free``, ...).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rofolio.errors import ScenarioError, ScenarioErrors
from rofolio.scenario import schema
from rofolio.scenario.loader import load
from rofolio.scenario.runner import ScenarioResult, run_scenario

MACHINE_KEYS = tuple(schema.Machine.model_fields)
MM_KEYS = tuple(schema.MM.model_fields)
ALIASES = {"5level": "paging", "la57": "paging", "model": "lifetime"}
ARCH_ONLY_KEYS = {
    "x86_64": ("gbpages", "paging", "tlb_single_page_flush_ceiling", "zero_page", "boot_profile"),
    "arm64": ("rodata", "bbml2", "secondary_without_bbml2", "realm", "tlb_range"),
}


@dataclass
class CompareRow:
    settings: dict[str, Any]
    result: ScenarioResult

    @property
    def totals(self) -> dict[str, int]:
        return self.result.totals()

    @property
    def failures(self) -> list[str]:
        return self.result.failures

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "totals": self.totals, "final": self.result.final,
                "expect_failures": self.failures}


@dataclass
class CompareResult:
    scenario: str
    axes: list[str]
    rows: list[CompareRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "rofolio.compare/1", "scenario": self.scenario, "axes": self.axes,
                "rows": [r.to_dict() for r in self.rows]}

    def _repr_html_(self) -> str:
        from rofolio.report import _table_html

        keys = sorted({k for r in self.rows for k in r.totals})
        rows = [[str(r.settings[a]) for a in self.axes] + [str(r.totals.get(k, 0)) for k in keys] for r in self.rows]
        return _table_html(self.axes + keys, rows, left=len(self.axes))


def parse_settings(pairs: list[str]) -> dict[str, list[str]]:
    """['arch=x86_64,arm64', 'kernel=6.1,6.18'] -> {'arch': [...], 'kernel': [...]}."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ScenarioError(f"{pair!r} is not KEY=V1,V2", "write e.g. --set gbpages=true,false",
                                file="command line", key="--set")
        key, _, values = pair.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if key not in MACHINE_KEYS and key not in MM_KEYS:
            raise ScenarioError(f"unknown key {key!r}",
                                f"use one of: {', '.join(MACHINE_KEYS + MM_KEYS)} (or model for lifetime)",
                                file="command line", key="--set")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not items:
            raise ScenarioError(f"{key}= has no values", "list one or more values separated by commas",
                                file="command line", key="--set")
        out[key] = items
    return out


def _value(key: str, text: str) -> Any:
    """Convert a --set value the way its [machine]/[mm] field expects: bool, int or text."""
    field = schema.Machine.model_fields.get(key) or schema.MM.model_fields.get(key)
    annotation = str(field.annotation) if field else ""
    low = text.lower()
    if annotation == "<class 'bool'>" and low in ("true", "yes", "on", "false", "no", "off"):
        return low in ("true", "yes", "on")
    if annotation == "<class 'int'>" or (key == "lifetime" and text in ("1", "2")):
        try:
            return int(text, 0)
        except ValueError:
            return text
    return text


def compare(source: str | Path, settings: dict[str, list[str]],
            progress: Callable[[int, int], None] | None = None) -> CompareResult:
    """Run ``source`` once per combination of ``settings``; every combination is validated first."""
    axes = list(settings)
    combos = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*(settings[a] for a in axes))]
    return compare_configs(source, combos, progress, axes)


def compare_configs(source: str | Path, configs: list[dict[str, str]],
                    progress: Callable[[int, int], None] | None = None,
                    axes: list[str] | None = None) -> CompareResult:
    """Run ``source`` once per explicit configuration (a dict of [machine]/[mm] keys to values)."""
    scenario, name = load(source)
    base = scenario.model_dump(by_alias=True, exclude_unset=True)
    axes = axes or sorted({k for c in configs for k in c})
    variants: list[tuple[dict[str, Any], schema.Scenario]] = []
    errors: list[ScenarioError] = []
    for chosen in configs:
        data = dict(base)
        machine = {**base.get("machine", {}), **{k: _value(k, v) for k, v in chosen.items() if k in MACHINE_KEYS}}
        if "arch" in chosen:  # the scenario's options for its own architecture do not carry over
            foreign = ARCH_ONLY_KEYS.copy()
            foreign.pop(str(machine["arch"]), None)
            machine = {k: v for k, v in machine.items()
                       if k in chosen or not any(k in keys for keys in foreign.values())}
        data["machine"] = machine
        data["mm"] = {**base.get("mm", {}), **{k: _value(k, v) for k, v in chosen.items() if k in MM_KEYS}}
        try:
            variants.append(({a: chosen.get(a, "") for a in axes}, schema.Scenario.model_validate(data)))
        except ValidationError as err:
            for e in err.errors():
                errors.append(ScenarioError(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}",
                                            "choose another value for --set", file="command line",
                                            key="--set " + " ".join(f"{k}={v}" for k, v in chosen.items())))
    if errors:
        raise ScenarioErrors(errors)
    result = CompareResult(name, axes)
    for i, (chosen, variant) in enumerate(variants, start=1):
        result.rows.append(CompareRow(chosen, run_scenario(variant, filename=name)))
        if progress:
            progress(i, len(variants))
    return result


# The RFC demo on every machine the thread argued about (issue: "x86-64 and arm64 side by side").
RFC_MACHINES: list[dict[str, str]] = [
    {"arch": "x86_64", "gbpages": "true"},
    {"arch": "x86_64", "gbpages": "false"},
    {"arch": "arm64", "bbml2": "false"},
    {"arch": "arm64", "bbml2": "true"},
    {"arch": "arm64", "rodata": "off"},
    {"arch": "riscv64"},
]
