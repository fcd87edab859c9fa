"""Machines with generic MM on top, in the states the mm tests start from."""

from __future__ import annotations

from typing import Any

from rofolio.machine import Machine, MachineSpec
from rofolio.mm import MMConfig, MMState
from rofolio.mm.zero_page import hugepage_init
from rofolio.units import GiB

CPUS = 8


def boot_mm(running: bool = True, initcalls: bool = True, mem: int = 8 * GiB, spec: dict[str, Any] | None = None,
            **mm_options: Any) -> tuple[Machine, MMState]:
    """Boot an x86-64 machine to initcall time, hand memory to the buddy, run hugepage_init(), finish boot."""
    machine = Machine.boot(MachineSpec.build(mem=mem, mm=MMConfig(**mm_options), **(spec or {})))
    mm = machine.mm
    if initcalls:
        hugepage_init(mm)
    if running:
        machine.finish_boot()
    return machine, mm


def events_of(machine: Machine, kind: type, since: int = 0) -> list[Any]:
    return [e for e in machine.log.events[since:] if isinstance(e, kind)]
