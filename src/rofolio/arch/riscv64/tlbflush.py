"""Kernel TLB flushes on riscv64 (arch/riscv/mm/tlbflush.c).

A remote flush reaches the other harts either through the SBI RFENCE extension (the firmware interrupts
them) or through IPIs; either way every other online hart takes an interrupt, which the model counts as
``ipis``.  With one hart online both flushes stay local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.events import Flush, FlushKind
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, align_down, align_up

if TYPE_CHECKING:
    from rofolio.arch.riscv64.kernel import Riscv64Kernel

__all__ = ["flush_tlb_all", "flush_tlb_kernel_range"]


def flush_tlb_all(k: Riscv64Kernel, reason: str) -> None:
    """flush_tlb_all(): local_flush_tlb_all() on one hart, else an SBI remote fence or on_each_cpu() to all."""
    cpus = k.cpus_online
    k.log.append(Flush(FlushKind.ALL, 0, cpus, cpus - 1, reason))


def flush_tlb_kernel_range(k: Riscv64Kernel, start: int, end: int, reason: str) -> None:
    """flush_tlb_kernel_range(): __flush_tlb_range() over cpu_online_mask with a PAGE_SIZE stride; each hart
    flushes the pages (or everything past tlb_flush_all_threshold, which the event does not tell apart)."""
    start, end = align_down(start, PAGE_SIZE), align_up(end, PAGE_SIZE)
    cpus = k.cpus_online
    k.log.append(Flush(FlushKind.RANGE, (end - start) >> PAGE_SHIFT, cpus, cpus - 1, reason))
