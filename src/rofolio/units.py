"""Sizes, page-table levels and size parsing.

The kernel names page-table levels from the leaf up (``enum pg_level`` in
``arch/x86/include/asm/pgtable_types.h``: PG_LEVEL_4K = 1, PG_LEVEL_2M = 2,
PG_LEVEL_1G = 3, PG_LEVEL_512G = 4).  rofolio uses the same numbering, with the
arch-neutral names of the entries that hold the leaf (pte, pmd, pud, p4d), so
that ``Level.PMD - 1 == Level.PTE`` reads like ``level - 1`` in
``split_page_count()``.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import NewType

from rofolio.errors import ConfigError

__all__ = [
    "PAGE_SHIFT", "PAGE_SIZE", "PMD_SIZE", "PTRS_PER_TABLE", "GiB", "KiB", "Level", "MiB", "TiB", "align_down",
    "align_up", "approx_size", "format_size", "parse_size",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_TABLE = 512  # PTRS_PER_PTE == PTRS_PER_PMD == PTRS_PER_PUD on x86-64 and arm64/4K

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# Units at the boundary between generic code and an architecture (rofolio.arch.ArchKernel): a page frame
# number, a physical address and a kernel virtual address are all ints, and mixing them up is the classic
# pfn/pa/va slip; distinct types let a type checker catch it at no run-time cost.
Pfn = NewType("Pfn", int)
PhysAddr = NewType("PhysAddr", int)
VirtAddr = NewType("VirtAddr", int)

PMD_SIZE = 2 * MiB


class Level(IntEnum):
    """A page-table level, numbered like the kernel's ``enum pg_level``."""

    PTE = 1  # PG_LEVEL_4K
    PMD = 2  # PG_LEVEL_2M
    PUD = 3  # PG_LEVEL_1G
    P4D = 4  # PG_LEVEL_512G
    PGD = 5  # a top-level entry under 5-level paging (256T); only page-table walks use it

    # Per member, set once below: plain attributes, because the model reads them on every page-table step and
    # a property costs several times a lookup.
    size: int  # bytes mapped by one leaf at this level (4K granule)
    pages: int  # 4K pages mapped by one leaf at this level
    mask: int  # like the kernel's PMD_MASK / PUD_MASK: clears the offset inside one leaf

    @property
    def leaf_name(self) -> str:
        """The page size a leaf at this level maps: '4K', '2M', '1G', '512G'."""
        return {1: "4K", 2: "2M", 3: "1G", 4: "512G", 5: "256T"}[int(self)]

    @property
    def entry_name(self) -> str:
        """The kernel's name for an entry at this level: 'pte', 'pmd', 'pud', 'p4d'."""
        return self.name.lower()


for _level in Level:
    _level.size = PAGE_SIZE << (9 * (_level - 1))
    _level.pages = 1 << (9 * (_level - 1))
    _level.mask = ~(_level.size - 1)
del _level


def align_down(value: int, size: int) -> int:
    return value & ~(size - 1)


def align_up(value: int, size: int) -> int:
    return (value + size - 1) & ~(size - 1)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": 1 << 50, "e": 1 << 60}


def parse_size(text: str | int) -> int:
    """Parse '8G', '512M', '64TiB', '4096' into bytes (binary units, like the kernel's memparse)."""
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"size {text} is negative", "give a positive size such as 8G")
        return text
    if text.strip().lower().startswith("0x"):
        try:
            return int(text.strip(), 16)
        except ValueError:
            raise ConfigError(f"cannot parse size {text!r}", "write a hex number such as 0x180000000") from None
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(
            f"cannot parse size {text!r}",
            "write a number with an optional binary unit (4096, 512M, 8G, 64T) or hex (0x180000000)",
        )
    number, unit, _ = match.groups()
    value = float(number) * _SIZE_UNITS[unit.lower()]
    if value != int(value):
        raise ConfigError(f"size {text!r} is not a whole number of bytes", "use a whole number of bytes")
    return int(value)


def format_size(nbytes: int) -> str:
    """Format bytes the way the kernel's ptdump does: the largest unit that divides exactly."""
    units = "BKMGTPE"
    unit = 0
    while nbytes and nbytes % 1024 == 0 and unit < len(units) - 1:
        nbytes //= 1024
        unit += 1
    return f"{nbytes}{units[unit]}"


def approx_size(nbytes: int) -> str:
    """Bytes in the unit their magnitude calls for: format_size() when that is short ('8G', '15871K'),
    else one decimal of the largest unit below them ('9.3E', '1.5G')."""
    exact = format_size(nbytes)
    if len(exact) <= 6:
        return exact
    units = "BKMGTPE"
    unit = max(i for i in range(len(units)) if i == 0 or abs(nbytes) >= 1 << (10 * i))
    if unit + 1 < len(units) and round(abs(nbytes) / (1 << (10 * unit)), 1) >= 1024:
        unit += 1  # 1 PiB less 128 KiB is '1.0P', not '1024.0T'
    return f"{nbytes / (1 << (10 * unit)):.1f}{units[unit]}"
