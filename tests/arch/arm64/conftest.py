"""arm64 machines in the states the kernel-behaviour tests start from, and a step helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from rofolio.arch.arm64 import boot
from rofolio.arch.arm64.config import Arm64Config
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.prot import ARM64
from rofolio.arch.arm64.tlbflush import KernelRangeFlush
from rofolio.events import EntryWrite, Event
from rofolio.units import GiB, Level

CPUS = 8
B_PA = 2 * GiB  # a 1G-aligned PA in the second GiB of a QEMU virt machine's RAM (RAM starts at 1G)
B_VA = 0xFFFF000040000000  # its linear-map address: PAGE_OFFSET + (PA - PHYS_OFFSET)


def boot_arm64(mem: int = 4 * GiB, running: bool = True, **options: object) -> Arm64Kernel:
    """A QEMU virt machine booted to SYSTEM_RUNNING (or to initcall time with ``running=False``)."""
    options.setdefault("nr_cpus", CPUS)
    k = boot.boot(Arm64Config.qemu_virt(mem, **options))
    if running:
        boot.late_init(k)
    return k


@dataclass
class Step:
    ret: int
    delta: dict[str, int]
    events: list[Event] = field(default_factory=list)

    def flushes(self) -> list[KernelRangeFlush]:
        return [e for e in self.events if isinstance(e, KernelRangeFlush)]

    def cont_cleared(self) -> dict[Level, int]:
        """Entries whose PTE_CONT a split_contpte()/split_contpmd() cleared."""
        out = {Level.PMD: 0, Level.PTE: 0}
        for e in self.events:
            if isinstance(e, EntryWrite) and e.old & ARM64.CONT and not e.new & ARM64.CONT:
                out[e.level] += e.count
        return out


def step(k: Arm64Kernel, operation: Callable[[], int | None]) -> Step:
    """Run one operation; report its return value, the change of every counter, and its events."""
    before = _figures(k)
    mark = len(k.log.events)
    ret = operation() or 0
    after = _figures(k)
    delta = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    return Step(ret, delta, k.log.events[mark:])


def _figures(k: Arm64Kernel) -> dict[str, int]:
    c = k.log.counters
    return {**c.summary(), "warnings": c.warnings, "pgtable_alloc_failures": c.pgtable_alloc_failures}


@pytest.fixture
def pte_machine() -> Arm64Kernel:
    """No BBML2, rodata default (rodata_full): the linear map is PTE-mapped."""
    return boot_arm64()


@pytest.fixture
def bbml2_machine() -> Arm64Kernel:
    """Every CPU has BBML2_NOABORT, rodata default: block mappings split on demand."""
    return boot_arm64(bbml2=True)
