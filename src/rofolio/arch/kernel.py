"""What every architecture's kernel shares, and what generic code may ask of it.

``ArchKernel`` is the handful of entry points the real kernel's generic code uses (the direct-map address of
a page, the ``set_direct_map_*`` helpers, a kernel TLB flush, DEBUG_PAGEALLOC's ``__kernel_map_pages()``,
``arch_make_folio_readonly()`` and its inverse); ``KernelState`` is the base of every arch kernel (its boot
phase, its warnings, kernel stores and loads checked against the page table); ``LeafLookup`` is what
lookup_address() finds.  ``rofolio.arch`` re-exports them; they live here so that reading the registry (the
architectures' names and options, for ``rofolio run --help``) does not load the event log and the page table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from rofolio.errors import AddressError, Errno
from rofolio.events import (
    Call,
    EventLog,
    Fault,
    KernelWarning,
    PgtableAlloc,
    PgtableAllocFailed,
    Phase,
    PhaseChange,
    Return,
)
from rofolio.pagetable import EntryState
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level, Pfn, PhysAddr, VirtAddr

if TYPE_CHECKING:
    from rofolio.pagetable import PageTable
    from rofolio.physmem import MemoryMap

__all__ = ["ArchKernel", "KernelState", "LeafLookup", "WriteOutcome"]


@dataclass(frozen=True, slots=True)
class LeafLookup:
    """What lookup_address() finds for an address: the leaf's level, its entry's flags (0 for a none entry)
    and the page it maps.  Each architecture says which of its bits mean present and writable."""

    level: Level
    flags: int
    pfn: int

    @property
    def present(self) -> bool:
        raise NotImplementedError

    @property
    def writable(self) -> bool:
        raise NotImplementedError

    @property
    def read_only(self) -> bool:
        return not self.writable


# mm/kfence/core.c: the pool is (CONFIG_KFENCE_NUM_OBJECTS + 1) * 2 pages, 2 MiB with the default 255 objects
KFENCE_POOL_SIZE = 2 << 20


def kfence_guard_pages() -> list[int]:
    """Page indices of the pool kfence_init_pool() (mm/kfence/core.c) protects: the first two pages, then each
    object's right guard page (3, 5, ...)."""
    return [0, 1, *range(3, KFENCE_POOL_SIZE >> PAGE_SHIFT, 2)]


