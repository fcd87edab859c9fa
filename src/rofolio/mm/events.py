"""Events of the generic MM layer, and how they fold into ``Counters.extra``.

Each is a frozen dataclass with slots and a ``kind`` (the JSON name); the
handlers registered at import time turn them into named counts with
``Counters.bump`` (rofolio.stats.register_handler), so every mm figure a
report shows is derived from the event stream like the arch's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rofolio.events import Event
from rofolio.stats import Counters, register_handler

__all__ = [
    "CompactionRun", "ContentWrite", "ContractViolation", "FolioPin", "FolioReadonly", "HugeZeroFolioAlloc",
    "KernelOops", "MemoryOffline", "MigrateFolio", "PageAlloc", "PageAllocFail", "PageFree", "RefcountOverflow",
    "ShrinkerRun", "UserFault",
]


@dataclass(frozen=True, slots=True)
class PageAlloc(Event):
    """The buddy allocator handed out a 2^order block (mm/page_alloc.c get_page_from_freelist())."""

    kind: ClassVar[str] = "page_alloc"
    pfn: int
    order: int
    gfp: str
    migratetype: str
    zone: str
    nid: int


@dataclass(frozen=True, slots=True)
class PageAllocFail(Event):
    """No zone in the zonelist could serve the request, or fail_page_alloc said no."""

    kind: ClassVar[str] = "page_alloc_fail"
    order: int
    gfp: str
    reason: str


@dataclass(frozen=True, slots=True)
class PageFree(Event):
    """A block went back to the buddy free lists (``path`` says who freed it)."""

    kind: ClassVar[str] = "page_free"
    pfn: int
    order: int
    path: str


@dataclass(frozen=True, slots=True)
class ContentWrite(Event):
    """The kernel wrote page contents through the direct map (zeroing, poisoning, copying, a bug)."""

    kind: ClassVar[str] = "content_write"
    pfn: int
    nr_pages: int
    path: str


@dataclass(frozen=True, slots=True)
class KernelOops(Event):
    """Which mm path oopsed on a direct-map store (the fault itself is a ``rofolio.events.Fault``)."""

    kind: ClassVar[str] = "oops"
    addr: int
    pfn: int
    path: str
    text: str


@dataclass(frozen=True, slots=True)
class ContractViolation(Event):
    """Model 2: something tried to migrate, free or write a folio that must stay read-only."""

    kind: ClassVar[str] = "contract_violation"
    what: str  # "migrate" | "free" | "write"
    pfn: int
    order: int
    path: str
    policy: str
    text: str


@dataclass(frozen=True, slots=True)
class FolioReadonly(Event):
    """arch_make_folio_readonly() (readonly=True) or the restore (readonly=False) and its result.

    ``reformed`` says whether the restore re-formed large direct-map leaves
    (observed as Collapse events from the arch, never assumed).
    """

    kind: ClassVar[str] = "folio_readonly"
    pfn: int
    nr_pages: int
    readonly: bool
    ret: int
    why: str
    reformed: bool = False


@dataclass(frozen=True, slots=True)
class MigrateFolio(Event):
    """One folio migration attempt (mm/migrate.c); ret 0 on success, else the kernel's error."""

    kind: ClassVar[str] = "migrate"
    src: int
    dst: int  # -1 when no destination was allocated
    order: int
    reason: str
    ret: int
    why: str = ""


@dataclass(frozen=True, slots=True)
class HugeZeroFolioAlloc(Event):
    """vmstat thp_zero_page_alloc / thp_zero_page_alloc_failed (mm/huge_memory.c get_huge_zero_folio())."""

    kind: ClassVar[str] = "thp_zero_page_alloc"
    pfn: int  # -1 on failure
    ok: bool


@dataclass(frozen=True, slots=True)
class ShrinkerRun(Event):
    """A shrinker's count_objects() and, if it reported work, its scan_objects()."""

    kind: ClassVar[str] = "shrinker"
    name: str
    counted: int
    freed: int


@dataclass(frozen=True, slots=True)
class UserFault(Event):
    """A user page fault and how it was handled (mm/memory.c, mm/huge_memory.c)."""

    kind: ClassVar[str] = "user_fault"
    mm_id: int
    addr: int
    write: bool
    handling: str


@dataclass(frozen=True, slots=True)
class MemoryOffline(Event):
    """offline_pages() of one memory block (mm/memory_hotplug.c) and its outcome."""

    kind: ClassVar[str] = "memory_offline"
    start_pfn: int
    end_pfn: int
    ret: int
    reason: str


