"""The model side: the same steps on a modelled arm64 machine, observed the way the module observes the kernel.

One ``ModelBoot`` per guest boot: the machine boots with the guest's ``rodata=``, one CPU, the guest's RAM
ranges and its kernel image's section addresses (a ``BootRecord``: inputs the real boot decided), and runs
the experiments of that boot in the same order, so the die counter ("[#N]") advances as the kernel's does.
Where the guest allocated pages (vmalloc(), alloc_page()), the model maps the very same page frames, so the
linear aliases have the same addresses on both sides; a model-only experiment takes its pages from the
model's own allocator.

Everything goes through ``rofolio.machine`` (the layer rule); the model has no TLB, so the flush the guest
does after each set_direct_map_*_noflush() has nothing to change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rofolio.errors import RofolioError
from rofolio.events import Fault, KernelWarning
from rofolio.machine import BootRecord, Machine, MachineSpec
from rofolio.oracle.arm64run.suite import ALLOC_VERBS, STATE_VERBS, Step
from rofolio.units import PAGE_SIZE, Level

__all__ = ["ADDR_MASK", "LeafState", "ModelBoot", "Observation", "leaf_from_desc"]

# PTE_ADDR_LOW for 4K pages (arch/arm64/include/asm/pgtable-hwdef.h): output address bits [49:12]
ADDR_MASK = ((1 << 50) - 1) & ~(PAGE_SIZE - 1)
_LEVELS = {Level.PTE: "pte", Level.PMD: "pmd", Level.PUD: "pud"}
MAPPINGS = {"vm": "vmalloc", "lm": "linear map"}


@dataclass(frozen=True)
class LeafState:
    """A leaf as both sides report it: its level ("none" where a table level above has no entry), the
    descriptor without its output address, and the page frame it maps (None for an empty entry)."""

    level: str
    attrs: int
    pfn: int | None

    @property
    def valid(self) -> bool:
        return bool(self.attrs & 1)

    @property
    def read_only(self) -> bool:
        """PTE_RDONLY (AP[2], bit 7) set and PTE_WRITE (DBM, bit 51) clear."""
        return bool(self.attrs & (1 << 7)) and not self.attrs & (1 << 51)

    def describe(self) -> str:
        if self.level == "none":
            return "none"
        if not self.attrs:
            return f"{self.level} empty"
        state = ("RO" if self.read_only else "RW") if self.valid else "invalid"
        where = f" pfn {self.pfn:#x}" if self.pfn is not None else ""
        return f"{self.level} {state} {self.attrs:#018x}{where}"


def leaf_from_desc(level: str, desc: int) -> LeafState:
    """The LeafState of a raw descriptor the module printed."""
    if level == "none" or not desc:
        return LeafState(level, 0, None)
    return LeafState(level, desc & ~ADDR_MASK, (desc & ADDR_MASK) >> 12)


@dataclass
class Observation:
    """What one step did, on one side (kernel or model): only the fields the step's verb fills."""

    ret: int | None = None  # set_memory_*() / set_direct_map_*() / a _nofault write / a peek's read
    read: int | None = None  # a probe's copy_from_kernel_nofault()
    value: int | None = None  # the byte a load or peek read
    faulted: bool | None = None  # a plain store or load: oopsed (True) or went through (False)
    va: int | None = None  # the address accessed or changed
    oops: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    leaves: dict[str, LeafState] = field(default_factory=dict)  # "i:vm", "i:lm", "guard" after the step
    pfns: list[int] = field(default_factory=list)  # the pages an allocation step got
    error: str = ""


@dataclass
class _Slot:
    kind: str
    va: int
    pfns: list[int]


