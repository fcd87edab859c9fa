"""Typed, immutable events: everything the modelled kernel does is one of these.

Data flows one way (docs/architecture.md): an operation on a machine appends events to its
``EventLog``; every counter a report shows (DirectMap, vmstat, CPA statistics,
flushes, IPIs, page-table pages) is *derived* from the events by
``rofolio.stats``, never kept anywhere else.  Events are small frozen
dataclasses with slots; their field names are part of the JSON schema.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar, overload

from rofolio.stats import Counters, fold_rows  # folds events by kind; it imports no event type at run time
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


# type_id -> event type; an EventLog keeps one column per type id.  dataclass(slots=True) makes a second class
# under the same name, which takes the first one's id (and its place here).
_EVENT_TYPES: list[type[Event]] = []
_TYPE_IDS: dict[tuple[str, str], int] = {}


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"
    type_id: ClassVar[int] = -1  # this type's column in an EventLog

    def __init_subclass__(cls) -> None:  # no zero-argument super() here: the class is remade for its slots
        type_id = _TYPE_IDS.setdefault((cls.__module__, cls.__qualname__), len(_TYPE_IDS))
        cls.type_id = type_id
        if type_id == len(_EVENT_TYPES):
            _EVENT_TYPES.append(cls)
        else:
            _EVENT_TYPES[type_id] = cls

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
    """The events of one machine, in order, and the counters folded from them.

    An event is stored as the tuple of its field values, in the column of its type (``add()``), and built as a
    typed event only when read (``events``); the counters fold each column's new rows in bulk when they are read
    (``counters``), so no per-event dispatch runs while the model works.  ``retain=False`` keeps only the counters
    (for very long runs such as the benchmark): rows are folded and dropped every ``FOLD_EVERY`` events.  The
    counters are the same either way, because they are computed from the events, not kept by the model code.
    """

    FOLD_EVERY = 4096  # events held before a fold when they are not retained

    def __init__(self, retain: bool = True) -> None:
        self.retain = retain
        self._order = bytearray()  # the type id of each event, in order
        self._columns: defaultdict[int, list[tuple[Any, ...]]] = defaultdict(list)  # type id -> its rows
        self._folded: dict[int, int] = {}  # type id -> rows of its column already in the counters
        self._folded_order = 0  # len(_order) at the last fold
        self._dropped = 0  # events folded and dropped (retain=False)
        self._drop_at = -1 if retain else self.FOLD_EVERY  # len(_order) that folds and drops the rows
        self._counters = Counters()
        self._mark: tuple[int, dict[int, int]] = (0, {})  # where the last build ended, and each type's rows there

    def add(self, event_type: type[Event], *values: Any) -> None:
        """Append an event of ``event_type`` given all its field values in order, without building it."""
        order = self._order
        order.append(event_type.type_id)
        self._columns[event_type.type_id].append(values)
        if len(order) == self._drop_at:
            self._fold()
            self._dropped += len(order)
            order.clear()
            self._columns.clear()
            self._folded.clear()
            self._folded_order = 0

    def append(self, event: Event) -> None:
        """Append a typed event (``add()`` does the same from its field values)."""
        self.add(type(event), *_values(event))

    @property
    def counters(self) -> Counters:
        """The counters, folded from every event so far."""
        if self._folded_order != len(self._order):
            self._fold()
        return self._counters

    def counters_of(self, *event_types: type[Event]) -> Counters:
        """The counters with only these event types' new rows folded: exact for a counter that only they change
        (split_page_count() reads direct_pages, which only boot mappings, splits and collapses move), and cheap
        while the model works, because the other columns wait for the next full fold."""
        if self._folded_order != len(self._order):
            self._fold(tuple(t.type_id for t in event_types))
        return self._counters

    @property
    def appended(self) -> int:
        """Events appended so far, retained or not."""
        return self._dropped + len(self._order)

    @property
    def events(self) -> Sequence[Event]:
        """The retained events in order, each built when read (empty without ``retain``)."""
        return _Events(self) if self.retain else []

    def since(self, mark: int) -> list[Event]:
        """Events appended after ``mark`` (a value of ``appended``); needs ``retain``."""
        return list(self.events[mark:])

    def to_dicts(self, start: int = 0) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events[start:]]

    def _fold(self, type_ids: tuple[int, ...] | None = None) -> None:
        """Fold the new rows of every column (or of the columns ``type_ids`` name) into the counters."""
        folded, columns = self._folded, self._columns
        for type_id in columns if type_ids is None else type_ids:
            column = columns.get(type_id, ())
            done = folded.get(type_id, 0)
            if done < len(column):
                fold_rows(self._counters, _EVENT_TYPES[type_id], column[done:])
                folded[type_id] = len(column)
        if type_ids is None:
            self._folded_order = len(self._order)

    def _build(self, start: int, stop: int) -> list[Event]:
        """The typed events ``start`` to ``stop`` (0 <= start <= stop <= len)."""
        order, columns = self._order, self._columns
        position = self._rows_before(start)  # each type's row of event ``start``
        out = []
        for type_id in order[start:stop]:
            row = columns[type_id][position.get(type_id, 0)]
            position[type_id] = position.get(type_id, 0) + 1
            out.append(_EVENT_TYPES[type_id](*row))
        self._mark = (stop, position)
        return out

    def _rows_before(self, start: int) -> dict[int, int]:
        """How many events of each type come before event ``start``, counted on from the last build's end
        (a machine's steps read the events since a mark that only grows)."""
        mark, rows = self._mark
        if start < mark:
            mark, rows = 0, {}
        rows = dict(rows)
        between = self._order[mark:start]
        for type_id in set(between):
            rows[type_id] = rows.get(type_id, 0) + between.count(type_id)
        return rows


class _Events(Sequence[Event]):
    """A read-only view of a log's events, built on access."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def __len__(self) -> int:
        return len(self._log._order)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                return self._log._build(0, n)[index]
            return self._log._build(start, max(start, stop))
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("event index out of range")
        return self._log._build(index, index + 1)[0]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._log._build(0, len(self)))


_VALUES: dict[int, Callable[[Event], tuple[Any, ...]]] = {}  # type id -> its events' field values as a tuple


def _values(event: Event) -> tuple[Any, ...]:
    get = _VALUES.get(event.type_id)
    if get is None:
        names = [f.name for f in fields(event)]
        one = attrgetter(*names) if names else None
        if len(names) > 1:
            get = one  # type: ignore[assignment]
        else:
            get = (lambda e: (one(e),)) if one is not None else (lambda e: ())  # type: ignore[misc]
        _VALUES[event.type_id] = get  # type: ignore[assignment]
    return get(event)  # type: ignore[misc]
