"""riscv64 machines in the states the kernel-behaviour tests start from."""

from __future__ import annotations

from rofolio.arch.riscv64 import boot
from rofolio.arch.riscv64.config import Riscv64Config
from rofolio.arch.riscv64.kernel import Riscv64Kernel
from rofolio.units import GiB

CPUS = 8


def boot_riscv64(mem: int = 8 * GiB, running: bool = True, **options: object) -> Riscv64Kernel:
    """A QEMU virt machine (RAM from 2G) booted to SYSTEM_RUNNING (or to initcall time with ``running=False``)."""
    options.setdefault("nr_cpus", CPUS)
    k = boot.boot(Riscv64Config.qemu_virt(mem, **options))
    if running:
        boot.late_init(k)
    return k
