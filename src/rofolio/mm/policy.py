"""The lifetime models for folios made read-only in the direct map, as policies core MM consults.

Lance Yang (LKML 2605.3/11644) named two models:

1. read-only in the direct map is real folio state: core MM carries it
   through migration and clears it on free (``Model1``);
2. the helper is only for folios with a simple lifetime: allocated once,
   never migrated, never freed, never written after being made read-only
   (``Model2``): any attempt is a contract violation, warned about and refused.

Two more policies make the consequences visible: ``Broken`` is model 1
without the migration hook (the counterexample: the destination comes out
writable and the source is freed while still read-only, because migration
frees the source after clearing its mapping, bypassing the free hook), and
``Unaware`` is today's kernel, where nothing knows about the state.

Hooks: ``before_make_readonly``, ``before_migrate`` (may refuse),
``after_migrate_copy`` (model 1 carries the state), ``before_free`` (model 1
restores before any content write, model 2 refuses), ``before_write``
(model 2 refuses), and ``invariants`` (the model's own checks, added to the
general ones of ``rofolio.mm.invariants``; model 2's contract lives here).

The registry: every policy class declares its ``name``, ``aliases`` and a
one-line ``summary`` and is registered with ``@register_lifetime_model``.
``MMConfig``, the scenario schema and the CLI read the names from
``lifetime_model_names()`` and resolve names and aliases with
``lifetime_model()``; see docs/adding-a-lifetime-model.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rofolio.errors import ConfigError
from rofolio.events import KernelWarning
from rofolio.mm.events import ContractViolation
from rofolio.mm.folio import Folio
from rofolio.mm.readonly import arch_make_folio_readonly, folio_restore_writable
from rofolio.mm.warn import warning_text

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = [
    "_ALIASES",
    "_MODELS",
    "Broken",
    "LifetimePolicy",
    "Model1",
    "Model2",
    "lifetime_model",
    "lifetime_model_choices",
    "lifetime_model_inputs",
    "lifetime_model_names",
    "lifetime_models",
    "make_policy",
    "register_lifetime_model",
    "unregister_lifetime_model"
]

# RFC v2 patch 5 (src/rofolio/kernelbuild/patches/0005-*): __free_pages_prepare() (mm/page_alloc.c) and
# migrate_folio_unmap() (mm/migrate.c) ask folio_readonly_refused() (mm/util.c), which WARNs once per folio and
# operation; a write by an MM path is the model's own check (the kernel's read-only entry faults instead)
_WHERE = {"migrate": "mm/util.c folio_readonly_refused", "free": "mm/util.c folio_readonly_refused",
          "write": "mm/readonly.c:folio_write"}


class LifetimePolicy:
    """Today's kernel: nothing knows a folio is read-only in the direct map (``none``)."""

    name: ClassVar[str] = "none"
    aliases: ClassVar[tuple[str, ...]] = ("unaware",)
    summary: ClassVar[str] = "today's kernel: nothing knows a folio is read-only in the direct map"

    def before_make_readonly(self, mm: MMState, folio: Folio, why: str) -> bool:
        return True

    def before_migrate(self, mm: MMState, folio: Folio, path: str) -> bool:
        return True

    def after_migrate_copy(self, mm: MMState, src: Folio, dst: Folio) -> None:
        return None

    def before_free(self, mm: MMState, folio: Folio, path: str) -> bool:
        return True

    def before_write(self, mm: MMState, folio: Folio, path: str) -> bool:
        return True

    def invariants(self, mm: MMState) -> list[str]:
        """This model's own checks (problems as text, empty when they hold)."""
        return []


Unaware = LifetimePolicy

_P = TypeVar("_P", bound=type[LifetimePolicy])
_MODELS: dict[str, type[LifetimePolicy]] = {}  # canonical name -> class, in registration order
_ALIASES: dict[str, str] = {}  # alias -> canonical name


def register_lifetime_model(cls: _P) -> _P:
    """Register a policy class under its ``name`` and ``aliases`` (usable as a decorator)."""
    if not isinstance(cls, type) or not issubclass(cls, LifetimePolicy):
        raise TypeError(f"{cls!r} is not a LifetimePolicy subclass")
    keys = (cls.name, *cls.aliases)
    for key in keys:
        owner = _MODELS.get(key) or _MODELS.get(_ALIASES.get(key, ""))
        if owner is not None and owner is not cls:
            raise ConfigError(f"lifetime model name {key!r} is already taken by {owner.__name__}",
                              "give the new model its own name and aliases")
    _MODELS[cls.name] = cls
    _ALIASES.update(dict.fromkeys(cls.aliases, cls.name))
    return cls


