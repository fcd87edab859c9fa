"""The physical memory map a machine boots with (e820 on x86, memblock from DT/UEFI on arm64).

Only RAM ranges matter to the direct map; reserved ranges are kept for display.
``qemu_x86`` reproduces the e820 map that QEMU's ``pc`` machine and SeaBIOS hand
to a guest (measured under QEMU 7.2, see docs/fidelity.md): RAM below 4 GiB
stops at 3 GiB once the machine has 3.5 GiB or more, SeaBIOS keeps the top
128 KiB of low RAM and the EBDA/BIOS area below 1 MiB, and the rest of RAM
starts at 4 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from rofolio.errors import ConfigError
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, GiB, KiB, MiB, format_size

__all__ = ["MIN_RAM", "SECTION_SIZE", "MemRange", "MemoryMap", "check_ram", "memmap_pages", "sections_spanned"]

# The least RAM a modelled machine may have, one figure for every architecture and every way of giving it
# (--mem, mem =, the ranges of memory_map): the modelled kernel image ends near 68M on x86-64, and boot needs
# memory for page tables and the allocator around it.
MIN_RAM = 64 * MiB
SECTION_SIZE = 128 * MiB  # SECTION_SIZE_BITS = 27 on x86-64 and arm64 (4K pages): sparsemem sections
STRUCT_PAGE_SIZE = 64  # sizeof(struct page)


def sections_spanned(ranges: list[tuple[int, int]], section: int) -> int:
    """Memory sections holding any pfn of ``ranges`` (sorted, disjoint), counted without walking them.

    sparse_init() gives each present section its memmap; a section two ranges share counts once.
    Arithmetic, so a 64 TiB machine costs no more than a small one.
    """
    count, last = 0, -1  # last: the highest section counted so far
    for s, e in ranges:
        first, final = max(s // section, last + 1), (e - 1) // section
        if final >= first:
            count += final - first + 1
            last = final
    return count


def memmap_pages(node_ram_sections: int) -> int:
    """Pages of struct page for ``node_ram_sections`` sections (vmemmap: 2 MiB per 128 MiB section)."""
    return node_ram_sections * ((SECTION_SIZE >> PAGE_SHIFT) * STRUCT_PAGE_SIZE >> PAGE_SHIFT)


def check_ram(total: int) -> None:
    """Refuse a machine with less RAM than MIN_RAM (ConfigError naming the figure)."""
    if total < MIN_RAM:
        unitless = f"; a size without a unit is bytes: {total} GiB is written \"{total}G\"" if 0 < total < 1024 else ""
        raise ConfigError(f"{format_size(total)} of RAM cannot hold the modelled kernel image",
                          f"give at least {format_size(MIN_RAM)}{unitless}")


@dataclass(frozen=True, slots=True)
class MemRange:
    start: int
    end: int
    kind: str = "ram"  # "ram" or "reserved"

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class MemoryMap:
    """Sorted, non-overlapping physical ranges."""

    ranges: tuple[MemRange, ...]

    def __post_init__(self) -> None:
        last = -1
        for r in self.ranges:
            if r.end <= r.start:
                raise ConfigError(
                    f"memory range [{r.start:#x}, {r.end:#x}) is empty or reversed",
                    "give each range as start < end",
                )
            if r.start < last:
                raise ConfigError(
                    f"memory range [{r.start:#x}, {r.end:#x}) overlaps the one before it",
                    "list ranges in address order without overlaps",
                )
            last = r.end
        if not any(r.kind == "ram" for r in self.ranges):
            raise ConfigError("the memory map has no RAM", "add at least one RAM range")

    @property
    def ram(self) -> tuple[MemRange, ...]:
        return tuple(r for r in self.ranges if r.kind == "ram")

    @property
    def total_ram(self) -> int:
        return sum(r.size for r in self.ram)

    def check_page_aligned(self) -> None:
        """Refuse a RAM range that does not start and end on a page (ConfigError naming it)."""
        for r in self.ram:
            if r.start % PAGE_SIZE or r.end % PAGE_SIZE:
                raise ConfigError(f"RAM range [{r.start:#x}, {r.end:#x}) is not page aligned",
                                  f"align RAM ranges to {format_size(PAGE_SIZE)}")

    def ram_below(self, limit: int) -> MemoryMap:
        """The RAM of this map below ``limit``: what a kernel keeps of it when its direct map cannot reach
        further (x86 MAXMEM, arm64's and riscv's linear-map size)."""
        return MemoryMap.from_ram([(r.start, min(r.end, limit)) for r in self.ram if r.start < limit])

    @property
    def max_pfn(self) -> int:
        """One past the highest RAM pfn (the kernel's max_pfn)."""
        return self.ram[-1].end >> PAGE_SHIFT

    def is_ram(self, start: int, end: int | None = None) -> bool:
        """True if ``[start, end)`` (one page by default) lies inside one RAM range."""
        end = start + PAGE_SIZE if end is None else end
        return any(r.start <= start and end <= r.end for r in self.ram)

    def describe(self) -> list[str]:
        return [
            f"[mem {r.start:#018x}-{r.end - 1:#018x}] {'usable' if r.kind == 'ram' else 'reserved'}"
            f" ({format_size(r.size)})"
            for r in self.ranges
        ]

    @classmethod
    def from_ram(cls, ranges: list[tuple[int, int]]) -> MemoryMap:
        """A map from explicit RAM ranges, e.g. [(0, 0x9fc00), (0x100000, 0xbffe0000)].

        Ranges that touch become one, as the kernel sees them: memblock_add() merges a region with its
        neighbours when they touch and carry the same flags (mm/memblock.c memblock_merge_regions()), and
        every architecture maps its direct map from memblock's ranges, so a leaf may cross the join."""
        merged: list[list[int]] = []
        for s, e in sorted(ranges):
            if merged and merged[-1][1] == s:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        return cls(tuple(MemRange(s, e) for s, e in merged))

    @classmethod
    def qemu_x86(cls, mem: int) -> MemoryMap:
        """The e820 map a QEMU ``pc`` guest with ``-m mem`` sees (SeaBIOS, QEMU 7.2)."""
        check_ram(mem)
        if mem % PAGE_SIZE:
            raise ConfigError(f"memory size {mem} is not a whole number of 4K pages", "round it to 4K")
        # hw/i386/pc_piix.c: with gigabyte_align, low RAM stops at 3 GiB once RAM >= 3.5 GiB.
        below = 3 * GiB if mem >= 0xE0000000 else mem
        above = mem - below
        ranges = [
            MemRange(0, 0x9FC00),
            MemRange(0x9FC00, 0xA0000, "reserved"),  # EBDA
            MemRange(0xF0000, 0x100000, "reserved"),  # BIOS
            MemRange(0x100000, below - 128 * KiB),
            MemRange(below - 128 * KiB, below, "reserved"),  # kept by SeaBIOS
        ]
        if above:
            ranges.append(MemRange(4 * GiB, 4 * GiB + above))
        return cls(tuple(ranges))

    @classmethod
    def flat(cls, mem: int, base: int = 0) -> MemoryMap:
        """One RAM range ``[base, base + mem)`` (arm64 virt machines start RAM at 1 GiB)."""
        if mem <= 0 or mem % PAGE_SIZE:
            raise ConfigError(f"memory size {mem} must be a positive multiple of 4K", "e.g. 8G")
        return cls((MemRange(base, base + mem),))
