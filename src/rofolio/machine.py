"""The machine: the one door into the model.

A ``Machine`` holds everything about one modelled system (no global state), so
two machines can run side by side: the architecture's kernel (its page tables,
from the ``rofolio.arch`` registry), generic MM on top, and the event log both
write to.  Everything above this layer (scenarios, studies, compare, the
oracle's model side) uses only the verbs and queries below, named after the
kernel functions they stand for; ``step()`` brackets an operation and returns
what it changed, derived from the counters the events fold into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from rofolio.arch import Arch, ArchKernel, BootRecord, WriteOutcome, arch_entry
from rofolio.errors import ConfigError, Errno
from rofolio.events import Event, EventLog, KernelWarning, Phase
from rofolio.kversion import KernelVersion
from rofolio.mm import (
    compaction,
    direct_access,
    fault,
    gup,
    invariants,
    longterm_pin,
    memory_hotplug,
    migrate,
    page_alloc,
    readonly,
    secretmem,
    shrinker,
    zero_page,
)
from rofolio.mm.config import MMConfig
from rofolio.mm.folio import Folio, MappingKind
from rofolio.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE, GFP_USER, Gfp
from rofolio.mm.mm_init import mm_core_init  # mm_core_init lives above MMState (docs/architecture.md)
from rofolio.mm.process import HugePmd, MmStruct
from rofolio.mm.state import MMState
from rofolio.pagetable import walk_entries
from rofolio.physmem import MemoryMap, check_ram
from rofolio.stats import Counters
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, Level, Pfn, PhysAddr, VirtAddr, parse_size

__all__ = ["GFP", "BootPlacement", "BootRecord", "Folio", "Leaf", "MMConfig", "Machine", "MachineSpec", "MmStruct",
           "StepResult"]

# The allocation contexts a caller above the machine names (include/linux/gfp_types.h)
GFP = {"kernel": GFP_KERNEL, "user": GFP_USER, "highuser_movable": GFP_HIGHUSER_MOVABLE,
       "transhuge": GFP_TRANSHUGE}



@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything needed to boot a machine: what every architecture has, plus the options of its own.

    ``options`` holds the architecture's options (``rofolio.arch.Arch.options``),
    every one present, checked by the registry; build a spec with ``build()`` to
    pass them as keywords: ``MachineSpec.build(mem="8G", gbpages=False)``.
    """

    arch: str = "x86_64"
    mem: int = 16 << 30
    memory_map: tuple[tuple[int, int], ...] | None = None  # explicit RAM ranges instead of the arch's default
    kernel: str = "7.2"
    cpus: int = 8
    debug_pagealloc: bool = False
    kfence: bool = False
    initrd: int = 0  # bytes of initrd the boot loader loads (placed by its rule where no boot record says)
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    mm: MMConfig = field(default_factory=MMConfig)  # generic MM: zero folios, lifetime model, init_on_*

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", self.entry.check_options(dict(self.options)))
        if self.memory_map:  # the machine has the RAM of its map, whatever mem said
            object.__setattr__(self, "mem", sum(end - start for start, end in self.memory_map))
        check_ram(self.mem)  # one minimum, on the RAM as given (a default map may keep some back)

    @property
    def entry(self) -> Arch:
        """The architecture's registry entry (ConfigError for an unknown name)."""
        return arch_entry(self.arch)

    @classmethod
    def build(cls, arch: str = "x86_64", mem: str | int = 16 << 30, **fields: Any) -> MachineSpec:
        """A spec from keywords: the common fields by name, everything else an option of ``arch``."""
        common = {k: v for k, v in fields.items() if k in _COMMON}
        options = {k: v for k, v in fields.items() if k not in _COMMON}
        return cls(arch=arch, mem=parse_size(mem), options=options, **common)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arch": self.arch, "label": self.label(), "mem_bytes": self.mem,
                               "kernel": self.kernel, "cpus": self.cpus, "debug_pagealloc": self.debug_pagealloc,
                               "kfence": self.kfence}
        if self.initrd:
            out["initrd"] = self.initrd
        out.update(self.entry.describe(self))
        out["mm"] = self.mm.describe()
        return out

    def label(self) -> str:
        """A short name for tables: 'x86_64 GBPAGES', 'arm64 rodata=full BBML2', 'nodirectmap (weak default)'."""
        return self.entry.label(self)


