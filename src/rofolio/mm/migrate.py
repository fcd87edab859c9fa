"""Folio migration (mm/migrate.c) and its users' target allocators.

``migrate_folio_to()`` follows migrate_pages_batch() for one folio:

1. isolation needs PG_lru or movable_ops (folio_isolate_lru(),
   isolate_movable_ops_page()); anything else cannot be migrated;
2. the lifetime policy may refuse (model 2: a read-only folio);
3. ``folio_migrate_mapping()`` needs the reference count to be what the
   mappings explain (folio_expected_ref_count()); a pinned folio has more:
   -EAGAIN;
4. ``move_to_new_folio()`` calls the mapping's ``migrate_folio``: secretmem's
   returns -EBUSY;
5. the destination comes from the caller's allocator (compaction's free
   scanner, alloc_misplaced_dst_folio() on another node,
   alloc_migration_target() for memory offline, the longterm-pin target);
6. ``folio_mc_copy()`` reads the source and stores into the destination
   through the direct map (a store to a read-only or unmapped destination
   oopses);
7. the user page tables are pointed at the destination
   (remove_migration_ptes()), the policy's after-copy hook runs (model 1
   carries the read-only state), and the source, its mapping cleared, is
   freed (migrate_folio_done() → folio_put()), which does not pass through
   the mapping's free path.

The kernel retries -EAGAIN up to 10 times; the model's state does not change
between retries, so one attempt decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.mm.direct_access import direct_map_copy
from rofolio.mm.errnos import EAGAIN
from rofolio.mm.events import MigrateFolio
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT, RECLAIM, Gfp, ZoneType
from rofolio.mm.page_alloc import _leak, alloc_pages, free_pages
from rofolio.mm.process import HugePmd, Pte, PteTable
from rofolio.units import PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = ["alloc_migration_target", "migrate_folio_to", "migrate_to_node", "migration_target_gfp"]

TargetAllocator = Callable[[Folio], Folio | None]


def migrate_folio_to(mm: MMState, src: Folio, alloc: TargetAllocator, reason: str) -> tuple[int, Folio | None]:
    """Migrate one folio to a destination from ``alloc``: (0, destination) or (the kernel's error, None)."""
    log = mm.kernel.log

    def done(ret: int, why: str, dst: int = -1) -> tuple[int, Folio | None]:
        log.append(MigrateFolio(src.pfn, dst, src.order, reason, ret, why))
        return ret, None

    if src.reserved or src.leaked or not (src.lru or src.movable_ops):
        return done(-Errno.EBUSY, "not on the LRU and no movable_ops: cannot be isolated")
    if not mm.policy.before_migrate(mm, src, reason):
        return done(-Errno.EBUSY, f"refused by the {mm.policy.name} lifetime policy")
    if src.refcount != src.expected_refcount():
        return done(-EAGAIN, f"refcount {src.refcount} != expected {src.expected_refcount()} (pinned)")
    if src.mapping == MappingKind.SECRETMEM:
        return done(-Errno.EBUSY, "secretmem_migrate_folio() returns -EBUSY")
    dst = alloc(src)
    if dst is None:
        return done(-Errno.ENOMEM, "no destination folio")
    if direct_map_copy(mm, src.pfn, dst.pfn, src.nr_pages, f"folio_mc_copy ({reason})") < 0:
        _leak(mm, dst)  # the migrating task oopsed holding the destination
        return done(-Errno.EFAULT, "oops while copying", dst.pfn)
    _move_state(mm, src, dst)
    mm.policy.after_migrate_copy(mm, src, dst)
    log.append(MigrateFolio(src.pfn, dst.pfn, src.order, reason, 0, ""))
    src.mapping, src.lru, src.movable_ops, src.mapcount, src.rmap = MappingKind.NONE, False, False, 0, []
    free_pages(mm, src, f"migrate ({reason})")
    return 0, dst


def _move_state(mm: MMState, src: Folio, dst: Folio) -> None:
    """folio_migrate_mapping() + folio_migrate_flags() + remove_migration_ptes()."""
    dst.mapping, dst.lru, dst.movable_ops = src.mapping, src.lru, src.movable_ops
    dst.mapcount, dst.refcount, dst.pincount = src.mapcount, src.refcount, src.pincount
    dst.rmap = list(src.rmap)
    dst.label = src.label
    dst.large_rmappable = src.large_rmappable
    for mm_id, addr in dst.rmap:
        mms = mm.processes.get(mm_id)
        if mms is None:
            continue
        haddr = addr & ~(PMD_SIZE - 1)
        entry = mms.pmds.get(haddr)
        if isinstance(entry, HugePmd) and entry.pfn == src.pfn:
            entry.pfn = dst.pfn
        elif isinstance(entry, PteTable):
            index = (addr - haddr) >> PAGE_SHIFT
            pte = entry.get(index)
            if pte is not None and src.contains(pte.pfn):  # a PTE maps any page of a split THP
                entry.entries[index] = Pte(dst.pfn + pte.pfn - src.pfn, pte.writable, pte.special)


def migration_target_gfp(mm: MMState, folio: Folio, gfp_mask: Gfp) -> Gfp:
    """alloc_migration_target()'s mask from its caller's (mtc->gfp_mask): for a large folio without
    __GFP_RECLAIM and with GFP_TRANSHUGE, and __GFP_HIGHMEM when the source is in ZONE_MOVABLE (so the target
    may be too)."""
    gfp = gfp_mask
    if folio.order:
        gfp = (gfp & ~RECLAIM) | GFP_TRANSHUGE
    zone = mm.zone_of(folio.pfn)
    if zone is not None and zone.type == ZoneType.MOVABLE:
        gfp |= Gfp.HIGHMEM
    return gfp


def alloc_migration_target(mm: MMState, gfp_mask: Gfp, nid: int | None = None,
                           nodemask: frozenset[int] | None = None) -> TargetAllocator:
    """alloc_migration_target() with a migration_target_control: ``nid`` preferred (the folio's own when
    None), only the nodes of ``nodemask`` (all when None)."""
    def alloc(folio: Folio) -> Folio | None:
        return alloc_pages(mm, migration_target_gfp(mm, folio, gfp_mask), folio.order,
                           folio.nid if nid is None else nid, label=folio.label, nodemask=nodemask)
    return alloc


def migrate_to_node(mm: MMState, folio: Folio, nid: int) -> tuple[int, Folio | None]:
    """migrate_misplaced_folio() (NUMA balancing): the destination strictly on node ``nid``."""
    if folio.order:
        gfp = GFP_TRANSHUGE_LIGHT | Gfp.THISNODE
    else:
        gfp = (GFP_HIGHUSER_MOVABLE | Gfp.THISNODE | Gfp.NOMEMALLOC | Gfp.NORETRY | Gfp.NOWARN) & ~RECLAIM

    def alloc(src: Folio) -> Folio | None:  # alloc_misplaced_dst_folio()
        return alloc_pages(mm, gfp, src.order, nid, label=src.label)

    return migrate_folio_to(mm, folio, alloc, "numa_misplaced")
