"""The scenario file format (TOML), validated with pydantic.

A scenario describes a machine, a configuration and a timeline of steps::

    name = "rfc-demo"
    description = "..."
    seed = 1
    start = "initcalls"          # steps start at initcall time; "running" boots fully first

    [machine]
    arch = "x86_64"
    mem = "16G"
    gbpages = true

    [[steps]]
    op = "set_memory_ro"
    pa = "4G"
    pages = 512
    expect = { ret = 0, splits_1g = 1 }

Every table forbids unknown keys, so a typo is an error, not a silent default.
The steps a scenario can use are the operations the model implements; each
step may carry ``expect``, the return value and counter changes it must
produce, which makes a scenario a check as well as a measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator, model_validator

from rofolio.arch import BootRecord, arch_entry, registry_generation
from rofolio.errors import Errno, RofolioError
from rofolio.physmem import check_ram
from rofolio.units import Level, parse_size

__all__ = [
    "ADDRESSLESS_OPS",
    "LEAF_TEXTS",
    "MM",
    "RET_TEXTS",
    "SET_MEMORY_OPS",
    "STEP_TYPES",
    "Alloc",
    "BootTable",
    "BpfPackTable",
    "Bug",
    "Compact",
    "Exit",
    "File",
    "Free",
    "Gup",
    "HugepageInit",
    "Machine",
    "MakeReadonly",
    "Migrate",
    "Mmap",
    "Offline",
    "PgtableAllocFail",
    "Phase",
    "Pin",
    "PinMany",
    "PipeWrite",
    "Problem",
    "Process",
    "Read",
    "RestoreWritable",
    "Scenario",
    "Secretmem",
    "SetDirectMap",
    "SetMemory",
    "Shrink",
    "Snapshot",
    "Touch",
    "UnquotedVersion",
    "Vmap",
    "Write",
    "leaf_text",
    "options_model",
    "problems",
    "step_model"
]


class _Strict(BaseModel):
    # strict: TOML has types, so a value of the wrong one is a mistake, not something to coerce
    # (``pages = true`` is not one page, ``pages = "512"`` not a number)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _pairs(value: Any, message: str, second: Any) -> list[tuple[int, int]]:
    """A TOML list of two-element lists: the first a size or address, the second converted by ``second``."""
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise ValueError(message)
    return [(_size(a), second(b)) for a, b in value]


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 8G or a number of bytes, not true/false")
    if isinstance(value, int | str):
        try:
            return parse_size(value)
        except RofolioError as err:
            raise ValueError(str(err)) from None
    raise ValueError("expected a size such as 8G or a number of bytes")


def _ram(total: int) -> int:
    """The least RAM a machine may have (rofolio.physmem.MIN_RAM), checked where the scenario gives it."""
    try:
        check_ram(total)
    except RofolioError as err:
        raise ValueError(str(err)) from None
    return total


class UnquotedVersion(ValueError):
    """``kernel = 6.10``: a TOML number, not a version; as a float it has lost its trailing zeros (6.1).

    ``explain(written)`` words the error; the loader passes what the line says, when it has the text.
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(": ".join(self.explain()))

    def explain(self, written: str | None = None) -> tuple[str, str]:
        """(message, hint): the fix quotes ``written`` (the number as the file spells it) when it is known."""
        message = f"kernel is the number {self.value!r} here, not a version"
        if written is None:
            return message, (f'quote the version: kernel = "{self.value!r}" if that is the one you mean; '
                             "a number loses its trailing zeros, so write them back inside the quotes")
        lost = f"; unquoted, {written} is the number {self.value!r}" if written != repr(self.value) else ""
        return message, f'quote the version: kernel = "{written}"{lost}'