class ModelBoot:
    """A modelled machine that follows one guest boot (or runs one model-only experiment)."""

    def __init__(self, rodata: str, *, kernel: str = "7.2", ram: list[tuple[int, int]] | None = None,
                 image: dict[str, int] | None = None, mem: str = "1G", options: dict[str, Any] | None = None,
                 source: str = "guest") -> None:
        spec = MachineSpec.build(arch="arm64", mem=mem, kernel=kernel, cpus=1, rodata=rodata,
                                 **({"memory_map": tuple(ram)} if ram else {}), **(options or {}))
        record = BootRecord(image=tuple(sorted(image.items())), source=source) if image else None
        self.machine = Machine.boot(spec, record=record)
        self.machine.finish_boot()
        self.slots: dict[int, _Slot] = {}

    # ----------------------------------------------------------------- steps
    def run(self, step: Step, base: int, pfns: list[int] | None = None) -> Observation:
        """One step at module slot ``base + slot``; ``pfns``: the pages the guest's allocation got."""
        obs = Observation()
        s = base + step["slot"]
        m = self.machine
        result = None
        try:
            result = m.step(step.verb, lambda: self._do(step, s, obs, pfns))
        except (RofolioError, RuntimeError) as err:  # a ConfigError, or the model stopping like a kernel BUG()
            obs.error = f"the model stops: {err}"
        if result is not None:
            for event in result.events:
                if isinstance(event, KernelWarning):
                    obs.warnings.append(event.text)
                elif isinstance(event, Fault) and event.text:
                    obs.oops = event.text.splitlines()
        if step.verb in STATE_VERBS and s in self.slots:
            obs.leaves = self.leaves(s)
        return obs

    def _do(self, step: Step, s: int, obs: Observation, pfns: list[int] | None) -> int:
        m = self.machine
        verb = step.verb
        if verb in ALLOC_VERBS:
            count = step.args.get("pages", 1)
            if verb == "image" and pfns is None:
                raise RofolioError("a model-only experiment cannot name a kernel image page",
                                   "take the page from a guest boot")
            got = list(pfns) if pfns is not None else self._alloc(count)
            if len(got) != count:
                raise RofolioError(f"{verb}: the guest reported {len(got)} pages, not {count}")
            if verb in ("page", "image"):
                va = m.page_address(got[0])
            elif verb == "vmap":
                va = m.vmap(got)
            else:
                va = m.vmalloc(got, huge=verb == "vmalloc_huge")
            self.slots[s] = _Slot(verb, va, got)
            obs.pfns, obs.va = got, va
            return 0
        slot = self.slots[s]
        off = step["off"]
        if verb in ("set_memory_ro", "set_memory_rw"):
            obs.va = slot.va + off * PAGE_SIZE + step["delta"]
            obs.ret = m.set_memory(verb, obs.va, step["pages"])
            return obs.ret
        if verb in ("set_direct_map_invalid", "set_direct_map_default"):
            obs.va = m.page_address(slot.pfns[off])
            obs.ret = m.set_direct_map(f"{verb}_noflush", slot.pfns[off])
            return obs.ret
        va = self.address(s, off, step["via"])
        obs.va = va
        mapping = MAPPINGS[step["via"]]
        if verb == "store":
            ret, _pfn = m.alias_write(va, step["value"], mapping)
            obs.faulted = ret != 0
            return ret
        if verb == "load":
            ret, value = m.kernel_load(va, mapping=mapping)
            obs.faulted, obs.value = ret != 0, value
            return ret
        if verb == "peek":
            ret, value = m.kernel_load(va, probe=True, mapping=mapping)
            obs.ret, obs.value = ret, (value if ret == 0 else 0)
            return ret
        # probe: copy_from_kernel_nofault(), then copy_to_kernel_nofault() of the same byte back
        obs.read = m.kernel_load(va, probe=True, mapping=mapping)[0]
        obs.ret = m.kernel_store(va, probe=True, mapping=mapping).ret
        return obs.ret

    def _alloc(self, count: int) -> list[int]:
        out = []
        for _ in range(count):
            folio = self.machine.alloc_folio("kernel", 0, label="arm64run", zero=True)
            if folio is None:
                raise RofolioError("the model's page allocator has no page left")
            out.append(int(folio.pfn))
        return out

    # --------------------------------------------------------------- queries
    def address(self, s: int, off: int, via: str) -> int:
        slot = self.slots[s]
        return self.machine.page_address(slot.pfns[off]) if via == "lm" else slot.va + off * PAGE_SIZE

    def leaf(self, va: int) -> LeafState:
        found = self.machine.lookup(va)
        if found is None:
            return LeafState("none", 0, None)
        if not found.flags:
            return LeafState(_LEVELS[found.level], 0, None)
        return LeafState(_LEVELS[found.level], found.flags, int(found.pfn))

    def leaves(self, s: int) -> dict[str, LeafState]:
        slot = self.slots[s]
        out = {}
        for i in range(len(slot.pfns)):
            out[f"{i}:vm"] = self.leaf(self.address(s, i, "vm"))
            out[f"{i}:lm"] = self.leaf(self.address(s, i, "lm"))
        if slot.kind not in ("page", "image"):
            out["guard"] = self.leaf(slot.va + len(slot.pfns) * PAGE_SIZE)
        return out

    def can_set_direct_map(self) -> bool:
        return self.machine.can_set_direct_map()
