"""The machine façade: one booted architecture model, its event log, and steps over it.

A ``Machine`` holds everything about one modelled system (no global state), so
two machines can run side by side.  Operations go through the architecture's
kernel object, which appends events; ``step()`` brackets an operation and
returns what it changed, derived from the counters the events fold into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rofolio.arch.x86_64 import boot as x86_boot
from rofolio.arch.x86_64 import ptdump as x86_ptdump
from rofolio.arch.x86_64.config import X86Config
from rofolio.arch.x86_64.image import KernelImage
from rofolio.arch.x86_64.kernel import X86Kernel
from rofolio.errors import AddressError, ConfigError, Errno
from rofolio.events import Event, EventLog, Phase
from rofolio.mm import zero_page
from rofolio.mm.config import MMConfig
from rofolio.mm.state import MMState, mm_core_init
from rofolio.physmem import MemoryMap
from rofolio.stats import Counters
from rofolio.units import parse_size

SUPPORTED_ARCHES = ("x86_64",)


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

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHES:
            raise ConfigError(f"unknown architecture {self.arch!r}",
                              f"choose one of: {', '.join(SUPPORTED_ARCHES)}")

    @classmethod
    def parse(cls, arch: str = "x86_64", mem: str | int = "16G", **options: Any) -> MachineSpec:
        return cls(arch=arch, mem=parse_size(mem), **options)

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "mem_bytes": self.mem,
            "gbpages": self.gbpages,
            "paging_levels": 5 if self.la57 else 4,
            "debug_pagealloc": self.debug_pagealloc,
            "kernel": self.kernel,
            "cpus": self.cpus,
            "kfence": self.kfence,
            "tlb_single_page_flush_ceiling": self.tlb_single_page_flush_ceiling,
            "boot_profile": self.boot_profile,
            "mm": self.mm.describe(),
        }


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

    def __init__(self, spec: MachineSpec, kernel: X86Kernel, mm: MMState) -> None:
        self.spec = spec
        self.kernel = kernel
        self.mm = mm

    # ------------------------------------------------------------------ boot
    @classmethod
    def boot(cls, spec: MachineSpec, retain_events: bool = True, image: KernelImage | None = None) -> Machine:
        """Boot to SYSTEM_SCHEDULING (initcalls next); ``finish_boot()`` reaches SYSTEM_RUNNING."""
        memory = (MemoryMap.from_ram(list(spec.memory_map)) if spec.memory_map
                  else MemoryMap.qemu_x86(spec.mem))
        config = X86Config(
            memory=memory, gbpages=spec.gbpages, la57=spec.la57, debug_pagealloc=spec.debug_pagealloc,
            kernel=spec.kernel, nr_cpus=spec.cpus,
            tlb_single_page_flush_ceiling=spec.tlb_single_page_flush_ceiling,
            empty_zero_page_in_rodata=spec.zero_page_in_rodata,
        )
        profile = None
        if spec.boot_profile:
            from rofolio.arch.x86_64.profiles import boot_profile

            profile = boot_profile(spec.boot_profile, spec.mem)
        options = x86_boot.BootOptions(kfence=spec.kfence, profile=profile)
        kernel = x86_boot.boot(config, image, options, EventLog(retain=retain_events))
        # mm_core_init() -> memblock_free_all(): the buddy allocator takes over (start_kernel())
        mm = mm_core_init(kernel, replace(spec.mm, debug_pagealloc=spec.debug_pagealloc))
        return cls(spec, kernel, mm)

    def run_initcalls(self) -> int:
        """The initcalls the model knows: hugepage_init() -> thp_shrinker_init() (the huge zero folio)."""
        if self.mm.initcalls_done:
            return 0
        return zero_page.hugepage_init(self.mm)

    def finish_boot(self) -> None:
        """The rest of the initcalls, then free_initmem(), mark_rodata_ro(), SYSTEM_RUNNING."""
        if self.kernel.phase != Phase.RUNNING:
            self.run_initcalls()
            x86_boot.late_init(self.kernel)

    # --------------------------------------------------------------- queries
    @property
    def log(self) -> EventLog:
        return self.kernel.log

    @property
    def counters(self) -> Counters:
        return self.kernel.log.counters

    def meminfo_lines(self) -> list[str]:
        return x86_ptdump.meminfo_lines(self.kernel)

    def ptdump_lines(self, sections: tuple[str, ...] = ("Low Kernel Mapping",)) -> list[str]:
        return x86_ptdump.ptdump_lines(self.kernel, sections)

    def direct_map_address(self, pa: int) -> int:
        """__va(pa), refusing addresses the machine has no RAM for."""
        if not self.kernel.config.memory.is_ram(pa):
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
