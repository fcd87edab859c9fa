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
(model 2 refuses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rofolio.events import KernelWarning
from rofolio.mm.events import ContractViolation
from rofolio.mm.folio import Folio
from rofolio.mm.readonly import arch_make_folio_readonly, folio_restore_writable
from rofolio.mm.warn import warning_text

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

_WHERE = {"migrate": "mm/migrate.c:migrate_pages", "free": "mm/page_alloc.c:free_pages_prepare",
          "write": "mm/readonly.c:folio_write"}


class LifetimePolicy:
    """Today's kernel: nothing knows a folio is read-only in the direct map (``none``)."""

    name: ClassVar[str] = "none"

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


Unaware = LifetimePolicy


class Model2(LifetimePolicy):
    """Simple lifetime: migrating, freeing or writing a read-only folio is refused with a warning."""

    name: ClassVar[str] = "model2"

    def _violation(self, mm: MMState, what: str, folio: Folio, path: str) -> bool:
        if not folio.readonly:
            return True
        message = (f"{path}: attempt to {what} read-only folio pfn:{folio.pfn:#x} order:{folio.order}"
                   f"{f' ({folio.label})' if folio.label else ''}: refused (model 2: a read-only folio is"
                   " never migrated, freed or written)")
        text = warning_text(_WHERE[what], message)
        mm.kernel.log.append(ContractViolation(what, folio.pfn, folio.order, path, self.name, text))
        mm.kernel.log.append(KernelWarning(text))
        return False

    def before_migrate(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "migrate", folio, path)

    def before_free(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "free", folio, path)

    def before_write(self, mm: MMState, folio: Folio, path: str) -> bool:
        return self._violation(mm, "write", folio, path)


class Model1(LifetimePolicy):
    """Folio state: migration carries it to the destination, freeing clears it first."""

    name: ClassVar[str] = "model1"

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

    def after_migrate_copy(self, mm: MMState, src: Folio, dst: Folio) -> None:
        return None


POLICIES: dict[str, type[LifetimePolicy]] = {
    "model1": Model1, "model2": Model2, "broken": Broken, "none": LifetimePolicy,
}


def make_policy(name: str) -> LifetimePolicy:
    return POLICIES[name]()
