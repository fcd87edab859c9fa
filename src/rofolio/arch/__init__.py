"""Architectures: how each builds its direct map at boot and changes protections in it.

Core MM (``rofolio.mm``) talks to an architecture only through ``ArchKernel``,
the handful of entry points the real kernel's generic code uses: the
direct-map address of a page, the ``set_direct_map_*`` helpers, a kernel TLB
flush, DEBUG_PAGEALLOC's ``__kernel_map_pages()``, and the two hooks the RFC
thread asked for, ``arch_make_folio_readonly()`` and its inverse.  Each
returns the kernel's value: 0 or a negative errno.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rofolio.errors import ConfigError
from rofolio.kversion import Gate, KernelVersion
from rofolio.physmem import MemoryMap

if TYPE_CHECKING:
    from collections.abc import Callable

    from rofolio.arch.kernel import ArchKernel, KernelState, LeafLookup, WriteOutcome
    from rofolio.events import EventLog
    from rofolio.machine import MachineSpec

# ArchKernel, KernelState, LeafLookup and WriteOutcome live in rofolio.arch.kernel, imported with the first
# look-up of one of them here: reading the registry (`rofolio run --help`) loads no event log or page table.
_KERNEL_NAMES = ("ArchKernel", "KernelState", "LeafLookup", "WriteOutcome")


def __getattr__(name: str) -> Any:
    if name in _KERNEL_NAMES:
        from rofolio.arch import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module 'rofolio.arch' has no attribute {name!r}")

__all__ = [
    "CHANGED", "RETIRED", "Arch", "ArchKernel", "ArchOption", "BootAllocation", "BootRecord", "KernelState",
    "LeafLookup", "OptionValue",
    "WriteOutcome", "all_options", "arch_entry", "arch_names", "image_from_record", "register_arch",
    "registry_generation", "rfc_machines", "unregister_arch",
]


@dataclass(frozen=True, slots=True)
class BootRecord:
    """What a real boot decided that the model takes as input: placements, never counters or split counts.

    ``initrd`` is where the boot loader put the initial ramdisk (physical start, bytes), which
    free_initrd_mem() hands back; ``bpf_packs`` the pages of the BPF JIT packs boot made (their vmalloc
    address and (physical address, pages) stretches); ``source`` says where the record was read.
    """

    initrd: tuple[int, int] | None = None
    bpf_packs: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()
    source: str = ""
    # where the kernel image's sections are (physical addresses by the architecture's names for them): each
    # build and version lays them out differently, and the boot-time protections follow the boundaries
    image: tuple[tuple[str, int], ...] = ()
    # where page-table pages are: (entry level, start of the region the entry maps, physical address of the
    # table it points to).  memblock places boot's tables and the page allocator those of splits and vmalloc;
    # an oops prints them (x86 dump_pagetable())
    tables: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class BootAllocation:
    """A boot-time user of the page allocator that changes the direct map: where a boot record gives no
    placement, the model asks its own buddy allocator for ``count`` blocks of ``order`` (GFP_KERNEL) at
    initcall time, then the architecture applies the user's calls to them (``Arch.place_boot_allocation``)."""

    what: str  # "BPF JIT pack"
    order: int
    count: int
    source: str  # the kernel code that allocates and protects it


# ======================================================================= registry
# One entry per architecture.  Everything above the arch layer that needs to know which architectures exist,
# which options each takes, how each boots, prints its direct map or reports a fault asks this registry; a new
# architecture is one package with an ``Arch`` subclass plus one register_arch() call
# (docs/adding-an-architecture.md).

OptionValue = bool | int | str | None


@dataclass(frozen=True, slots=True)
class ArchOption:
    """One machine option an architecture accepts: a key of a scenario's [machine] table and of MachineSpec.

    ``choices`` limits the values; ``minimum`` bounds an integer; ``flags`` are
    command-line switches that set a fixed value (``("--nogbpages", False)``),
    besides the ``--KEY VALUE`` form every option has.
    """

    key: str
    default: OptionValue
    help: str
    choices: tuple[OptionValue, ...] = ()
    minimum: int | None = None
    kind: type = bool  # bool, int or str
    flags: tuple[tuple[str, OptionValue], ...] = ()

    def convert(self, value: Any) -> OptionValue:
        """The value as this option holds it, or ConfigError saying what it takes."""
        if value is None and self.default is None:
            return None
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            word = value.strip().lower() if isinstance(value, str) else None
            if word in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                return word in ("true", "yes", "on", "1")
            raise ConfigError(f"{self.key} takes true or false (on the command line also yes/no, on/off, 1/0), "
                              f"not {value!r}", self.help)
        if self.kind is int:
            if isinstance(value, str):
                try:
                    value = int(value.strip(), 10)  # decimal, as in a scenario file
                except ValueError:
                    raise ConfigError(f"{self.key} takes a whole number, not {value!r}", self.help) from None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{self.key} takes a whole number, not {value!r}", self.help)
        elif not isinstance(value, str):
            raise ConfigError(f"{self.key} takes a string, not {value!r}", self.help)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.key} = {value!r} is not one of {', '.join(map(repr, self.choices))}", self.help)
        if self.minimum is not None and isinstance(value, int) and value < self.minimum:
            raise ConfigError(f"{self.key} must be at least {self.minimum}", self.help)
        return value


