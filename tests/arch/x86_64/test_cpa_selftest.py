"""A port of arch/x86/mm/pat/cpa-test.c (CONFIG_CPA_DEBUG), run against the model.

``pageattr_test()`` sets the software test bit (_PAGE_CPA_TEST = SOFTW1) on 300
random direct-map ranges of up to 100 pages, in range, array and pages-array
mode in turn, checks that the first page of each is now a 4K entry with the
bit, clears the bits again, and walks the direct map before, in the middle
and after with ``print_split()``.  It passes when:

* every range's first page is at level 4K and carries the bit after setting it;
* no page carries the bit after clearing;
* the walk's coverage (1G + 2M + 4K leaves + misses) equals max_pfn_mapped;
* every present 2M-level entry has PSE.

One difference from the kernel file: its array case passes ``len[1]`` where it
means ``len[i]``; the port uses ``len[i]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from rofolio.arch.x86_64.kernel import X86Kernel
from rofolio.prot import X86
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level
from tests.conftest import boot_running

NTEST = 3 * 100
NPAGES = 100
LPS = 1 << 21
GPS = 1 << 30


@dataclass
class SplitState:
    spg: int = 0
    lpg: int = 0
    gpg: int = 0
    missed: int = 0
    errors: int = 0


def print_split(k: X86Kernel) -> SplitState:
    """print_split(): walk [0, max_pfn_mapped) of the direct map with lookup_address()."""
    s = SplitState()
    i = 0
    while i < k.max_pfn_mapped:
        addr = k.va(i << PAGE_SHIFT)
        found = k.lookup_address(addr)
        if found is None:
            # the kernel steps one page at a time through a miss; skip to the next run at once
            nxt = k.pt.first_run_from(addr)
            step = max(((nxt.start - addr) >> PAGE_SHIFT) if nxt else 1, 1)
            step = min(step, k.max_pfn_mapped - i)
            s.missed += step
            i += step
            continue
        if found.level == Level.PUD:
            s.gpg += 1
            i += GPS // PAGE_SIZE
        elif found.level == Level.PMD:
            if found.flags & X86.PRESENT and not found.flags & X86.PSE:
                s.errors += 1  # "level %d but not PSE"
            s.lpg += 1
            i += LPS // PAGE_SIZE
        else:
            s.spg += 1
            i += 1
    expected = (s.gpg * GPS + s.lpg * LPS) // PAGE_SIZE + s.spg + s.missed
    if expected != i:
        s.errors += 1  # "CPA max_pfn_mapped %lu but expected %lu"
    return s


def pageattr_test(k: X86Kernel, rng: random.Random) -> int:
    """pageattr_test(): the number of failures, 0 on "ok."."""
    failed = print_split(k).errors
    used: set[int] = set()
    addrs: list[int] = []
    lens: list[int] = []
    for i in range(NTEST):
        pfn = rng.randrange(k.max_pfn_mapped)
        addr = k.va(pfn << PAGE_SHIFT)
        length = min(rng.randrange(NPAGES), k.max_pfn_mapped - pfn - 1) or 1
        first_flags = None
        pages: list[int] = []
        for n in range(length):
            found = k.lookup_address(addr + n * PAGE_SIZE)
            if found is None or found.flags == 0 or not found.flags & X86.PRESENT:
                addr = 0
                break
            flags_4k = found.flags & ~X86.PSE if found.level > Level.PTE else found.flags
            if n == 0:
                first_flags = flags_4k
            elif flags_4k != first_flags:
                length = n
                break
            if pfn + n in used:
                length = n
                break
            used.add(pfn + n)
            pages.append(addr + n * PAGE_SIZE)
        if not addr or not pages:
            addrs.append(0)
            lens.append(0)
            continue
        length = len(pages)
        addrs.append(addr)
        lens.append(length)
        mode = i % 3
        if mode == 0:
            err = k.set_memory_cpa_test(addr, length, set_bit=True)
        else:  # array and pages-array mode
            err = k.set_memory_cpa_test(tuple(pages), length, set_bit=True, array=True)
        if err < 0:
            failed += 1
        found = k.lookup_address(addr)
        if found is None or not found.flags & X86.CPA_TEST or found.flags & X86.PSE:
            failed += 1  # "bad pte"
        if found is None or found.level != Level.PTE:
            failed += 1  # "unexpected level"
    failed += print_split(k).errors
    for addr, length in zip(addrs, lens, strict=True):
        if not addr:
            continue
        if k.set_memory_cpa_test(addr, length, set_bit=False) < 0:
            failed += 1
        found = k.lookup_address(addr)
        if found is None or found.flags & X86.CPA_TEST:
            failed += 1  # "bad pte after revert"
    failed += print_split(k).errors
    return failed


@pytest.mark.parametrize("options", [
    {"gbpages": True, "kernel": "6.18"},
    {"gbpages": False, "kernel": "6.1"},
    {"gbpages": True, "kernel": "6.1", "mem": 2 << 30},
])
@pytest.mark.parametrize("seed", [1, 2])
def test_cpa_selftest_passes(options: dict, seed: int) -> None:
    machine = boot_running(**options)
    assert pageattr_test(machine.kernel, random.Random(seed)) == 0


def test_cpa_selftest_leaves_no_test_bit_and_coverage_equals_max_pfn_mapped() -> None:
    machine = boot_running()
    k = machine.kernel
    before = print_split(k)
    assert pageattr_test(k, random.Random(7)) == 0
    after = print_split(k)
    assert not [r for r in k.pt.runs() if r.flags & X86.CPA_TEST]
    pages = lambda s: (s.gpg * GPS + s.lpg * LPS) // PAGE_SIZE + s.spg + s.missed  # noqa: E731
    assert pages(before) == pages(after) == k.max_pfn_mapped
    assert after.gpg < before.gpg  # the test split some 1G pages, as it does in the kernel
