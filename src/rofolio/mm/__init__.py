"""Generic memory management over an architecture's direct map (layer 4).

Modules, one concept each: ``gfp`` (allocation flags, zones, migratetypes),
``config`` (MMConfig), ``zone``/``pageblock``/``free_area``/``buddy`` (the
buddy allocator on sparse runs), ``bootmem`` (memblock hand-over),
``folio``, ``state`` (MMState), ``mm_init`` (mm_core_init), ``page_alloc`` (allocation and
the free path), ``direct_access`` (content writes through the direct map and
the faults they raise), ``warn`` (WARN() texts), ``zero_page`` (the 4K zero
page, the huge zero folio, its shrinker), ``readonly`` (arch_make_folio_readonly
and the persistent huge zero folio), ``policy`` (the lifetime models 1 and 2,
two foils, and their registry), ``process``/``fault`` (user mappings and
faults), ``migrate``, ``compaction``, ``memory_hotplug``, ``longterm_pin``,
``secretmem``, ``invariants`` and ``workload`` (the standard lifetime
workload).  Events are in ``events``.

MM reaches the architecture only through ``rofolio.arch.ArchKernel``.
"""

from rofolio.mm import events as events  # registers the event handlers with rofolio.stats
from rofolio.mm.config import MMConfig
from rofolio.mm.mm_init import mm_core_init
from rofolio.mm.state import MMState

__all__ = ["MMConfig", "MMState", "events", "mm_core_init"]
