"""Random sequences of CPA calls: the sparse model against the dense per-4K reference.

After every step the leaves of the stretch [4 GiB, 6 GiB) of an 8 GiB machine
must be the same in both models, and so must every counter the kernel keeps or
the reports show: DirectMap pages, splits, collapses, page-table pages,
entries written, global and per-page flushes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rofolio.kversion import X86_CPA_COLLAPSE, X86_DIRTY_CLEARED_WITH_RW, X86_RO_CLEARS_DIRTY
from rofolio.units import GiB, Level
from tests.conftest import boot_running
from tests.reference.dense_x86 import DenseX86

BASE = (4 * GiB) >> 12
NPAGES = (2 * GiB) >> 12
OPS = ["ro", "rw", "np", "p", "nx", "x", "4k", "rox", "dm_invalid", "dm_default"]
SIZES = [1, 2, 3, 33, 34, 100, 511, 512, 513, 1024, 1536]


class CpaAgainstDense(RuleBasedStateMachine):
    @initialize(gbpages=st.booleans(), kernel=st.sampled_from(["6.1", "6.6.87", "6.6", "6.12.23", "6.18"]))
    def boot(self, gbpages: bool, kernel: str) -> None:
        self.machine = boot_running(gbpages=gbpages, kernel=kernel)
        k = self.k = self.machine.kernel
        levels = np.zeros(NPAGES, dtype=np.int8)
        flags = np.zeros(NPAGES, dtype=np.uint64)
        for run in k.pt.runs(k.va(BASE << 12), k.va((BASE + NPAGES) << 12)):
            s = max((k.layout.pa(run.start) >> 12) - BASE, 0)
            e = min((k.layout.pa(run.end) >> 12) - BASE, NPAGES)
            levels[s:e] = int(run.level)
            flags[s:e] = np.uint64(run.flags)
        version = k.config.kernel
        self.dense = DenseX86(BASE, levels, flags, gbpages=gbpages,
                              collapse=version.at_least(X86_CPA_COLLAPSE),
                              ro_clears_dirty=version.at_least(X86_RO_CLEARS_DIRTY),
                              kernel_4k_bit=version.at_least(X86_CPA_COLLAPSE),
                              np_clears_dirty=X86_DIRTY_CLEARED_WITH_RW.applies(version))
        self.start = self.machine.counters.copy()

    @rule(op=st.sampled_from(OPS),
          where=st.one_of(st.integers(0, NPAGES - 1),
                          st.integers(0, NPAGES // 512 - 1).map(lambda i: i * 512),
                          st.integers(0, NPAGES // 512 - 1).map(lambda i: i * 512 + 1),
                          st.integers(0, 1).map(lambda i: i * (NPAGES // 2))),
          size=st.one_of(st.sampled_from(SIZES), st.integers(1, 2048), st.just(262144)))
    def request(self, op: str, where: int, size: int) -> None:
        page = BASE + where
        n = min(size, NPAGES - where)
        if op.startswith("dm_"):
            n = 1
        k = self.k
        va = k.va(page << 12)
        call = {
            "ro": k.set_memory_ro, "rw": k.set_memory_rw, "np": k.set_memory_np, "p": k.set_memory_p,
            "nx": k.set_memory_nx, "x": k.set_memory_x, "4k": k.set_memory_4k, "rox": k.set_memory_rox,
        }
        if op == "dm_invalid":
            ret = k.set_direct_map_invalid_noflush(page)
        elif op == "dm_default":
            ret = k.set_direct_map_default_noflush(page)
        else:
            ret = call[op](va, n)
        assert ret == 0
        self.dense.request(op, page, n)

    @invariant()
    def same_leaves(self) -> None:
        if not hasattr(self, "dense"):
            return
        k = self.k
        lo, hi = k.va(BASE << 12), k.va((BASE + NPAGES) << 12)
        sparse = [((k.layout.pa(max(r.start, lo)) >> 12), (k.layout.pa(min(r.end, hi)) >> 12), int(r.level), r.flags)
                  for r in k.pt.runs(lo, hi)]
        assert sparse == self.dense.runs()

    @invariant()
    def same_counters(self) -> None:
        if not hasattr(self, "dense"):
            return
        now, was, d = self.machine.counters, self.start, self.dense.c
        for level in (Level.PTE, Level.PMD, Level.PUD):
            assert now.direct_pages[level] - was.direct_pages[level] == d.direct_pages[int(level)]
        for level in (Level.PMD, Level.PUD):
            assert now.splits[level] - was.splits[level] == d.splits[int(level)]
            assert now.collapses[level] - was.collapses[level] == d.collapses[int(level)]
        assert now.pgtables_allocated - was.pgtables_allocated == d.pgtables_allocated
        assert now.pgtables_freed - was.pgtables_freed == d.pgtables_freed
        assert now.entries_written - was.entries_written == d.entries_written
        assert now.flushes_all - was.flushes_all == d.flushes_all
        assert now.flushes_pages - was.flushes_pages == d.flushes_pages


TestCpaAgainstDense = CpaAgainstDense.TestCase
