"""The catalogue of kernel objects that want a read-only direct map (issue 14, items 1 and 2).

``load_catalogue()`` reads ``candidates.toml`` (package data) into :class:`Candidate` records, validated by
pydantic (frozen, no unknown keys).  Every figure carries its source: ``cited: <URL or file:function>`` or
``measured: <where>``.  The lifetime class of a candidate is derived from its three lifetime facts, never
typed in:

* ``model2``: never migrated, never freed, never written after init (the simple lifetime of model 2);
* ``model1``: migrated or freed, but never written after init (read-only must be folio state that core MM
  carries through migration and clears on free: model 1);
* ``neither``: written after init (through the direct map or another alias), so neither model applies.

Read-only is per page, so for slab-backed candidates :func:`slab_sharing` computes what making one object
read-only drags along: the other objects on the page(s) it occupies.  Where a cache's geometry cannot be
known for 7.2 (it depends on config, debugging options and the CPU count), :func:`derive_slab_geometry`
derives it the way mm/slub.c ``calculate_order()``/``calc_slab_order()``/``order_objects()`` do.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "PAGE_SIZE",
    "Candidate",
    "Fact",
    "Figure",
    "ImageSection",
    "Lifetime",
    "PageAllocator",
    "Precedent",
    "Site",
    "Slab",
    "SlabGeometry",
    "SlabSharing",
    "Vmalloc",
    "derive_slab_geometry",
    "load_catalogue",
    "slab_sharing",
]

PAGE_SIZE = 4096
SOURCE_PREFIXES = ("cited: ", "measured: ")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Figure(_Frozen):
    """A number with where it comes from; never a bare number."""

    value: int
    unit: str
    source: str
    note: str = ""

    @field_validator("source")
    @classmethod
    def _sourced(cls, v: str) -> str:
        if not v.startswith(SOURCE_PREFIXES) or len(v.split(": ", 1)[1].strip()) < 5:
            raise ValueError(f"a figure's source must start with 'cited: ' or 'measured: ' and say where: {v!r}")
        return v

    @property
    def kind(self) -> str:
        """``cited`` or ``measured``."""
        return self.source.split(":", 1)[0]


class Site(_Frozen):
    """Where in the 7.2 tree the candidate is allocated, freed, migrated, written or protected."""

    role: Literal["allocated", "freed", "migrated", "written", "protected", "mapped", "used"]
    at: str = Field(description="file:function (or file:symbol for a data definition) in the Linux 7.2 tree")
    note: str

    @field_validator("at")
    @classmethod
    def _file_function(cls, v: str) -> str:
        path, sep, name = v.rpartition(":")
        if not sep or not path or not name.isidentifier() or "/" not in path:
            raise ValueError(f"a site is 'dir/file.c:function': {v!r}")
        return v

    @property
    def file(self) -> str:
        return self.at.rpartition(":")[0]

    @property
    def function(self) -> str:
        return self.at.rpartition(":")[2]


class PageAllocator(_Frozen):
    kind: Literal["page"]
    order: int = Field(ge=0, le=18)
    gfp: str = Field(description="gfp flags as the kernel writes them")


class Slab(_Frozen):
    kind: Literal["slab"]
    cache: str
    object_size: int = Field(gt=0, description="s->object_size in bytes")
    slab_size: int | None = Field(default=None, description="s->size, the stride between objects, if known")
    objects_per_slab: int | None = None
    slab_order: int | None = None
    geometry_source: str = Field(description="cited/measured; 'derived: ...' when computed by calculate_order()")

    @field_validator("geometry_source")
    @classmethod
    def _sourced(cls, v: str) -> str:
        if not v.startswith((*SOURCE_PREFIXES, "derived: ")):
            raise ValueError(f"geometry_source must start with 'cited: ', 'measured: ' or 'derived: ': {v!r}")
        return v

    @property
    def stride(self) -> int:
        return self.slab_size or _align(self.object_size, 8)

    def geometry(self, nr_cpus: int = 2) -> SlabGeometry:
        """The known geometry, else the one calculate_order() gives for this size (``nr_cpus`` present)."""
        if self.objects_per_slab is not None and self.slab_order is not None:
            return SlabGeometry(self.stride, self.slab_order, self.objects_per_slab, derived=False)
        return derive_slab_geometry(self.stride, nr_cpus=nr_cpus)


class Vmalloc(_Frozen):
    kind: Literal["vmalloc"]
    pages: int = Field(gt=0, description="pages of one area (without the guard page)")
    caller: str = Field(description="the caller /proc/vmallocinfo names")


class ImageSection(_Frozen):
    kind: Literal["image"]
    section: Literal[".rodata", ".data..ro_after_init", ".bss..page_aligned"]
    symbol: str


Allocation = Annotated[PageAllocator | Slab | Vmalloc | ImageSection, Field(discriminator="kind")]


class Fact(_Frozen):
    value: Literal["never", "possible"]
    why: str = Field(min_length=5)


class Lifetime(_Frozen):
    migrated: Fact
    freed: Fact
    written_after_init: Fact


class Precedent(_Frozen):
    kind: Literal["protection", "bug", "proposal"]
    what: str
    ref: str = Field(description="commit id, CVE, file:function or URL")


class Candidate(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    what: str = Field(description="one line")
    in_tree: str = Field(description="'7.2' when the mechanism is in the 7.2 tree, else where it is proposed")
    sites: tuple[Site, ...] = Field(min_length=1)
    allocator: Allocation
    count: Figure
    size: Figure = Field(description="bytes of one object (one folio, one slab object, one vmalloc area)")
    user_mapped: str
    lifetime: Lifetime
    protected_now: str = Field(description="what protects its direct-map alias in 7.2 today")
    precedents: tuple[Precedent, ...] = ()
    relative: bool = Field(description="leaves the direct map (or changes it otherwise) instead of becoming RO")

    @field_validator("what")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if "\n" in v.strip():
            raise ValueError("'what' is one line")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Candidate:
        if self.size.unit != "bytes":
            raise ValueError(f"{self.id}: size is in bytes")
        if isinstance(self.allocator, Slab) and self.allocator.object_size != self.size.value:
            raise ValueError(f"{self.id}: size {self.size.value} differs from the slab object size")
        return self

    # ------------------------------------------------------------------ the API `rofolio survey` builds on
    @property
    def allocation(self) -> PageAllocator | Slab | Vmalloc | ImageSection:
        """How it is allocated (``.order``/``.gfp`` for page-allocator candidates)."""
        return self.allocator

    @property
    def typical_count(self) -> int:
        return self.count.value

    @property
    def pages_per_object(self) -> int:
        """4K pages whose direct-map entries one object's protection changes (at most, for slab objects)."""
        a = self.allocator
        if isinstance(a, PageAllocator):
            return 1 << a.order
        if isinstance(a, Vmalloc):
            return a.pages
        if isinstance(a, Slab):
            return slab_sharing(a.stride, a.geometry()).pages_touched_max
        return max(1, math.ceil(self.size.value / PAGE_SIZE))

    @property
    def sharing(self) -> SlabSharing | None:
        """For slab candidates: what making one object read-only drags along."""
        a = self.allocator
        return slab_sharing(a.stride, a.geometry()) if isinstance(a, Slab) else None

    @property
    def lifetime_class(self) -> str:
        """``model2`` | ``model1`` | ``neither``, derived from the lifetime facts."""
        return classify(self.lifetime)[0]

    @property
    def class_reason(self) -> str:
        """One line, built from the facts that decided the class."""
        return classify(self.lifetime)[1]

    @property
    def figures(self) -> tuple[Figure, ...]:
        return (self.count, self.size)


