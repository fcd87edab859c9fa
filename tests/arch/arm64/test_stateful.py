"""The sparse arm64 model against the dense per-4K reference (tests/reference/dense_arm64.py).

A hypothesis state machine boots a small QEMU virt machine (2 GiB, BBML2 on or
off, rodata default or noalias, kernel 6.18 or 7.0), hands the boot layout to
the dense model, then drives both with the same calls.  After every step it
compares, page by page, the leaf level and descriptor of every RAM page, and
the return values, entries written, table pages, splits, CONT bits cleared,
flushes, flushed pages and warnings.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.prot import ARM64
from rofolio.events import EntryWrite
from rofolio.units import PAGE_SHIFT, GiB
from tests.arch.arm64.conftest import boot_arm64
from tests.reference.dense_arm64 import DenseArm64
from tests.reference.linear import pages_of

MEM = 2 * GiB
RAM = 1 * GiB
NPAGES = MEM >> PAGE_SHIFT

CONFIGS = [
    {"bbml2": True},
    {"bbml2": False},
    {"bbml2": True, "kernel": "7.0"},
    {"bbml2": True, "kernel": "6.18"},  # before the present-invalid encoding (15bfba1ad77f, v7.0)
    {"bbml2": False, "kernel": "6.18"},
    {"bbml2": True, "ng_mappings": True},
    {"bbml2": False, "rodata": "noalias"},
]

UNITS = (1, 16, 512, 8192, 262144)  # a page, CONT_PTE, PMD, CONT_PMD, PUD (in pages)
LENGTHS = (1, 2, 15, 16, 17, 511, 512, 513, 8192, 8193, 262144)


@st.composite
def page_ranges(draw: st.DrawFn) -> tuple[int, int]:
    """(first page, number of pages) inside RAM, biased towards the alignments the kernel cares about."""
    unit = draw(st.sampled_from(UNITS))
    first = draw(st.integers(0, NPAGES // unit - 1)) * unit + draw(st.sampled_from((0, 0, 1, 5, 15, 511)))
    first = min(first, NPAGES - 1)
    length = min(draw(st.sampled_from(LENGTHS)), NPAGES - first)
    return first, length


class LinearMapMachine(RuleBasedStateMachine):
    k: Arm64Kernel
    dense: DenseArm64

    @initialize(config=st.sampled_from(CONFIGS))
    def boot(self, config: dict[str, object]) -> None:
        self.k = boot_arm64(MEM, **config)
        level, flags = pages_of(self.k, RAM, MEM)
        self.dense = DenseArm64(level, flags, can_set_direct_map=self.k.can_set_direct_map(),
                                split_possible=self.k.split_leaf_mapping_possible(),
                                present_invalid=self.k.config.present_invalid_encoding,
                                ng=self.k.config.ng_mappings, tlb_range=self.k.config.tlb_range)
        self.base = self.k.log.counters.copy()
        self.cont_base = self._cont_cleared()

    def _pa(self, page: int) -> int:
        return RAM + (page << PAGE_SHIFT)

    def _both(self, sparse: int, dense: int) -> None:
        assert sparse == dense

    @rule(r=page_ranges())
    def make_linear_range_readonly(self, r: tuple[int, int]) -> None:
        first, n = r
        self._both(self.k.make_linear_range_readonly(self._pa(first), n << PAGE_SHIFT),
                   self.dense.make_linear_range_readonly(first, n))

    @rule(r=page_ranges(), enable=st.booleans())
    def set_memory_valid(self, r: tuple[int, int], enable: bool) -> None:
        first, n = r
        self._both(self.k.set_memory_valid(self.k.va(self._pa(first)), n, enable),
                   self.dense.set_memory_valid(first, n, enable))

    @rule(r=page_ranges(), valid=st.booleans())
    def set_direct_map_valid_noflush(self, r: tuple[int, int], valid: bool) -> None:
        first, n = r
        pfn = self._pa(first) >> PAGE_SHIFT
        self._both(self.k.set_direct_map_valid_noflush(pfn, n, valid),
                   self.dense.set_direct_map_valid_noflush(first, n, valid))

    @rule(r=page_ranges())
    def set_direct_map_invalid_noflush(self, r: tuple[int, int]) -> None:
        self._both(self.k.set_direct_map_invalid_noflush(self._pa(r[0]) >> PAGE_SHIFT),
                   self.dense.set_direct_map_invalid_noflush(r[0]))

    @rule(r=page_ranges())
    def set_direct_map_default_noflush(self, r: tuple[int, int]) -> None:
        self._both(self.k.set_direct_map_default_noflush(self._pa(r[0]) >> PAGE_SHIFT),
                   self.dense.set_direct_map_default_noflush(r[0]))

    @rule(fail=st.booleans())
    def page_table_allocation_fails(self, fail: bool) -> None:
        self.k.pgtable_alloc_fail = fail
        self.dense.alloc_fails = fail

    def _cont_cleared(self) -> dict[int, int]:
        """Entries whose CONT bit was cleared since boot, from the event log (read once: it only grows)."""
        if not hasattr(self, "_cont"):
            self._cont, self._seen = {1: 0, 2: 0}, 0
        events = self.k.log.events
        for e in events[self._seen:]:
            if isinstance(e, EntryWrite) and e.old & ARM64.CONT and not e.new & ARM64.CONT:
                self._cont[int(e.level)] += e.count
        self._seen = len(events)
        return dict(self._cont)

    @invariant()
    def same_leaves_and_counters(self) -> None:
        level, flags = pages_of(self.k, RAM, MEM)
        assert np.array_equal(level, self.dense.level)
        diff = np.nonzero(flags != self.dense.flags)[0]
        assert diff.size == 0, f"page {diff[:1]}: {int(flags[diff[0]]):#x} != {int(self.dense.flags[diff[0]]):#x}"
        c, b, d = self.k.log.counters, self.base, self.dense.c
        assert c.entries_written - b.entries_written == d.entries_written
        assert c.pgtables_allocated - b.pgtables_allocated == d.pgtables_allocated
        assert {lv: c.splits[lv] - b.splits[lv] for lv in c.splits} == d.splits
        assert c.flushes_all - b.flushes_all == d.flushes_all
        assert c.flushes_range - b.flushes_range == d.flushes_range
        assert c.flushed_pages - b.flushed_pages == d.flushed_pages
        assert c.warnings - b.warnings == d.warnings
        cont = self._cont_cleared()
        assert {lv: cont[lv] - self.cont_base[lv] for lv in cont} == d.cont_cleared
        assert c.pgtables_allocated == sum(self.k.pt.table_pages().values())

    @invariant()
    def kernel_page_present_agrees(self) -> None:
        for page in (0, 4096, NPAGES // 2 + 2560, NPAGES - 1):
            assert self.k.kernel_page_present(self._pa(page) >> PAGE_SHIFT) == self.dense.kernel_page_present(page)


TestLinearMapAgainstDenseReference = LinearMapMachine.TestCase
