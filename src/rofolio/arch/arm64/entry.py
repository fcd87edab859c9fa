"""arm64's registry entry: its machine options, how it boots, and what it prints.

Importing this module is cheap: the linear-map model loads when a machine boots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rofolio.arch import Arch, ArchOption, BootRecord, image_from_record, register_arch

if TYPE_CHECKING:
    from rofolio.arch.kernel import ArchKernel
    from rofolio.events import EventLog
    from rofolio.machine import MachineSpec

__all__ = ["ARM64", "ENTRY", "IMAGE_SYMBOLS", "image_of"]


# vmlinux.lds.S symbol -> Arm64KernelImage field: what a boot record's image holds on arm64
IMAGE_SYMBOLS = {"_text": "text", "_stext": "stext", "_etext": "etext", "__start_rodata": "start_rodata",
                 "__init_begin": "init_begin", "__init_end": "init_end", "__bss_stop": "bss_stop", "_end": "end"}


def image_of(record: BootRecord) -> Any:
    """The Arm64KernelImage of a record's section addresses (physical, by their vmlinux.lds.S names): every
    section must be there, and a layout that does not hold together is refused (ConfigError)."""
    from rofolio.arch.arm64.image import Arm64KernelImage

    return image_from_record(record, "arm64", IMAGE_SYMBOLS, Arm64KernelImage)


class ARM64(Arch):
    name = "arm64"
    summary = "arm64: the linear map of arch/arm64/mm/{mmu,pageattr}.c (rodata=full, BBML2_NOABORT, contiguous bits)"
    image_of = staticmethod(image_of)  # the image a boot record describes (Arch.image_of)
    options = (
        ArchOption("rodata", None, 'the rodata= command line: on, off, noalias, or full, which arm64 no longer '
                   "parses: the kernel warns and keeps its default, the same as on (rodata_full)",
                   choices=("on", "off", "noalias", "full"), kind=str),
        ArchOption("bbml2", False, "the CPUs have BBML2_NOABORT: block mappings stay under rodata=full"),
        ArchOption("secondary_without_bbml2", False, "a secondary CPU lacks BBML2_NOABORT: "
                   "linear_map_split_to_ptes() at boot"),
        ArchOption("realm", False, "running in an Arm CCA realm"),
        ArchOption("tlb_range", False, "FEAT_TLBIRANGE: range TLB invalidation"),
    )
    rfc_machines = ({"bbml2": False}, {"bbml2": True}, {"rodata": "off"})
    set_memory_ops = frozenset({"set_memory_ro", "set_memory_rw", "set_memory_nx", "set_memory_x"})
    ram_base = 1 << 30  # QEMU's virt board: RAM from 1 GiB

    def label(self, spec: MachineSpec) -> str:
        o = spec.options
        # BBML2_NOABORT is a system capability only when every CPU has it (a secondary without it: the boot
        # CPU's alone, which the linear map stops using at smp_cpus_done())
        bbml2 = (" BBML2 (boot CPU only)" if o["secondary_without_bbml2"] else " BBML2") if o["bbml2"] else ""
        return f"arm64 rodata={o['rodata'] or 'full'}{bbml2}" + (" realm" if o["realm"] else "") + \
            (" DEBUG_PAGEALLOC" if spec.debug_pagealloc else "")

    def describe(self, spec: MachineSpec) -> dict[str, Any]:
        o = spec.options
        return {"rodata": o["rodata"] or "default (full)", "bbml2": o["bbml2"],
                "secondary_without_bbml2": o["secondary_without_bbml2"], "realm": o["realm"],
                "tlb_range": o["tlb_range"]}

    def boot(self, spec: MachineSpec, memory: Any, log: EventLog, image: Any = None,
             record: Any = None) -> ArchKernel:
        from rofolio.arch.arm64 import boot
        from rofolio.arch.arm64.config import Arm64Config, KfenceMode

        o = spec.options
        if record is not None and record.image and image is None:
            image = image_of(record)
        config = Arm64Config(
            memory=memory, rodata=o["rodata"], debug_pagealloc=spec.debug_pagealloc,  # type: ignore[arg-type]
            kfence=KfenceMode.EARLY if spec.kfence else KfenceMode.NONE, realm=bool(o["realm"]),
            bbml2=bool(o["bbml2"]), secondary_without_bbml2=bool(o["secondary_without_bbml2"]), nr_cpus=spec.cpus,
            kernel=spec.kernel, tlb_range=bool(o["tlb_range"]))  # type: ignore[arg-type]
        return boot.boot(config, image, log=log)

    def late_init(self, kernel: ArchKernel) -> None:
        from rofolio.arch.arm64 import boot

        boot.late_init(kernel)  # type: ignore[arg-type]

    def ptdump_lines(self, kernel: ArchKernel, sections: tuple[str, ...] | None) -> list[str]:
        from rofolio.arch.arm64 import ptdump

        return ptdump.ptdump_lines(kernel, ("Linear Mapping",) if sections is None else sections)  # type: ignore[arg-type]


ENTRY = register_arch(ARM64())
