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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rofolio.arch import all_options, rfc_machines
from rofolio.errors import ScenarioError, ScenarioErrors
from rofolio.scenario import schema
from rofolio.scenario.loader import LoadedScenario, load
from rofolio.scenario.runner import ScenarioResult, run_scenario

__all__ = ["ALIASES", "CompareResult", "CompareRow", "VariantFailed", "compare", "compare_configs", "parse_settings",
           "rfc_machines", "with_settings"]

ALIASES = {"model": "lifetime"}  # --set keys besides the [machine]/[mm] keys; arch flags are added from the registry


def _aliases() -> dict[str, tuple[str, Any]]:
    """--set KEY names that stand for an architecture option set to a value: 5level -> paging 5, ..."""
    return {flag.lstrip("-"): (key, value)
            for key, (option, _) in all_options().items() for flag, value in option.flags}


def _machine_keys() -> tuple[str, ...]:
    """[machine] keys: the common ones and every registered architecture's options."""
    return tuple(schema.Machine.model_fields) + tuple(k for k in all_options() if k not in schema.Machine.model_fields)


def _mm_keys() -> tuple[str, ...]:
    return tuple(schema.MM.model_fields)


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
        from rofolio.tables import table_html as _table_html  # not rofolio.report: results sit below reports

        keys = sorted({k for r in self.rows for k in r.totals})
        rows = [[str(r.settings[a]) for a in self.axes] + [str(r.totals.get(k, 0)) for k in keys] for r in self.rows]
        return _table_html(self.axes + keys, rows, left=len(self.axes))


def parse_settings(pairs: list[str]) -> dict[str, list[str]]:
    """['arch=x86_64,arm64', 'kernel=6.1,6.18'] -> {'arch': [...], 'kernel': [...]}; a key given again is one
    axis with the values of both, in order, each once (case aside: nogbpages=true gives gbpages "False")."""
    out: dict[str, list[str]] = {}

    def add(key: str, values: list[str]) -> None:
        axis = out.setdefault(key, [])
        axis += [v for v in values if v.lower() not in {a.lower() for a in axis}]

    for pair in pairs:
        if "=" not in pair:
            raise ScenarioError(f"{pair!r} is not KEY=V1,V2", "write e.g. --set gbpages=true,false",
                                file="command line", key="--set")
        key, _, values = pair.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if key in _aliases():  # a flag such as 5level: true is the flag's value, false the option's default
            target, value = _aliases()[key]
            flags = [v.strip().lower() for v in values.split(",") if v.strip()]
            if not flags or any(f not in ("true", "false") for f in flags):
                raise ScenarioError(f"{key}= takes true or false", f"or set {target} itself", file="command line",
                                    key="--set")
            add(target, [_text(value if f == "true" else all_options()[target][0].default) for f in flags])
            continue
        if key not in _machine_keys() and key not in _mm_keys():
            raise ScenarioError(f"unknown key {key!r}",
                                f"use one of: {', '.join(_machine_keys() + _mm_keys())} (or model for lifetime, "
                                f"or the flags {', '.join(sorted(_aliases()))})",
                                file="command line", key="--set")
        items = [v.strip() for v in _split_values(values) if v.strip()]
        if not items:
            raise ScenarioError(f"{key}= has no values", "list one or more values separated by commas",
                                file="command line", key="--set")
        add(key, items)
    return out


