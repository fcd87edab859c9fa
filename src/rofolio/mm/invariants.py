"""Checks that hold on a correct machine, for tests, scenario runs and reports.

Each returns a list of human-readable problems (empty when the invariant holds):

* ``readonly_folios_writable``: a folio flagged read-only has a writable
  direct-map page (model 1's state must always match the page table);
* ``readonly_pages_in_free_lists``: a page that mm ever made read-only is in
  the buddy free lists while its direct-map entry is present and read-only
  (the next __GFP_ZERO/init_on_alloc/poison store to it will oops);
* ``policy_invariants``: the lifetime model's own checks
  (``LifetimePolicy.invariants``); under model 2, its contract: every folio
  made read-only is still allocated (or deliberately leaked) where it was,
  still read-only;
* ``allocator_consistent``: free blocks are aligned, inside their zone, never
  overlap an allocated folio, and per zone free + allocated + leaked pages
  equal the managed pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = [
    "allocator_consistent", "check_all", "policy_invariants", "readonly_folios_writable",
    "readonly_pages_in_free_lists"
]


def readonly_folios_writable(mm: MMState) -> list[str]:
    k = mm.kernel
    out = []
    for folio in list(mm.folios.values()):
        if folio.readonly:
            bad = [p for p in range(folio.pfn, folio.end) if k.direct_map_writable(p)]
            if bad:
                out.append(f"{folio.describe()}: {len(bad)} writable direct-map page(s), first pfn {bad[0]:#x}")
    return out


def readonly_pages_in_free_lists(mm: MMState) -> list[str]:
    k = mm.kernel
    out = []
    for start, end in mm.readonly_history.items():
        for zone in mm.zones:
            lo, hi = max(start, zone.start_pfn), min(end, zone.end_pfn)
            if lo >= hi:
                continue
            for block in zone.free.blocks(max(lo - (1 << 10), zone.start_pfn), hi):
                for pfn in range(max(block.pfn, lo), min(block.end, hi)):
                    if k.direct_map_present(pfn) and not k.direct_map_writable(pfn):
                        out.append(f"pfn {pfn:#x} is free (order-{block.order} block {block.pfn:#x}) "
                                   "but read-only in the direct map")
                        break
    return out


def policy_invariants(mm: MMState) -> list[str]:
    """The checks the machine's lifetime model adds (``rofolio.mm.policy``)."""
    return mm.policy.invariants(mm)


def allocator_consistent(mm: MMState) -> list[str]:
    out = []
    for zone in mm.zones:
        free = 0
        for run in zone.free.runs():
            if run.pfn & ((1 << run.order) - 1):
                out.append(f"{zone.name}: free block {run.pfn:#x} not aligned to order {run.order}")
            if run.pfn < zone.start_pfn or run.end > zone.end_pfn:
                out.append(f"{zone.name}: free run [{run.pfn:#x}, {run.end:#x}) outside the zone")
            free += run.end - run.pfn
            for folio in mm.folios_in(max(run.pfn - (1 << 10), 0), run.end):
                if folio.end > run.pfn and folio.pfn < run.end:
                    out.append(f"{zone.name}: free run [{run.pfn:#x}, {run.end:#x}) overlaps {folio.describe()}")
        used = sum(f.nr_pages for f in mm.folios_in(zone.start_pfn, zone.end_pfn) if not f.reserved)
        leaked = sum(f.nr_pages for f in mm.leaked if zone.spans(f.pfn))
        if free + used + leaked != zone.managed_pages:
            out.append(f"{zone.name}: free {free} + allocated {used} + leaked {leaked} != managed "
                       f"{zone.managed_pages}")
        if free != zone.free.free_pages:
            out.append(f"{zone.name}: runs hold {free} pages but nr_free says {zone.free.free_pages}")
    return out


def check_all(mm: MMState) -> list[str]:
    return (readonly_folios_writable(mm) + readonly_pages_in_free_lists(mm) + policy_invariants(mm)
            + allocator_consistent(mm))
