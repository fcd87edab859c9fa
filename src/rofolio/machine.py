"""The machine façade: one booted architecture model, its event log, and steps over it.

A ``Machine`` holds everything about one modelled system (no global state), so
two machines can run side by side.  Operations go through the architecture's
kernel object, which appends events; ``step()`` brackets an operation and
returns what it changed, derived from the counters the events fold into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rofolio.arch.x86_64 import boot as x86_boot
from rofolio.arch.x86_64 import ptdump as x86_ptdump
from rofolio.arch.x86_64.config import X86Config
from rofolio.arch.x86_64.image import KernelImage
from rofolio.errors import AddressError, ConfigError, Errno
from rofolio.events import Event, EventLog, Phase
from rofolio.mm import zero_page
from rofolio.mm.config import MMConfig
from rofolio.mm.state import MMState, mm_core_init
from rofolio.physmem import MemoryMap
from rofolio.stats import Counters
from rofolio.units import parse_size

SUPPORTED_ARCHES = ("x86_64", "arm64", "riscv64")  # riscv64: the generic weak default


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything needed to boot a machine; the CLI and scenario files build one of these."""

    arch: str = "x86_64"
    mem: int = 16 << 30
    memory_map: tuple[tuple[int, int], ...] | None = None  # explicit RAM ranges instead of QEMU's layout
    gbpages: bool = True
    la57: bool = False
    debug_pagealloc: bool = False
    kernel: str = "6.18"
    cpus: int = 8
    kfence: bool = False
    tlb_single_page_flush_ceiling: int = 33
    zero_page_in_rodata: bool = False
    boot_profile: str | None = None  # a measured boot profile, e.g. "qemu-debian-6.1" (the QEMU oracle's kernel)
    mm: MMConfig = field(default_factory=MMConfig)  # generic MM: zero folios, lifetime model, init_on_*
    # arm64
    rodata: str | None = None  # the rodata= command line ("on", "off", "noalias"; "full" is now invalid)
    bbml2: bool = False  # the CPUs have BBML2_NOABORT: block mappings stay under rodata_full
    secondary_without_bbml2: bool = False  # a secondary CPU lacks it: linear_map_split_to_ptes() at boot
    realm: bool = False  # running in an Arm CCA realm
    tlb_range: bool = False  # FEAT_TLBIRANGE

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHES:
            raise ConfigError(f"unknown architecture {self.arch!r}",
                              f"choose one of: {', '.join(SUPPORTED_ARCHES)}")

    @classmethod
    def parse(cls, arch: str = "x86_64", mem: str | int = "16G", **options: Any) -> MachineSpec:
        return cls(arch=arch, mem=parse_size(mem), **options)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arch": self.arch, "label": self.label(), "mem_bytes": self.mem,
                               "kernel": self.kernel, "cpus": self.cpus, "debug_pagealloc": self.debug_pagealloc,
                               "kfence": self.kfence}
        if self.arch == "x86_64":
            out.update({"gbpages": self.gbpages, "paging_levels": 5 if self.la57 else 4,
                        "tlb_single_page_flush_ceiling": self.tlb_single_page_flush_ceiling,
                        "boot_profile": self.boot_profile})
        elif self.arch == "arm64":
            out.update({"rodata": self.rodata or "default (full)", "bbml2": self.bbml2,
                        "secondary_without_bbml2": self.secondary_without_bbml2, "realm": self.realm,
                        "tlb_range": self.tlb_range})
        out["mm"] = self.mm.describe()
        return out

    def label(self) -> str:
        """A short name for tables: 'x86_64 GBPAGES', 'arm64 rodata=full BBML2', 'riscv64 (weak default)'."""
        if self.arch == "x86_64":
            return f"x86_64 {'GBPAGES' if self.gbpages else 'nogbpages'}" + (" 5-level" if self.la57 else "")
        if self.arch == "arm64":
            rodata = self.rodata or "full"
            return f"arm64 rodata={rodata}" + (" BBML2" if self.bbml2 else "") + \
                (" DEBUG_PAGEALLOC" if self.debug_pagealloc else "")
        return f"{self.arch} (weak default)"


@dataclass
class StepResult:
    """What one step did: its return value and the change in every counter."""

    name: str
    ret: int
    before: Counters
    after: Counters
    events: list[Event] = field(default_factory=list)

    def delta(self) -> dict[str, int]:
        b, a = self.before.summary(), self.after.summary()
        return {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "ret": Errno.describe(self.ret), "delta": self.delta(),
                "after": self.after.summary()}


