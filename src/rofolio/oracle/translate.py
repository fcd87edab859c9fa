"""From scenario steps to dmoracle commands, or a clear refusal.

A scenario acts on physical addresses; the module acts on pages it owns.  So
every page a scenario touches is taken first with ``alloc_contig_range()``
at exactly that physical address (``grabpa``), in as few slots as possible:
stretches closer than 4 MiB are taken together, so two takes never isolate the
same MAX_ORDER block.  The pages are never freed (a page left read-only must
not go back to the page allocator).  Steps then name (slot, page offset).

Pages of the kernel image cannot be taken.  On those, only changes that never
take access away run (``set_memory_rw/nx/x/4k`` through the module's ``pa``
command) and probes (read, then write the same byte back, both _nofault).

Step by step:

=====================================  =========================================================
``set_memory_{ro,rw,np,p,nx,x,4k,uc,   ``ro|rw|np|p|nx|x|4k|uc|wb|rox SLOT OFF N``; ``rox`` only on
wb,rox}``                              kernels that have set_memory_rox() (v6.2+)
``set_direct_map_*_noflush``           ``dminv|dmdef SLOT OFF``
``vmap``                               ``vmap NEWSLOT SLOT OFF N`` (vmap(), VM_MAP, PAGE_KERNEL)
``write``                              ``write SLOT OFF`` in a child shell (an oops kills the child)
``write`` with ``probe = true``        ``probe SLOT OFF``: copy_to_kernel_nofault()
``snapshot``                           ``scan`` of the whole direct map (compared as a change
                                       from a scan taken when the experiment starts)
``phase``, ``start = "initcalls"``     refused: the module loads into a running kernel
``pgtable_alloc_fail``                 refused: allocations cannot be made to fail from a module
``va`` outside the direct map          refused
=====================================  =========================================================

After every step the module scans the direct map over the step's pages,
widened to whole 2 MiB regions, so the comparison sees what a split did to the
neighbours; where those pages are also mapped by the high kernel map (the
image), that alias is scanned too; a step on a ``vmap`` mapping also reports
the level of its first and last page there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rofolio.arch.x86_64.image import KernelImage
from rofolio.kversion import SET_MEMORY_ROX, KernelVersion
from rofolio.oracle.errors import Refusal
from rofolio.oracle.guest import DIRECT_MAP, shell_quote_ok
from rofolio.scenario import schema
from rofolio.units import PAGE_SIZE, Level, align_down, align_up

__all__ = ["MAX_SLOTS", "Command", "Grab", "Plan", "kernel_series", "refusals", "translate"]

MAX_SLOTS = 64  # NSLOTS in dmoracle.c
GRAB_MERGE_GAP = 4 << 20  # MAX_ORDER_NR_PAGES << PAGE_SHIFT: alloc_contig_range() isolates whole blocks

OPS = {
    "set_memory_ro": "ro", "set_memory_rw": "rw", "set_memory_np": "np", "set_memory_p": "p",
    "set_memory_nx": "nx", "set_memory_x": "x", "set_memory_4k": "4k", "set_memory_uc": "uc",
    "set_memory_wb": "wb", "set_memory_rox": "rox",
    "set_direct_map_invalid_noflush": "dminv", "set_direct_map_default_noflush": "dmdef",
}
UNOWNED_OPS = ("set_memory_rw", "set_memory_nx", "set_memory_x", "set_memory_4k")
SET_MEMORY_ROX_SINCE = SET_MEMORY_ROX.mainline
VMALLOC_OPS = tuple(op for op in OPS if op.startswith("set_memory_"))
SUPPORTED = (schema.SetMemory, schema.SetDirectMap, schema.Vmap, schema.Write, schema.Snapshot)


@dataclass(frozen=True)
class Grab:
    slot: int
    pa: int
    pages: int

    def command(self) -> str:
        return f"grabpa {self.slot} {self.pa:#x} {self.pages}"


@dataclass
class Command:
    """One ``step`` line of /steps.sh."""

    id: str  # "<exp>.<n>" for scenario steps, "<exp>.g<n>" for takes, "<exp>.base" for the baseline scan
    command: str
    kind: str  # grab, baseline, set_memory, direct_map, vmap, write, probe, snapshot
    step: int | None = None  # the scenario step (1-based)
    queries: list[str] = field(default_factory=list)
    intervals: list[tuple[int, int]] = field(default_factory=list)  # direct-map pa ranges scanned after
    high_intervals: list[tuple[int, int]] = field(default_factory=list)  # high-map aliases scanned after
    mapping_levels: list[tuple[str, int, int]] = field(default_factory=list)  # (mapping, page offset, slot)
    target_pa: int | None = None  # the step's first page (physical)
    mapping: str | None = None  # the step acts through this vmap mapping
    mapping_offset: int = 0

    def line(self) -> str:
        parts = [self.id, self.command, *self.queries]
        return "step " + " ".join(f'"{p}"' for p in parts)


@dataclass
class Plan:
    """What one scenario becomes on the guest."""

    name: str
    exp: int
    scenario: schema.Scenario
    grabs: list[Grab]
    commands: list[Command]
    slots: int  # slots used, from the plan's slot base
    touched: list[tuple[int, int]]  # every physical range the experiment acts on (merged)

    def script(self) -> str:
        lines = [f'echo "=== EXP {self.exp} {self.name}"']
        lines += [c.line() for c in self.commands]
        lines.append(f'echo "=== ENDEXP {self.exp}"')
        return "\n".join(lines) + "\n"

    def step_command(self, index: int) -> Command:
        for c in self.commands:
            if c.step == index:
                return c
        raise KeyError(index)

    @property
    def grabbed_pages(self) -> int:
        return sum(g.pages for g in self.grabs)


_DEBIAN_VERSION_RE = re.compile(r"\bDebian (\d+\.\d+\.\d+)-\S+")
_PLAIN_RELEASE_RE = re.compile(r"^(\d+\.\d+\.\d+)(?:[-+][^\d].*)?$")


def kernel_series(kver: str, proc_version: str | None = None) -> KernelVersion:
    """The exact kernel a guest runs, from its ``uname -r`` and, when known, its /proc/version.

    Debian's ABI string ('6.1.0-57-amd64') hides the patch level; /proc/version names the
    package version ('... Debian 6.1.192-3 ...'), which is the upstream stable release.  Without
    it a release string that carries no ABI number ('6.18.0', '6.12.57-rt') is taken as it is,
    and anything else falls back to its MAJOR.MINOR: the newest stable the model knows.
    """
    if proc_version:
        found = _DEBIAN_VERSION_RE.search(proc_version)
        if found and found.group(1).split(".")[:2] == kver.split(".")[:2]:
            return KernelVersion.parse(found.group(1))
    plain = _PLAIN_RELEASE_RE.match(kver.strip())
    if plain:
        return KernelVersion.parse(plain.group(1))
    major, minor = kver.split(".")[:2]
    return KernelVersion.parse(f"{major}.{minor}")


def refusals(scenario: schema.Scenario, kernel: KernelVersion, image: KernelImage | None = None) -> list[str]:
    """Everything in the scenario the oracle cannot run on a real kernel, as readable lines."""
    image = image or KernelImage()
    out: list[str] = []
    m = scenario.machine
    if scenario.start != "running":
        out.append('start = "initcalls": the module is loaded into a kernel that has finished booting, so '
                   'steps run at SYSTEM_RUNNING only; use start = "running"')
    if m.memory_map:
        out.append("machine.memory_map: QEMU's e820 map comes from -m alone; give mem instead")
    if m.debug_pagealloc:
        out.append("machine.debug_pagealloc: the oracle boots Debian's kernel without debug_pagealloc=on")
    if m.kfence:
        out.append("machine.kfence: Debian's 6.1 kernel has no KFENCE pool in its direct map")
    if m.options.get("paging") == 5:
        out.append("machine.paging = 5: the oracle boots with 4-level paging (-cpu max,-la57)")
    mm = getattr(scenario, "mm", None)
    if mm is not None and mm.model_fields_set:
        out.append(f"[mm] {', '.join(sorted(mm.model_fields_set))}: the oracle's kernel is Debian's, with its own "
                   "memory-management configuration; remove the [mm] table")
    vmaps: dict[str, tuple[int, int]] = {}
    for index, step in enumerate(scenario.steps, start=1):
        where = f"step {index} ({step.op})"
        if isinstance(step, schema.Phase):
            out.append(f"{where}: the kernel is already SYSTEM_RUNNING when the module loads; remove the phase step")
            continue
        if isinstance(step, schema.PgtableAllocFail):
            out.append(f"{where}: page-table allocations of a real kernel cannot be made to fail from a module")
            continue
        if not isinstance(step, SUPPORTED):
            out.append(f"{where}: the oracle has no module command for {step.op!r}; it runs "
                       f"{', '.join(sorted(OPS))}, vmap, write and snapshot")
            continue
        if isinstance(step, schema.Snapshot):
            continue
        if getattr(step, "folio", None) is not None:
            out.append(f"{where}: folio targets name model objects; the oracle acts on physical addresses (give pa)")
            continue
        if getattr(step, "via", "kernel") != "kernel":
            out.append(f"{where}: via = {step.via!r}: the oracle has no device to write with; only CPU stores")
            continue
        if step.op == "set_memory_rox" and not SET_MEMORY_ROX.applies(kernel):
            out.append(f"{where}: set_memory_rox() exists from {SET_MEMORY_ROX.mainline.tag}; "
                       f"the oracle's kernel is {kernel}")
        if step.va is not None and not _in_direct_map(step.va):
            out.append(f"{where}: va {step.va:#x} is outside the direct map; the oracle acts on the direct map "
                       "(give pa) or on a vmap mapping")
            continue
        if step.mapping is not None:
            if step.mapping in vmaps:
                _, pages = vmaps[step.mapping]
                n = getattr(step, "pages", 1)
                if step.offset + n > pages:
                    out.append(f"{where}: pages {step.offset}..{step.offset + n - 1} are outside mapping "
                               f"{step.mapping!r} ({pages} pages)")
            if isinstance(step, schema.SetDirectMap) or (step.op not in VMALLOC_OPS and
                                                          not isinstance(step, schema.Write)):
                out.append(f"{where}: {step.op} on a vmap mapping is not supported; give pa")
            continue
        pa, pages = _phys_range(step)
        if isinstance(step, schema.Vmap):
            vmaps[step.as_] = (pa, step.pages)
        if _overlaps_image(pa, pages, image):
            if isinstance(step, schema.Write):
                if not step.probe:
                    out.append(f"{where}: a plain write to the kernel image at {pa:#x} would corrupt the running "
                               "kernel; use probe = true (reads the byte and writes it back, _nofault)")
            elif step.op not in UNOWNED_OPS:
                out.append(f"{where}: {step.op} on {pa:#x}: the page belongs to the kernel image "
                           f"[{image.text:#x}, {image.end:#x}), which the oracle cannot take; only "
                           f"{', '.join(UNOWNED_OPS)} and probes run there")
    return out


def _in_direct_map(va: int) -> bool:
    return DIRECT_MAP <= va < DIRECT_MAP + (64 << 40)


def _phys_range(step: Any) -> tuple[int, int]:
    """First physical address and page count of a step with a pa or direct-map va target."""
    base = step.pa if step.pa is not None else step.va - DIRECT_MAP
    pa = align_down(base, PAGE_SIZE) + step.offset * PAGE_SIZE
    return pa, getattr(step, "pages", 1)


def _overlaps_image(pa: int, pages: int, image: KernelImage) -> bool:
    return pa < align_up(image.end, PAGE_SIZE) and image.text < pa + pages * PAGE_SIZE


def _high_map(regions: list[tuple[int, int]], image: KernelImage) -> list[tuple[int, int]]:
    """The parts of the regions that the high kernel map also maps: [_text, roundup(_brk_end, 2M))."""
    lo, hi = align_down(image.text, Level.PMD.size), align_up(image.brk_end, Level.PMD.size)
    return [(max(s, lo), min(e, hi)) for s, e in regions if s < hi and lo < e]


def _regions(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges widened to whole 2 MiB regions, merged."""
    out: list[tuple[int, int]] = []
    for s, e in sorted((align_down(s, Level.PMD.size), align_up(e, Level.PMD.size)) for s, e in ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def translate(scenario: schema.Scenario, kernel: KernelVersion, *, name: str | None = None, exp: int = 1,
              slot_base: int = 0, image: KernelImage | None = None) -> Plan:
    """The plan for one scenario; raises Refusal listing every step that cannot run on a real kernel."""
    name = name or scenario.name
    image = image or KernelImage()
    problems = refusals(scenario, kernel, image)
    if problems:
        raise Refusal("cannot run on a real kernel:\n  " + "\n  ".join(problems),
                      "change the scenario, or run it on the model only with `rofolio run`", scenario=name)

    # what is taken: every owned page range, merged when closer than GRAB_MERGE_GAP
    owned: list[tuple[int, int]] = []
    touched: list[tuple[int, int]] = []
    for step in scenario.steps:
        if isinstance(step, schema.Snapshot) or getattr(step, "mapping", None) is not None:
            continue
        pa, pages = _phys_range(step)
        touched.append((pa, pa + pages * PAGE_SIZE))
        if not _overlaps_image(pa, pages, image):
            owned.append((pa, pa + pages * PAGE_SIZE))
    merged: list[list[int]] = []
    for s, e in sorted(owned):
        if merged and s <= merged[-1][1] + GRAB_MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    grabs = [Grab(slot_base + i, s, (e - s) // PAGE_SIZE) for i, (s, e) in enumerate(merged)]
    next_slot = slot_base + len(grabs)

    def owner(pa: int) -> Grab | None:
        for g in grabs:
            if g.pa <= pa < g.pa + g.pages * PAGE_SIZE:
                return g
        return None

    commands = [Command(f"{exp}.g{i + 1}", g.command(), "grab") for i, g in enumerate(grabs)]
    if any(isinstance(s, schema.Snapshot) for s in scenario.steps):
        commands.append(Command(f"{exp}.base", "scan", "baseline"))
    vmaps: dict[str, tuple[int, int, int]] = {}  # name -> (slot, first pa, pages)
    for index, step in enumerate(scenario.steps, start=1):
        cid = f"{exp}.{index}"
        if isinstance(step, schema.Snapshot):
            commands.append(Command(cid, "scan", "snapshot", index))
            continue
        if step.mapping is not None:
            slot, first, _ = vmaps[step.mapping]
            pages = getattr(step, "pages", 1)
            pa = first + step.offset * PAGE_SIZE
            cmd = Command(cid, "", "", index, target_pa=pa, mapping=step.mapping, mapping_offset=step.offset)
            cmd.intervals = _regions([(pa, pa + pages * PAGE_SIZE)])
            ends = sorted({step.offset, step.offset + pages - 1})
            cmd.mapping_levels = [(step.mapping, off, slot) for off in ends]
            if isinstance(step, schema.Write):
                cmd.kind = "probe" if step.probe else "write"
                cmd.command = f"{'probe' if step.probe else 'write'} {slot} {step.offset}"
            else:
                cmd.kind = "set_memory"
                cmd.command = f"{OPS[step.op]} {slot} {step.offset} {pages}"
        else:
            pa, pages = _phys_range(step)
            grab = owner(pa)
            cmd = Command(cid, "", "", index, target_pa=pa)
            cmd.intervals = _regions([(pa, pa + pages * PAGE_SIZE)])
            if grab is None:  # the kernel image: refusals() allowed only what is safe there
                if isinstance(step, schema.Write):
                    cmd.kind, cmd.command = "probe", f"probepa {pa:#x}"
                else:
                    cmd.kind, cmd.command = "set_memory", f"pa {OPS[step.op]} {pa:#x} {pages}"
            else:
                off = (pa - grab.pa) // PAGE_SIZE
                if isinstance(step, schema.SetMemory):
                    cmd.kind, cmd.command = "set_memory", f"{OPS[step.op]} {grab.slot} {off} {pages}"
                elif isinstance(step, schema.SetDirectMap):
                    cmd.kind, cmd.command = "direct_map", f"{OPS[step.op]} {grab.slot} {off}"
                elif isinstance(step, schema.Vmap):
                    cmd.kind, cmd.command = "vmap", f"vmap {next_slot} {grab.slot} {off} {pages}"
                    vmaps[step.as_] = (next_slot, pa, pages)
                    cmd.mapping_levels = [(step.as_, o, next_slot) for o in sorted({0, pages - 1})]
                    next_slot += 1
                elif isinstance(step, schema.Write):
                    cmd.kind = "probe" if step.probe else "write"
                    cmd.command = f"{cmd.kind} {grab.slot} {off}"
        cmd.high_intervals = _high_map(cmd.intervals, image)
        cmd.queries = [f"scan {s:#x} {e:#x}" for s, e in cmd.intervals]
        cmd.queries += [f"scanhigh {s:#x} {e:#x}" for s, e in cmd.high_intervals]
        cmd.queries += [f"level {slot} {off}" for _, off, slot in cmd.mapping_levels]
        commands.append(cmd)
    if next_slot > MAX_SLOTS:
        raise Refusal(f"needs {next_slot - slot_base} module slots from slot {slot_base}; the module has "
                      f"{MAX_SLOTS}", "split the scenario", scenario=name)
    for c in commands:
        for text in (c.command, *c.queries):
            if not shell_quote_ok(text):
                raise Refusal(f"internal: unsafe module command {text!r}", "report this", scenario=name)
    merged_touched: list[tuple[int, int]] = []
    for s, e in sorted(touched):
        if merged_touched and s <= merged_touched[-1][1]:
            merged_touched[-1] = (merged_touched[-1][0], max(merged_touched[-1][1], e))
        else:
            merged_touched.append((s, e))
    return Plan(name, exp, scenario, grabs, commands, next_slot - slot_base, merged_touched)
