"""riscv64's registry entry: its machine options, how it boots, and what it prints.

Importing this module is cheap: the linear-map model loads when a machine boots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rofolio.arch import Arch, ArchOption, BootRecord, image_from_record, register_arch

if TYPE_CHECKING:
    from rofolio.arch.kernel import ArchKernel
    from rofolio.events import EventLog
    from rofolio.machine import MachineSpec

__all__ = ["ENTRY", "KFENCE_POOL_SYMBOL", "RISCV64", "image_of"]

KFENCE_POOL_SYMBOL = "__kfence_pool"  # a boot record's image may carry where the pool is (its physical address)


def image_of(record: BootRecord) -> Any:
    """The Riscv64KernelImage of a record's section addresses (physical, by their vmlinux.lds.S names)."""
    from rofolio.arch.riscv64.config import IMAGE_SYMBOLS, Riscv64KernelImage

    return image_from_record(record, "riscv64", IMAGE_SYMBOLS, Riscv64KernelImage)


class RISCV64(Arch):
    name = "riscv64"
    summary = ("riscv64: the linear map of arch/riscv/mm/{init,pageattr}.c (huge leaves split on demand by "
               "set_memory_*(), flush_tlb_all() after each change)")
    image_of = staticmethod(image_of)
    options = (
        ArchOption("sv", 48, "the satp mode the kernel settles on: Sv39, Sv48 (QEMU 7.2's virt CPU) or Sv57 "
                   "(no4lvl/no5lvl and the CPU decide it)", choices=(39, 48, 57), kind=int),
        ArchOption("rodata", None, "the rodata= command line: on or off (anything else warns and keeps on)",
                   choices=("on", "off"), kind=str),
        ArchOption("kfence_sample_interval", 100, "kfence.sample_interval= with CONFIG_KFENCE (kfence = true): "
                   "0 leaves the pool's guard pages mapped (Debian's config)", minimum=0, kind=int),
    )
    rfc_machines = ({"sv": 48},)
    set_memory_ops = frozenset({"set_memory_ro", "set_memory_rw", "set_memory_nx", "set_memory_x",
                                "set_memory_rw_nx"})
    ram_base = 1 << 31  # QEMU's virt board: RAM from 2 GiB

    def label(self, spec: MachineSpec) -> str:
        o = spec.options
        return f"riscv64 Sv{o['sv']}" + (" rodata=off" if o["rodata"] == "off" else "") + \
            (" DEBUG_PAGEALLOC" if spec.debug_pagealloc else "")

    def describe(self, spec: MachineSpec) -> dict[str, Any]:
        o = spec.options
        return {"sv": o["sv"], "rodata": o["rodata"] or "default (on)",
                "kfence_sample_interval": o["kfence_sample_interval"]}

    def boot(self, spec: MachineSpec, memory: Any, log: EventLog, image: Any = None,
             record: BootRecord | None = None) -> ArchKernel:
        from rofolio.arch.riscv64 import boot
        from rofolio.arch.riscv64.config import Riscv64Config

        o = spec.options
        if record is not None and record.image and image is None:
            image = image_of(record)
        # where memblock put the KFENCE pool: the value of __kfence_pool as a physical address, when the record
        # has it beside the image's sections
        pool = dict(record.image).get(KFENCE_POOL_SYMBOL) if record is not None else None
        config = Riscv64Config(
            memory=memory, sv=int(o["sv"]), rodata=o["rodata"], debug_pagealloc=spec.debug_pagealloc,  # type: ignore[arg-type]
            kfence=spec.kfence, kfence_sample_interval=int(o["kfence_sample_interval"]),  # type: ignore[arg-type]
            nr_cpus=spec.cpus, kernel=spec.kernel, image=image, kfence_pool=pool)  # type: ignore[arg-type]
        return boot.boot(config, log=log)  # type: ignore[return-value]

    def late_init(self, kernel: ArchKernel) -> None:
        from rofolio.arch.riscv64 import boot

        boot.late_init(kernel)  # type: ignore[arg-type]

    def ptdump_lines(self, kernel: ArchKernel, sections: tuple[str, ...] | None) -> list[str]:
        from rofolio.arch.riscv64 import ptdump

        return ptdump.ptdump_lines(kernel, sections)  # type: ignore[arg-type]


ENTRY = register_arch(RISCV64())
