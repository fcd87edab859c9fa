"""Typed, immutable events: everything the modelled kernel does is one of these.

Data flows one way (docs/architecture.md): an operation on a machine appends events to its
``EventLog``; every counter a report shows (DirectMap, vmstat, CPA statistics,
flushes, IPIs, page-table pages) is *derived* from the events by
``rofolio.stats``, never kept anywhere else.  Events are small frozen
dataclasses with slots; their field names are part of the JSON schema.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

from rofolio.stats import Counters  # folds events by kind; it imports no event type at run time
from rofolio.units import Level

__all__ = [
    "BootMapping", "CacheFlush", "Call", "Collapse", "EntryWrite", "Event", "EventLog", "Fault", "Flush",
    "FlushKind", "KernelWarning", "LargePageCheck", "PgtableAlloc", "PgtableAllocFailed", "PgtableFree", "Phase",
    "PhaseChange", "PteCheck", "Return", "Split"
]


class Phase(StrEnum):
    """The kernel's ``system_state`` as far as the model needs it (include/linux/kernel.h)."""

    BOOTING = "booting"  # setup_arch(): one CPU, init_mem_mapping()
    SCHEDULING = "scheduling"  # rest_init(): early initcalls, smp_init(), then initcalls such as thp_shrinker_init()
    FREEING_INITMEM = "freeing_initmem"  # kernel_init(): free_initmem(), mark_readonly()
    RUNNING = "running"  # after mark_readonly() in kernel_init()


class FlushKind(StrEnum):
    ALL = "all"  # flush_tlb_all(): every CPU drops every (non-global and global) entry
    PAGES = "pages"  # one INVLPG per page on every CPU (x86 __cpa_flush_tlb, flush_tlb_one_kernel)
    RANGE = "range"  # a ranged broadcast invalidation (arm64 flush_tlb_kernel_range: TLBI by VA)
    LOCAL_ALL = "local_all"  # __flush_tlb_all() on the calling CPU only (DEBUG_PAGEALLOC)


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Level):
                value = value.leaf_name
            elif isinstance(value, StrEnum):
                value = str(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class PhaseChange(Event):
    kind: ClassVar[str] = "phase"
    phase: Phase


@dataclass(frozen=True, slots=True)
class Call(Event):
    """A modelled kernel entry point was called (set_memory_ro, folio_alloc, ...)."""

    kind: ClassVar[str] = "call"
    func: str
    addr: int
    numpages: int


@dataclass(frozen=True, slots=True)
class Return(Event):
    kind: ClassVar[str] = "return"
    func: str
    ret: int


@dataclass(frozen=True, slots=True)
class BootMapping(Event):
    """Boot mapped leaves and called update_page_count(level, counted) (arch/x86/mm/init_64.c)."""

    kind: ClassVar[str] = "boot_mapping"
    start: int
    end: int
    level: Level
    counted: int  # pages added to direct_pages_count[level]; may differ from what was mapped


@dataclass(frozen=True, slots=True)
class Split(Event):
    """One large leaf split into 512 leaves one level down (set_memory.c __split_large_page)."""

    kind: ClassVar[str] = "split"
    addr: int
    level: Level  # the level of the leaf that was split
    direct: bool  # split_page_count() applied: a direct-map address with a non-zero count
    vmstat: bool  # counted as direct_map_level{2,3}_splits (system_state == SYSTEM_RUNNING)
    count: int = 1  # consecutive leaves from ``addr`` split alike in one walk (arm64 range_split_to_ptes)


@dataclass(frozen=True, slots=True)
class Collapse(Event):
    """512 leaves replaced by one leaf one level up (set_memory.c collapse_pmd_page/collapse_pud_page)."""

    kind: ClassVar[str] = "collapse"
    addr: int
    level: Level  # the level of the new large leaf
    direct: bool
    vmstat: bool


@dataclass(frozen=True, slots=True)
class PgtableAlloc(Event):
    kind: ClassVar[str] = "pgtable_alloc"
    level: Level  # level of the entries the new table holds (PTE table = Level.PTE)
    count: int = 1


@dataclass(frozen=True, slots=True)
class PgtableAllocFailed(Event):
    kind: ClassVar[str] = "pgtable_alloc_failed"
    level: Level


@dataclass(frozen=True, slots=True)
class PgtableFree(Event):
    kind: ClassVar[str] = "pgtable_free"
    level: Level
    count: int = 1


@dataclass(frozen=True, slots=True)
class EntryWrite(Event):
    """``count`` consecutive leaf entries at ``level`` rewritten from ``old`` to ``new`` flags."""

    kind: ClassVar[str] = "entry_write"
    addr: int
    level: Level
    count: int
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class LargePageCheck(Event):
    """__should_split_large_page() looked at a 2M/1G leaf (CPA_STATISTICS 'checked')."""

    kind: ClassVar[str] = "large_page_check"
    addr: int
    level: Level
    outcome: str  # "sameprot" | "preserved" | "split"


@dataclass(frozen=True, slots=True)
class PteCheck(Event):
    """The 4K path of __change_page_attr() ran ``count`` times (CPA_STATISTICS '4K set-checked')."""

    kind: ClassVar[str] = "pte_check"
    addr: int
    count: int


@dataclass(frozen=True, slots=True)
class Flush(Event):
    """A TLB flush; ``ipis`` is the number of inter-processor interrupts it sent."""

    kind: ClassVar[str] = "flush"
    flush: FlushKind
    pages: int  # pages invalidated per CPU for PAGES/RANGE, 0 for ALL
    cpus: int  # CPUs whose TLB was flushed
    ipis: int
    reason: str


@dataclass(frozen=True, slots=True)
class CacheFlush(Event):
    kind: ClassVar[str] = "cache_flush"
    how: str  # "clflush" (per page) or "wbinvd" (whole cache, every CPU)
    pages: int


@dataclass(frozen=True, slots=True)
class Fault(Event):
    """A CPU access the page tables refuse: the kernel would oops (or a _nofault helper returns -EFAULT)."""

    kind: ClassVar[str] = "fault"
    addr: int
    access: str  # "write" or "read"
    reason: str  # "permissions violation" or "not-present page"
    mapping: str  # what the address belongs to: "direct map", "vmalloc", "kernel image", ...
    text: str  # the oops the architecture prints


@dataclass(frozen=True, slots=True)
class KernelWarning(Event):
    """A WARN / pr_warn the kernel would print."""

    kind: ClassVar[str] = "warning"
    text: str


class EventLog:
    """Appends events and folds each one into derived counters as it arrives.

    ``retain=False`` keeps only the counters (for very long runs such as the
    benchmark); the counters are the same either way because they are computed
    from the events, not kept by the model code.
    """

    def __init__(self, retain: bool = True) -> None:
        self.retain = retain
        self.events: list[Event] = []
        self.counters = Counters()
        self.appended = 0

    def append(self, event: Event) -> None:
        self.appended += 1
        self.counters.apply(event)
        if self.retain:
            self.events.append(event)

    def since(self, mark: int) -> list[Event]:
        """Events appended after ``mark`` (a value of ``appended``); needs ``retain``."""
        return self.events[mark:] if self.retain else []

    def to_dicts(self, start: int = 0) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events[start:]]