class Machine(BaseModel):
    """[machine]: what is booted.  Keys besides the common ones are options of ``arch`` (``rofolio.arch``).

    The common keys are those of every architecture; an architecture's own
    options (x86-64's ``gbpages``, arm64's ``rodata``, ...) come from its
    registry entry and are checked against it, so a key of another
    architecture, or an unknown one, is an error on its own line.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    arch: str = Field("x86_64", description="an architecture of the registry: rofolio.arch.arch_names()")
    mem: int = Field(16 << 30, description="RAM size; the memory map is the architecture's default for that size")
    memory_map: list[tuple[int, int]] | None = Field(None, description="explicit RAM ranges [start, end)")
    kernel: str = "7.2"
    cpus: int = Field(8, ge=1, le=8192)
    debug_pagealloc: bool = False
    kfence: bool = False

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        try:
            arch_entry(value)
        except RofolioError as err:
            raise ValueError(f"{err.message} ({err.hint})" if err.hint else err.message) from None
        return value

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, value: Any) -> int:
        return _ram(_size(value))

    @field_validator("memory_map", mode="before")
    @classmethod
    def _map(cls, value: Any) -> Any:
        if value is None:
            return None
        if value == []:
            raise ValueError("memory_map has no ranges: give at least one [start, end] pair, or leave it out "
                             "for the default map of mem")
        pairs = _pairs(value, 'memory_map is a list of [start, end] pairs, e.g. [[0, "2G"], ["4G", "8G"]]', _size)
        for start, end in pairs:
            if end <= start:
                raise ValueError(f"memory_map range [{start:#x}, {end:#x}) ends where or before it starts")
        for (s1, e1), (s2, e2) in pairwise(sorted(pairs)):
            if s2 < e1:
                raise ValueError(f"memory_map ranges [{s1:#x}, {e1:#x}) and [{s2:#x}, {e2:#x}) overlap")
        _ram(sum(end - start for start, end in pairs))
        return pairs

    @field_validator("kernel", mode="before")
    @classmethod
    def _kernel(cls, value: Any) -> str:
        from rofolio.kversion import KernelVersion

        if isinstance(value, int | float) and not isinstance(value, bool):  # 6.10 is the float 6.1: it would run 6.1
            raise UnquotedVersion(value)
        if not isinstance(value, str):
            raise ValueError(f'kernel is a version in quotes, e.g. kernel = "6.18", not {value!r}')
        try:
            return str(KernelVersion.parse(value))
        except RofolioError as err:
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _arch_options(self) -> Machine:
        given = dict(self.__pydantic_extra__ or {})
        checked = options_model(self.arch).model_validate(given)  # its errors carry ("machine", key)
        object.__setattr__(self, "__pydantic_extra__", checked.model_dump(include=set(given)))
        return self

    @property
    def options(self) -> dict[str, Any]:
        """Every option of the architecture: the ones given, the rest at their defaults."""
        return arch_entry(self.arch).check_options(dict(self.__pydantic_extra__ or {}))


_OPTION_MODELS: dict[tuple[str, int], type[BaseModel]] = {}


def _converter(option: Any) -> Any:
    def convert(value: Any) -> Any:
        try:
            return option.convert(value)
        except RofolioError as err:
            raise ValueError(err.message) from None

    return convert


def options_model(arch: str) -> type[BaseModel]:
    """A pydantic model of ``arch``'s options, built from its registry entry (and rebuilt when that changes)."""
    key = (arch, registry_generation())
    if key not in _OPTION_MODELS:
        fields: dict[str, Any] = {}
        for option in arch_entry(arch).options:  # one conversion: the option's own, as on the command line
            fields[option.key] = (Annotated[Any, BeforeValidator(_converter(option))],
                                  Field(option.default, description=option.help))
        _OPTION_MODELS[key] = create_model(f"{arch}_options", __config__=ConfigDict(extra="forbid", frozen=True),
                                           **fields)
    return _OPTION_MODELS[key]