class Arch:
    """A registry entry: what the layers above the arch layer may know about one architecture.

    Subclasses set the class attributes and override what their architecture
    has; the defaults describe an architecture with nothing to print and no
    late boot work of its own.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for help texts and the architecture table
    options: ClassVar[tuple[ArchOption, ...]] = ()
    set_memory_ops: ClassVar[frozenset[str]] = frozenset()  # which set_memory_*() it models
    # those of them younger than the oldest modelled kernel: function -> the first release that has it
    set_memory_since: ClassVar[dict[str, Gate]] = {}
    ram_base: ClassVar[int] = 0  # where RAM starts on the default machine of a given size
    # the configurations `rofolio run` shows the RFC step on, side by side (options by key)
    rfc_machines: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    # ------------------------------------------------------------ machine
    def set_memory_absent(self, op: str, kernel: str | KernelVersion) -> str | None:
        """Why ``op`` cannot run on a machine with ``kernel``: not modelled here, or not in that release yet;
        None when it can."""
        if op not in self.set_memory_ops:
            return f"{op} is not modelled on {self.name}"
        since = self.set_memory_since.get(op)
        version = KernelVersion.parse(kernel)
        if since is not None and not since.applies(version):
            return f"{op}() does not exist before Linux {since.mainline.series}; this machine runs {version}"
        return None

    def option(self, key: str) -> ArchOption | None:
        return next((o for o in self.options if o.key == key), None)

    def check_options(self, given: dict[str, Any]) -> dict[str, OptionValue]:
        """Every option with its value: ``given`` converted, the rest at their defaults."""
        unknown = sorted(set(given) - {o.key for o in self.options})
        if unknown:
            mine = ", ".join(o.key for o in self.options) or "none"
            raise ConfigError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                              f"{'an option' if len(unknown) == 1 else 'options'} of {self.name} machines",
                              f"{self.name} takes: {mine}")
        return {o.key: o.convert(given[o.key]) if o.key in given else o.default for o in self.options}

    def memory_map(self, mem: int) -> MemoryMap:
        """The RAM layout of this architecture's default machine with ``mem`` bytes: one bank at ram_base."""
        return MemoryMap.flat(mem, base=self.ram_base)

    def label(self, spec: MachineSpec) -> str:
        """A short name for tables, e.g. 'x86_64 GBPAGES'."""
        return self.name

    def describe(self, spec: MachineSpec) -> dict[str, Any]:
        """This architecture's part of a machine's description in JSON."""
        return dict(spec.options)

    # --------------------------------------------------------------- boot
    def boot(self, spec: MachineSpec, memory: MemoryMap, log: EventLog, image: Any = None,
             record: BootRecord | None = None) -> ArchKernel:
        """setup_arch() up to the initcalls: the kernel is left in SYSTEM_SCHEDULING.

        ``record`` holds placements a real boot made (BootRecord); an architecture that models none
        of them ignores it.
        """
        raise NotImplementedError

    def image_of(self, record: BootRecord) -> Any:
        """The kernel image a boot record's section addresses describe (None: the arch keeps its own)."""
        return None

    def boot_allocations(self, spec: MachineSpec) -> tuple[BootAllocation, ...]:
        """The boot-time users of the page allocator this architecture models, in boot order (none by default)."""
        return ()

    def place_boot_allocation(self, kernel: ArchKernel, allocation: BootAllocation, pfns: list[int]) -> None:
        """Apply ``allocation``'s calls to the pages the buddy allocator gave it."""
        raise NotImplementedError

    def late_init(self, kernel: ArchKernel) -> None:
        """kernel_init() after the initcalls: free_initmem(), mark_rodata_ro() where modelled, SYSTEM_RUNNING."""
        from rofolio.events import Phase

        kernel.set_phase(Phase.RUNNING)

    # ------------------------------------------------------------ reports
    def meminfo_lines(self, kernel: ArchKernel) -> list[str]:
        """The lines this architecture adds to /proc/meminfo (arch_report_meminfo()); most add none."""
        return []

    def vmstat_lines(self, kernel: ArchKernel) -> dict[str, int]:
        """The direct_map_* lines of /proc/vmstat this kernel prints (x86 only: CONFIG_X86 in mm/vmstat.c)."""
        return {}

    def meminfo_absent(self) -> str:
        """Why ``meminfo_lines`` is empty, for ``rofolio meminfo``."""
        return (f"{self.name} prints no DirectMap lines in /proc/meminfo and has no direct_map_* vmstat "
                "counters (both are x86: arch_report_meminfo(), CONFIG_X86 in mm/vmstat.c)")

    def ptdump_lines(self, kernel: ArchKernel, sections: tuple[str, ...] | None) -> list[str]:
        """The page-table dump (debugfs page_tables/kernel); ``None``: the direct map only, ``()``: all."""
        raise ConfigError(f"no ptdump for {self.name}", "ptdump is modelled for: "
                          + ", ".join(n for n in arch_names() if type(arch_entry(n)).ptdump_lines
                                      is not Arch.ptdump_lines))