@dataclass(frozen=True, slots=True)
class BootPlacement:
    """One boot-time user's pages: what it is, who decided where (a boot record, or the model's own rules),
    and its (physical address, pages) stretches in the order it uses them."""

    what: str
    by: str
    pages: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        total = sum(n for _, n in self.pages)
        where = ", ".join(f"{pa:#x}+{n}" for pa, n in self.pages[:4]) + (", ..." if len(self.pages) > 4 else "")
        return f"{self.what}: {total} pages at {where}, placed by {self.by}"


def _stretches(pfns: list[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for pfn in pfns:
        if out and out[-1][0] + out[-1][1] * PAGE_SIZE == pfn * PAGE_SIZE:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((pfn * PAGE_SIZE, 1))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One stretch of kernel page table: virtual range, leaf level and the entry's flags as stored."""

    start: VirtAddr
    end: VirtAddr
    level: Level
    flags: int
    present: bool
    writable: bool


_COMMON = tuple(f.name for f in fields(MachineSpec) if f.name != "options")  # every machine has these


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

    def __init__(self, spec: MachineSpec, kernel: ArchKernel, mm: MMState) -> None:
        self.spec = spec
        self.kernel: ArchKernel = kernel
        self.mm = mm
        self.boot_placements: list[BootPlacement] = []  # what boot placed, and who decided where

    # ------------------------------------------------------------------ boot
    @classmethod
    def boot(cls, spec: MachineSpec, retain_events: bool = True, image: Any = None,
             record: BootRecord | None = None) -> Machine:
        """Boot to SYSTEM_SCHEDULING (initcalls next); ``finish_boot()`` reaches SYSTEM_RUNNING.

        ``record`` holds what a real boot placed (the initrd, BPF JIT packs): the model applies the same
        boot-time calls there instead of placing nothing.
        """
        entry = spec.entry
        memory = MemoryMap.from_ram(list(spec.memory_map)) if spec.memory_map else entry.memory_map(spec.mem)
        kernel = entry.boot(spec, memory, EventLog(retain=retain_events), image, record)
        # mm_core_init() -> memblock_free_all(): the buddy allocator takes over (start_kernel())
        machine = cls(spec, kernel, mm_core_init(kernel, spec.mm, spec.cpus, KernelVersion.parse(spec.kernel)))
        initrd = getattr(kernel, "initrd", None)
        if record is not None:
            by = record.source or "boot record"
            if record.initrd is not None:
                machine.boot_placements.append(BootPlacement("initrd", by, ((record.initrd[0], -(-record.initrd[1]
                                                                                             // PAGE_SIZE)),)))
            machine.boot_placements += [BootPlacement("BPF JIT pack", by, pages) for _, pages in record.bpf_packs]
            return machine
        if initrd is not None:
            machine.boot_placements.append(BootPlacement("initrd", "the model (the boot loader's rule)",
                                                         ((initrd[0], -(-initrd[1] // PAGE_SIZE)),)))
        # the boot-time users of the page allocator the architecture names (x86: the BPF JIT pack of sock_init(),
        # a core_initcall, where the config has one), placed by the model's buddy allocator: initcalls the model
        # runs before it returns, ahead of hugepage_init() (a subsys_initcall)
        machine._place_boot_allocations()
        return machine

    def run_initcalls(self) -> int:
        """The initcalls the model knows: hugepage_init() -> thp_shrinker_init() (the huge zero folio)."""
        if self.mm.initcalls_done:
            return 0
        return zero_page.hugepage_init(self.mm)

    def _place_boot_allocations(self) -> None:
        """Each boot-time user's blocks from the buddy allocator (GFP_KERNEL), then its calls on them."""
        entry = self.spec.entry
        for allocation in entry.boot_allocations(self.spec):
            pfns: list[int] = []
            for _ in range(allocation.count):
                folio = page_alloc.alloc_pages(self.mm, GFP_KERNEL, allocation.order, label=allocation.what)
                if folio is None:
                    raise ConfigError(f"the model's page allocator has no pages for the boot-time "
                                      f"{allocation.what}", "give the machine more memory")
                pfns += range(folio.pfn, folio.pfn + folio.nr_pages)
            entry.place_boot_allocation(self.kernel, allocation, pfns)
            self.boot_placements.append(BootPlacement(allocation.what, "the model (its buddy allocator)",
                                                      _stretches(pfns)))

    def finish_boot(self) -> None:
        """The rest of the initcalls, then free_initmem(), mark_rodata_ro(), SYSTEM_RUNNING."""
        if self.kernel.phase == Phase.RUNNING:
            return
        self.run_initcalls()
        self.spec.entry.late_init(self.kernel)

    # --------------------------------------------------------------- queries
    @property
    def log(self) -> EventLog:
        return self.kernel.log

    @property
    def counters(self) -> Counters:
        return self.kernel.log.counters

    @property
    def phase(self) -> Phase:
        return self.kernel.phase

    @property
    def memory(self) -> MemoryMap:
        """The RAM map the machine booted with."""
        return self.kernel.memory

    def meminfo_lines(self) -> list[str]:
        """The lines the architecture adds to /proc/meminfo (x86: the DirectMap lines)."""
        return self.spec.entry.meminfo_lines(self.kernel)

    def vmstat_lines(self) -> dict[str, int]:
        """The direct_map_* lines of /proc/vmstat as this kernel prints them (none outside x86)."""
        return self.spec.entry.vmstat_lines(self.kernel)

    def ptdump_lines(self, sections: tuple[str, ...] | None = None) -> list[str]:
        """The kernel page-table dump of the direct map (all modelled sections with ``()``)."""
        return self.spec.entry.ptdump_lines(self.kernel, sections)

    def va(self, pa: PhysAddr) -> VirtAddr:
        """__va(): the direct-map address of a physical address."""
        return self.kernel.va(pa)

    def pa(self, va: VirtAddr) -> PhysAddr:
        """__pa() of a direct-map address."""
        return self.kernel.pa(va)

    def page_address(self, pfn: Pfn) -> VirtAddr:
        return self.kernel.page_address(pfn)

    def in_direct_map(self, va: VirtAddr) -> bool:
        return self.kernel.in_direct_map(va)

    def direct_map_bounds(self) -> tuple[VirtAddr, VirtAddr]:
        """[start, end) of the direct map's virtual addresses that map RAM."""
        return self.kernel.direct_map_bounds()

    def lookup(self, va: VirtAddr) -> Any | None:
        """lookup_address(): the leaf mapping ``va`` (level, flags, pfn, present, writable), or None."""
        return self.kernel.lookup_address(va)

    def leaves(self, start: VirtAddr, end: VirtAddr) -> Iterator[Leaf]:
        """The kernel page table over [start, end) as maximal stretches of equal leaves (holes skipped)."""
        for run in self.kernel.pt.runs(start, end):  # type: ignore[attr-defined]
            lo = max(run.start, start)
            found = self.kernel.lookup_address(lo)
            yield Leaf(lo, min(run.end, end), run.level, run.flags, bool(found and found.present),
                       bool(found and found.writable))

    def direct_map_coverage(self) -> dict[Level, int]:
        """Bytes of the direct map per leaf level (cpa-test.c print_split() on x86)."""
        return self.kernel.direct_map_coverage()  # type: ignore[attr-defined]

    def direct_map_mapped_kb(self) -> dict[str, int]:
        """What the page tables map in the direct map, in kB per leaf size, keyed like the DirectMap lines.

        The DirectMap lines are the kernel's count, which is not this (docs/fidelity.md, finding 5).
        """
        coverage = self.direct_map_coverage()
        return {"DirectMap4k": coverage.get(Level.PTE, 0) >> 10, "DirectMap2M": coverage.get(Level.PMD, 0) >> 10,
                "DirectMap1G": coverage.get(Level.PUD, 0) >> 10}

    def kernel_warnings(self) -> list[str]:
        """Every warning the kernel printed so far (WARN, pr_warn, bad page reports), in order."""
        return [e.text for e in self.log.events if isinstance(e, KernelWarning)]

    @property
    def direct_map_end_pfn(self) -> Pfn:
        """The first pfn above what the direct map maps (x86: max_pfn_mapped)."""
        return Pfn(self.pa(self.direct_map_bounds()[1]) >> PAGE_SHIFT)

    def image_alias(self, pa: PhysAddr) -> VirtAddr | None:
        """Where the kernel image's own mapping maps ``pa`` (x86-64: the high kernel map), if the arch has one."""
        highmap_va = getattr(self.kernel, "highmap_va", None)
        return highmap_va(pa) if highmap_va is not None else None

    @property
    def kernel_image(self) -> Any:
        """Where the kernel image's sections are (physical addresses), as the architecture booted it."""
        return getattr(self.kernel, "image", None)

    def page_table_walk(self, start: VirtAddr, end: VirtAddr,
                        levels: tuple[Level, ...]) -> Iterator[tuple[int, int, Level, int | None]]:
        """The entries over [start, end) as a page-table dumper visits them (holes with flags None)."""
        return walk_entries(self.kernel.pt, start, end, levels)  # type: ignore[attr-defined]

    def supports(self, op: str) -> bool:
        """Does this architecture model the kernel function ``op`` (a set_memory_*() or vmap)?"""
        if op.startswith("set_memory_"):  # modelled, and in this machine's kernel release
            return self.spec.entry.set_memory_absent(op, self.spec.kernel) is None
        return callable(getattr(self.kernel, op, None))

    def can_set_direct_map(self) -> bool:
        """can_set_direct_map(): can this machine change the protection of single pages of its direct map
        (on arm64 only with rodata=full, DEBUG_PAGEALLOC, a late KFENCE pool or in a realm)?"""
        return bool(self.kernel.can_set_direct_map())  # type: ignore[attr-defined]

    def direct_map_writable(self, pfn: Pfn) -> bool:
        """Would a CPU store through page_address(pfn) land now?"""
        return self.kernel.direct_map_writable(pfn)

    def page_content(self, pfn: Pfn) -> int:
        """The byte value a page holds (0 for a page nobody wrote)."""
        return direct_access.page_content(self.mm, pfn)

    @property
    def huge_zero_folio(self) -> Folio | None:
        return self.mm.huge_zero.folio

    @property
    def zero_page(self) -> Folio:
        return self.mm.zero_page

    @property
    def nr_nodes(self) -> int:
        """NUMA nodes with memory."""
        return len(self.mm.nodes)

    def check_invariants(self) -> list[str]:
        """What is wrong with the MM state now (empty when every invariant holds, the lifetime model's too)."""
        return invariants.check_all(self.mm)

    def alive(self, process: MmStruct) -> bool:
        """Has the process not exited yet?"""
        return process.id in self.mm.processes

    def folio_freed(self, folio: Folio) -> bool:
        """Has the folio's last reference been put and its pages gone back to the allocator?

        A folio an oops or a refused free left behind (leaked) is not free; a reserved page never is.
        """
        return folio.refcount <= 0 and not folio.leaked and not folio.reserved

    def maps(self, process: MmStruct, pfn: Pfn) -> bool:
        """Does the process map ``pfn`` (its PMD and PTE entries)?"""
        for entry in process.pmds.values():
            if isinstance(entry, HugePmd):
                if entry.pfn <= pfn < entry.pfn + (PMD_SIZE >> PAGE_SHIFT):
                    return True
            elif any(pte is not None and pte.pfn == pfn for pte in entry.entries.values()) \
                    or (entry.fill and entry.fill.pfn == pfn):
                return True
        return False

    # ------------------------------------------------- kernel page tables
    def set_memory(self, op: str, va: VirtAddr, pages: int) -> int:
        """set_memory_ro(), _rw(), _np(), ...: ``op`` names the function; 0 or -errno."""
        absent = self.spec.entry.set_memory_absent(op, self.spec.kernel)
        if absent is not None:
            raise ConfigError(absent, f"{self.spec.arch} models: {', '.join(sorted(self.spec.entry.set_memory_ops))}"
                              if op not in self.spec.entry.set_memory_ops else "choose a newer kernel")
        return int(getattr(self.kernel, op)(va, pages))

    def set_direct_map(self, op: str, pfn: Pfn) -> int:
        """set_direct_map_invalid_noflush() or set_direct_map_default_noflush() of one page."""
        if op not in ("set_direct_map_invalid_noflush", "set_direct_map_default_noflush"):
            raise ConfigError(f"unknown set_direct_map function {op!r}",
                              "set_direct_map_invalid_noflush or set_direct_map_default_noflush")
        return int(getattr(self.kernel, op)(pfn))

    def vmap(self, pfns: list[int]) -> VirtAddr:
        """vmap(): a new vmalloc mapping of the pages, an alias of their direct-map pages."""
        return self.kernel.vmap(pfns)

    def vmalloc(self, pfns: list[int], huge: bool = False) -> VirtAddr:
        """vmalloc() backed by these pages: a VM_ALLOC area (``huge``: vmalloc_huge(), VM_ALLOW_HUGE_VMAP too),
        which set_memory_*() accept where the architecture checks the area."""
        vmalloc = getattr(self.kernel, "vmalloc", None)
        if vmalloc is None:
            raise ConfigError(f"vmalloc() areas are not modelled on {self.spec.arch}", "use vmap()")
        return VirtAddr(vmalloc(pfns, huge=huge))

    def pgtable_alloc_fail(self, fail: bool = True) -> None:
        """From now on page-table allocations fail (or succeed again): the -ENOMEM paths of splits."""
        self.kernel.pgtable_alloc_fail = fail  # type: ignore[attr-defined]

    def kernel_store(self, va: VirtAddr, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
        """A CPU store through a kernel mapping, checked only by the page tables (copy_to_kernel_nofault()
        with ``probe``)."""
        return self.kernel.kernel_store(va, probe=probe, mapping=mapping)

    def kernel_load(self, va: VirtAddr, probe: bool = False, mapping: str = "direct map") -> tuple[int, int | None]:
        """A CPU load of one byte through a kernel mapping (copy_from_kernel_nofault() with ``probe``):
        (0 and the byte the page holds, or -EFAULT and None after the fault it took)."""
        outcome = self.kernel.kernel_load(va, probe=probe, mapping=mapping)
        if not outcome.ok:
            return outcome.ret, None
        found = self.kernel.lookup_address(va)
        pfn = found.pfn + ((va & (found.level.size - 1)) >> PAGE_SHIFT)
        return 0, direct_access.page_content(self.mm, Pfn(pfn))

    # --------------------------------------------------------------- writes
    def kernel_write(self, pfn: Pfn, value: int, path: str = "kernel_write", nr_pages: int = 1) -> int:
        """A write by an MM path: the lifetime policy sees it first, then the direct map decides."""
        return direct_access.kernel_write(self.mm, pfn, nr_pages, value, path)

    def direct_map_write(self, pfn: Pfn, value: int, path: str, nr_pages: int = 1) -> int:
        """A raw store through the direct map (what a buggy path does): only the page tables can stop it."""
        return direct_access.direct_map_write(self.mm, pfn, nr_pages, value, path)

    def dma_write(self, pfn: Pfn, value: int, nr_pages: int = 1) -> int:
        """A device writes the pages: no CPU page table is checked, nothing faults."""
        return direct_access.device_dma_write(self.mm, pfn, nr_pages, value)

    def alias_write(self, va: VirtAddr, value: int, mapping: str, probe: bool = False) -> tuple[int, Pfn | None]:
        """A store through a kernel alias (vmalloc, the high kernel map): the page tables decide, and a store
        that lands changes the page behind the alias.  Returns (0 or -EFAULT, the pfn written)."""
        outcome = self.kernel.kernel_store(va, probe=probe, mapping=mapping)
        if not outcome.ok:
            return outcome.ret, None
        found = self.kernel.lookup_address(va)
        if found is None:
            return 0, None
        pfn = Pfn(found.pfn + ((va & (found.level.size - 1)) >> PAGE_SHIFT))
        direct_access.alias_store(self.mm, pfn, value, mapping)
        return 0, pfn

    def mapping_name(self, va: VirtAddr) -> str:
        """Which kernel mapping a store at ``va`` goes through, for reports."""
        if self.kernel.in_direct_map(va):
            return "direct map"
        layout = getattr(self.kernel, "layout", None)
        start = getattr(layout, "start_kernel_map", None)  # x86-64: __START_KERNEL_map
        if start is not None and start <= va < start + layout.kernel_image_size:  # type: ignore[union-attr]
            return "kernel image high mapping"
        return "kernel mapping"

    # --------------------------------------------------------------- folios
    def alloc_folio(self, gfp: Gfp | str, order: int = 0, node: int = 0, label: str = "",
                    zero: bool = False, compound: bool = False) -> Folio | None:
        """alloc_pages(): a folio from the buddy allocator, or None.

        ``gfp`` is flags or a name of ``GFP``; ``zero`` adds __GFP_ZERO and
        ``compound`` __GFP_COMP (what folio_alloc() passes for a large folio).
        """
        flags = GFP[gfp] if isinstance(gfp, str) else gfp
        flags |= (Gfp.ZERO if zero else Gfp(0)) | (Gfp.COMP if compound else Gfp(0))
        return page_alloc.alloc_pages(self.mm, flags, order, node, label=label)

    def folio_put(self, folio: Folio, path: str = "folio_put") -> int:
        """folio_put(): the last reference frees the folio through the lifetime policy's free hook."""
        return page_alloc.folio_put(self.mm, folio, path)

    def make_readonly(self, folio: Folio, why: str = "") -> int:
        """arch_make_folio_readonly(): best effort; a failure leaves the folio writable."""
        return readonly.arch_make_folio_readonly(self.mm, folio, why)

    def restore_writable(self, folio: Folio, why: str = "") -> int:
        return readonly.folio_restore_writable(self.mm, folio, why)

    def migrate(self, folio: Folio, to_node: int) -> tuple[int, Folio | None]:
        """migrate_pages() of one folio to ``to_node``: (0 or -errno, the destination folio)."""
        return migrate.migrate_to_node(self.mm, folio, to_node)

    def pin(self, folio: Folio, longterm: bool = False) -> Folio | None:
        """pin_user_pages() of a folio; FOLL_LONGTERM may migrate it first.  The pinned folio, or None."""
        return longterm_pin.pin_folio(self.mm, folio, longterm)

    def offline(self, pa: PhysAddr) -> int:
        """offline_pages() of the memory block holding ``pa``."""
        return memory_hotplug.offline_memory_block(self.mm, pa)

    def compact(self) -> tuple[int, int]:
        """compact_memory() of every zone: (folios migrated, folios that failed to migrate)."""
        return compaction.compact_memory(self.mm)

    def shrink(self) -> int:
        """shrink_slab(): the registered shrinkers run (the "thp-zero" one frees an unused huge zero folio)."""
        return shrinker.shrink_slab(self.mm)

    def secretmem_folio(self) -> tuple[int, Folio | None]:
        """memfd_secret() and a fault on it: a zeroed page out of the direct map; (0 or -errno, the folio)."""
        return secretmem.memfd_secret_fault(self.mm)

    def file_page(self, value: int, label: str) -> Folio | None:
        """A page-cache page holding a file's data (filemap_add_folio(): in the page cache, on the LRU)."""
        folio = page_alloc.alloc_pages(self.mm, GFP_HIGHUSER_MOVABLE, 0, label=label)
        if folio is None:
            return None
        folio.mapping = MappingKind.FILE
        folio.lru = True
        direct_access.user_store(self.mm, folio.pfn, value)  # read in by the filesystem
        return folio

    # ----------------------------------------------------------- processes
    def process(self) -> MmStruct:
        """mm_alloc(): a new user process."""
        return fault.mm_alloc(self.mm)

    def mmap(self, process: MmStruct, length: int, write: bool = True, hugepage: bool = True,
             file: Folio | None = None) -> int:
        """mmap(MAP_PRIVATE): anonymous, or one page of a file (its page-cache page mapped read-only)."""
        if file is not None:
            start = process.mmap_anon(PAGE_SIZE, write=write, hugepage=False)
            gup.map_file_page(self.mm, process, start, file)
            return start
        return process.mmap_anon(length, write=write, hugepage=hugepage)

    def user_write(self, process: MmStruct, addr: int, value: int) -> int:
        """A user store: a write fault if needed, then the store; the pfn written, or -EFAULT if the fault
        killed the task (nothing was stored)."""
        return fault.user_write(self.mm, process, addr, value)

    def user_read(self, process: MmStruct, addr: int) -> int:
        """A user load: the value read (>= 0), or -errno."""
        return fault.user_read(self.mm, process, addr)

    def folio_at(self, process: MmStruct, addr: int) -> Folio | None:
        """The folio backing a user address now."""
        return fault.folio_at(self.mm, process, addr)

    def exit(self, process: MmStruct) -> None:
        """exit_mmap(): the process's mappings go away (a process exits once: a second exit is refused)."""
        if not self.alive(process):
            raise ConfigError(f"process {process.id} has exited already", "a process exits once")
        fault.exit_mmap(self.mm, process)

    def gup(self, process: MmStruct, addr: int, flags: frozenset[str], rules: str = "current",
            race: str | None = None) -> gup.GupResult:
        """get_user_pages()/pin_user_pages() of one page under a kernel's GUP rules."""
        return gup.get_user_page(self.mm, process, addr, flags, gup.GupRules(rules), race)

    def pin_many(self, folio: Folio, count: int, rules: str = "current") -> tuple[int, str]:
        """``count`` pin_user_pages() on mappings of a folio: (pins taken, what happened)."""
        return gup.pin_many(self.mm, folio, count, gup.GupRules(rules))

    # ------------------------------------------------------------- stepping
    def step(self, name: str, operation: Callable[[], int | None]) -> StepResult:
        """Run one operation and report what it changed."""
        before = self.counters.copy()
        mark = len(self.log.events)
        ret = operation() or 0
        return StepResult(name, ret, before, self.counters.copy(), self.log.events[mark:])
