"""x86-64's registry entry: its machine options, how it boots, and what it prints.

Importing this module is cheap: the CPA model loads when a machine boots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rofolio.arch import Arch, ArchOption, BootAllocation, BootRecord, register_arch
from rofolio.kversion import SET_MEMORY_ROX, Gate
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SIZE, Level

if TYPE_CHECKING:
    from rofolio.arch.kernel import ArchKernel
    from rofolio.events import EventLog
    from rofolio.machine import MachineSpec

__all__ = ["ENTRY", "X86_64"]



def image_of(record: BootRecord) -> Any:
    """The KernelImage a record's section addresses describe; sections it lacks keep Debian 6.1's layout,
    and a layout that does not hold together is refused (ConfigError), never half-used."""
    from dataclasses import fields, replace

    from rofolio.arch.x86_64.image import KernelImage
    from rofolio.errors import ConfigError

    given = dict(record.image)
    if "empty_zero_page" in given:  # one symbol, in .bss or (const, Ard's 2026 series) in .rodata
        zp = given.pop("empty_zero_page")
        in_rodata = given.get("start_rodata", 0) <= zp < given.get("end_rodata", 0)
        given["empty_zero_page_rodata" if in_rodata else "empty_zero_page_bss"] = zp
    if given and "bss_stop" in given and "bss_decrypted_unused" not in given and "bss_decrypted_end" not in given:
        # a kernel without CONFIG_AMD_MEM_ENCRYPT has no .bss..decrypted (vmlinux.lds.S BSS_DECRYPTED) and frees
        # nothing for it (mem_encrypt_free_decrypted_mem()): an empty range at the end of .bss
        given["bss_decrypted_unused"] = given["bss_decrypted_end"] = given["bss_stop"]
    known = {f.name for f in fields(KernelImage)}
    try:
        return replace(KernelImage(), **{k: v for k, v in given.items() if k in known})
    except ValueError as err:
        raise ConfigError(f"{record.source}: the kernel image layout in the boot record does not hold together "
                          f"({err})", "check the section symbols the guest printed") from None


class X86_64(Arch):
    name = "x86_64"
    summary = "x86-64: change_page_attr() (arch/x86/mm/pat/set_memory.c), DirectMap lines in /proc/meminfo"
    image_of = staticmethod(image_of)  # the image a boot record describes (Arch.image_of)
    options = (
        ArchOption("gbpages", True, "1G direct-map pages: the CPU has pdpe1gb and the command line has no "
                   "nogbpages (probe_page_size_mask())", flags=(("--nogbpages", False),)),
        ArchOption("paging", 4, "page-table levels: 5 is la57 (direct map at 0xff11000000000000)",
                   choices=(4, 5), kind=int, flags=(("--5level", 5),)),
        ArchOption("tlb_single_page_flush_ceiling", 33, "flushes of more pages become a full flush "
                   "(arch/x86/mm/tlb.c; tunable in debugfs)", minimum=0, kind=int),
        ArchOption("zero_page", "bss", "where empty_zero_page lives: bss, or rodata (const, Ard Biesheuvel's "
                   "2026 series), whose direct-map alias CPA keeps read-only", choices=("bss", "rodata"), kind=str),
        ArchOption("ptp_classifier", False, "the kernel builds ptp_classifier_init() with the BPF JIT "
                   "(CONFIG_NET_PTP_CLASSIFY, CONFIG_BPF_JIT; Debian's configs do): sock_init() JITs its program "
                   "into a BPF JIT pack of 512 pages at boot, placed by the model's page allocator where no boot "
                   "record says where", kind=bool),
        ArchOption("pti", "auto", "page-table isolation (the pti= boot option): auto turns it on only for a CPU "
                   "with the Meltdown bug, which the modelled CPU (QEMU -cpu max, as the oracle) has not; under PTI "
                   "the direct map is not _PAGE_GLOBAL and an oops says PTI; unbuilt: a kernel without "
                   "CONFIG_MITIGATION_PAGE_TABLE_ISOLATION (no PTI, and an oops names neither PTI nor NOPTI)",
                   choices=("auto", "on", "off", "unbuilt"), kind=str),
    )
    rfc_machines = ({"gbpages": True}, {"gbpages": False})
    set_memory_ops = frozenset({"set_memory_ro", "set_memory_rw", "set_memory_np", "set_memory_p",
                                "set_memory_nx", "set_memory_x", "set_memory_4k", "set_memory_rox",
                                "set_memory_uc", "set_memory_wb"})
    # set_memory_rox(): d48567c9a0d1 and the x86 one 60463628c9e0 ("x86/mm: Implement native set_memory_rox()"), v6.2
    set_memory_since: ClassVar[dict[str, Gate]] = {"set_memory_rox": SET_MEMORY_ROX}

    def memory_map(self, mem: int) -> MemoryMap:
        return MemoryMap.qemu_x86(mem)  # QEMU's e820 for -m mem

    def label(self, spec: MachineSpec) -> str:
        o = spec.options
        return f"x86_64 {'GBPAGES' if o['gbpages'] else 'nogbpages'}" + (" 5-level" if o["paging"] == 5 else "")

    def describe(self, spec: MachineSpec) -> dict[str, Any]:
        o = spec.options
        return {"gbpages": o["gbpages"], "paging_levels": o["paging"], "zero_page": o["zero_page"],
                "tlb_single_page_flush_ceiling": o["tlb_single_page_flush_ceiling"],
                "pti": o["pti"]}

    def boot(self, spec: MachineSpec, memory: MemoryMap, log: EventLog, image: Any = None,
             record: BootRecord | None = None) -> ArchKernel:
        from rofolio.arch.x86_64 import boot
        from rofolio.arch.x86_64.config import X86Config

        o = spec.options
        config = X86Config(memory=memory, gbpages=bool(o["gbpages"]), la57=o["paging"] == 5,
                           debug_pagealloc=spec.debug_pagealloc, kernel=spec.kernel, nr_cpus=spec.cpus,
                           tlb_single_page_flush_ceiling=int(o["tlb_single_page_flush_ceiling"]),  # type: ignore[arg-type]
                           empty_zero_page_in_rodata=o["zero_page"] == "rodata")
        profile = None  # without a record, the model places no boot-time user: it says so in docs/fidelity.md
        if record is not None and record.image and image is None:
            image = image_of(record)
        if record is not None:
            initrd = None if record.initrd is None else (record.initrd[0],
                                                          -(-record.initrd[1] // PAGE_SIZE))  # PAGE_ALIGN
            profile = boot.BootProfile(record.source or "boot record",
                                       tuple(boot.BpfPack(va, pages) for va, pages in record.bpf_packs), initrd)
        pti = boot.pti_check_boottime_disable(str(o["pti"]))
        # without a record the boot loader places the spec's initrd (QEMU's rule) and the model's buddy
        # allocator places the BPF JIT pack (Machine.boot() → boot_allocations())
        kernel = boot.boot(config, image, boot.BootOptions(kfence=spec.kfence, profile=profile, pti=pti,
                                                           pti_built=o["pti"] != "unbuilt",
                                                           initrd_size=0 if record is not None else spec.initrd), log)
        if record is not None:
            kernel.table_pages = {(Level(level), region): pa for level, region, pa in record.tables}
        return kernel

    def boot_allocations(self, spec: MachineSpec) -> tuple[BootAllocation, ...]:
        if not spec.options["ptp_classifier"]:
            return ()
        # net/socket.c sock_init() (a core_initcall) → ptp_classifier_init() (net/core/ptp_classifier.c, built in
        # by Debian's config) → bpf_prog_create() → the JIT → bpf_prog_pack_alloc() → alloc_new_pack()
        # (kernel/bpf/core.c): BPF_PROG_PACK_SIZE (2 MiB on one node) of vmalloc()'ed order-0 pages, GFP_KERNEL
        # (module_alloc() in 6.1, execmem_alloc(EXECMEM_BPF) since v6.10: no ROX cache, no huge page)
        return (BootAllocation("BPF JIT pack", 0, 512, "ptp_classifier_init() → bpf_prog_pack_alloc()"),)

    def place_boot_allocation(self, kernel: ArchKernel, allocation: BootAllocation, pfns: list[int]) -> None:
        from rofolio.arch.x86_64 import boot

        runs: list[tuple[int, int]] = []
        for pfn in pfns:  # the pages in the order the pack maps them, as (physical address, count) stretches
            if runs and runs[-1][0] + runs[-1][1] * PAGE_SIZE == pfn * PAGE_SIZE:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((pfn * PAGE_SIZE, 1))
        at = kernel.layout.modules_vaddr  # type: ignore[attr-defined]  # the first module-area allocation
        boot.bpf_prog_pack_alloc(kernel, boot.BpfPack(at, tuple(runs)))  # type: ignore[arg-type]

    def late_init(self, kernel: ArchKernel) -> None:
        from rofolio.arch.x86_64 import boot

        boot.late_init(kernel)  # type: ignore[arg-type]

    def meminfo_lines(self, kernel: ArchKernel) -> list[str]:
        from rofolio.arch.x86_64 import ptdump

        return ptdump.meminfo_lines(kernel)  # type: ignore[arg-type]

    def vmstat_lines(self, kernel: ArchKernel) -> dict[str, int]:
        from rofolio.arch.x86_64 import ptdump

        return ptdump.vmstat_lines(kernel)  # type: ignore[arg-type]

    def ptdump_lines(self, kernel: ArchKernel, sections: tuple[str, ...] | None) -> list[str]:
        from rofolio.arch.x86_64 import ptdump

        return ptdump.ptdump_lines(kernel, ("Low Kernel Mapping",) if sections is None else sections)  # type: ignore[arg-type]


ENTRY = register_arch(X86_64())