def unregister_lifetime_model(name: str) -> type[LifetimePolicy]:
    """Remove a registered model (by name or alias) and its aliases; returns its class."""
    cls = lifetime_model(name)
    del _MODELS[cls.name]
    for alias in [a for a, n in _ALIASES.items() if n == cls.name]:
        del _ALIASES[alias]
    return cls


def lifetime_model(name: Any) -> type[LifetimePolicy]:
    """The policy class named ``name``: a canonical name or an alias (``1`` and ``"1"`` are model 1)."""
    key = str(name)
    cls = _MODELS.get(key) or _MODELS.get(_ALIASES.get(key, ""))
    if cls is None:
        raise ConfigError(f"unknown lifetime model {name!r}", f"choose one of: {lifetime_model_choices()}")
    return cls


def lifetime_model_names() -> tuple[str, ...]:
    """The canonical names of the registered models, in registration order."""
    return tuple(_MODELS)


def lifetime_models() -> tuple[type[LifetimePolicy], ...]:
    """The registered policy classes, in registration order."""
    return tuple(_MODELS.values())


def lifetime_model_inputs() -> tuple[str, ...]:
    """Every accepted spelling, each model's name then its aliases, in registration order."""
    return tuple(key for cls in _MODELS.values() for key in (cls.name, *cls.aliases))


def lifetime_model_choices() -> str:
    """The choices for help and error texts: ``model1 (1), model2 (2), ...``."""
    return ", ".join(f"{c.name} ({', '.join(c.aliases)})" if c.aliases else c.name for c in _MODELS.values())


class Model2(LifetimePolicy):
    """Simple lifetime: migrating, freeing or writing a read-only folio is refused with a warning."""

    name: ClassVar[str] = "model2"
    aliases: ClassVar[tuple[str, ...]] = ("2",)
    summary: ClassVar[str] = "simple lifetime: migrating, freeing or writing a read-only folio is refused"

    def __init__(self) -> None:
        self._warned: set[tuple[str, int]] = set()  # (operation, pfn): the patch's xarray marks

    def _violation(self, mm: MMState, what: str, folio: Folio, path: str) -> bool:
        """Refuse every time; WARN only the first time for this folio and operation, as patch 5 does."""
        if not folio.readonly:
            return True
        message = f"refusing to {what} read-only folio pfn:{folio.pfn:#x} order:{folio.order}"
        text = warning_text(_WHERE[what], message) + f"\ncaller: {path}" + (f" ({folio.label})" if folio.label else "")
        mm.kernel.log.append(ContractViolation(what, folio.pfn, folio.order, path, self.name, text))
        if (what, folio.pfn) not in self._warned:
            self._warned.add((what, folio.pfn))
            mm.kernel.log.append(KernelWarning(text))
        return False

    def before_migrate(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "migrate", folio, path)

    def before_free(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "free", folio, path)

    def before_write(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "write", folio, path)

    def invariants(self, mm: MMState) -> list[str]:
        """The contract: every range made read-only still belongs to a read-only folio, allocated
        (or deliberately leaked) where it was."""
        out = []
        leaked = {f.pfn: f for f in mm.leaked}
        for start, end in mm.readonly_history.items():
            folio = mm.folio_of(start) or leaked.get(start)
            if folio is None or folio.pfn != start or folio.end != end or not folio.readonly:
                out.append(f"read-only range [pfn {start:#x}, {end:#x}) no longer belongs to a read-only folio")
        return out


class Model1(LifetimePolicy):
    """Folio state: migration carries it to the destination, freeing clears it first."""

    name: ClassVar[str] = "model1"
    aliases: ClassVar[tuple[str, ...]] = ("1",)
    summary: ClassVar[str] = "read-only is folio state: migration carries it, freeing clears it first"

    def after_migrate_copy(self, mm: MMState, src: Folio, dst: Folio) -> None:
        if not src.readonly:
            return
        arch_make_folio_readonly(mm, dst, "migration: destination takes the read-only state")
        folio_restore_writable(mm, src, "migration: source writable again before it is freed")

    def before_free(self, mm: MMState, folio: Folio, path: str) -> bool:
        if folio.readonly:
            folio_restore_writable(mm, folio, f"{path}: restore before the free path writes")
        return True


class Broken(Model1):
    """Model 1 without the migration hook: the counterexample."""

    name: ClassVar[str] = "broken"
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = "model 1 without the migration hook: the counterexample"

    def after_migrate_copy(self, mm: MMState, src: Folio, dst: Folio) -> None:
        return None


for _cls in (Model1, Model2, Broken, LifetimePolicy):  # the order help texts and choices list them in
    register_lifetime_model(_cls)


def make_policy(name: str) -> LifetimePolicy:
    """A fresh policy for the model named ``name`` (or one of its aliases)."""
    return lifetime_model(name)()
