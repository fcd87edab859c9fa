"""riscv64 boot, in the order that changes the linear map.

* ``setup_arch()`` -> ``paging_init()`` -> ``setup_bootmem()`` (phys_ram_base, the memblock cap at the
  linear map's size) and ``setup_vm_final()`` -> ``create_linear_mapping_page_table()``
  (arch/riscv/mm/init.c);
* ``mm_core_init()`` -> ``kfence_init()``: the pool's guard pages lose V (only with a sample interval);
* ``smp_init()``; the initcalls;
* ``kernel_init()`` -> ``free_initmem()`` (arch/riscv/kernel/setup.c), then ``mark_readonly()`` ->
  ``mark_rodata_ro()`` when rodata is enabled (init/main.c), then SYSTEM_RUNNING.
"""

from __future__ import annotations

from rofolio.arch.riscv64 import init
from rofolio.arch.riscv64.config import Riscv64Config
from rofolio.arch.riscv64.kernel import Riscv64Kernel
from rofolio.events import EventLog, Phase

__all__ = ["boot", "late_init"]


def boot(config: Riscv64Config, log: EventLog | None = None) -> Riscv64Kernel:
    """setup_arch() up to the initcalls: the kernel is left in SYSTEM_SCHEDULING."""
    k = Riscv64Kernel(config, log)
    if config.rodata_setting.warning:  # parse_early_param(): set_debug_rodata()'s pr_warn
        k.warn(config.rodata_setting.warning)
    if config.capped is not None:  # setup_bootmem(); %pa prints 16 hex digits (lib/vsprintf.c address_val())
        k.warn(f"Physical memory overflows the linear mapping size: region above {config.capped:#018x} removed")
    init.create_linear_mapping_page_table(k)
    init.kfence_init_pool(k)
    k.cpus_online = config.nr_cpus  # smp_init()
    k.set_phase(Phase.SCHEDULING)
    return k


def late_init(k: Riscv64Kernel) -> None:
    """kernel_init() after the initcalls: free_initmem(), mark_readonly(), SYSTEM_RUNNING."""
    init.free_initmem(k)
    if k.config.rodata_setting.enabled:
        init.mark_rodata_ro(k)
    k.set_phase(Phase.RUNNING)
