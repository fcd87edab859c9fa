"""Page contents, and the CPU and device accesses to them.

Contents are kept sparsely: ``MMState.page_data`` maps a pfn to a non-zero
token (what the page holds); a pfn that is absent holds zeroes.  Stale data
stays in freed pages, as in the kernel, until something initialises them.

Every kernel store to page contents on a 64-bit kernel goes through the
direct map (``page_address()``/``kmap_local_page()`` are the linear address):
``clear_page()`` for ``__GFP_ZERO``/``init_on_alloc``/``init_on_free``,
``memset`` for page poisoning, ``folio_mc_copy()`` for migration.  So each
store asks the arch whether the direct-map entry is present and writable
(``ArchKernel.direct_map_writable``) and, if not, produces the oops the CPU
fault would, instead of writing.  Device DMA does not use CPU page tables and
is not stopped (a device addresses memory through the IOMMU or by physical
address, never through the CPU's page tables: Documentation/core-api/dma-api-howto.rst).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rofolio.errors import Errno
from rofolio.events import Fault
from rofolio.mm.events import ContentWrite, KernelOops

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

__all__ = [
    "PAGE_POISON", "alias_store", "device_dma_write", "direct_map_copy", "direct_map_write", "kernel_write", "oops",
    "page_content", "user_store",
]

PAGE_POISON = 0xAA  # include/linux/poison.h PAGE_POISON: what page poisoning fills freed pages with


def page_content(mm: MMState, pfn: int) -> int:
    """What a read of the page returns: 0 for a zero-filled page, else its token."""
    return mm.page_data.get(pfn, 0)


def _set(mm: MMState, pfn: int, value: int) -> None:
    if value:
        mm.page_data[pfn] = value
    else:
        mm.page_data.pop(pfn, None)


def oops(mm: MMState, pfn: int, path: str, write: bool = True) -> int:
    """The CPU faulted on the direct-map address of ``pfn``: log the oops, return -EFAULT."""
    k = mm.kernel
    addr = k.page_address(pfn)
    present = k.direct_map_present(pfn)
    text = k.oops_text(addr, write, present, k.log.counters.oopses + 1, k.lookup_address(addr))
    reason = "permissions violation" if present else "not-present page"
    k.log.append(Fault(addr, "write" if write else "read", reason, "direct map", text))  # counted by stats
    k.log.append(KernelOops(addr, pfn, path, text))  # which mm path did it
    return -Errno.EFAULT


def direct_map_write(mm: MMState, pfn: int, nr_pages: int, value: int, path: str) -> int:
    """Store ``value`` into ``nr_pages`` pages through the direct map, page by page; 0 or -EFAULT.

    Pages before the first non-writable one are written (the kernel clears a
    folio one page at a time), the rest are not.
    """
    k = mm.kernel
    for i in range(nr_pages):
        if not k.direct_map_writable(pfn + i):
            if i:
                k.log.append(ContentWrite(pfn, i, path))
            return oops(mm, pfn + i, path)
        _set(mm, pfn + i, value)
        k.store_landed(k.page_address(pfn + i))
    k.log.append(ContentWrite(pfn, nr_pages, path))
    return 0


def direct_map_copy(mm: MMState, src: int, dst: int, nr_pages: int, path: str) -> int:
    """folio_mc_copy(): read each source page and store it into the destination, both via the direct map."""
    k = mm.kernel
    for i in range(nr_pages):
        if not k.direct_map_present(src + i):
            return oops(mm, src + i, path, write=False)
        if not k.direct_map_writable(dst + i):
            if i:
                k.log.append(ContentWrite(dst, i, path))
            return oops(mm, dst + i, path)
        _set(mm, dst + i, page_content(mm, src + i))
        k.store_landed(k.page_address(dst + i))
    k.log.append(ContentWrite(dst, nr_pages, path))
    return 0


def device_dma_write(mm: MMState, pfn: int, nr_pages: int, value: int) -> int:
    """A device writes the pages by DMA: no CPU page table is involved, nothing faults."""
    for i in range(nr_pages):
        _set(mm, pfn + i, value)
    return 0


def user_store(mm: MMState, pfn: int, value: int) -> None:
    """A user-space store through a writable user mapping (not the direct map)."""
    _set(mm, pfn, value)


def alias_store(mm: MMState, pfn: int, value: int, mapping: str) -> None:
    """A kernel store that went through another mapping of the page (a vmap alias), not the direct map."""
    _set(mm, pfn, value)
    mm.kernel.log.append(ContentWrite(pfn, 1, f"store through {mapping}"))


def kernel_write(mm: MMState, pfn: int, nr_pages: int, value: int, path: str = "kernel_write") -> int:
    """A kernel store to page contents (a copy_to_page, a buggy GUP write, ...) through the direct map.

    The lifetime policy sees it first (model 2 refuses a write to a read-only
    folio and warns); otherwise the store faults if the direct map is read-only.
    0, -EBUSY (refused) or -EFAULT (oops).
    """
    folio = mm.folio_of(pfn)
    if folio is not None and not mm.policy.before_write(mm, folio, path):
        return -Errno.EBUSY
    return direct_map_write(mm, pfn, nr_pages, value, path)
