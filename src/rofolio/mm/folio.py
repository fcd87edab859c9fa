"""Folios: what ``struct folio`` records that the read-only question depends on.

Order, reference count, map count and pin count decide whether a folio can
be migrated or freed; the flags (PG_lru, movable_ops, large_rmappable) and
the mapping decide *how* (mm/migrate.c move_to_new_folio()); the mapping's
``free_folio`` and ``migrate_folio`` callbacks are where secretmem keeps its
direct-map state (mm/secretmem.c).  ``readonly`` is the model-1 state: being
read-only in the direct map as real folio state, which Lance Yang's model 1 asks
core MM to carry through migration and clear on free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rofolio.mm.gfp import Gfp, MigrateType

__all__ = ["Folio", "MappingKind"]

NO_GFP = Gfp(0)


class MappingKind(StrEnum):
    """What folio->mapping points at, as far as migration and freeing care."""

    NONE = "none"  # kernel allocation, page table, the zero folios
    ANON = "anon"  # anonymous memory (anon_vma): migrate_folio() for !mapping
    FILE = "file"  # page cache with a migrate_folio a_op (filemap_migrate_folio)
    SECRETMEM = "secretmem"  # secretmem_aops: .migrate_folio returns -EBUSY, .free_folio restores the direct map


@dataclass(eq=False)
class Folio:
    """One allocated (or reserved) folio.  Identity is the object; ``pfn`` is its first page."""

    pfn: int
    order: int
    gfp: Gfp = NO_GFP
    migratetype: MigrateType = MigrateType.UNMOVABLE
    refcount: int = 1
    mapcount: int = 0
    pincount: int = 0
    lru: bool = False  # PG_lru
    movable_ops: bool = False  # page_has_movable_ops(): balloon, zsmalloc
    large_rmappable: bool = False
    mapping: MappingKind = MappingKind.NONE
    reserved: bool = False  # PG_reserved: a memblock page (the 4K empty_zero_page), never freed
    readonly: bool = False  # model-1 state: read-only in the direct map
    leaked: bool = False  # dropped by an oops or a refused free: neither in use nor free
    nid: int = 0
    zone: str = ""
    rmap: list[tuple[int, int]] = field(default_factory=list)  # (mm id, user address) mapping it
    label: str = ""

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def end(self) -> int:
        return self.pfn + self.nr_pages

    def contains(self, pfn: int) -> bool:
        return self.pfn <= pfn < self.end

    def expected_refcount(self) -> int:
        """folio_expected_ref_count() for the mappings the model has: one reference per mapping."""
        return self.mapcount if self.mapping == MappingKind.ANON else self.mapcount + 1

    def describe(self) -> str:
        name = f" ({self.label})" if self.label else ""
        return (f"folio pfn:{self.pfn:#x} order:{self.order} refcount:{self.refcount} mapcount:{self.mapcount}"
                f" mapping:{self.mapping}{' lru' if self.lru else ''}{' readonly' if self.readonly else ''}{name}")