class KernelState:
    """What every arch kernel keeps about the running kernel: its boot phase and the warnings it printed.

    ``system_state`` (include/linux/kernel.h) gates rules such as the vmstat split counters;
    ``WARN_ON_ONCE()`` prints once per call site per boot.
    """

    log: EventLog
    pt: PageTable
    phase: Phase
    _warned_once: set[str]
    LOOKUP: ClassVar[type[LeafLookup]]  # how this architecture reads a leaf entry (lookup_address())
    pgtable_alloc_fail: bool = False  # a machine option: allocations of page-table pages fail
    kfence_pool: int | None = None  # __pa(__kfence_pool), where the architecture keeps a pool

    @property
    def running(self) -> bool:
        return self.phase == Phase.RUNNING

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.log.append(PhaseChange(phase))

    def warn(self, text: str) -> None:
        self.log.append(KernelWarning(text))

    def warn_once(self, text: str, site: str | None = None) -> None:
        """WARN_ON_ONCE(): once per call site per boot.  ``site`` names the call site where the text varies
        between calls; otherwise the text itself does."""
        key = text if site is None else site
        if key not in self._warned_once:
            self._warned_once.add(key)
            self.warn(text)

    def direct_map_coverage(self) -> dict[Level, int]:
        """Bytes of the direct map per leaf level, as x86's cpa-test.c print_split() walks it."""
        out = {Level.PTE: 0, Level.PMD: 0, Level.PUD: 0}
        lo, hi = self.direct_map_bounds()  # type: ignore[attr-defined]
        for run in self.pt.runs(lo, hi):
            out[run.level] = out.get(run.level, 0) + min(run.end, hi) - max(run.start, lo)
        return out

    def alloc_pgtable_page(self, level: Level) -> bool:
        """A page-table page for entries of ``level`` (x86: alloc_pages(GFP_KERNEL, 0); arm64:
        pagetable_alloc()); False when the allocation fails."""
        if self.pgtable_alloc_fail:
            self.log.append(PgtableAllocFailed(level))
            return False
        self.log.append(PgtableAlloc(level))
        return True

    def _call(self, func: str, addr: int, numpages: int, body: Callable[[], int]) -> int:
        """An entry point as the event log records it: the call, what it did, its return value."""
        self.check_call_range(addr, numpages)
        self.log.add(Call, func, addr, numpages)
        ret = body()
        self.log.add(Return, func, ret)
        return ret

    def check_call_range(self, addr: int, numpages: int) -> None:
        """Refuse (AddressError) a request the model cannot honour before it runs; an architecture that can tell
        overrides it."""

    def alloc_missing_tables(self, start: int, end: int, levels: tuple[Level, ...]) -> None:
        """The tables a new mapping of ``[start, end)`` allocates: one below each empty region of ``levels``."""
        for level in levels:
            new = self.pt.empty_regions(start, end, level)
            if new:
                self.log.append(PgtableAlloc(Level(level - 1), new))

    def can_set_direct_map(self) -> bool:
        """can_set_direct_map(): the generic answer is yes (include/linux/set_memory.h); arm64 overrides it."""
        return True

    # ------------------------------------------------------ the direct map
    def va(self, pa: PhysAddr) -> VirtAddr:
        """__va(): the direct-map (linear-map) address of a physical address."""
        return self.layout.va(pa)  # type: ignore[attr-defined, no-any-return]

    def pa(self, va: VirtAddr) -> PhysAddr:
        """__pa() of a direct-map address."""
        return self.layout.pa(va)  # type: ignore[attr-defined, no-any-return]

    def page_address(self, pfn: Pfn) -> VirtAddr:
        """page_address(): the direct-map address of a page."""
        return self.va(pfn << PAGE_SHIFT)

    def direct_map_bounds(self) -> tuple[VirtAddr, VirtAddr]:
        """[__va() of the first RAM byte, __va() of the end of the last RAM range)."""
        ram = self.memory.ram  # type: ignore[attr-defined]
        return self.va(ram[0].start), self.va(ram[-1].end)

    def lookup_address(self, va: VirtAddr) -> Any | None:
        """lookup_address(): the leaf mapping ``va`` and its level, as the architecture's ``LOOKUP`` reads it; None
        if an upper level is none.  A none PTE inside an existing PTE table comes back at 4K with flags 0: x86's
        lookup_address_in_pgd_attr() returns the last level without a present test, and arm64's and riscv's
        kernel_page_present(), which do test it, read flags 0 as not present.  A PMD that is a table implies
        the levels above are tables."""
        run = self.pt.run_at(va)
        if run is not None:
            return self.LOOKUP(run.level, run.flags, run.pfn_at(va & run.level.mask))
        if self.pt.entry_state(va, Level.PMD) == EntryState.TABLE:
            return self.LOOKUP(Level.PTE, 0, 0)
        return None

    def lookup(self, va: VirtAddr) -> Any | None:
        """lookup_address() under its short name."""
        return self.lookup_address(va)

    def is_kfence_address(self, va: VirtAddr) -> bool:
        """is_kfence_address(): inside the KFENCE pool's direct-map range."""
        if self.kfence_pool is None:
            return False
        start = self.va(self.kfence_pool)
        return start <= va < start + KFENCE_POOL_SIZE

    def find_vm_area(self, addr: VirtAddr) -> Any | None:
        """find_vm_area(): the vmalloc area whose [addr, addr + size) holds ``addr``."""
        return next((a for a in self.vm_areas if a.addr <= addr < a.addr + a.size), None)  # type: ignore[attr-defined]

    def _ram_page(self, pfn: Pfn, nr: int = 1) -> VirtAddr:
        """page_address(pfn), refusing pages that are not all RAM of this machine.

        ``nr`` may be 0 (a call over no pages still names a struct page: the page itself must be RAM); what
        the callee does with an empty range is its own rule (riscv's __set_memory() returns 0, arm64's
        pageattr walk -EINVAL)."""
        pa = pfn << PAGE_SHIFT
        if nr < 0 or not self.memory.is_ram(pa, pa + max(nr, 1) * PAGE_SIZE):  # type: ignore[attr-defined]
            raise AddressError(f"pfn {pfn:#x} (+{nr}) is not RAM on this machine",
                               "give pages inside a RAM range of the memory map")
        return self.page_address(pfn)

    def in_direct_map(self, va: VirtAddr) -> bool:
        """Is ``va`` inside [direct_map_bounds())?"""
        lo, hi = self.direct_map_bounds()  # type: ignore[attr-defined]
        return bool(lo <= va < hi)

    def direct_map_writable(self, pfn: Pfn) -> bool:
        """Would a CPU store through page_address(pfn) land: the leaf lookup_address() finds is writable."""
        found = self.lookup_address(self.page_address(pfn))  # type: ignore[attr-defined]
        return bool(found and found.writable)

    def direct_map_present(self, pfn: Pfn) -> bool:
        """Would a CPU access through page_address(pfn) find a present leaf?"""
        found = self.lookup_address(self.page_address(pfn))  # type: ignore[attr-defined]
        return bool(found and found.present)

    # ----------------------------------------------------------- faults
    def oops_text(self, addr: VirtAddr, write: bool, present: bool, number: int, found: Any) -> str:
        """The first lines the kernel prints when a kernel-mode access to ``addr`` faults.

        ``found`` is the leaf lookup_address() gives for ``addr`` (or None).  An
        architecture overrides this with its own fault report; this generic text
        names the access, the address and why it failed.
        """
        access = "write" if write else "read"
        return (f"Unable to handle kernel {access} at virtual address {addr:016x} "
                f"({'read-only' if present else 'not present'}) [#{number}]")

    def store_landed(self, addr: VirtAddr) -> None:
        """What the MMU does to the leaf entry when a CPU store through it lands: nothing here; x86 sets
        the Dirty bit."""

    def has_transparent_hugepage(self) -> bool:
        """has_transparent_hugepage(): the generic answer (include/linux/pgtable.h) is whether
        CONFIG_TRANSPARENT_HUGEPAGE is built in, as in every modelled kernel; arm64 keeps it, x86 asks the CPU."""
        return True

    def kernel_store(self, addr: VirtAddr, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
        """A supervisor store of one byte at ``addr``, checked against the kernel page table now.

        A present, writable leaf takes it.  Otherwise it faults: a plain store
        oopses the writing task; ``probe`` is copy_to_kernel_nofault()
        (mm/maccess.c), which returns -EFAULT and prints nothing.
        """
        found = self.lookup_address(addr)  # type: ignore[attr-defined]
        if found is not None and found.present and found.writable:
            self.store_landed(addr)
            return WriteOutcome(True, None)
        present = found is not None and found.present
        reason = "permissions violation" if present else "not-present page"
        text = "" if probe else self.oops_text(addr, True, present, self.log.counters.oopses + 1, found)
        fault = Fault(addr, "write", reason, mapping, text)
        self.log.append(fault)
        return WriteOutcome(False, fault)

    def kernel_load(self, addr: VirtAddr, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
        """A supervisor load of one byte at ``addr``: a present leaf gives it (read-only or not); otherwise it
        faults, and a plain load oopses the reading task (``probe`` is copy_from_kernel_nofault(): -EFAULT)."""
        found = self.lookup_address(addr)  # type: ignore[attr-defined]
        if found is not None and found.present:
            return WriteOutcome(True, None)
        text = "" if probe else self.oops_text(addr, False, False, self.log.counters.oopses + 1, found)
        fault = Fault(addr, "read", "not-present page", mapping, text)
        self.log.append(fault)
        return WriteOutcome(False, fault)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a kernel store (or load) did: it landed, or it faulted (and how)."""

    ok: bool
    fault: Fault | None

    @property
    def ret(self) -> int:
        return 0 if self.ok else -Errno.EFAULT


@runtime_checkable
class ArchKernel(Protocol):
    """What generic MM code may ask of an architecture's direct map."""

    arch: str
    log: EventLog
    phase: Phase

    @property
    def memory(self) -> MemoryMap:
        """The physical memory map the machine booted with."""
        ...

    @property
    def debug_pagealloc(self) -> bool:
        """debug_pagealloc=on: the direct map was built with 4K pages so the buddy can unmap what it frees."""
        ...

    def set_phase(self, phase: Phase) -> None: ...

    def warn_once(self, text: str, site: str | None = None) -> None:
        """WARN_ON_ONCE(): once per call site per boot (``site`` where the text varies, else the text)."""
        ...

    def page_address(self, pfn: Pfn) -> VirtAddr:
        """page_address(): the direct-map (linear-map) address of a page."""
        ...

    def va(self, pa: PhysAddr) -> VirtAddr:
        """__va(): the direct-map address of a physical address."""
        ...

    def pa(self, va: VirtAddr) -> PhysAddr:
        """__pa() of a direct-map address."""
        ...

    def in_direct_map(self, va: VirtAddr) -> bool:
        """Is ``va`` inside the mapped part of the direct (linear) map?"""
        ...

    def direct_map_bounds(self) -> tuple[VirtAddr, VirtAddr]:
        """[start, end) of the direct map's virtual addresses that map RAM."""
        ...

    def lookup_address(self, va: VirtAddr) -> Any | None:
        """The leaf for ``va`` (with level, flags, pfn, present, writable), or None."""
        ...

    def oops_text(self, addr: VirtAddr, write: bool, present: bool, number: int, found: Any) -> str:
        """The fault report a kernel-mode access to ``addr`` prints (KernelState has a generic one)."""
        ...

    def store_landed(self, addr: VirtAddr) -> None:
        """A CPU store through the leaf for ``addr`` landed: what the MMU sets in the entry (x86: Dirty)."""
        ...

    def has_transparent_hugepage(self) -> bool:
        """Can this machine map transparent huge pages at all (hugepage_init() gives up without)?"""
        ...

    def kernel_store(self, addr: VirtAddr, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
        """A supervisor store at ``addr``: lands, or faults (KernelState implements it)."""
        ...

    def kernel_load(self, addr: VirtAddr, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
        """A supervisor load at ``addr``: succeeds, or faults (KernelState implements it)."""
        ...

    def vmap(self, pfns: list[int]) -> VirtAddr:
        """vmap(): map the pages at a new vmalloc address (an alias of their direct-map pages)."""
        ...

    def arch_make_folio_readonly(self, pfn: Pfn, nr_pages: int) -> int:
        """Make the direct-map alias of ``nr_pages`` pages from ``pfn`` read-only; 0 or -errno.

        -EOPNOTSUPP means the architecture (or this machine) cannot do it: the
        RFC's best-effort contract keeps the folio writable then.
        """
        ...

    def arch_make_folio_writable(self, pfn: Pfn, nr_pages: int) -> int:
        """Undo arch_make_folio_readonly(): the direct-map alias is writable again; 0 or -errno."""
        ...

    def set_direct_map_invalid_noflush(self, pfn: Pfn) -> int: ...

    def set_direct_map_default_noflush(self, pfn: Pfn) -> int: ...

    def set_direct_map_valid_noflush(self, pfn: Pfn, nr: int, valid: bool) -> int:
        """``nr`` pages out of the direct map (valid False) or back.  Despite the name, only x86 leaves the TLB
        alone (a split still flushes); riscv's __set_memory() ends with flush_tlb_all(), and arm64's
        set_memory_valid() flushes the range when it invalidates."""
        ...

    def flush_tlb_kernel_range(self, start: VirtAddr, end: VirtAddr, reason: str) -> None: ...

    def kernel_map_pages(self, pfn: Pfn, numpages: int, enable: bool) -> None:
        """__kernel_map_pages() under DEBUG_PAGEALLOC: unmap on free, map again on allocation."""
        ...

    def direct_map_writable(self, pfn: Pfn) -> bool:
        """Would a CPU store through page_address(pfn) succeed now (present and writable)?"""
        ...

    def direct_map_present(self, pfn: Pfn) -> bool: ...
