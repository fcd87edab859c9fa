"""A stateful property test of read-only folios under each lifetime model (hypothesis RuleBasedStateMachine).

Rules: allocate kernel folios, map anonymous memory into processes (and the
lazy huge zero folio), make folios read-only, pin, migrate to the other
node, compact, free (folio_put, process exit), write through the direct map,
run the shrinkers.  After every step:

* no folio flagged read-only has a writable direct-map alias;
* no page mm made read-only sits in the free lists while read-only;
* under model 2, every read-only folio is still where it was, read-only;
* the allocator's free runs and folios add up to the managed pages;
* the DirectMap counters moved exactly as the arch page table's leaves did.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from rofolio.mm.compaction import compact_memory
from rofolio.mm.direct_access import kernel_write
from rofolio.mm.fault import exit_mmap, folio_at, mm_alloc, user_read, user_write
from rofolio.mm.gfp import GFP_KERNEL
from rofolio.mm.invariants import (
    allocator_consistent,
    policy_invariants,
    readonly_folios_writable,
    readonly_pages_in_free_lists,
)
from rofolio.mm.longterm_pin import pin_folio, unpin_folio
from rofolio.mm.migrate import migrate_to_node
from rofolio.mm.page_alloc import alloc_pages, folio_put
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.mm.shrinker import shrink_slab
from rofolio.units import PAGE_SIZE, GiB, Level, MiB
from tests.mm.conftest import boot_mm


def _leaves(machine) -> dict[Level, int]:  # type: ignore[no-untyped-def]
    """Leaves of the direct map and of the high kernel map: split_page_count() counts both (fidelity finding 4)."""
    k = machine.kernel
    out = {lv: size // lv.size for lv, size in k.direct_map_coverage().items()}
    lo = k.layout.start_kernel_map
    hi = lo + k.layout.kernel_image_size
    for run in k.pt.runs(lo, hi):
        if run.level in out:
            out[run.level] += (min(run.end, hi) - max(run.start, lo)) // run.level.size
    return out


class ReadonlyLifetime(RuleBasedStateMachine):
    """Subclasses pick the lifetime model."""

    policy = "model1"

    def __init__(self) -> None:
        super().__init__()
        self.machine, self.mm = boot_mm(mem=GiB, running=False, nodes=2, lifetime=self.policy)
        self.kernel_folios: list = []
        self.user: list = []  # (process, address) of a written anonymous page
        self.pins: list = []
        self.leaves0 = _leaves(self.machine)
        self.counts0 = dict(self.machine.counters.direct_pages)

    # ------------------------------------------------------------------ rules
    @rule(order=st.integers(0, 3))
    def alloc_kernel_folio(self, order: int) -> None:
        folio = alloc_pages(self.mm, GFP_KERNEL, order)
        if folio is not None:
            self.kernel_folios.append(folio)

    @rule(value=st.integers(1, 255))
    def map_to_user(self, value: int) -> None:
        mms = mm_alloc(self.mm)
        addr = mms.mmap_anon(64 * 1024)
        user_write(self.mm, mms, addr, value)
        self.user.append((mms, addr))

    @rule()
    def map_huge_zero(self) -> None:
        mms = mm_alloc(self.mm)
        addr = mms.mmap_anon(2 * MiB)
        assert user_read(self.mm, mms, addr) in (0, *range(1, 256))
        self.user.append((mms, addr))

    @precondition(lambda self: self.kernel_folios or self.user)
    @rule(i=st.integers(0, 63), user=st.booleans())
    def make_readonly(self, i: int, user: bool) -> None:
        folio = self._pick(i, user)
        if folio is not None and not folio.reserved:
            arch_make_folio_readonly(self.mm, folio, "stateful")

    @precondition(lambda self: self.user)
    @rule(i=st.integers(0, 63))
    def pin(self, i: int) -> None:
        folio = self._pick(i, True)
        if folio is not None and folio.lru:
            pinned = pin_folio(self.mm, folio, longterm=False)
            if pinned is not None:
                self.pins.append(pinned)

    @precondition(lambda self: self.pins)
    @rule()
    def unpin(self) -> None:
        folio = self.pins.pop()
        if not folio.leaked and folio.refcount > 0:
            unpin_folio(self.mm, folio)

    @precondition(lambda self: self.user)
    @rule(i=st.integers(0, 63))
    def migrate(self, i: int) -> None:
        folio = self._pick(i, True)
        if folio is not None and folio.lru:
            migrate_to_node(self.mm, folio, 1 - folio.nid)

    @rule()
    def compact(self) -> None:
        compact_memory(self.mm)

    @precondition(lambda self: self.kernel_folios)
    @rule(i=st.integers(0, 63))
    def free_kernel_folio(self, i: int) -> None:
        folio = self.kernel_folios.pop(i % len(self.kernel_folios))
        folio_put(self.mm, folio)

    @precondition(lambda self: self.user)
    @rule(i=st.integers(0, 63))
    def exit_process(self, i: int) -> None:
        mms, _ = self.user.pop(i % len(self.user))
        self.pins = [f for f in self.pins if (mms.id, f.rmap[0][1] if f.rmap else -1) not in
                     [(mms.id, a) for _, a in self.user]]
        exit_mmap(self.mm, mms)

    @precondition(lambda self: self.kernel_folios or self.user)
    @rule(i=st.integers(0, 63), user=st.booleans(), value=st.integers(1, 255))
    def write(self, i: int, user: bool, value: int) -> None:
        folio = self._pick(i, user)
        if folio is not None and not folio.reserved:
            kernel_write(self.mm, folio.pfn, 1, value, "stateful write")

    @rule()
    def shrink(self) -> None:
        shrink_slab(self.mm)

    def _pick(self, i: int, user: bool):  # type: ignore[no-untyped-def]
        if user and self.user:
            mms, addr = self.user[i % len(self.user)]
            return folio_at(self.mm, mms, addr + (i % 16) * PAGE_SIZE * 0)
        if self.kernel_folios:
            folio = self.kernel_folios[i % len(self.kernel_folios)]
            return None if folio.leaked else folio
        return None

    # ------------------------------------------------------------- invariants
    @invariant()
    def no_writable_alias_of_a_read_only_folio(self) -> None:
        problems = readonly_folios_writable(self.mm)
        assert not problems, problems

    @invariant()
    def no_read_only_page_in_the_free_lists(self) -> None:
        problems = readonly_pages_in_free_lists(self.mm)
        assert not problems, problems

    @invariant()
    def lifetime_model_invariants_hold(self) -> None:  # model 2: never migrates or frees a read-only folio
        problems = policy_invariants(self.mm)
        assert not problems, problems

    @invariant()
    def allocator_adds_up(self) -> None:
        problems = allocator_consistent(self.mm)
        assert not problems, problems

    @invariant()
    def direct_map_counters_follow_the_page_table(self) -> None:
        leaves = _leaves(self.machine)
        counts = self.machine.counters.direct_pages
        for lv in (Level.PTE, Level.PMD, Level.PUD):
            assert leaves[lv] - self.leaves0[lv] == counts[lv] - self.counts0[lv], lv


class Model1Lifetime(ReadonlyLifetime):
    policy = "model1"


class Model2Lifetime(ReadonlyLifetime):
    policy = "model2"


class BrokenLifetime(ReadonlyLifetime):
    policy = "broken"


TestModel1KeepsEveryInvariant = Model1Lifetime.TestCase
TestModel2KeepsEveryInvariant = Model2Lifetime.TestCase


def test_broken_policy_is_caught_by_the_free_list_invariant() -> None:
    # derandomized: the same examples every run, so finding the bug does not depend on luck (it was flaky)
    caught = settings(max_examples=200, phases=(Phase.generate,), derandomize=True)
    with pytest.raises(AssertionError, match="but read-only in the direct map"):
        run_state_machine_as_test(BrokenLifetime, settings=caught)


def test_broken_minimal_counterexample() -> None:
    """A short failing sequence against ``broken``: map twice, make the second page read-only, compact.

    The first movable page is the smallest movable free block, the page memblock left below NODE_DATA(0) at the
    top of the zone, where compaction finds nothing to do; the second comes from the tail of a per-CPU unit lower
    down.  Compaction migrates that read-only page towards the top of the zone; without the migration hook the
    destination is writable and the source goes back to the free lists still read-only.
    """
    state = BrokenLifetime()
    state.map_to_user(value=1)
    state.map_to_user(value=2)
    mms, addr = state.user[1]
    src = folio_at(state.mm, mms, addr)
    assert src is not None
    state.make_readonly(i=1, user=True)
    assert src.readonly
    state.compact()
    dst = folio_at(state.mm, mms, addr)
    assert dst is not None and dst is not src and dst.pfn > src.pfn
    assert not dst.readonly and state.machine.kernel.direct_map_writable(dst.pfn)
    assert state.mm.is_free(src.pfn) and not state.machine.kernel.direct_map_writable(src.pfn)
    problems = readonly_pages_in_free_lists(state.mm)
    assert len(problems) == 1 and problems[0].startswith(f"pfn {src.pfn:#x} is free")
    state.no_writable_alias_of_a_read_only_folio()  # the other invariants still hold: only this one catches it
    state.allocator_adds_up()
    state.direct_map_counters_follow_the_page_table()