def _text(value: Any) -> str:
    """A flag's value as the command line writes it: true/false, not Python's True/False."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _split_values(values: str) -> list[str]:
    """V1,V2,... split at the commas outside brackets, so a value may be a list: memory_map=[[0,"2G"]],[[0,"8G"]]."""
    out, depth, start = [], 0, 0
    for at, char in enumerate(values):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            out.append(values[start:at])
            start = at + 1
    return [*out, values[start:]]


def _value(key: str, text: Any) -> Any:
    """Convert a --set value the way its [machine]/[mm] field or architecture option expects."""
    if not isinstance(text, str):
        return text
    option = all_options().get(key)
    if option is not None and key not in schema.Machine.model_fields:
        return text  # the option's own conversion runs in validation, with the key
    field = schema.Machine.model_fields.get(key) or schema.MM.model_fields.get(key)
    if field is None:
        return text
    try:
        return TypeAdapter(field.annotation).validate_python(text)
    except ValidationError:
        pass
    if text.lstrip().startswith("["):  # a list (memory_map): the field's own validator reads its sizes
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    for parse in (lambda t: int(t, 10), lambda t: {"true": True, "false": False}[t.lower()]):
        try:
            return TypeAdapter(field.annotation).validate_python(parse(text))
        except (ValueError, KeyError, ValidationError):
            continue
    return text  # validation says what is wrong, with the key


def with_settings(loaded: LoadedScenario, values: dict[str, Any]) -> LoadedScenario:
    """``loaded`` with typed [machine] and [mm] values, each key to its own table (a --set combination, or the
    part of one that is kept when finding which value a refusal is due to)."""
    machine = {k: v for k, v in values.items() if k not in schema.MM.model_fields}
    mm = {k: v for k, v in values.items() if k in schema.MM.model_fields}
    variant = loaded.with_machine(**machine) if machine else loaded
    return variant.with_mm(**mm) if mm else variant


class VariantFailed(ScenarioErrors):
    """A configuration validated but its run was refused (say the machine could not boot with it): the errors,
    with what the command line chose (``config``), the scenario (``base``) and the [machine] and [mm] values
    (``overrides``), so that the caller can tell which of its values the refusal is due to."""

    def __init__(self, errors: list[ScenarioError], config: dict[str, Any], base: LoadedScenario,
                 overrides: dict[str, Any]) -> None:
        super().__init__(errors)
        self.config, self.base, self.overrides = config, base, overrides


def compare(source: str | Path, settings: dict[str, list[str]],
            progress: Callable[[int, int], None] | None = None) -> CompareResult:
    """Run ``source`` once per combination of ``settings``; every combination is validated first."""
    axes = list(settings)
    combos = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*(settings[a] for a in axes))]
    return compare_configs(source, combos, progress, axes)


def compare_configs(source: str | Path | LoadedScenario, configs: list[dict[str, Any]],
                    progress: Callable[[int, int], None] | None = None,
                    axes: list[str] | None = None, ptdump: bool = False) -> CompareResult:
    """Run ``source`` once per explicit configuration (a dict of [machine]/[mm] keys to values); ``ptdump``
    keeps each run's direct-map dump before and after its steps."""
    loaded = load(source)
    axes = axes or sorted({k for c in configs for k in c})
    variants: list[tuple[dict[str, Any], dict[str, Any], LoadedScenario]] = []  # chosen, typed, the scenario
    errors: list[ScenarioError] = []
    keys = set(_machine_keys()) | set(_mm_keys())
    for chosen in configs:
        values = {k: _value(k, v) for k, v in chosen.items() if k in keys}
        try:
            variants.append((chosen, values, with_settings(loaded, values)))
        except ScenarioErrors as err:
            where = "--set " + " ".join(f"{k}={v}" for k, v in chosen.items())
            errors += [ScenarioError(e.message, e.hint or "choose another value for --set", file="command line",
                                     key=f"{where}: {e.key}" if e.key else where) for e in err.errors]
    if errors:
        raise ScenarioErrors(errors)
    result = CompareResult(loaded.name, axes)
    for i, (chosen, values, variant) in enumerate(variants, start=1):
        try:
            result.rows.append(CompareRow({a: chosen.get(a, "") for a in axes}, run_scenario(variant, ptdump=ptdump)))
        except ScenarioErrors as err:
            raise VariantFailed(err.errors, chosen, loaded, values) from None
        if progress:
            progress(i, len(variants))
    return result
