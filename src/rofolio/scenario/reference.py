"""The reference of scenario steps, generated from the schema: every op, its keys, their types, defaults and units.

``rofolio ops`` prints it (``--json`` for scripts).  Nothing here is written by hand but the layout: the ops,
keys, types, bounds and defaults are read from the pydantic models of ``rofolio.scenario.schema``, the
descriptions from their ``Field(description=...)`` and docstrings, the units from ``json_schema_extra``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Le
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rofolio.scenario import schema

__all__ = ["SCHEMA", "KeyReference", "OpReference", "op_reference"]

SCHEMA = "rofolio.ops/1"


@dataclass(frozen=True)
class KeyReference:
    """One key of a step: its name in the file, what it holds and whether a step must give it."""

    key: str
    type: str  # "integer", "string", "true/false", "one of: a, b", "list of: ...", "table"
    required: bool
    default: Any  # None where the key has no default (or its default is "not given")
    unit: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "type": self.type, "required": self.required, "default": self.default,
                "unit": self.unit, "description": self.description}


@dataclass(frozen=True)
class OpReference:
    """One kind of step: the op names it takes (set_memory_ro, set_memory_rw, ... share one), what it does,
    and its keys."""

    ops: tuple[str, ...]
    summary: str
    keys: tuple[KeyReference, ...]
    one_of: tuple[str, ...] = ()  # keys of which a step gives exactly one (the target of the step)

    def to_dict(self) -> dict[str, Any]:
        return {"ops": list(self.ops), "summary": self.summary, "keys": [k.to_dict() for k in self.keys],
                "exactly_one_of": list(self.one_of)}


COMMON_KEYS = ("name", "expect")  # every step takes them; listed once
TARGET_KEYS = ("pa", "va", "mapping", "folio")


def op_reference() -> tuple[list[KeyReference], list[OpReference]]:
    """The keys every step takes, and one entry per step type of the schema, in the order of STEP_TYPES."""
    common = [_key(name, schema.SetMemory.model_fields[name]) for name in COMMON_KEYS]
    ops = []
    for model in schema.STEP_TYPES:
        names = typing.get_args(model.model_fields["op"].annotation)
        keys = tuple(_key(name, f) for name, f in model.model_fields.items() if name not in ("op", *COMMON_KEYS))
        targets = TARGET_KEYS if issubclass(model, schema._Target) else ()  # its _one_target() validator
        ops.append(OpReference(tuple(names), _summary(model), keys, targets))
    return common, ops


def _summary(model: type) -> str:
    doc = (model.__doc__ or "").strip()
    if not doc or doc.startswith("Usage docs"):  # pydantic's own, not the step's
        return ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "")


def _key(name: str, field: FieldInfo) -> KeyReference:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    default: Any = None
    if field.default is not PydanticUndefined:
        default = field.default
    elif field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    kind = str(extra.get("type") or _type_text(field.annotation))
    bounds = [f">= {m.ge}" for m in field.metadata if isinstance(m, Ge)] + \
             [f"<= {m.le}" for m in field.metadata if isinstance(m, Le)]
    if bounds:
        kind += f" ({', '.join(bounds)})"
    return KeyReference(field.alias or name, kind, field.is_required(), default, str(extra.get("unit", "")),
                        field.description or "")


def _type_text(annotation: Any) -> str:
    """What a key takes, in the words of a TOML file."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin is list:
        return "list of " + _type_text(args[0]) if args else "list"
    if origin is dict:
        return "table"
    return {int: "integer", str: "string", bool: "true/false"}.get(annotation, getattr(annotation, "__name__", "?"))