class MM(_Strict):
    """[mm]: generic memory management: the huge zero folio, the lifetime model, init_on_*."""

    persistent_huge_zero_folio: bool = Field(False, description="CONFIG_PERSISTENT_HUGE_ZERO_FOLIO")
    readonly_huge_zero_folio: bool = Field(True, description="the RFC: make the persistent one read-only")
    lifetime: str = Field(
        "model2", description="how core MM treats read-only folios: a registered lifetime model "
        "(rofolio.mm.policy: model1 or 1, model2 or 2, broken (1 without migration), none)")
    init_on_alloc: bool = False
    init_on_free: bool = False
    page_poisoning: bool = False
    nodes: Literal[1, 2] = 1
    movablecore: int = Field(0, description="bytes of ZONE_MOVABLE (movablecore=)")
    thp: Literal["always", "madvise", "never"] = "always"
    use_zero_page: bool = True

    @field_validator("lifetime", mode="before")
    @classmethod
    def _lifetime(cls, value: Any) -> str:
        from rofolio.mm.policy import lifetime_model

        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"lifetime must be a model name, got {value!r}")
        try:
            return lifetime_model(value).name
        except RofolioError as err:
            raise ValueError(str(err)) from None

    @field_validator("movablecore", mode="before")
    @classmethod
    def _movablecore(cls, value: Any) -> int:
        return _size(value)


def _unit(unit: str) -> dict[str, Any]:
    """A field's unit, stated once in the schema (``rofolio ops`` prints it)."""
    return {"unit": unit}


_BYTES = {"unit": "bytes", "type": "size (4096, 64K, 6G, 0x180000000)"}
_BYTE_VALUE = _unit("byte value")
_PAGES = _unit("4K pages")
_NODE = _unit("NUMA node")


class _Step(_Strict):
    name: str | None = Field(None, description="what reports call the step (default: the op and its operands)")
    expect: dict[str, int | str | bool] | None = Field(
        None, description="what the step must return and how counters must move: ret, leaf, fault or a counter "
        "named in docs/json.md")