def classify(lt: Lifetime) -> tuple[str, str]:
    """The lifetime class the facts put a candidate in, with a one-line reason built from the facts."""
    if lt.written_after_init.value == "possible":
        return "neither", f"written after init ({lt.written_after_init.why})"
    moving = [f"{name} ({fact.why})" for name, fact in (("migrated", lt.migrated), ("freed", lt.freed))
              if fact.value == "possible"]
    if moving:
        return "model1", "never written after init, but " + " and ".join(moving)
    return "model2", "never migrated, never freed, never written after init"


# ---------------------------------------------------------------------------------------------- slab packing
@dataclass(frozen=True)
class SlabGeometry:
    stride: int
    order: int
    objects: int
    derived: bool


@dataclass(frozen=True)
class SlabSharing:
    """What making one object of a slab read-only drags along (read-only is per 4K direct-map page)."""

    objects_per_page: float     # objects per 4K page on average
    pages_touched_max: int      # pages one object occupies, at worst (objects straddle pages in order>0 slabs)
    neighbours_max: int         # other objects sharing those pages, at worst
    neighbours_mean: float      # the same, averaged over the slab's objects
    whole_slab: bool            # True when every object of the slab shares a page with the object


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _get_order(size: int) -> int:
    """include/asm-generic/getorder.h get_order() for 4K pages."""
    return max(0, math.ceil(math.log2((size + PAGE_SIZE - 1) // PAGE_SIZE))) if size > PAGE_SIZE else 0


def _fls(x: int) -> int:
    return x.bit_length()


# mm/slub.c (7.2): slub_min_order = 0, slub_max_order = PAGE_ALLOC_COSTLY_ORDER (3; 1 with SLUB_TINY),
# slub_min_objects = 0 (none on the command line), MAX_OBJS_PER_PAGE = 32767.
SLUB_MIN_ORDER = 0
SLUB_MAX_ORDER = 3
MAX_OBJS_PER_PAGE = 32767


def _order_objects(order: int, size: int) -> int:
    """mm/slub.c order_objects()."""
    return (PAGE_SIZE << order) // size


def _calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    """mm/slub.c calc_slab_order(): the first order from min_order whose leftover is at most 1/fract."""
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def derive_slab_geometry(size: int, nr_cpus: int = 2, min_order: int = SLUB_MIN_ORDER,
                         max_order: int = SLUB_MAX_ORDER) -> SlabGeometry:
    """mm/slub.c calculate_order() for an object stride ``size`` on a machine with ``nr_cpus`` present CPUs.

    The result depends on the CPU count (min_objects = 4 * (fls(nr_cpus) + 1)) and on debug options that
    enlarge the stride (red zones, tracking), which is why the catalogue cites or measures geometry where it
    can and derives it only where it cannot.
    """
    min_objects = 4 * (_fls(nr_cpus) + 1)
    max_objects = max(_order_objects(max_order, size), 1)
    min_objects = min(min_objects, max_objects)
    lo = max(min_order, _get_order(min_objects * size))
    if _order_objects(lo, size) > MAX_OBJS_PER_PAGE:
        order = _get_order(size * MAX_OBJS_PER_PAGE) - 1
        return SlabGeometry(size, order, _order_objects(order, size), derived=True)
    for fraction in (16, 8, 4, 2):
        order = _calc_slab_order(size, lo, max_order, fraction)
        if order <= max_order:
            return SlabGeometry(size, order, _order_objects(order, size), derived=True)
    order = _get_order(size)
    return SlabGeometry(size, order, _order_objects(order, size), derived=True)


def slab_sharing(stride: int, geometry: SlabGeometry) -> SlabSharing:
    """For object i at offset i*stride in a slab of 2**order pages (SLUB places objects back to back from the
    slab's start), the pages it occupies and the other objects on those pages; worst case and mean."""
    n = geometry.objects
    if n <= 0:
        raise ValueError("a slab holds at least one object")

    def pages(i: int) -> range:
        start, end = i * stride, (i + 1) * stride - 1
        return range(start // PAGE_SIZE, end // PAGE_SIZE + 1)

    first_on_page: dict[int, int] = {}
    last_on_page: dict[int, int] = {}
    for i in range(n):
        for p in pages(i):
            first_on_page.setdefault(p, i)
            last_on_page[p] = i
    worst_pages, worst_nb, total_nb = 0, 0, 0
    for i in range(n):
        ps = pages(i)
        lo = min(first_on_page[p] for p in ps)
        hi = max(last_on_page[p] for p in ps)
        nb = hi - lo  # objects [lo, hi] share a page with i; i itself excluded
        worst_pages = max(worst_pages, len(ps))
        worst_nb = max(worst_nb, nb)
        total_nb += nb
    return SlabSharing(objects_per_page=n / (1 << geometry.order), pages_touched_max=worst_pages,
                       neighbours_max=worst_nb, neighbours_mean=total_nb / n, whole_slab=worst_nb == n - 1)


# ------------------------------------------------------------------------------------------------- loading
class _Catalogue(_Frozen):
    candidate: tuple[Candidate, ...]

    @model_validator(mode="after")
    def _unique(self) -> _Catalogue:
        ids = [c.id for c in self.candidate]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate candidate ids: {dupes}")
        return self


def load_catalogue(path: Path | None = None) -> list[Candidate]:
    """The candidates of ``candidates.toml`` (package data), validated; or of ``path``."""
    if path is None:
        text = resources.files("rofolio.survey").joinpath("candidates.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return list(_Catalogue.model_validate(tomllib.loads(text)).candidate)
