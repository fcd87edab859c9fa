"""Kernel TLB invalidation on arm64 (arch/arm64/include/asm/tlbflush.h).

arm64 invalidates by broadcast TLBI instructions (the ``...IS`` inner-shareable
forms), so no CPU is interrupted: every flush event has ``ipis=0`` and reaches
every online CPU.  ``flush_tlb_kernel_range()`` issues one TLBI VAALE1IS per
page, or range TLBIs with FEAT_TLBIRANGE, unless
``__flush_tlb_range_limit_excess()`` says the range is too large, in which case
it falls back to ``flush_tlb_all()`` (TLBI VMALLE1IS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rofolio.events import Event, Flush, FlushKind
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, PTRS_PER_TABLE, align_down, align_up

if TYPE_CHECKING:
    from rofolio.arch.arm64.kernel import Arm64Kernel

__all__ = ["KernelRangeFlush", "flush_tlb_all", "flush_tlb_kernel_range", "flush_tlb_range_limit_excess"]

MAX_DVM_OPS = PTRS_PER_TABLE  # asm/tlbflush.h: MAX_DVM_OPS is PTRS_PER_PTE
MAX_TLBI_RANGE_PAGES = (31 + 1) << (5 * 3 + 1)  # __TLBI_RANGE_PAGES(31, 3)


@dataclass(frozen=True, slots=True)
class KernelRangeFlush(Event):
    """A flush_tlb_kernel_range(start, end) call; ``full`` if it became flush_tlb_all().

    The accompanying ``Flush`` event carries the cost counters; this one keeps
    the range the caller asked for, which the counters do not.
    """

    kind: ClassVar[str] = "flush_tlb_kernel_range"
    start: int
    end: int
    pages: int
    full: bool
    reason: str


def flush_tlb_range_limit_excess(start: int, end: int, pages: int, tlb_range: bool) -> bool:
    """__flush_tlb_range_limit_excess() as of v6.18 (stride PAGE_SIZE).

    Without TLBI range instructions a by-VA flush stops paying off at
    MAX_DVM_OPS pages; with them the limit is MAX_TLBI_RANGE_PAGES.  Past the
    limit the caller flushes everything instead.
    """
    return (not tlb_range and end - start >= MAX_DVM_OPS * PAGE_SIZE) or pages > MAX_TLBI_RANGE_PAGES


def flush_tlb_kernel_range(k: Arm64Kernel, start: int, end: int, reason: str) -> None:
    """flush_tlb_kernel_range(): round to pages, full flush past the limit, else by-VA TLBIs."""
    start = align_down(start, PAGE_SIZE)
    end = align_up(end, PAGE_SIZE)
    pages = (end - start) >> PAGE_SHIFT
    full = flush_tlb_range_limit_excess(start, end, pages, k.config.tlb_range)
    k.log.append(KernelRangeFlush(start, end, pages, full, reason))
    if full:
        flush_tlb_all(k, reason)
        return
    k.log.append(Flush(FlushKind.RANGE, pages, k.cpus_online, 0, reason))


def flush_tlb_all(k: Arm64Kernel, reason: str) -> None:
    """flush_tlb_all(): TLBI VMALLE1IS, broadcast to every CPU without an IPI."""
    k.log.append(Flush(FlushKind.ALL, 0, k.cpus_online, 0, reason))