class Machine:
    """One booted machine: the architecture's kernel page tables and generic MM on top."""

    def __init__(self, spec: MachineSpec, kernel: Any, mm: MMState) -> None:
        self.spec = spec
        self.kernel = kernel
        self.mm = mm

    # ------------------------------------------------------------------ boot
    @classmethod
    def boot(cls, spec: MachineSpec, retain_events: bool = True, image: KernelImage | None = None) -> Machine:
        """Boot to SYSTEM_SCHEDULING (initcalls next); ``finish_boot()`` reaches SYSTEM_RUNNING."""
        log = EventLog(retain=retain_events)
        ram = list(spec.memory_map) if spec.memory_map else None
        kernel: Any
        if spec.arch == "x86_64":
            memory = MemoryMap.from_ram(ram) if ram else MemoryMap.qemu_x86(spec.mem)
            config = X86Config(
                memory=memory, gbpages=spec.gbpages, la57=spec.la57, debug_pagealloc=spec.debug_pagealloc,
                kernel=spec.kernel, nr_cpus=spec.cpus,
                tlb_single_page_flush_ceiling=spec.tlb_single_page_flush_ceiling,
                empty_zero_page_in_rodata=spec.zero_page_in_rodata,
            )
            profile = None
            if spec.boot_profile:
                from rofolio.arch.x86_64.profiles import boot_profile

                profile = boot_profile(spec.boot_profile, spec.mem, spec.cpus)
            kernel = x86_boot.boot(config, image, x86_boot.BootOptions(kfence=spec.kfence, profile=profile), log)
        elif spec.arch == "arm64":
            from rofolio.arch.arm64 import boot as arm64_boot
            from rofolio.arch.arm64.config import Arm64Config, KfenceMode

            memory = MemoryMap.from_ram(ram) if ram else MemoryMap.flat(spec.mem, base=1 << 30)
            config64 = Arm64Config(
                memory=memory, rodata=spec.rodata, debug_pagealloc=spec.debug_pagealloc,
                kfence=KfenceMode.EARLY if spec.kfence else KfenceMode.NONE, realm=spec.realm, bbml2=spec.bbml2,
                secondary_without_bbml2=spec.secondary_without_bbml2, nr_cpus=spec.cpus, kernel=spec.kernel,
                tlb_range=spec.tlb_range)
            kernel = arm64_boot.boot(config64, log=log)
        else:
            from rofolio.arch.generic import GenericConfig
            from rofolio.arch.generic import boot as generic_boot

            memory = MemoryMap.from_ram(ram) if ram else MemoryMap.flat(spec.mem, base=1 << 31)
            kernel = generic_boot(GenericConfig(memory=memory, nr_cpus=spec.cpus), log)
        # mm_core_init() -> memblock_free_all(): the buddy allocator takes over (start_kernel())
        mm = mm_core_init(kernel, spec.mm)
        return cls(spec, kernel, mm)

    def run_initcalls(self) -> int:
        """The initcalls the model knows: hugepage_init() -> thp_shrinker_init() (the huge zero folio)."""
        if self.mm.initcalls_done:
            return 0
        return zero_page.hugepage_init(self.mm)

    def finish_boot(self) -> None:
        """The rest of the initcalls, then free_initmem(), mark_rodata_ro(), SYSTEM_RUNNING."""
        if self.kernel.phase == Phase.RUNNING:
            return
        self.run_initcalls()
        if self.spec.arch == "x86_64":
            x86_boot.late_init(self.kernel)
        elif self.spec.arch == "arm64":
            from rofolio.arch.arm64 import boot as arm64_boot

            arm64_boot.late_init(self.kernel)
        else:
            self.kernel.set_phase(Phase.RUNNING)

    # --------------------------------------------------------------- queries
    @property
    def log(self) -> EventLog:
        return self.kernel.log

    @property
    def counters(self) -> Counters:
        return self.kernel.log.counters

    def meminfo_lines(self) -> list[str]:
        """The DirectMap lines of /proc/meminfo; only x86 prints them (arch_report_meminfo())."""
        if self.spec.arch == "x86_64":
            return x86_ptdump.meminfo_lines(self.kernel)
        return []

    def ptdump_lines(self, sections: tuple[str, ...] | None = None) -> list[str]:
        """The kernel page-table dump of the direct map (all modelled sections with ``()``)."""
        if self.spec.arch == "x86_64":
            return x86_ptdump.ptdump_lines(self.kernel, ("Low Kernel Mapping",) if sections is None else sections)
        if self.spec.arch == "arm64":
            from rofolio.arch.arm64 import ptdump as arm64_ptdump

            return arm64_ptdump.ptdump_lines(self.kernel, ("Linear Mapping",) if sections is None else sections)
        raise ConfigError(f"no ptdump for {self.spec.arch}", "ptdump is modelled for x86_64 and arm64")

    def direct_map_address(self, pa: int) -> int:
        """__va(pa), refusing addresses the machine has no RAM for."""
        if not self.kernel.memory.is_ram(pa):
            raise AddressError(f"physical address {pa:#x} is not RAM on this machine",
                               "pick an address inside one of the RAM ranges of the memory map")
        return self.kernel.va(pa)

    # ------------------------------------------------------------- operations
    def step(self, name: str, operation: Callable[[], int | None]) -> StepResult:
        """Run one operation and report what it changed."""
        before = self.counters.copy()
        mark = len(self.log.events)
        ret = operation() or 0
        return StepResult(name, ret, before, self.counters.copy(), self.log.events[mark:])
