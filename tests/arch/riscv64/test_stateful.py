"""The sparse riscv64 model against the dense per-4K reference (tests/reference/dense_riscv64.py).

A hypothesis state machine boots a small QEMU virt machine (2 GiB from 2 GiB; Sv48 or Sv39, with or without
debug_pagealloc and KFENCE), hands the booted linear map to the dense model, then drives both with the same
calls: set_memory_*() on linear addresses, on vmalloc areas and on the kernel image (their linear alias),
set_direct_map_*(), __kernel_map_pages(), page-table allocations failing.  After every step it compares, page
by page, the leaf level and entry bits of every RAM page, and the return values, entries written, table pages,
splits and flushes; and kernel_page_present() and what a CPU store would do on a few pages.  A call that makes
the kernel follow a pointer it never set (a split below a non-present 1G leaf) must oops in both; the machine
then boots again.  Settings come from the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rofolio.arch.riscv64.kernel import Riscv64Kernel
from rofolio.arch.riscv64.pageattr import SET_MEMORY_MASKS, KernelBug
from rofolio.arch.riscv64.pgtable import RISCV
from rofolio.units import PAGE_SHIFT, GiB
from tests.arch.riscv64.conftest import boot_riscv64
from tests.reference.dense_riscv64 import DenseRiscv64, ReferenceOops
from tests.reference.linear import pages_of

MEM = 2 * GiB
RAM = 2 * GiB  # QEMU virt: RAM from 2G, so phys_ram_base is 1G-aligned and page index alignment is VA alignment
NPAGES = MEM >> PAGE_SHIFT

CONFIGS = [
    {"sv": 48},
    {"sv": 48, "kfence": True, "kfence_sample_interval": 0},  # the pool in 4K pages (its guard pages: test_boot)
    {"sv": 39},
    {"sv": 48, "debug_pagealloc": True},
    {"sv": 48, "nr_cpus": 1},
]

UNITS = (1, 512, 262144)  # a page, a PMD, a PUD (in pages)
LENGTHS = (1, 2, 511, 512, 513, 1024, 262143, 262144, 262145)


@st.composite
def page_ranges(draw: st.DrawFn) -> tuple[int, int]:
    """(first page, number of pages) inside RAM, biased towards the alignments the kernel cares about."""
    unit = draw(st.sampled_from(UNITS))
    first = draw(st.integers(0, NPAGES // unit - 1)) * unit + draw(st.sampled_from((0, 0, 1, 511)))
    first = min(first, NPAGES - 1)
    length = min(draw(st.sampled_from(LENGTHS)), NPAGES - first)
    return first, length


SET_MEMORY = ("set_memory_ro", "set_memory_rw", "set_memory_x", "set_memory_nx")


class LinearMapMachine(RuleBasedStateMachine):
    k: Riscv64Kernel
    dense: DenseRiscv64

    @initialize(config=st.sampled_from(CONFIGS))
    def boot(self, config: dict[str, object]) -> None:
        self.config = config
        self._boot()

    def _boot(self) -> None:
        self.k = boot_riscv64(MEM, **self.config)  # type: ignore[arg-type]
        level, flags = pages_of(self.k, RAM, MEM, RISCV.FLAGS_MASK)
        self.dense = DenseRiscv64(level, flags, debug_pagealloc=self.k.config.debug_pagealloc)
        self.base = self.k.log.counters.copy()
        self.vm_tables = 0  # table pages vmalloc areas took, which the dense model does not hold
        self.areas: list[tuple[int, list[int]]] = []

    def _pa(self, page: int) -> int:
        return RAM + (page << PAGE_SHIFT)

    def _va(self, page: int) -> int:
        return self.k.va(self._pa(page))

    def _both(self, sparse: object, dense: object) -> None:
        """Run both calls (thunks); equal returns, or an oops in both (and a fresh boot)."""
        try:
            want = dense()  # type: ignore[operator]
        except ReferenceOops:
            with pytest.raises(KernelBug):
                sparse()  # type: ignore[operator]
            self._boot()
            return
        assert sparse() == want  # type: ignore[operator]

    @rule(func=st.sampled_from(SET_MEMORY), r=page_ranges())
    def set_memory(self, func: str, r: tuple[int, int]) -> None:
        first, n = r
        self._both(lambda: getattr(self.k, func)(self._va(first), n), lambda: getattr(self.dense, func)(first, n))

    @rule(r=page_ranges())
    def make_linear_range_readonly(self, r: tuple[int, int]) -> None:
        first, n = r
        self._both(lambda: self.k.make_linear_range_readonly(self._pa(first), n << PAGE_SHIFT),
                   lambda: self.dense.set_memory_ro(first, n))

    @rule(r=page_ranges(), valid=st.booleans())
    def set_direct_map_valid_noflush(self, r: tuple[int, int], valid: bool) -> None:
        first, n = r
        self._both(lambda: self.k.set_direct_map_valid_noflush(self._pa(first) >> PAGE_SHIFT, n, valid),
                   lambda: self.dense.set_direct_map_valid_noflush(first, n, valid))

    @rule(r=page_ranges())
    def set_direct_map_invalid_noflush(self, r: tuple[int, int]) -> None:
        self._both(lambda: self.k.set_direct_map_invalid_noflush(self._pa(r[0]) >> PAGE_SHIFT),
                   lambda: self.dense.set_direct_map_invalid_noflush(r[0]))

    @rule(r=page_ranges())
    def set_direct_map_default_noflush(self, r: tuple[int, int]) -> None:
        self._both(lambda: self.k.set_direct_map_default_noflush(self._pa(r[0]) >> PAGE_SHIFT),
                   lambda: self.dense.set_direct_map_default_noflush(r[0]))

    @rule(func=st.sampled_from(("set_direct_map_valid_noflush", *SET_MEMORY)), valid=st.booleans())
    def whole_1g_entry(self, func: str, valid: bool) -> None:
        """The machine's second GiB is one 1G leaf (Sv48): a call that covers it whole changes it in place,
        and one that clears V leaves a leaf that pud_leaf() no longer sees."""
        first, n = NPAGES // 2, NPAGES // 2
        if func == "set_direct_map_valid_noflush":
            self._both(lambda: self.k.set_direct_map_valid_noflush(self._pa(first) >> PAGE_SHIFT, n, valid),
                       lambda: self.dense.set_direct_map_valid_noflush(first, n, valid))
        else:
            self._both(lambda: getattr(self.k, func)(self._va(first), n), lambda: getattr(self.dense, func)(first, n))

    @rule(r=page_ranges(), enable=st.booleans())
    def kernel_map_pages(self, r: tuple[int, int], enable: bool) -> None:
        first, n = r
        n = min(n, 1024)  # __kernel_map_pages() is called per freed or allocated block
        self._both(lambda: self.k.kernel_map_pages(self._pa(first) >> PAGE_SHIFT, n, enable),
                   lambda: self.dense.kernel_map_pages(first, n, enable))

    @rule(pages=st.lists(st.integers(0, NPAGES - 1), min_size=1, max_size=4))
    def vmalloc(self, pages: list[int]) -> None:
        before = self.k.log.counters.pgtables_allocated
        addr = self.k.vmalloc([self._pa(p) >> PAGE_SHIFT for p in pages])
        self.vm_tables += self.k.log.counters.pgtables_allocated - before
        self.areas.append((addr, pages))

    @rule(data=st.data(), func=st.sampled_from(SET_MEMORY))
    def set_memory_on_vmalloc_area(self, data: st.DataObject, func: str) -> None:
        if not self.areas:
            return
        addr, pages = data.draw(st.sampled_from(self.areas))
        skip = data.draw(st.integers(0, len(pages) - 1))
        n = data.draw(st.integers(1, len(pages) - skip))
        self._both(lambda: getattr(self.k, func)(addr + (skip << PAGE_SHIFT), n),
                   lambda: self.dense.set_memory_alias(pages[skip:skip + n], *SET_MEMORY_MASKS[func]))

    @rule(data=st.data(), func=st.sampled_from(SET_MEMORY))
    def set_memory_on_kernel_image(self, data: st.DataObject, func: str) -> None:
        """An address in the kernel mapping: lm_alias() of the range is split and walked once."""
        image = self.k.config.kernel_image
        first = data.draw(st.integers((image.start - RAM) >> PAGE_SHIFT, ((image.end - RAM) >> PAGE_SHIFT) - 1))
        n = min(data.draw(st.sampled_from(LENGTHS)), NPAGES - first)
        self._both(lambda: getattr(self.k, func)(image.virt(self._pa(first)), n),
                   lambda: self.dense.set_memory_image(first, n, *SET_MEMORY_MASKS[func]))

    @rule(fail=st.booleans())
    def page_table_allocation_fails(self, fail: bool) -> None:
        self.k.pgtable_alloc_fail = fail
        self.dense.alloc_fails = fail

    @invariant()
    def same_leaves_and_counters(self) -> None:
        level, flags = pages_of(self.k, RAM, MEM, RISCV.FLAGS_MASK)
        assert np.array_equal(level, self.dense.level)
        diff = np.nonzero(flags != self.dense.flags)[0]
        assert diff.size == 0, f"page {diff[:1]}: {int(flags[diff[0]]):#x} != {int(self.dense.flags[diff[0]]):#x}"
        c, b, d = self.k.log.counters, self.base, self.dense.c
        assert c.entries_written - b.entries_written == d.entries_written
        assert c.pgtables_allocated - b.pgtables_allocated - self.vm_tables == d.pgtables_allocated
        assert {lv: c.splits[lv] - b.splits[lv] for lv in c.splits} == d.splits
        assert c.flushes_all - b.flushes_all == d.flushes_all
        assert c.flushes_range - b.flushes_range == d.flushes_range
        assert c.flushed_pages - b.flushed_pages == d.flushed_pages
        assert c.pgtables_allocated == sum(self.k.pt.table_pages(self.k.layout.levels[0]).values())

    @invariant()
    def kernel_page_present_and_cpu_stores_agree(self) -> None:
        for page in (0, 513, NPAGES // 2 + 2560, NPAGES - 1):
            pfn = self._pa(page) >> PAGE_SHIFT
            assert self.k.kernel_page_present(pfn) == self.dense.kernel_page_present(page)
            assert self.k.direct_map_writable(pfn) == self.dense.cpu_writable(page)


TestLinearMapAgainstDenseReference = LinearMapMachine.TestCase
