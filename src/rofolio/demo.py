"""The RFC demo: make an order-9 folio read-only in the direct map, the way the RFC does it.

"[RFC PATCH 3/3] x86/mm: make huge zero folio read-only in direct map" calls
``set_memory_ro()`` on the persistent huge zero folio (512 pages) once, from
``thp_shrinker_init()`` (a subsys_initcall, so before SYSTEM_RUNNING).  The demo
boots a machine to initcall time, takes the 2M block a fresh page allocator
would hand out, makes it read-only, finishes booting, and reports every cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rofolio.errors import Errno
from rofolio.machine import Machine, MachineSpec, StepResult
from rofolio.units import PAGE_SHIFT, PMD_SIZE, Level


@dataclass
class DemoResult:
    spec: MachineSpec
    folio_pa: int
    folio_va: int
    leaf_before: str
    leaf_after: str
    boot: dict[str, int]
    step: StepResult
    final: dict[str, int]
    ptdump_after: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "rofolio.demo/1",
            "machine": self.spec.describe(),
            "folio": {"pa": f"{self.folio_pa:#x}", "va": f"{self.folio_va:#x}", "order": 9,
                      "leaf_before": self.leaf_before, "leaf_after": self.leaf_after},
            "boot": self.boot,
            "set_memory_ro": {"ret": Errno.describe(self.step.ret), "phase": "initcall (thp_shrinker_init)",
                              "delta": self.step.delta()},
            "final": self.final,
        }


def run_demo(spec: MachineSpec) -> DemoResult:
    machine = Machine.boot(spec)
    k = machine.kernel
    pa = machine.first_free_2m_block()
    va = k.va(pa)
    before = k.lookup_address(va)
    boot = machine.counters.summary()
    step = machine.step("set_memory_ro(folio, 512)", lambda: k.set_memory_ro(va, PMD_SIZE >> PAGE_SHIFT))
    after = k.lookup_address(va)
    machine.finish_boot()
    window = _ptdump_window(machine, va)
    return DemoResult(spec, pa, va, _describe(before), _describe(after), boot, step,
                      machine.counters.summary(), window)


def _describe(found: Any) -> str:
    if found is None:
        return "not mapped"
    rw = "RW" if found.writable else "RO"
    return f"{found.level.leaf_name} {rw}"


def _ptdump_window(machine: Machine, va: int) -> list[str]:
    """The ptdump lines around the folio: the 1G region that holds it."""
    lo = va & Level.PUD.mask
    hi = lo + Level.PUD.size
    lines = []
    for line in machine.ptdump_lines():
        if not line.startswith("0x"):
            continue
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if end > lo and start < hi:
            lines.append(line)
    return lines
