"""The standard lifetime workload on real (modelled) machines: ``rofolio lifetime``.

``rofolio.mm.workload`` defines the workload against the MM layer; this module
boots the machines it runs on, one per phase, from a ``MachineSpec``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from rofolio.machine import Machine, MachineSpec
from rofolio.mm.config import MMConfig
from rofolio.mm.state import MMState
from rofolio.mm.workload import LifetimeResult, run_lifetime_workload_on


def run_lifetime_workload(spec: MachineSpec, model: str, config: MMConfig | None = None) -> LifetimeResult:
    """Run the workload under ``model`` ("model1", "model2", "broken" or "none") on machines like ``spec``."""

    def boot(mm_config: MMConfig) -> tuple[MMState, Callable[[], None]]:
        machine = Machine.boot(replace(spec, mm=mm_config))
        return machine.mm, machine.finish_boot

    return run_lifetime_workload_on(boot, model, config or MMConfig())
