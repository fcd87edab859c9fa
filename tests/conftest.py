"""Shared fixtures: booted machines in the states the kernel-behaviour tests start from."""

from __future__ import annotations

import pytest

from rofolio.machine import Machine, MachineSpec
from rofolio.units import GiB


def boot_running(**options: object) -> Machine:
    """A machine after boot (SYSTEM_RUNNING), like a test module loaded into a live kernel."""
    options.setdefault("mem", 8 * GiB)
    machine = Machine.boot(MachineSpec.build(**options))  # type: ignore[arg-type]
    machine.finish_boot()
    return machine


@pytest.fixture
def gb_machine() -> Machine:
    """x86-64, 8 GiB, GBPAGES, 8 CPUs, the default kernel (7.2)."""
    return boot_running()


@pytest.fixture
def nogb_machine() -> Machine:
    """x86-64, 8 GiB, nogbpages: the direct map above 2M is all 2M leaves."""
    return boot_running(gbpages=False)
