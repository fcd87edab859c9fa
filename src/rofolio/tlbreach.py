"""TLB reach of the direct map: how many TLB entries of each size a stretch of it takes, per CPU.

Jann Horn asked on linux-mm what "a bit more TLB pressure from losing a huge PUD in the linear
map" amounts to; Yang Shi answered that most arm64 machines already map the linear map with PTEs,
and that BBML2 machines with blocks would see "512 PMDs instead of 1 PUD".  This module puts
numbers on that, from a booted machine's page tables (``Machine.leaves()``, nothing else):

* ``translation_runs()`` turns leaves into runs of identical translations.  On arm64 a leaf with
  the contiguous bit is one translation of 16 entries (64K for PTEs, 32M for PMDs with the 4K
  granule) when the CPU caches contiguous runs as one entry (``Preset.contiguous_bit``).
* ``entries_needed()`` counts, for one TLB array of a CPU preset, the entries those runs take:
  a translation the array holds is one entry; one it does not hold is broken into the largest
  size it holds that divides it (1G into 512M on a Neoverse N1 L1 DTLB), or into the size a
  source names (``smash``: AMD Zen stores a 1G page as 2M entries in its L2 DTLB).
* ``reach(machine, ranges)`` does both for every preset that fits the machine's architecture, over
  a list of virtual ranges: a folio's neighbourhood, the whole direct map, or a workload's hot set.
* ``tlb_reach_report(spec, presets)`` boots the machine twice, without and with the RFC step (the
  persistent huge zero folio made read-only at initcall time), and reports the folio's 1 GiB
  neighbourhood and the whole direct map before and after, with each array's share of its
  capacity as an exact fraction.  ``tlb_table(result)`` is its text table.

The CPU presets live in ``tlb_presets.toml`` next to this module, every figure with its sources.
A share is how much of an array the mapping would take if nothing else were cached: an upper
bound on the pressure, not a miss rate.  Associativity and replacement are not modelled.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

from rofolio.errors import ConfigError
from rofolio.machine import Leaf, Machine, MachineSpec
from rofolio.units import PAGE_SIZE, GiB, KiB, MiB, align_down, align_up

__all__ = [
    "ARM64_PTE_CONT", "CONT_ENTRIES", "ArrayReach", "Preset", "PresetReach", "ReachResult", "Run", "Source",
    "TlbArray", "direct_map_leaves", "entries_needed", "folio_neighbourhoods", "load_presets", "preset_caveat",
    "presets", "reach", "reach_of", "reach_section", "reach_summary", "run_reach", "size_name", "tlb_reach_report",
    "tlb_table", "translation_counts", "translation_runs",
]

# arch/arm64/include/asm/pgtable-hwdef.h: PTE_CONT (bit 52) marks an entry of a contiguous run.  The
# value is copied here because layer 6 does not import rofolio.arch.arm64 (tests check it is the same).
ARM64_PTE_CONT = 1 << 52
# CONT_PTES = CONT_PMDS = 16 with the 4K granule (arch/arm64/include/asm/pgtable-hwdef.h)
CONT_ENTRIES = 16

SIZES: dict[str, int] = {
    "4K": 4 * KiB, "16K": 16 * KiB, "64K": 64 * KiB, "1M": MiB, "2M": 2 * MiB, "16M": 16 * MiB,
    "32M": 32 * MiB, "512M": 512 * MiB, "1G": GiB,
}
SOURCE_KINDS = ("manual", "trm", "measurement", "kernel", "secondary")
NEIGHBOURHOOD = GiB  # the folio's neighbourhood: the 1 GiB-aligned stretch of direct map around it


def size_name(size: int) -> str:
    """'4K', '64K', '2M', '32M', '1G' for a translation size in bytes."""
    for name, value in SIZES.items():
        if value == size:
            return name
    raise ValueError(f"no name for a {size}-byte translation")


def _size(name: str, where: str) -> int:
    try:
        return SIZES[name]
    except KeyError:
        raise ConfigError(f"{where}: unknown page size {name!r}", "use one of: " + ", ".join(SIZES)) from None


# ------------------------------------------------------------------ presets


@dataclass(frozen=True, slots=True)
class Source:
    """Where a figure comes from: the document, the section or table, and its address."""

    id: str
    kind: str  # one of SOURCE_KINDS
    document: str
    section: str
    url: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "document": self.document, "section": self.section, "url": self.url}


@dataclass(frozen=True, slots=True)
class TlbArray:
    """One TLB array: its level ('L1D', 'L2'), capacity (None when no source gives it) and page sizes."""

    level: str
    name: str
    entries: int | None
    holds: tuple[int, ...]  # translation sizes it stores natively
    sources: tuple[Source, ...]
    smash: tuple[tuple[int, int], ...] = ()  # (translation size, size it is stored as)
    smash_sources: tuple[Source, ...] = ()  # where the smashing is described
    coalesce_4k: int | None = None  # aligned, contiguous 4K pages of equal attributes cached as one entry

    def stored_size(self, size: int) -> int | None:
        """The size of the entries a translation of ``size`` bytes takes here (None: not held here)."""
        if size in self.holds:
            return size
        for big, small in self.smash:
            if big == size:
                return small
        fits = [s for s in self.holds if s < size and size % s == 0]
        return max(fits) if fits else None


@dataclass(frozen=True, slots=True)
class Preset:
    """A CPU core's data-side TLBs."""

    name: str
    vendor: str
    core: str
    arch: tuple[str, ...]
    contiguous_bit: bool  # caches an arm64 contiguous run (16 entries with PTE_CONT) as one entry
    notes: str
    arrays: tuple[TlbArray, ...]
    # architecture options the core's hardware fixes, with the values it can run (riscv64 sv: the satp modes
    # its MMU implements); a machine with another value is one this core cannot run
    runs: dict[str, tuple[Any, ...]] = field(default_factory=dict, hash=False)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.level for a in self.arrays))

    def array_for(self, level: str, size: int) -> tuple[TlbArray, int] | None:
        """The array of ``level`` that caches a translation of ``size`` bytes, and the entry size it uses.

        An array that holds the size natively wins over one that stores it smashed or broken down.
        """
        candidates = [a for a in self.arrays if a.level == level]
        for array in candidates:
            if size in array.holds:
                return array, size
        best: tuple[TlbArray, int] | None = None
        for array in candidates:
            stored = array.stored_size(size)
            if stored is not None and (best is None or stored > best[1]):
                best = (array, stored)
        return best


