"""Architectures: how each builds its direct map at boot and changes protections in it.

Core MM (``rofolio.mm``) talks to an architecture only through ``ArchKernel``,
the handful of entry points the real kernel's generic code uses: the
direct-map address of a page, the ``set_direct_map_*`` helpers, a kernel TLB
flush, DEBUG_PAGEALLOC's ``__kernel_map_pages()``, and the two hooks the RFC
thread asked for, ``arch_make_folio_readonly()`` and its inverse.  Each
returns the kernel's value: 0 or a negative errno.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rofolio.events import EventLog, KernelWarning, PgtableAlloc, Phase, PhaseChange
from rofolio.pagetable import PageTable
from rofolio.physmem import MemoryMap
from rofolio.units import Level


class KernelState:
    """What every arch kernel keeps about the running kernel: its boot phase and the warnings it printed.

    ``system_state`` (include/linux/kernel.h) gates rules such as the vmstat split counters;
    ``WARN_ON_ONCE()`` prints once per call site per boot.
    """

    log: EventLog
    pt: PageTable
    phase: Phase
    _warned_once: set[str]

    @property
    def running(self) -> bool:
        return self.phase == Phase.RUNNING

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.log.append(PhaseChange(phase))

    def warn(self, text: str) -> None:
        self.log.append(KernelWarning(text))

    def warn_once(self, key: str, text: str) -> None:
        """WARN_ON_ONCE(): once per call site per boot."""
        if key not in self._warned_once:
            self._warned_once.add(key)
            self.warn(text)

    def alloc_missing_tables(self, start: int, end: int, levels: tuple[Level, ...]) -> None:
        """The tables a new mapping of ``[start, end)`` allocates: one below each empty region of ``levels``."""
        for level in levels:
            new = self.pt.empty_regions(start, end, level)
            if new:
                self.log.append(PgtableAlloc(Level(level - 1), new))


@runtime_checkable
class ArchKernel(Protocol):
    """What generic MM code may ask of an architecture's direct map."""

    arch: str
    log: EventLog
    phase: Phase

    @property
    def memory(self) -> MemoryMap:
        """The physical memory map the machine booted with."""
        ...

    @property
    def debug_pagealloc(self) -> bool:
        """debug_pagealloc=on: the direct map was built with 4K pages so the buddy can unmap what it frees."""
        ...

    def set_phase(self, phase: Phase) -> None: ...

    def warn_once(self, key: str, text: str) -> None:
        """WARN_ON_ONCE(): once per call site per boot."""
        ...

    def page_address(self, pfn: int) -> int:
        """page_address(): the direct-map (linear-map) address of a page."""
        ...

    def va(self, pa: int) -> int:
        """__va(): the direct-map address of a physical address."""
        ...

    def pa(self, va: int) -> int:
        """__pa() of a direct-map address."""
        ...

    def in_direct_map(self, va: int) -> bool:
        """Is ``va`` inside the mapped part of the direct (linear) map?"""
        ...

    def direct_map_bounds(self) -> tuple[int, int]:
        """[start, end) of the direct map's virtual addresses that map RAM."""
        ...

    def lookup_address(self, va: int) -> object | None:
        """The leaf for ``va`` (with level, flags, pfn, present, writable), or None."""
        ...

    def arch_make_folio_readonly(self, pfn: int, nr_pages: int) -> int:
        """Make the direct-map alias of ``nr_pages`` pages from ``pfn`` read-only; 0 or -errno.

        -EOPNOTSUPP means the architecture (or this machine) cannot do it: the
        RFC's best-effort contract keeps the folio writable then.
        """
        ...

    def arch_make_folio_writable(self, pfn: int, nr_pages: int) -> int:
        """Undo arch_make_folio_readonly(): the direct-map alias is writable again; 0 or -errno."""
        ...

    def set_direct_map_invalid_noflush(self, pfn: int) -> int: ...

    def set_direct_map_default_noflush(self, pfn: int) -> int: ...

    def flush_tlb_kernel_range(self, start: int, end: int, reason: str) -> None: ...

    def kernel_map_pages(self, pfn: int, numpages: int, enable: bool) -> None:
        """__kernel_map_pages() under DEBUG_PAGEALLOC: unmap on free, map again on allocation."""
        ...

    def direct_map_writable(self, pfn: int) -> bool:
        """Would a CPU store through page_address(pfn) succeed now (present and writable)?"""
        ...

    def direct_map_present(self, pfn: int) -> bool: ...