@dataclass(frozen=True, slots=True)
class CompactionRun(Event):
    """compact_zone() over one zone (mm/compaction.c)."""

    kind: ClassVar[str] = "compaction"
    nid: int
    zone: str
    migrated: int
    failed: int


@dataclass(frozen=True, slots=True)
class FolioPin(Event):
    """A FOLL_PIN reference; ``migrated_from`` is the old pfn when FOLL_LONGTERM moved it first (-1: not)."""

    kind: ClassVar[str] = "pin"
    pfn: int
    longterm: bool
    migrated_from: int
    count: int = 1  # pins taken together (pin_user_pages() on many mappings of one folio)


@dataclass(frozen=True, slots=True)
class RefcountOverflow(Event):
    """A folio's page refcount passed 2^31 (page->_refcount is an atomic_t): it wraps."""

    kind: ClassVar[str] = "refcount_overflow"
    pfn: int
    refcount: int
    label: str


def _refcount_overflow(c: Counters, e: RefcountOverflow) -> None:
    c.bump("refcount_overflows")


def _page_alloc(c: Counters, e: PageAlloc) -> None:
    c.bump("pages_allocated", 1 << e.order)


def _page_alloc_fail(c: Counters, e: PageAllocFail) -> None:
    c.bump("page_alloc_failures")


def _page_free(c: Counters, e: PageFree) -> None:
    c.bump("pages_freed", 1 << e.order)


def _content_write(c: Counters, e: ContentWrite) -> None:
    c.bump("content_pages_written", e.nr_pages)


def _oops(c: Counters, e: KernelOops) -> None:
    c.bump(f"oops_in_{e.path.split(' ')[0]}")  # the fault itself is counted from rofolio.events.Fault


def _violation(c: Counters, e: ContractViolation) -> None:
    c.bump("contract_violations")
    c.bump(f"contract_violations_{e.what}")


def _folio_readonly(c: Counters, e: FolioReadonly) -> None:
    if e.readonly:
        c.bump("folios_made_readonly" if e.ret == 0 else "folio_readonly_failures")
    else:
        c.bump("folios_restored" if e.ret == 0 else "folio_restore_failures")
        if e.reformed:
            c.bump("restores_reformed_large")


def _migrate(c: Counters, e: MigrateFolio) -> None:
    c.bump("migrations" if e.ret == 0 else "migrations_failed")


def _thp_zero(c: Counters, e: HugeZeroFolioAlloc) -> None:
    c.bump("thp_zero_page_alloc" if e.ok else "thp_zero_page_alloc_failed")


def _shrinker(c: Counters, e: ShrinkerRun) -> None:
    if e.freed:
        c.bump("shrinker_freed", e.freed)


def _user_fault(c: Counters, e: UserFault) -> None:
    c.bump("user_faults")


def _offline(c: Counters, e: MemoryOffline) -> None:
    c.bump("memory_offlined" if e.ret == 0 else "memory_offline_failures")


def _compaction(c: Counters, e: CompactionRun) -> None:
    c.bump("compact_migrated", e.migrated)
    if e.failed:
        c.bump("compact_failed", e.failed)


def _pin(c: Counters, e: FolioPin) -> None:
    c.bump("pins_longterm" if e.longterm else "pins", e.count)


for _type, _handler, _counts in (
    (PageAlloc, _page_alloc, ("pages_allocated",)), (PageAllocFail, _page_alloc_fail, ("page_alloc_failures",)),
    (PageFree, _page_free, ("pages_freed",)), (ContentWrite, _content_write, ("content_pages_written",)),
    (KernelOops, _oops, ("oops_in_*",)), (ContractViolation, _violation, ("contract_violations*",)),
    (FolioReadonly, _folio_readonly, ("folios_made_readonly", "folio_readonly_failures", "folios_restored",
                                      "folio_restore_failures", "restores_reformed_large")),
    (MigrateFolio, _migrate, ("migrations", "migrations_failed")),
    (HugeZeroFolioAlloc, _thp_zero, ("thp_zero_page_alloc", "thp_zero_page_alloc_failed")),
    (ShrinkerRun, _shrinker, ("shrinker_freed",)), (UserFault, _user_fault, ("user_faults",)),
    (MemoryOffline, _offline, ("memory_offlined", "memory_offline_failures")),
    (CompactionRun, _compaction, ("compact_migrated", "compact_failed")), (FolioPin, _pin, ("pins", "pins_longterm")),
    (RefcountOverflow, _refcount_overflow, ("refcount_overflows",)),
):
    register_handler(_type, _handler, _counts)