class _Target(_Step):
    """Where a step acts: a physical address, a kernel virtual address, or a named mapping."""

    pa: int | None = Field(None, description="a physical address", json_schema_extra=_BYTES)
    va: int | None = Field(None, description="a kernel virtual address", json_schema_extra=_BYTES)
    mapping: str | None = Field(None, description="a name given by an earlier vmap step")
    folio: str | None = Field(None, description="a folio named by an earlier step, or huge_zero_folio")
    offset: int = Field(0, ge=0, description="from the start of the target", json_schema_extra=_PAGES)

    @field_validator("pa", "va", mode="before")
    @classmethod
    def _addr(cls, value: Any) -> Any:
        return None if value is None else _size(value)

    @model_validator(mode="after")
    def _one_target(self) -> _Target:
        given = [k for k in ("pa", "va", "mapping", "folio") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of pa, va, mapping or folio"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


SET_MEMORY_OPS = ("set_memory_ro", "set_memory_rw", "set_memory_np", "set_memory_p", "set_memory_nx",
                  "set_memory_x", "set_memory_4k", "set_memory_rox", "set_memory_uc", "set_memory_wb")


class SetMemory(_Target):
    """set_memory_*(): change the protection of the pages at the target (the direct map or an alias)."""

    op: Literal[SET_MEMORY_OPS]  # type: ignore[valid-type]
    pages: int = Field(..., ge=1, description="how many pages from the target", json_schema_extra=_PAGES)


class SetDirectMap(_Target):
    """set_direct_map_*_noflush(): take one page out of the direct map, or put it back, without a TLB flush."""

    op: Literal["set_direct_map_invalid_noflush", "set_direct_map_default_noflush"]


class Vmap(_Target):
    """Map pages at a new vmalloc address: an alias of their direct-map pages."""

    op: Literal["vmap"]
    pages: int = Field(..., ge=1, description="how many pages from the target", json_schema_extra=_PAGES)
    as_: str = Field(..., alias="as", description="name of the new mapping")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Write(_Target):
    """A store of one byte at the target.

    ``via = "kernel"``: a CPU store through the kernel address (the direct map
    for pa and folio targets); ``probe = true`` uses copy_to_kernel_nofault().
    ``via = "dma"``: a device writes the page; no CPU page table is involved.
    """

    op: Literal["write"]
    via: Literal["kernel", "cpu", "dma"] = Field(
        "kernel", description="kernel: an MM path that honours the lifetime contract; cpu: a raw store "
        "(what a buggy path does; only the page tables can stop it); dma: a device write")
    probe: bool = Field(False, description="copy_to_kernel_nofault(): a fault returns -EFAULT instead of an oops")
    value: int = Field(0x41, ge=1, le=255, description="the byte stored", json_schema_extra=_BYTE_VALUE)


_NAME = Field(..., alias="as", description="the name later steps use")


class _Named(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _FolioStep(_Step):
    folio: str = Field(..., description="a folio named by an earlier step, or huge_zero_folio")


class Alloc(_Step, _Named):
    """alloc_pages(): a folio of ``order`` from the buddy allocator."""

    op: Literal["alloc"]
    order: int = Field(0, ge=0, le=10, description="the folio's size",
                       json_schema_extra=_unit("2^order 4K pages"))
    gfp: Literal["kernel", "user", "highuser_movable", "transhuge"] = Field(
        "kernel", description="the allocation context: GFP_KERNEL, GFP_USER, GFP_HIGHUSER_MOVABLE, GFP_TRANSHUGE")
    zero: bool = Field(False, description="__GFP_ZERO: cleared through the direct map")
    node: int = Field(0, ge=0, le=1, description="where to allocate", json_schema_extra=_NODE)
    as_: str = _NAME


class MakeReadonly(_FolioStep):
    """arch_make_folio_readonly(): best effort; a failure leaves the folio writable."""

    op: Literal["make_readonly"]


class RestoreWritable(_FolioStep):
    """The inverse of make_readonly: the folio's direct-map range made writable again (the lifetime model's
    restore hook; arch_make_folio_writable() where the architecture has one)."""

    op: Literal["restore_writable"]


class Free(_FolioStep):
    """folio_put(): the last reference frees the folio through the lifetime model's free hook."""

    op: Literal["free"]


class Migrate(_FolioStep, _Named):
    """migrate_misplaced_folio() of one folio to a NUMA node: a new folio there, the content copied, the old one
    freed (the lifetime model decides what happens to a read-only one)."""

    op: Literal["migrate"]
    to_node: int = Field(..., ge=0, le=1, description="where to migrate the folio", json_schema_extra=_NODE)
    as_: str | None = Field(None, alias="as", description="name for the destination folio")


class Pin(_FolioStep, _Named):
    """pin_user_pages() of a folio (FOLL_PIN): a pinned folio cannot be migrated; FOLL_LONGTERM moves one out of
    ZONE_MOVABLE first."""

    op: Literal["pin"]
    longterm: bool = Field(False, description="FOLL_LONGTERM: a folio in ZONE_MOVABLE is migrated out first")
    as_: str | None = Field(None, alias="as", description="name for the pinned folio (it may have moved)")


class Offline(_Target):
    """offline_pages() of the memory block holding the target."""

    op: Literal["offline"]


class Compact(_Step):
    """compact_memory() of every zone: the folios that can move are migrated to free pages near the top of their
    zone (mm/compaction.c compact_zone())."""

    op: Literal["compact"]


class Shrink(_Step):
    """shrink_slab(): run the registered shrinkers (the "thp-zero" one frees an unused huge zero folio)."""

    op: Literal["shrink"]


class HugepageInit(_Step):
    """hugepage_init() -> thp_shrinker_init(): the persistent huge zero folio (made read-only by the RFC)."""

    op: Literal["hugepage_init"]


class Process(_Step, _Named):
    """mm_alloc(): a new user process."""

    op: Literal["process"]
    as_: str = _NAME


class Mmap(_Step, _Named):
    """mmap(MAP_PRIVATE) in a process: anonymous (THP-eligible when ``hugepage``), or one page of a file."""

    op: Literal["mmap"]
    process: str = Field(..., description="a process named by an earlier process step")
    length: int = Field(2 << 20, description="the size of the mapping", json_schema_extra=_BYTES)
    hugepage: bool = Field(True, description="MADV_HUGEPAGE: THP-eligible")
    prot_write: bool = Field(True, description="PROT_WRITE; false maps the region PROT_READ only")
    file: str | None = Field(None, description="a page-cache folio (from a file step): a private file mapping")
    as_: str = _NAME

    @field_validator("length", mode="before")
    @classmethod
    def _length(cls, value: Any) -> int:
        return _size(value)


class Touch(_Step, _Named):
    """A user access at ``offset`` bytes into a region: a read or write fault, then the access."""

    op: Literal["touch"]
    region: str = Field(..., description="a region named by an earlier mmap step")
    offset: int = Field(0, description="into the region", json_schema_extra=_BYTES)
    write: bool = Field(False, description="a store (a write fault) instead of a load")
    value: int = Field(0x41, ge=1, le=255, description="the byte a store writes", json_schema_extra=_BYTE_VALUE)
    as_: str | None = Field(None, alias="as", description="name for the folio now backing the address")

    @field_validator("offset", mode="before")
    @classmethod
    def _offset(cls, value: Any) -> int:
        return _size(value)


class Secretmem(_Step, _Named):
    """memfd_secret() and a fault on it: a zeroed page removed from the direct map (mm/secretmem.c).

    The precedent for direct-map state that follows a folio: migration is
    refused (-EBUSY) and freeing restores the direct map before zeroing.
    """

    op: Literal["secretmem"]
    as_: str = _NAME


class File(_Step, _Named):
    """A page-cache page of a file, holding the file's data (``value``), on the LRU."""

    op: Literal["file"]
    value: int = Field(0x46, ge=1, le=255, description="the file's data", json_schema_extra=_BYTE_VALUE)
    as_: str = _NAME


class Gup(_Step, _Named):
    """get_user_pages()/pin_user_pages() for one page of a region, under a kernel's GUP rules."""

    op: Literal["gup"]
    region: str = Field(..., description="a region named by an earlier mmap step")
    offset: int = Field(0, description="into the region", json_schema_extra=_BYTES)
    flags: list[Literal["FOLL_WRITE", "FOLL_FORCE", "FOLL_PIN", "FOLL_LONGTERM"]] = Field(
        default_factory=list, description="the gup_flags")
    rules: Literal["pre-4.9", "4.10", "4.15", "5.7", "current"] = Field(
        "current", description="whose GUP rules: a kernel of that era")
    race: Literal["madv_dontneed"] | None = Field(
        None, description="madvise(MADV_DONTNEED) zaps the COW copy before GUP's retry")
    as_: str = _NAME

    @field_validator("offset", mode="before")
    @classmethod
    def _offset(cls, value: Any) -> int:
        return _size(value)


class PipeWrite(_FolioStep):
    """splice() a page-cache page into a pipe, then write(): Dirty Pipe's merge, when ``merge`` is stale."""

    op: Literal["pipe_write"]
    stale_can_merge: bool = Field(
        True, description="PIPE_BUF_FLAG_CAN_MERGE left set by an uninitialised pipe_buffer (5.8 to 5.16.10)")
    value: int = Field(0x41, ge=1, le=255, description="the byte written", json_schema_extra=_BYTE_VALUE)


class PinMany(_FolioStep):
    """``count`` pin_user_pages() on mappings of a folio: GUP_PIN_COUNTING_BIAS each on a small folio (5.7+)."""

    op: Literal["pin_many"]
    count: int = Field(..., ge=1, description="how many pins", json_schema_extra=_unit("pins"))
    rules: Literal["pre-4.9", "4.10", "4.15", "5.7", "current"] = Field(
        "current", description="whose GUP rules: a kernel of that era")


class Read(_Step):
    """A user load at ``offset`` bytes into a region; the report shows the value read."""

    op: Literal["read"]
    region: str = Field(..., description="a region named by an earlier mmap step")
    offset: int = Field(0, description="into the region", json_schema_extra=_BYTES)

    @field_validator("offset", mode="before")
    @classmethod
    def _offset(cls, value: Any) -> int:
        return _size(value)


class Exit(_Step):
    """exit_mmap(): the process's mappings go away."""

    op: Literal["exit"]
    process: str = Field(..., description="a process named by an earlier process step")


class Phase(_Step):
    """Move the kernel on: 'running' runs free_initmem(), mark_rodata_ro() and sets SYSTEM_RUNNING."""

    op: Literal["phase"]
    to: Literal["running"] = Field(..., description="the system state to reach")


class PgtableAllocFail(_Step):
    """From here on, page-table allocations fail (or succeed again)."""

    op: Literal["pgtable_alloc_fail"]
    fail: bool = Field(True, description="fail from here on (false: succeed again)")


class Snapshot(_Step):
    """Record the direct-map layout here, for the report's before/after strips."""

    op: Literal["snapshot"]


STEP_TYPES = (SetMemory, SetDirectMap, Vmap, Write, Phase, PgtableAllocFail, Snapshot, Alloc, MakeReadonly,
              RestoreWritable, Free, Migrate, Pin, Offline, Compact, Shrink, HugepageInit, Process, Mmap, Touch,
              Exit, File, Secretmem, Gup, PipeWrite, PinMany, Read)
Step = Annotated[
    SetMemory | SetDirectMap | Vmap | Write | Phase | PgtableAllocFail | Snapshot | Alloc | MakeReadonly
    | RestoreWritable | Free | Migrate | Pin | Offline | Compact | Shrink | HugepageInit | Process | Mmap | Touch
    | Exit | File | Secretmem | Gup | PipeWrite | PinMany | Read,
    Field(discriminator="op")]


class Bug(_Strict):
    """[bug]: a real bug this scenario replays, and where it comes from."""

    id: str
    title: str
    cve: str = ""
    fix: str = Field("", description="the fixing commit(s)")
    reproducer: str = ""
    affected: str = Field("", description="the kernels that had it")
    taker: str = Field(..., description="who takes the page, with which flags")
    writer: str = Field(..., description="who writes it, through which mapping")
    target: str = Field(..., description="the folio the bug corrupts: huge_zero_folio, zero_page or a named folio")
    pristine: int = Field(0, description="what the target holds when intact (0 for the zero folios)")
    notes: str = ""


class BpfPackTable(_Strict):
    """One BPF JIT pack a real boot made: its vmalloc address and its pages as (physical address, count)."""

    va: int
    pages: list[tuple[int, int]]

    @field_validator("va", mode="before")
    @classmethod
    def _va(cls, value: Any) -> int:
        return _size(value)

    @field_validator("pages", mode="before")
    @classmethod
    def _pages(cls, value: Any) -> Any:
        return _pairs(value, 'pages is a list of [physical address, count] pairs, e.g. [["0x100300000", 256]]', int)


class BootTable(_Strict):
    """[boot]: what a real boot placed (a boot record): the initrd and boot-time BPF JIT packs.

    Placements the page allocator and the boot loader choose are inputs, read from a real guest
    (``rofolio oracle`` reads them from every guest it boots); ``source`` says which.
    """

    source: str = Field("", description="where the record was read")
    initrd: tuple[int, int] | None = Field(None, description="[physical start, bytes] of the initrd")
    bpf_packs: list[BpfPackTable] = Field(default_factory=list)

    @field_validator("initrd", mode="before")
    @classmethod
    def _initrd(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError('initrd is [physical start, bytes], e.g. ["0xbfe5c000", "0x184000"]')
        return (_size(value[0]), _size(value[1]))

    def record(self) -> BootRecord:
        return BootRecord(initrd=self.initrd, bpf_packs=tuple((p.va, tuple(p.pages)) for p in self.bpf_packs),
                          source=self.source or "the scenario's [boot] table")


class Scenario(_Strict):
    """A whole scenario file.  What spans steps (names, expectations, phases) is checked by ``problems()``, which
    rofolio.scenario.loader.validate() runs beside this model so that one run reports every mistake."""

    name: str = Field(..., min_length=1)
    description: str = ""
    seed: int = 0
    start: Literal["initcalls", "running"] = "running"
    machine: Machine = Field(default_factory=Machine)
    mm: MM = Field(default_factory=MM)
    bug: Bug | None = None
    boot: BootTable | None = None
    steps: list[Step] = Field(..., min_length=1)


# ---------------------------------------------------------------- checks across steps
# These run on the TOML data itself (rofolio.scenario.loader.validate), beside the type checks, so one file's
# problems come out in one run whatever else is wrong in it, [machine] included.

@dataclass(frozen=True)
class Problem:
    """A mistake the steps' own types cannot see: where it is (a validation location) and how to fix it."""

    loc: tuple[Any, ...]  # ("steps", 2, "folio"): the step's index counts from 0, as in pydantic's locations
    message: str
    hint: str


def step_model(op: Any) -> type[BaseModel] | None:
    """The step type of ``op`` ("set_memory_ro" -> SetMemory), or None for no step."""
    for model in STEP_TYPES:
        if op in getattr(model.model_fields["op"].annotation, "__args__", ()):
            return model
    return None


_NAME_KEYS = {"mapping": "mapping", "folio": "folio", "process": "process", "region": "region", "file": "folio"}
"""A step key that uses a name -> the kind of thing it names."""
_NAME_GIVERS: dict[type[BaseModel], str] = {
    Vmap: "mapping", Alloc: "folio", Migrate: "folio", Pin: "folio", Touch: "folio", Process: "process",
    Mmap: "region", File: "folio", Secretmem: "folio", Gup: "folio"}
"""A step type whose ``as`` names something -> the kind it names."""
_BUILTIN_NAMES = {"folio": ("huge_zero_folio", "zero_page")}
"""Names every scenario may use without a step giving them."""


def problems(data: dict[str, Any]) -> list[Problem]:
    """Every problem across the steps of scenario data: names used before a step gives them, expectations
    no step can meet, phase steps that cannot be.  Other values of the wrong type are the step types' to refuse."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    steps = [step if isinstance(step, dict) else {} for step in steps]
    return _phase_problems(data, steps) + _name_problems(steps) + [
        Problem(("steps", index, "expect", *key), message, hint)
        for index, step in enumerate(steps) if isinstance(step.get("expect"), dict)
        for key, message, hint in _expect_problems(step["expect"], step.get("op"))]


def _phase_problems(data: dict[str, Any], steps: list[dict[str, Any]]) -> list[Problem]:
    phases = [i for i, step in enumerate(steps) if step.get("op") == "phase"]
    out = []
    if data.get("start", "running") == "running" and phases:
        said = 'start = "running"' if "start" in data else 'start = "running" (the default)'
        out.append(Problem(("steps", phases[0]), f"{said} already boots fully",
                           'remove the phase step or set start = "initcalls"'))
    out += [Problem(("steps", i), "the kernel reaches SYSTEM_RUNNING once", "keep one phase step")
            for i in phases[1:]]
    return out


def _name_problems(steps: list[dict[str, Any]]) -> list[Problem]:
    """Every name a step uses must be given by an earlier step (or be a built-in name)."""
    given = {kind: list(_BUILTIN_NAMES.get(kind, ())) for kind in _NAME_KEYS.values()}
    where: dict[tuple[str, str], int] = {}  # (kind, name) -> the step that gave it
    out = []
    for index, step in enumerate(steps):
        model = step_model(step.get("op"))
        for key, kind in _NAME_KEYS.items():
            name = step.get(key)
            if model is not None and key in model.model_fields and isinstance(name, str) and name not in given[kind]:
                out.append(Problem(("steps", index, key), f"uses {kind} {name!r} before a step names it",
                                   _name_hint(steps, index, kind, name, given[kind])))
        name, gives = step.get("as"), _gives(step)
        if isinstance(name, str) and model is None:  # an unknown op has its own error; not one per later use
            for names in given.values():
                names.append(name)
        elif isinstance(name, str) and gives:
            if name in given[gives]:  # a second giver would hide the first from every later step
                first = where.get((gives, name))
                said = f"the {gives} of step {first + 1}" if first is not None else f"the built-in {gives}"
                out.append(Problem(("steps", index, "as"), f"as = {name!r} already names {said}",
                                   f"give each {gives} its own name"))
            given[gives].append(name)
            where.setdefault((gives, name), index)
    return out


def _name_hint(steps: list[dict[str, Any]], index: int, kind: str, name: str, given: list[str]) -> str:
    ops = sorted(op for model, gives in _NAME_GIVERS.items() if gives == kind
                 for op in model.model_fields["op"].annotation.__args__)
    later = next((i for i in range(index + 1, len(steps)) if steps[i].get("as") == name
                  and _gives(steps[i]) == kind), None)
    if later is not None:
        return f"step {later + 1} names it: move that step before step {index + 1}"
    so_far = (f"the {kind} names given before step {index + 1}: {', '.join(given)}" if given
              else f"no {kind} is named before step {index + 1}")
    givers = f"{', '.join(ops[:-1])} or {ops[-1]}" if len(ops) > 1 else ops[0]
    return f'{so_far}; name one with as = "{name}" on an earlier {givers} step'


def _gives(step: dict[str, Any]) -> str | None:
    model = step_model(step.get("op"))
    return _NAME_GIVERS.get(model) if model else None


def leaf_text(level: Level | None, present: bool = True, writable: bool = True) -> str:
    """How the leaf mapping a step's address reads, in its result and in ``expect.leaf``: "2M RO"."""
    if level is None:
        return "none"
    if not present:
        return f"{level.leaf_name} not-present"
    return f"{level.leaf_name} {'RW' if writable else 'RO'}"


LEAF_TEXTS = frozenset(leaf_text(level, present, writable) for level in (*Level, None)
                       for present in (True, False) for writable in (True, False))
"""Every leaf a step's result can read as: what ``expect.leaf`` may say."""
RET_TEXTS = tuple(sorted(Errno.describe(-errno) for errno in Errno))
"""The errno names ``expect.ret`` may give ("-ENOMEM"), as a step's result prints them."""


def _ret_text(want: str) -> bool:
    """Whether a step's result can print ``want`` as its ret: Errno.describe() of some number."""
    return want in RET_TEXTS or (re.fullmatch(r"-?[0-9]+", want) is not None and Errno.describe(int(want)) == want)


_EXPECT_TYPES: dict[str, tuple[tuple[type, ...], str, str]] = {
    "ret": ((int, str), 'a number or an errno name such as "-ENOMEM"', 'ret = "-ENOMEM"'),
    "leaf": ((str,), 'a leaf such as "2M RO"', 'leaf = "2M RO"'), "fault": ((bool,), "true or false", "fault = true")}


ADDRESSLESS_OPS = frozenset({"phase", "pgtable_alloc_fail", "snapshot", "compact", "shrink", "process", "mmap",
                             "exit", "read"})
"""The steps that act on no kernel address (their handler in ops.py never returns one): no leaf to read after."""


def _expect_problems(expect: dict[str, Any], op: object = None) -> list[tuple[tuple[str, ...], str, str]]:
    """(key, message, hint) for each expectation no step can meet: an unknown key, a value of the wrong type
    or one the run never produces."""
    import rofolio.machine  # noqa: F401  (the layers above the architecture register their counters on import)
    from rofolio.stats import counter_names, is_counter

    out: list[tuple[tuple[str, ...], str, str]] = []
    for key, want in expect.items():
        if key not in _EXPECT_TYPES and not is_counter(key):
            out.append(((), f"unknown expectation {key!r}",
                        "expect ret, leaf, fault or a counter: " + ", ".join(counter_names())))
            continue
        if not isinstance(want, int | str):  # not a TOML value an expectation takes: the schema's type says so
            continue
        # a counter is a whole number, fault true or false, leaf a string, ret either; true is not 1
        kinds, what, example = _EXPECT_TYPES.get(key, ((int,), "a whole number", f"{key} = 1"))
        if not isinstance(want, kinds) or (bool not in kinds and isinstance(want, bool)):
            out.append(((key,), f"expect.{key} must be {what}, not {want!r}", f"e.g. {example}"))
        elif key == "ret" and isinstance(want, str) and not _ret_text(want):
            out.append(((key,), f'expect.ret is "{want}", which no step returns',
                        "write a number (0 for success) or an errno name the model returns: "
                        + ", ".join(f'"{text}"' for text in RET_TEXTS)))
        elif key == "leaf" and want not in LEAF_TEXTS:
            sizes = ", ".join(level.leaf_name for level in Level)
            out.append(((key,), f'expect.leaf is "{want}", which no step\'s leaf reads as',
                        f'write a leaf size ({sizes}) and RO, RW or not-present, e.g. "2M RO"; '
                        'or "none" for an address nothing maps'))
        elif key == "leaf" and op in ADDRESSLESS_OPS:
            out.append(((key,), f'expect.leaf on an op = "{op}" step, which acts on no kernel address',
                        "expect ret or counters here, and leaf on a step that names a page "
                        "(set_memory_*, write, alloc, make_readonly, ...)"))
    return out
