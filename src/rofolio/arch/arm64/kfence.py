"""KFENCE's pool in the linear map (mm/kfence/core.c, arch/arm64/include/asm/kfence.h).

``kfence_init_pool()`` protects the guard pages: the first two pages, then the
right redzone of each of the 255 objects (every second page from page 3).  On
arm64 ``kfence_protect_page()`` is ``set_memory_valid(addr, 1, !protect)``, so
each guard page costs one PTE write and one single-page ``flush_tlb_kernel_range()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.arch.arm64.mmu import arch_kfence_init_pool
from rofolio.arch.arm64.pageattr import set_memory_valid
from rofolio.arch.kernel import KFENCE_POOL_SIZE, kfence_guard_pages
from rofolio.units import PAGE_SIZE

if TYPE_CHECKING:
    from rofolio.arch.arm64.kernel import Arm64Kernel

__all__ = ["kfence_init_late", "kfence_init_pool", "kfence_protect_page"]


def kfence_protect_page(k: Arm64Kernel, addr: int, protect: bool) -> bool:
    """kfence_protect_page() (asm/kfence.h): set_memory_valid(addr, 1, !protect); return true."""
    set_memory_valid(k, addr, 1, not protect)
    return True


def kfence_init_pool(k: Arm64Kernel) -> None:
    """kfence_init_pool(): make the guard pages of the pool invalid."""
    assert k.kfence_pool is not None
    base = k.va(k.kfence_pool)
    for i in kfence_guard_pages():
        kfence_protect_page(k, base + i * PAGE_SIZE, True)


def kfence_init_late(k: Arm64Kernel, pa: int) -> bool:
    """kfence_init_late(): a pool from the page allocator, arch_kfence_init_pool(), then the guards."""
    if k.config.kfence_early_init or k.kfence_pool is not None or pa % PAGE_SIZE:
        return False
    if not k.config.usable.is_ram(pa, pa + KFENCE_POOL_SIZE):
        return False
    k.kfence_pool = pa
    if not arch_kfence_init_pool(k):
        k.kfence_pool = None
        return False
    kfence_init_pool(k)
    return True
