"""What a machine's memory management is configured with: Kconfig symbols, boot and sysfs knobs.

The arch layer has its own config (``X86Config``); these are the generic MM
options the RFC and its lifetime models depend on.  DEBUG_PAGEALLOC is the
arch's to decide (its direct map is all 4K for it): ``mm_core_init()`` copies it
from the arch kernel, so the allocator's unmap-on-free always agrees with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rofolio.errors import ConfigError
from rofolio.mm.gfp import MAX_PAGE_ORDER
from rofolio.mm.policy import lifetime_model, lifetime_model_names
from rofolio.physmem import SECTION_SIZE
from rofolio.units import format_size

__all__ = ["THP_MODES", "MMConfig"]

THP_MODES = ("always", "madvise", "never")


def __getattr__(name: str) -> Any:
    if name == "LIFETIME_MODELS":  # read from the registry each time, so models registered later are listed
        return lifetime_model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class MMConfig:
    """Generic MM configuration of one machine.

    ``lifetime`` chooses how core MM treats a folio made read-only in the
    direct map (``rofolio.mm.policy``): ``model2`` (Lance Yang's "simple
    lifetime", the default he proposed to start with), ``model1`` (read-only
    as folio state), ``broken`` (model 1 without the migration hook) and
    ``none`` (today's kernel: nothing knows about the state), or any model
    registered later.  An alias (``1``, ``"2"``) is stored as its canonical name.
    """

    nodes: int = 1  # NUMA nodes; 2 splits RAM in halves at a memory-section boundary
    movablecore: int = 0  # bytes of ZONE_MOVABLE at the top of RAM (the movablecore= boot option)
    init_on_alloc: bool = False  # CONFIG_INIT_ON_ALLOC_DEFAULT_ON / init_on_alloc=1
    init_on_free: bool = False  # CONFIG_INIT_ON_FREE_DEFAULT_ON / init_on_free=1
    page_poisoning: bool = False  # CONFIG_PAGE_POISONING with page_poison=1
    debug_pagealloc: bool = False  # debug_pagealloc=on: set by mm_core_init() from the arch kernel
    transparent_hugepage: str = "always"  # /sys/kernel/mm/transparent_hugepage/enabled
    use_zero_page: bool = True  # /sys/kernel/mm/transparent_hugepage/use_zero_page (default 1)
    persistent_huge_zero_folio: bool = False  # CONFIG_PERSISTENT_HUGE_ZERO_FOLIO (Kconfig default n)
    readonly_huge_zero_folio: bool = True  # the RFC: make the persistent one read-only (no knob, per Dave Hansen)
    lifetime: str = "model2"
    fail_page_alloc_min_order: int | None = None  # fail_page_alloc fault injection: every order >= this fails
    memory_block_size: int = SECTION_SIZE  # memory_block_size_bytes(): the unit of online/offline

    def __post_init__(self) -> None:
        if self.nodes not in (1, 2):
            raise ConfigError(f"{self.nodes} NUMA nodes are not modelled", "use nodes=1 or nodes=2")
        object.__setattr__(self, "lifetime", lifetime_model(self.lifetime).name)  # ConfigError if unknown
        if self.transparent_hugepage not in THP_MODES:
            raise ConfigError(f"unknown THP mode {self.transparent_hugepage!r}",
                              f"choose one of: {', '.join(THP_MODES)}")
        if self.movablecore < 0 or self.movablecore % SECTION_SIZE:
            raise ConfigError(f"movablecore={format_size(self.movablecore)} is not a whole number of sections",
                              f"give a multiple of {format_size(SECTION_SIZE)}")
        if self.memory_block_size <= 0 or self.memory_block_size % SECTION_SIZE:
            raise ConfigError(f"memory block size {format_size(self.memory_block_size)} is not a multiple of "
                              "the section size", f"give a multiple of {format_size(SECTION_SIZE)}")
        if self.fail_page_alloc_min_order is not None and not 0 <= self.fail_page_alloc_min_order <= MAX_PAGE_ORDER:
            raise ConfigError(f"fail_page_alloc min-order {self.fail_page_alloc_min_order} is out of range",
                              f"give 0 to {MAX_PAGE_ORDER}")

    @property
    def readonly_huge_zero_folio_enabled(self) -> bool:
        """READONLY_HUGE_ZERO_FOLIO "depends on PERSISTENT_HUGE_ZERO_FOLIO" (RFC patch 1/3)."""
        return self.persistent_huge_zero_folio and self.readonly_huge_zero_folio

    @property
    def want_init_on_free(self) -> bool:
        """init_on_free, unless page poisoning takes precedence (mm/mm_init.c, from memory)."""
        return self.init_on_free and not self.page_poisoning

    @property
    def want_init_on_alloc(self) -> bool:
        return self.init_on_alloc and not self.page_poisoning

    def with_options(self, **options: Any) -> MMConfig:
        return replace(self, **options)

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes, "movablecore": self.movablecore, "init_on_alloc": self.init_on_alloc,
            "init_on_free": self.init_on_free, "page_poisoning": self.page_poisoning,
            "debug_pagealloc": self.debug_pagealloc, "transparent_hugepage": self.transparent_hugepage,
            "use_zero_page": self.use_zero_page, "persistent_huge_zero_folio": self.persistent_huge_zero_folio,
            "readonly_huge_zero_folio": self.readonly_huge_zero_folio, "lifetime": self.lifetime,
        }
