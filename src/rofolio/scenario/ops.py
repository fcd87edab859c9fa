"""What each scenario step does to a machine: one small function per op.

A handler gets the run's ``Context`` (the machine and the names earlier steps
gave to folios, mappings, processes and regions) and the step; it performs the
operation through the kernel-like API of the machine and returns the
operation's result (0 or a negative errno) and, where the step has one, the
kernel address whose leaf the report should show afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rofolio.errors import Errno, ScenarioError
from rofolio.machine import Folio, Machine, MmStruct
from rofolio.scenario import schema
from rofolio.units import PAGE_SHIFT, PAGE_SIZE

__all__ = ["HANDLERS", "Context", "Handler", "Result"]



@dataclass
class Context:
    machine: Machine
    folios: dict[str, Folio] = field(default_factory=dict)
    mappings: dict[str, int] = field(default_factory=dict)
    processes: dict[str, MmStruct] = field(default_factory=dict)
    regions: dict[str, tuple[MmStruct, int]] = field(default_factory=dict)
    note: str = ""  # what the last step found out (the page GUP returned, the value a read saw)

    def folio(self, name: str, freed_ok: bool = False) -> Folio:
        """The folio a step names; a freed one only where the kernel lets it through (``freed_ok``: a put)."""
        if name == "huge_zero_folio":
            folio = self.machine.huge_zero_folio
        elif name == "zero_page":
            folio = self.machine.zero_page
        else:
            folio = self.folios.get(name)
        if folio is None:
            if name == "huge_zero_folio":  # mm/huge_memory.c: allocated at init only when it is persistent
                persistent = self.machine.spec.mm.persistent_huge_zero_folio
                hint = ("hugepage_init allocates it (or the first read fault of a huge page)" if persistent else
                        "hugepage_init allocates it only with [mm] persistent_huge_zero_folio = true; else the "
                        "first read fault of a huge page does (a read or touch step of an mmap region)")
            else:
                hint = "an alloc step names it (name = ...); it may have failed"
            raise ScenarioError(f"folio {name!r} does not exist at this step", hint, key="folio")
        if not freed_ok and self.machine.folio_freed(folio):
            raise ScenarioError(f"folio {name!r} has been freed: an earlier step put its last reference "
                                "(a free, an exit, a migration)", "use a folio that is still allocated; "
                                "a use after free is not something the model can run", key="folio")
        return folio

    def process(self, name: str) -> MmStruct:
        """The process a step names; one that has exited cannot be used again."""
        mms = self.processes[name]
        if not self.machine.alive(mms):
            raise ScenarioError(f"process {name!r} has exited: an earlier exit step ended it",
                                "start another with a process step", key="process")
        return mms

    def region(self, name: str) -> tuple[MmStruct, int]:
        """The mapping a step names, in a process that is still alive."""
        mms, start = self.regions[name]
        if not self.machine.alive(mms):
            owner = next((n for n, p in self.processes.items() if p is mms), "?")
            raise ScenarioError(f"region {name!r} belongs to process {owner!r}, which has exited",
                                "its mappings went away with exit_mmap()", key="region")
        return mms, start

    def target_va(self, step: Any) -> int:
        m = self.machine
        if step.pa is not None:
            base = m.va(step.pa)
        elif step.va is not None:
            base = step.va
        elif step.mapping is not None:
            base = self.mappings[step.mapping]
        else:
            base = m.page_address(self.folio(step.folio).pfn)
        # not rounded: an unaligned pa or va reaches the kernel as written, which WARNs and rounds it down
        # (change_page_attr_set_clr(), arm64 change_memory_common())
        return base + step.offset * PAGE_SIZE


Result = tuple[int, int | None]
Handler = Callable[[Context, Any], Result]


def _past_the_folio(ctx: Context, step: Any, pages: int, done: str) -> None:
    """Say so when a step aimed at a folio reaches past its end: the kernel takes the neighbours as asked."""
    if step.folio is None or step.pa is not None or step.va is not None or step.mapping is not None:
        return
    nr, first, last = ctx.folio(step.folio).nr_pages, step.offset, step.offset + pages - 1
    if last >= nr:
        what = f"page {first}" if first == last else f"pages {first} to {last}"
        past = last + 1 - max(first, nr)
        ctx.note = (f"{what} of folio {step.folio!r}, which has {nr}: {past} page{'s' if past > 1 else ''} past "
                    f"its end {done} as well")


def set_memory(ctx: Context, step: schema.SetMemory) -> Result:
    va = ctx.target_va(step)
    _past_the_folio(ctx, step, step.pages, "changed")
    return ctx.machine.set_memory(step.op, va, step.pages), va


def set_direct_map(ctx: Context, step: schema.SetDirectMap) -> Result:
    m = ctx.machine
    va = ctx.target_va(step)
    return m.set_direct_map(step.op, m.pa(va) >> PAGE_SHIFT), va


def vmap(ctx: Context, step: schema.Vmap) -> Result:
    m = ctx.machine
    pfn = m.pa(ctx.target_va(step)) >> PAGE_SHIFT
    _past_the_folio(ctx, step, step.pages, "mapped")
    ctx.mappings[step.as_] = m.vmap([pfn + i for i in range(step.pages)])
    return 0, ctx.mappings[step.as_]


def write(ctx: Context, step: schema.Write) -> Result:
    m = ctx.machine
    va = ctx.target_va(step)
    direct = m.in_direct_map(va)
    if step.via == "dma":  # no CPU page table: nothing can refuse it
        if not direct:
            raise ScenarioError("a DMA write needs a physical page", "give pa or folio")
        ctx.note = f"a device wrote pfn {m.pa(va) >> PAGE_SHIFT:#x} by DMA: no CPU page table is checked"
        return m.dma_write(m.pa(va) >> PAGE_SHIFT, step.value), va
    if direct and not step.probe:
        pfn = m.pa(va) >> PAGE_SHIFT
        if step.via == "kernel":  # an MM path: the lifetime policy sees it first, contents are recorded
            ret = m.kernel_write(pfn, step.value, "kernel_write")
        else:
            ret = m.direct_map_write(pfn, step.value, "cpu store")  # only page tables
        if ret == 0:
            ctx.note = f"landed in pfn {pfn:#x} through the direct map"
        return ret, va
    mapping = f"vmalloc alias {step.mapping!r}" if step.mapping and not direct else m.mapping_name(va)
    ret, pfn = m.alias_write(va, step.value, mapping, probe=step.probe)
    if pfn is not None:  # the store landed in the page behind this mapping
        ctx.note = f"landed in pfn {pfn:#x} through the {mapping}"
    return ret, va


def phase(ctx: Context, step: schema.Phase) -> Result:
    ctx.machine.finish_boot()
    return 0, None


def pgtable_alloc_fail(ctx: Context, step: schema.PgtableAllocFail) -> Result:
    ctx.machine.pgtable_alloc_fail(step.fail)
    return 0, None


def snapshot(ctx: Context, step: schema.Snapshot) -> Result:
    return 0, None


def _node(ctx: Context, nid: int, key: str) -> int:
    """A node a step names, which this machine must have."""
    nodes = ctx.machine.nr_nodes
    if nid >= nodes:
        raise ScenarioError(f"{key} = {nid}, but this machine has {nodes} NUMA node{'s' if nodes > 1 else ''}",
                            "give [mm] nodes = 2 for a second node" if nodes == 1 else f"give 0 to {nodes - 1}",
                            key=key)
    return nid


def alloc(ctx: Context, step: schema.Alloc) -> Result:
    _node(ctx, step.node, "node")
    folio = ctx.machine.alloc_folio(step.gfp, step.order, step.node, label=step.as_, zero=step.zero,
                                    compound=step.order > 0)
    if folio is None:
        return -Errno.ENOMEM, None
    ctx.folios[step.as_] = folio
    return 0, ctx.machine.page_address(folio.pfn)


def make_readonly(ctx: Context, step: schema.MakeReadonly) -> Result:
    folio = ctx.folio(step.folio)
    return ctx.machine.make_readonly(folio, "scenario"), ctx.machine.page_address(folio.pfn)


def restore_writable(ctx: Context, step: schema.RestoreWritable) -> Result:
    folio = ctx.folio(step.folio)
    return ctx.machine.restore_writable(folio, "scenario"), ctx.machine.page_address(folio.pfn)


def free(ctx: Context, step: schema.Free) -> Result:
    folio = ctx.folio(step.folio, freed_ok=True)  # a double free: the kernel reports a bad page and carries on
    if folio.reserved:
        raise ScenarioError(f"folio {step.folio!r} is a reserved page ({folio.label}): nothing frees it, and a "
                            "put of it is not modelled", "free a folio an alloc step made", key="folio")
    return ctx.machine.folio_put(folio, "folio_put"), ctx.machine.page_address(folio.pfn)


def migrate_step(ctx: Context, step: schema.Migrate) -> Result:
    folio = ctx.folio(step.folio)
    ret, dst = ctx.machine.migrate(folio, _node(ctx, step.to_node, "to_node"))
    if dst is not None and step.as_:
        ctx.folios[step.as_] = dst
    return ret, ctx.machine.page_address((dst or folio).pfn)


def pin(ctx: Context, step: schema.Pin) -> Result:
    folio = ctx.machine.pin(ctx.folio(step.folio), step.longterm)
    if folio is None:
        return -Errno.ENOMEM, None
    if step.as_:
        ctx.folios[step.as_] = folio
    return 0, ctx.machine.page_address(folio.pfn)


def offline(ctx: Context, step: schema.Offline) -> Result:
    va = ctx.target_va(step)
    return ctx.machine.offline(ctx.machine.pa(va)), va


def compact(ctx: Context, step: schema.Compact) -> Result:
    ctx.machine.compact()
    return 0, None


def shrink(ctx: Context, step: schema.Shrink) -> Result:
    ctx.machine.shrink()
    return 0, None


def hugepage_init(ctx: Context, step: schema.HugepageInit) -> Result:
    ret = ctx.machine.run_initcalls()
    folio = ctx.machine.huge_zero_folio
    return ret, ctx.machine.page_address(folio.pfn) if folio is not None else None


def process(ctx: Context, step: schema.Process) -> Result:
    ctx.processes[step.as_] = ctx.machine.process()
    return 0, None


def mmap(ctx: Context, step: schema.Mmap) -> Result:
    mms = ctx.process(step.process)
    file = ctx.folio(step.file) if step.file is not None else None  # MAP_PRIVATE of one page-cache page
    start = ctx.machine.mmap(mms, step.length, write=step.prot_write, hugepage=step.hugepage, file=file)
    ctx.regions[step.as_] = (mms, start)
    return 0, None


def touch(ctx: Context, step: schema.Touch) -> Result:
    m = ctx.machine
    mms, start = ctx.region(step.region)
    addr = start + step.offset
    if step.write:
        pfn = m.user_write(mms, addr, step.value)  # the pfn written, or -EFAULT if the fault killed the task
        ret = min(pfn, 0)
    else:
        value = m.user_read(mms, addr)
        ret = 0 if value >= 0 else value
    folio = m.folio_at(mms, addr)
    if step.as_ and folio is not None:
        ctx.folios[step.as_] = folio
    return ret, m.page_address(folio.pfn) if folio is not None else None


def exit_process(ctx: Context, step: schema.Exit) -> Result:
    ctx.machine.exit(ctx.process(step.process))
    return 0, None


def file(ctx: Context, step: schema.File) -> Result:
    folio = ctx.machine.file_page(step.value, label=f"page cache of {step.as_}")
    if folio is None:
        return -Errno.ENOMEM, None
    ctx.folios[step.as_] = folio
    return 0, ctx.machine.page_address(folio.pfn)


def secretmem(ctx: Context, step: schema.Secretmem) -> Result:
    ret, folio = ctx.machine.secretmem_folio()
    if folio is None:
        return ret, None
    ctx.folios[step.as_] = folio
    return ret, ctx.machine.page_address(folio.pfn)


def gup_step(ctx: Context, step: schema.Gup) -> Result:
    mms, start = ctx.region(step.region)
    result = ctx.machine.gup(mms, start + step.offset, frozenset(step.flags), step.rules, step.race)
    if result.folio is None:
        ctx.note = result.how
        return result.ret, None
    ctx.note = f"got {_folio_name(ctx, result.folio)} ({result.how})" + (", pinned" if result.pinned else "")
    ctx.folios[step.as_] = result.folio
    return result.ret, ctx.machine.page_address(result.pfn)


def pipe_write(ctx: Context, step: schema.PipeWrite) -> Result:
    """Dirty Pipe: with a stale CAN_MERGE the write is copied into the page-cache page (kmap: the direct map)."""
    folio = ctx.folio(step.folio)
    if not step.stale_can_merge:  # pipe_write() allocates a fresh pipe buffer page instead
        ctx.note = "the data went to a new pipe buffer page"
        return 0, None
    ctx.note = "merged into the page-cache page through kmap_local_page()"
    return ctx.machine.direct_map_write(folio.pfn, step.value, "pipe_write"), ctx.machine.page_address(folio.pfn)


def pin_many(ctx: Context, step: schema.PinMany) -> Result:
    folio = ctx.folio(step.folio)
    taken, ctx.note = ctx.machine.pin_many(folio, step.count, step.rules)
    return 0 if taken == step.count else -Errno.ENOMEM, ctx.machine.page_address(folio.pfn)


def read(ctx: Context, step: schema.Read) -> Result:
    mms, start = ctx.region(step.region)
    value = ctx.machine.user_read(mms, start + step.offset)
    ctx.note = f"read {value:#x}"
    return 0, None


def _folio_name(ctx: Context, folio: Folio) -> str:
    if folio is ctx.machine.huge_zero_folio:
        return "the huge zero folio"
    if folio is ctx.machine.zero_page:
        return "the zero page"
    named = [name for name, f in ctx.folios.items() if f is folio]
    return named[0] if named else folio.label or f"folio {folio.pfn:#x}"


HANDLERS: dict[type, Handler] = {
    schema.SetMemory: set_memory, schema.SetDirectMap: set_direct_map, schema.Vmap: vmap, schema.Write: write,
    schema.Phase: phase, schema.PgtableAllocFail: pgtable_alloc_fail, schema.Snapshot: snapshot,
    schema.Alloc: alloc, schema.MakeReadonly: make_readonly, schema.RestoreWritable: restore_writable,
    schema.Free: free, schema.Migrate: migrate_step, schema.Pin: pin, schema.Offline: offline,
    schema.Compact: compact, schema.Shrink: shrink, schema.HugepageInit: hugepage_init, schema.Process: process,
    schema.Mmap: mmap, schema.Touch: touch, schema.Exit: exit_process, schema.File: file,
    schema.Secretmem: secretmem, schema.Gup: gup_step,
    schema.PipeWrite: pipe_write, schema.PinMany: pin_many, schema.Read: read,
}
assert set(HANDLERS) == set(schema.STEP_TYPES), "every step type needs a handler"
