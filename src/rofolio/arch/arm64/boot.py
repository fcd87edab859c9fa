"""arm64 boot, in the order that changes the linear map.

* ``paging_init()`` -> ``map_mem()`` (arch/arm64/mm/mmu.c), on the boot CPU,
  before CPU features are finalized, so ``force_pte_mapping()`` looks at the
  boot CPU's BBML2_NOABORT only;
* ``mm_core_init()`` -> ``kfence_init()``: the early pool's guard pages go invalid;
* ``smp_init()``, then ``smp_cpus_done()`` (arch/arm64/kernel/smp.c):
  ``setup_system_features()`` finalizes capabilities and calls
  ``linear_map_maybe_split_to_ptes()``; then ``mark_linear_text_alias_ro()``;
* ``kernel_init()`` -> ``mark_rodata_ro()``, which changes the kernel image
  mapping and, since v7.2, the linear alias of data and bss, then SYSTEM_RUNNING.
"""

from __future__ import annotations

from rofolio.arch.arm64 import kfence, mmu
from rofolio.arch.arm64.config import Arm64Config
from rofolio.arch.arm64.image import Arm64KernelImage
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.events import EventLog, Phase

__all__ = ["boot", "late_init", "paging_init", "setup_system_features", "smp_cpus_done", "smp_init"]


def boot(config: Arm64Config, image: Arm64KernelImage | None = None, log: EventLog | None = None) -> Arm64Kernel:
    """setup_arch() up to smp_cpus_done(): the kernel is left in SYSTEM_SCHEDULING (initcalls next)."""
    k = Arm64Kernel(config, image, log)
    if config.rodata_setting.warning:  # parse_early_param(): set_debug_rodata()'s pr_warn
        k.warn(config.rodata_setting.warning)
    if config.capped:  # arm64_memblock_init()
        k.warn("Memory doesn't fit in the linear mapping, VA_BITS too small")
    paging_init(k)
    if k.kfence_pool is not None:
        kfence.kfence_init_pool(k)  # mm_core_init() -> kfence_init() -> kfence_init_pool_early()
    smp_init(k)
    smp_cpus_done(k)
    k.set_phase(Phase.SCHEDULING)
    return k


def paging_init(k: Arm64Kernel) -> None:
    """paging_init(): map_mem(swapper_pg_dir); the idmap and kernel VMAs are outside the linear map."""
    mmu.map_mem(k)


def smp_init(k: Arm64Kernel) -> None:
    """Bring every secondary CPU online."""
    k.cpus_online = k.config.nr_cpus


def smp_cpus_done(k: Arm64Kernel) -> None:
    """smp_cpus_done(): hyp_mode_check(); setup_system_features(); ...; mark_linear_text_alias_ro()."""
    setup_system_features(k)
    mmu.mark_linear_text_alias_ro(k)


def setup_system_features(k: Arm64Kernel) -> None:
    """setup_system_features(): finalize capabilities, then linear_map_maybe_split_to_ptes()."""
    k.capabilities_finalized = True  # setup_system_capabilities()
    mmu.linear_map_maybe_split_to_ptes(k)
    # kpti_install_ng_mappings(): the model takes ng_mappings as given from the start


def late_init(k: Arm64Kernel) -> None:
    """kernel_init() after the initcalls: mark_readonly() -> mark_rodata_ro() when rodata_enabled (init/main.c),
    which changes the kernel image VA and, since the v7.2 linear-alias series, makes the linear alias of the
    kernel's data and bss read-only; then SYSTEM_RUNNING."""
    if k.config.linear_alias_series and k.config.rodata_setting.enabled:
        mmu.mark_rodata_ro_linear(k)
    k.set_phase(Phase.RUNNING)