def load_presets(text: str | None = None) -> dict[str, Preset]:
    """Parse and check a presets file (the packaged ``tlb_presets.toml`` by default)."""
    if text is None:
        text = resources.files("rofolio").joinpath("tlb_presets.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    sources: dict[str, Source] = {}
    for sid, s in data.get("sources", {}).items():
        if s.get("kind") not in SOURCE_KINDS:
            raise ConfigError(f"source {sid}: kind {s.get('kind')!r}", "use one of: " + ", ".join(SOURCE_KINDS))
        if not s.get("document") or not s.get("section"):
            raise ConfigError(f"source {sid} names no document or section", "say where the figure is")
        sources[sid] = Source(sid, s["kind"], s["document"], s["section"], s.get("url", ""))
    out: dict[str, Preset] = {}
    for p in data.get("preset", []):
        arrays = []
        for t in p.get("tlb", []):
            where = f"preset {p['name']}, {t.get('name')}"
            if not t.get("sources"):
                raise ConfigError(f"{where}: no source", "every figure names its source, or the core is left out")
            if t.get("smash") and not t.get("smash_sources"):
                raise ConfigError(f"{where}: smashing without a source", "name it in smash_sources")
            missing = [sid for sid in [*t["sources"], *t.get("smash_sources", [])] if sid not in sources]
            if missing:
                raise ConfigError(f"{where}: unknown sources {missing}", "add them under [sources]")
            entries = t["entries"]
            if entries == "unsourced":
                entries = None
            elif not isinstance(entries, int) or entries <= 0:
                raise ConfigError(f"{where}: entries {entries!r}", "give a positive count or \"unsourced\"")
            smash = tuple((_size(k, where), _size(v, where)) for k, v in t.get("smash", {}).items())
            arrays.append(TlbArray(t["level"], t["name"], entries, tuple(_size(h, where) for h in t["holds"]),
                                   tuple(sources[sid] for sid in t["sources"]), smash,
                                   tuple(sources[sid] for sid in t.get("smash_sources", [])), t.get("coalesce_4k")))
        if p["name"] in out:
            raise ConfigError(f"preset {p['name']} is defined twice", "give each preset one name")
        if not p.get("arch"):
            raise ConfigError(f"preset {p['name']} names no architecture", "say which it is for: arch = [...]")
        runs = {key: tuple(values) for key, values in p.get("runs", {}).items()}
        out[p["name"]] = Preset(p["name"], p["vendor"], p["core"], tuple(p["arch"]), bool(p["contiguous_bit"]),
                                p.get("notes", ""), tuple(arrays), runs)
    return out


@cache
def presets() -> dict[str, Preset]:
    """The packaged presets, by name."""
    return load_presets()


def _sources_used(chosen: Iterable[Preset]) -> dict[str, Source]:
    return {s.id: s for p in chosen for a in p.arrays for s in (*a.sources, *a.smash_sources)}


# ------------------------------------------------------------------ counting (pure)


@dataclass(frozen=True, slots=True)
class Run:
    """Translations of one size over [start, end) (clipped to the range asked about), equal attributes."""

    start: int
    end: int
    size: int  # bytes one translation covers: the leaf size, or 16 leaves for an arm64 contiguous run
    leaf_size: int


def translation_runs(leaves: Iterable[Leaf], *, cont_mask: int = 0) -> list[Run]:
    """The present leaves as runs of translations, in address order.

    ``cont_mask`` is the contiguous bit of the machine's entries (``ARM64_PTE_CONT`` on arm64, 0 for a
    CPU that does not cache contiguous runs as one entry, or an architecture that has none).
    """
    runs = [Run(leaf.start, leaf.end, leaf.level.size * (CONT_ENTRIES if leaf.flags & cont_mask else 1),
                leaf.level.size)
            for leaf in leaves if leaf.present]
    runs.sort(key=lambda r: r.start)
    return runs


def _blocks(start: int, end: int, unit: int) -> tuple[int, int]:
    """The first and last ``unit``-aligned block [start, end) touches."""
    return align_down(start, unit), align_up(end, unit) - unit


def _count(runs: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """Distinct ``unit``-aligned blocks touched by (start, end, unit) triples in address order, per unit."""
    out: dict[int, int] = {}
    last: dict[int, int] = {}
    for start, end, unit in runs:
        first, final = _blocks(start, end, unit)
        n = (final - first) // unit + 1
        if last.get(unit) is not None and last[unit] >= first:  # the block is shared with the run before
            n -= (last[unit] - first) // unit + 1
        if n > 0:
            out[unit] = out.get(unit, 0) + n
            last[unit] = final
    return out


def translation_counts(runs: Sequence[Run]) -> dict[int, int]:
    """How many translations of each size the runs are (a translation partly in the range counts)."""
    return _count((r.start, r.end, r.size) for r in runs)


def entries_needed(runs: Sequence[Run], array: TlbArray) -> dict[int, int]:
    """Entries ``array`` needs to cache every translation of ``runs`` it holds, per entry size.

    With ``coalesce_4k = N`` an aligned group of N 4K pages inside one run (so contiguous, with equal
    attributes) is one entry of N * 4K; pages of partial groups at a run's ends take one entry each.
    """
    triples: list[tuple[int, int, int]] = []
    for run in runs:
        stored = array.stored_size(run.size)
        if stored is None:
            continue
        if array.coalesce_4k and run.size == PAGE_SIZE and stored == PAGE_SIZE:
            group = array.coalesce_4k * PAGE_SIZE
            lo, hi = align_up(run.start, group), align_down(run.end, group)
            if lo < hi:
                if run.start < lo:
                    triples.append((run.start, lo, PAGE_SIZE))
                triples.append((lo, hi, group))
                if hi < run.end:
                    triples.append((hi, run.end, PAGE_SIZE))
                continue
        triples.append((run.start, run.end, stored))
    return _count(triples)


# ------------------------------------------------------------------ reach of a machine


@dataclass(frozen=True, slots=True)
class ArrayReach:
    array: TlbArray
    needed: int
    by_size: dict[int, int]  # entry size -> entries

    @property
    def share(self) -> Fraction | None:
        """needed / capacity, exactly (None when the capacity is unsourced)."""
        return None if self.array.entries is None else Fraction(self.needed, self.array.entries)

    def to_dict(self) -> dict[str, Any]:
        share = self.share
        return {"needed": self.needed, "by_size": {size_name(s): n for s, n in sorted(self.by_size.items())},
                "share": None if share is None else f"{share.numerator}/{share.denominator}",
                "share_float": None if share is None else float(share)}


@dataclass(frozen=True, slots=True)
class PresetReach:
    preset: Preset
    translations: dict[int, int]  # the translations as this CPU sees them (contiguous runs or not)
    arrays: tuple[ArrayReach, ...]
    unheld: dict[str, tuple[int, ...]]  # level -> translation sizes no array of that level caches

    def array(self, name: str) -> ArrayReach:
        for a in self.arrays:
            if a.array.name == name:
                return a
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ReachResult:
    ranges: tuple[tuple[int, int], ...]
    translations: dict[int, int]  # as the page tables are (contiguous runs as one, where the arch has them)
    presets: tuple[PresetReach, ...] = field(default=())

    def preset(self, name: str) -> PresetReach:
        for p in self.presets:
            if p.preset.name == name:
                return p
        raise KeyError(name)


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def preset_caveat(preset: Preset, spec: MachineSpec) -> str | None:
    """Why ``preset``'s core could not run the machine ``spec`` describes (None if it could): another
    architecture's core (unless no preset is for the machine's, as for nodirectmap, where every preset is
    shown), or an option its hardware fixes otherwise (the U54's MMU has Sv39 only).  The figures are still
    computed: what that core's TLBs would take for this machine's leaves."""
    if spec.arch not in preset.arch:
        if not _for_arch(spec.arch):
            return None
        why = f"TLB preset {preset.name} is for {'/'.join(preset.arch)}; the machine is {spec.arch}"
    else:
        values = spec.entry.check_options(spec.options)
        bad = [(key, allowed) for key, allowed in preset.runs.items() if values.get(key) not in allowed]
        if not bad:
            return None
        why = "; ".join(f"TLB preset {preset.name}'s core runs {key} = {' or '.join(map(str, allowed))} only, "
                        f"the machine has {key} = {values.get(key)}" for key, allowed in bad)
    return f"{why}: its rows are what that core's TLBs would take for this machine's leaves"


def _for_arch(arch: str) -> list[Preset]:
    """The presets of cores of ``arch`` (none for nodirectmap)."""
    return [p for p in presets().values() if arch in p.arch]


def _applicable(arch: str, chosen: Sequence[str | Preset] | None) -> list[Preset]:
    table = presets()
    if chosen:
        out = []
        for p in dict.fromkeys(chosen):  # a preset named twice is one set of rows
            if isinstance(p, Preset):
                out.append(p)
            elif p in table:
                out.append(table[p])
            else:
                raise ConfigError(f"unknown TLB preset {p!r}", "choose one of: " + ", ".join(table))
        return out
    return _for_arch(arch) or list(table.values())  # an architecture no preset is for (nodirectmap): all of them


def reach(machine: Machine, ranges: Iterable[tuple[int, int]],
          presets_: Sequence[str | Preset] | None = None) -> ReachResult:
    """TLB entries the kernel page tables over ``ranges`` (virtual, merged if they overlap) take, per preset.

    The presets default to those for the machine's architecture.  A translation that straddles two
    ranges, or is only partly inside one, counts once.
    """
    merged = _merge(ranges)
    leaves = [leaf for lo, hi in merged for leaf in machine.leaves(lo, hi)]  # type: ignore[arg-type]
    return _reach_of(leaves, merged, machine.spec.arch, presets_)


def reach_of(leaves: Sequence[Leaf], ranges: Iterable[tuple[int, int]], arch: str,
             presets_: Sequence[str | Preset] | None = None) -> ReachResult:
    """``reach()`` over a snapshot of leaves (``direct_map_leaves()``) taken earlier, clipped to ``ranges``."""
    merged = _merge(ranges)
    clipped = [replace(leaf, start=max(leaf.start, lo), end=min(leaf.end, hi))
               for lo, hi in merged for leaf in leaves if leaf.start < hi and leaf.end > lo]
    return _reach_of(clipped, merged, arch, presets_)


def _reach_of(leaves: Sequence[Leaf], merged: tuple[tuple[int, int], ...], arch: str,
              presets_: Sequence[str | Preset] | None) -> ReachResult:
    mask = ARM64_PTE_CONT if arch == "arm64" else 0
    as_mapped = translation_runs(leaves, cont_mask=mask)
    flat = translation_runs(leaves) if mask else as_mapped
    out = []
    for preset in _applicable(arch, presets_):
        runs = as_mapped if preset.contiguous_bit else flat
        sizes = sorted({r.size for r in runs})
        arrays = []
        assigned: dict[str, dict[str, list[Run]]] = {}
        unheld: dict[str, tuple[int, ...]] = {}
        for level in preset.levels:
            missing = []
            for size in sizes:
                found = preset.array_for(level, size)
                if found is None:
                    missing.append(size)
                    continue
                assigned.setdefault(level, {}).setdefault(found[0].name, []).extend(r for r in runs if r.size == size)
            if missing:
                unheld[level] = tuple(missing)
        for array in preset.arrays:
            mine = sorted(assigned.get(array.level, {}).get(array.name, []), key=lambda r: r.start)
            by_size = entries_needed(mine, array)
            arrays.append(ArrayReach(array, sum(by_size.values()), by_size))
        out.append(PresetReach(preset, translation_counts(runs), tuple(arrays), unheld))
    return ReachResult(merged, translation_counts(as_mapped), tuple(out))


def direct_map_leaves(machine: Machine) -> tuple[Leaf, ...]:
    """The direct map's leaves now, to count against later (``reach_of()``): runs, not pages."""
    lo, hi = machine.direct_map_bounds()
    return tuple(machine.leaves(lo, hi))  # type: ignore[arg-type]


def folio_neighbourhoods(machine: Machine, folios: Iterable[Any]) -> tuple[tuple[int, int], ...]:
    """The 1 GiB-aligned stretches of direct map around each folio (clipped to the direct map), merged."""
    lo, hi = machine.direct_map_bounds()
    out = []
    for folio in folios:
        base = align_down(machine.page_address(folio.pfn), NEIGHBOURHOOD)
        out.append((max(base, lo), min(base + NEIGHBOURHOOD, hi)))
    return _merge(out)


# ------------------------------------------------------------------ the RFC step, before and after


def _rfc_specs(spec: MachineSpec) -> tuple[MachineSpec, MachineSpec]:
    """The machine without and with the RFC: the persistent huge zero folio, writable or made read-only."""
    before = replace(spec, mm=replace(spec.mm, persistent_huge_zero_folio=True, readonly_huge_zero_folio=False))
    after = replace(spec, mm=replace(spec.mm, persistent_huge_zero_folio=True, readonly_huge_zero_folio=True))
    return before, after


def _sizes_dict(counts: dict[int, int]) -> dict[str, int]:
    return {size_name(s): n for s, n in sorted(counts.items())}


def tlb_reach_report(spec: MachineSpec, presets_: Sequence[str | Preset] | None = None) -> dict[str, Any]:
    """Boot ``spec`` without and with the RFC step and report the TLB reach of the huge zero folio's
    1 GiB neighbourhood and of the whole direct map, before and after, per preset (JSON-ready).

    Both machines run to SYSTEM_RUNNING, so the only difference is the folio made read-only.
    """
    before_spec, after_spec = _rfc_specs(spec)
    machines = {}
    for key, s in (("before", before_spec), ("after", after_spec)):
        m = Machine.boot(s, retain_events=key == "after")  # the after machine's events hold its boot warnings
        m.finish_boot()
        machines[key] = m
    after = machines["after"]
    lo, hi = after.direct_map_bounds()
    folio = after.huge_zero_folio
    report: dict[str, Any] = {"schema": "rofolio.tlbreach/1", "machine": after_spec.describe(),
                              "label": after_spec.label(), "warnings": after.kernel_warnings()}
    regions: dict[str, tuple[int, int]] = {"direct_map": (lo, hi)}
    if folio is None:
        report["folio"] = None
    else:
        va = after.page_address(folio.pfn)
        ((start, end),) = folio_neighbourhoods(after, [folio])
        regions = {"neighbourhood": (start, end), **regions}
        report["folio"] = {"pfn": folio.pfn, "pa": hex(folio.pfn * PAGE_SIZE), "va": hex(va),
                           "bytes": folio.nr_pages * PAGE_SIZE,
                           "read_only_after": not after.direct_map_writable(folio.pfn),
                           "leaf_after": after.lookup(va).level.leaf_name if after.lookup(va) else None}
        report["neighbourhood"] = {"start": hex(start), "end": hex(end)}
    snapshots = {key: direct_map_leaves(m) for key, m in machines.items()}
    report.update(reach_section(snapshots, {region: [rng] for region, rng in regions.items()}, spec, presets_))
    return report


def reach_section(snapshots: dict[str, Sequence[Leaf]], regions: dict[str, Sequence[tuple[int, int]]],
                  spec: MachineSpec, presets_: Sequence[str | Preset] | None = None) -> dict[str, Any]:
    """JSON-ready TLB reach of each region (virtual ranges) in each snapshot of the direct map ("before",
    "after") of the machine ``spec`` describes: the translations of each size, per preset array the entries
    needed and their share, and the caveats of the cores that could not run that machine (preset_caveat())."""
    arch = spec.arch
    chosen = _applicable(arch, presets_)
    results = {(region, key): reach_of(leaves, ranges, arch, chosen)
               for region, ranges in regions.items() for key, leaves in snapshots.items()}
    out: dict[str, Any] = {"translations": {region: {key: _sizes_dict(results[region, key].translations)
                                                     for key in snapshots} for region in regions}}
    rows = []
    for i, preset in enumerate(chosen):
        arrays = []
        for j, array in enumerate(preset.arrays):
            entry: dict[str, Any] = {"level": array.level, "name": array.name, "entries": array.entries,
                                     "holds": [size_name(s) for s in array.holds],
                                     "smash": {size_name(a): size_name(b) for a, b in array.smash},
                                     "sources": [s.id for s in array.sources],
                                     "smash_sources": [s.id for s in array.smash_sources]}
            for region in regions:
                entry[region] = {key: results[region, key].presets[i].arrays[j].to_dict() for key in snapshots}
            arrays.append(entry)
        rows.append({"name": preset.name, "vendor": preset.vendor, "core": preset.core,
                     "contiguous_bit": preset.contiguous_bit, "notes": preset.notes, "arrays": arrays,
                     "translations": {region: {key: _sizes_dict(results[region, key].presets[i].translations)
                                               for key in snapshots} for region in regions},
                     "unheld": {region: {key: {lvl: [size_name(s) for s in sizes] for lvl, sizes in
                                               results[region, key].presets[i].unheld.items()}
                                         for key in snapshots} for region in regions}})
    out["presets"] = rows
    out["sources"] = {sid: s.to_dict() for sid, s in sorted(_sources_used(chosen).items())}
    out["caveats"] = [c for c in (preset_caveat(p, spec) for p in chosen) if c]
    return out


def run_reach(before: Sequence[Leaf], machine: Machine, folios: Iterable[Any]) -> dict[str, Any]:
    """A scenario run's TLB reach: the direct map and the touched folios' 1 GiB neighbourhoods, in the
    snapshot taken before the steps (``before``) and in the machine now, per preset of its architecture."""
    lo, hi = machine.direct_map_bounds()
    touched = folio_neighbourhoods(machine, folios)
    regions: dict[str, Sequence[tuple[int, int]]] = {"direct_map": [(lo, hi)]}
    if touched:
        regions = {"touched": touched, **regions}
    out: dict[str, Any] = {"touched": [[hex(a), hex(b)] for a, b in touched]}
    out.update(reach_section({"before": before, "after": direct_map_leaves(machine)}, regions, machine.spec))
    return out


def reach_summary(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``reach_section()`` reduced to entries needed: preset -> "LEVEL NAME" -> capacity and, per region,
    [before, after] (the survey's per-machine TLB figures)."""
    regions = list(section["translations"])
    return {p["name"]: {f"{a['level']} {a['name']}": {
        "level": a["level"], "entries": a["entries"],
        **{r: [a[r]["before"]["needed"], a[r]["after"]["needed"]] for r in regions}} for a in p["arrays"]}
        for p in section["presets"]}


def _pct(share: dict[str, Any]) -> str:
    if share["share_float"] is None:
        return "unsourced"
    return f"{share['share_float'] * 100:.2f}%"


def tlb_table(result: dict[str, Any]) -> list[list[str]]:
    """``tlb_reach_report()``'s result as table rows (the first row is the header): the entries each region
    needs and their share of the array, before and after; the whole direct map's shares beside a smaller
    region's, and not twice when the direct map is the only region."""
    region = next((r for r in result["translations"] if r != "direct_map"), "direct_map")
    name = "direct map" if region == "direct_map" else region
    header = ["preset", "TLB", "entries", f"{name} before", "share", f"{name} after", "share"]
    if region != "direct_map":  # the whole map's shares only, so said: the columns before hold entry counts
        header += ["direct map before (share)", "direct map after (share)"]
    rows = [header]
    for preset in result["presets"]:
        for array in preset["arrays"]:
            here, whole = array[region], array["direct_map"]
            row = [preset["name"], f"{array['level']} {array['name']}",
                   "unsourced" if array["entries"] is None else str(array["entries"]),
                   str(here["before"]["needed"]), _pct(here["before"]),
                   str(here["after"]["needed"]), _pct(here["after"])]
            if region != "direct_map":
                row += [_pct(whole["before"]), _pct(whole["after"])]
            rows.append(row)
    return rows