_BUILTIN = {  # name -> module whose ENTRY is registered on first use (importing it is cheap)
    "x86_64": "rofolio.arch.x86_64.entry",
    "arm64": "rofolio.arch.arm64.entry",
    "riscv64": "rofolio.arch.riscv64.entry",
    "nodirectmap": "rofolio.arch.nodirectmap.entry",
}
# Names no architecture answers to any more, that meant one in an earlier scenario schema: name -> (what it
# was, what to write now).  None at present.
RETIRED: dict[str, tuple[str, str]] = {}
# Names that stand for another machine than they did in an earlier scenario schema: name -> (what changed,
# what to write for the old machine).  A scenario file that names one still loads, and its result says so.
CHANGED = {
    "riscv64": ('up to scenario schema 1, arch = "riscv64" stood for an architecture without '
                "ARCH_HAS_SET_DIRECT_MAP (the weak default: arch_make_folio_readonly() returned -EOPNOTSUPP); "
                "now it is riscv64 with its own rules, where set_memory_ro() splits the linear map and the "
                "folio becomes read-only", 'write arch = "nodirectmap" for the weak default'),
}
_REGISTRY: dict[str, Arch] = {}
_generation = [0]  # bumped on every change, so caches built from the registry know when to rebuild


def register_arch(entry: Arch) -> Arch:
    """Add an architecture (or replace the one of the same name)."""
    _REGISTRY[entry.name] = entry
    _generation[0] += 1
    return entry


def unregister_arch(name: str) -> None:
    _REGISTRY.pop(name, None)
    _generation[0] += 1


def registry_generation() -> int:
    return _generation[0]


def _load_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _REGISTRY:
            register_arch(importlib.import_module(module).ENTRY)


def arch_names() -> list[str]:
    """Every registered architecture, built-ins first."""
    _load_builtins()
    return list(_REGISTRY)


def arch_entry(name: str) -> Arch:
    """The registry entry of ``name``, or ConfigError naming the choices."""
    if name not in _REGISTRY:
        if name in _BUILTIN:
            register_arch(importlib.import_module(_BUILTIN[name]).ENTRY)
        else:
            _load_builtins()
    entry = _REGISTRY.get(name)
    if entry is None:
        if name in RETIRED:
            raise ConfigError(f"unknown architecture {name!r}: {RETIRED[name][0]}", RETIRED[name][1])
        raise ConfigError(f"unknown architecture {name!r}", f"choose one of: {', '.join(arch_names())}")
    return entry


def image_from_record(record: BootRecord, arch: str, symbols: dict[str, str], make: Callable[..., Any]) -> Any:
    """An architecture's kernel image from a boot record's section addresses: ``symbols`` maps each
    vmlinux.lds.S name the record must hold to ``make``'s keyword; a missing name or a layout ``make`` refuses
    (ValueError) is a ConfigError naming the record."""
    given = dict(record.image)
    where = record.source or "boot record"
    missing = [name for name in symbols if name not in given]
    if missing:
        raise ConfigError(f"{where}: the {arch} kernel image layout lacks {', '.join(missing)}",
                          f"give every one of {', '.join(symbols)}")
    try:
        return make(**{field: given[name] for name, field in symbols.items()})
    except ValueError as err:
        raise ConfigError(f"{where}: the kernel image layout in the boot record does not hold together ({err})",
                          "check the section symbols the guest printed") from None


def rfc_machines() -> list[dict[str, Any]]:
    """The machines the RFC's side-by-side shows: every registered architecture's configurations the thread
    argued about (``Arch.rfc_machines``), as [machine] keys."""
    return [{"arch": name, **config} for name in arch_names() for config in arch_entry(name).rfc_machines]


def all_options() -> dict[str, tuple[ArchOption, list[str]]]:
    """Every option key of every architecture, with the architectures that take it."""
    out: dict[str, tuple[ArchOption, list[str]]] = {}
    for name in arch_names():
        for option in arch_entry(name).options:
            out.setdefault(option.key, (option, []))[1].append(name)
    return out
