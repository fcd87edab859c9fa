"""Boot fidelity: the model's boot against the kernel's, before any module is loaded.

The guest prints /proc/meminfo's DirectMap lines and /proc/vmstat at boot and
walks its page tables through /proc/kcore with ``kc`` (no module: loading one
changes the direct map).  The model boots the same machine (QEMU's e820 map,
the guest's GB-page support, the measured boot profile) to SYSTEM_RUNNING.
Compared: the e820 RAM ranges, max_pfn_mapped, every direct-map run (leaf
size, present, RW, NX, cache mode), the DirectMap lines (which over-count what
the page tables hold, docs/fidelity.md finding 5), the split counters, and,
where a profile exists, where the initrd and the BPF JIT pack landed.

The same guest is checked twice more (``check_own_placement``, ``check_host``):

* without its record: the model places the boot-time users itself (the initrd by the boot loader's rule, the
  BPF JIT pack from its buddy allocator), with only the kernel's build as input (its config, its image's
  layout).  DirectMap1G and the 4K + 2M total must agree; where the 4K/2M split does not, every difference is
  named as a whole placement: the leaves a boot-time user's pages split in the guest (its record, booted by
  the model, which the first check found equal to the kernel) and not in the model's own boot, or the other
  way round, each with its effect on the DirectMap lines, and the named effects must add up to the
  difference exactly;
* as ``rofolio host --from`` on the snapshot the guest printed: the named causes must equal the residual.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rofolio.machine import Machine
from rofolio.oracle import model as oracle_model
from rofolio.oracle.compare import Check, describe_changes
from rofolio.oracle.guest import INITRD_SIZE, GuestLog, clip
from rofolio.oracle.record import record_of
from rofolio.scenario import runner, schema
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level

__all__ = [
    "BootReport", "HostCheck", "NamedDifference", "OwnPlacement", "check_boot", "check_host", "check_own_placement",
    "guest_config", "meminfo", "name_differences", "write_snapshot",
]


DIRECT_MAP_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G")
# what one split of a leaf of this level moves between the DirectMap lines (split_page_count()), in kB
SPLIT_KB = {Level.PMD: {"DirectMap4k": 2048, "DirectMap2M": -2048, "DirectMap1G": 0},
            Level.PUD: {"DirectMap4k": 0, "DirectMap2M": 1 << 20, "DirectMap1G": -(1 << 20)}}


def _kb(kb: int) -> str:
    """kB as /proc/meminfo counts them, in the largest whole unit."""
    if kb and kb % (1 << 20) == 0:
        return f"{kb >> 20} GiB"
    return f"{kb >> 10} MiB" if kb % 1024 == 0 else f"{kb} kB"


@dataclass
class NamedDifference:
    """A part of the difference (kernel − model) that one boot-time user's placement makes: ``count`` more (or,
    negative, fewer) leaves of ``level`` split by its pages in the kernel than in the model's own placement."""

    user: str
    level: str  # "2M" or "1G": the size of the leaves it split
    count: int
    kernel_leaves: list[int]  # physical addresses of the leaves its pages split, in the guest
    model_leaves: list[int]  # ... in the model's own placement
    effect_kb: dict[str, int] = field(default_factory=dict)  # on the DirectMap lines, all ``count`` of them

    def describe(self) -> str:
        n = abs(self.count)
        leaves = f"{self.level} leaf" if n == 1 else f"{self.level} leaves"
        if self.count > 0:
            where = f"another {leaves}" if n == 1 else f"{n} more {leaves}"
        else:
            where = f"{n} {leaves} fewer"
        effect = ", ".join(f"{k.removeprefix('DirectMap').upper()} {'+' if v > 0 else '−'}{_kb(abs(v))}"
                           for k, v in self.effect_kb.items() if v)
        return (f"{self.user} placed in {where} than the model's: {effect} (its leaves: kernel "
                f"{', '.join(hex(a) for a in self.kernel_leaves) or 'none'}; model "
                f"{', '.join(hex(a) for a in self.model_leaves) or 'none'})")


@dataclass
class OwnPlacement:
    """The guest against the model booted without its record (the model placing the boot-time users)."""

    kernel_kb: dict[str, int]
    model_kb: dict[str, int]
    placed: list[str]  # what the model placed, and where
    named: list[NamedDifference] = field(default_factory=list)
    unattributed: list[str] = field(default_factory=list)  # leaves split in one boot only, by no user's pages

    def _sum(self, kb: dict[str, int], *keys: str) -> int:
        return sum(kb.get(k, 0) for k in keys)

    @property
    def agree_1g(self) -> bool:
        return self.kernel_kb.get("DirectMap1G", 0) == self.model_kb.get("DirectMap1G", 0)

    @property
    def agree_total(self) -> bool:
        return self._sum(self.kernel_kb, "DirectMap4k", "DirectMap2M") == \
            self._sum(self.model_kb, "DirectMap4k", "DirectMap2M")

    @property
    def agree_split(self) -> bool:
        return self.agree_total and self.kernel_kb.get("DirectMap4k", 0) == self.model_kb.get("DirectMap4k", 0)

    @property
    def difference(self) -> dict[str, int]:
        return {k: self.kernel_kb.get(k, 0) - self.model_kb.get(k, 0) for k in DIRECT_MAP_KEYS}

    @property
    def named_total(self) -> dict[str, int]:
        return {k: sum(n.effect_kb.get(k, 0) for n in self.named) for k in DIRECT_MAP_KEYS}

    @property
    def explained(self) -> bool:
        """Every difference is named as a whole placement, and the named effects add up to it exactly."""
        return not self.unattributed and self.named_total == self.difference

    def to_dict(self) -> dict[str, Any]:
        return {"kernel_kb": self.kernel_kb, "model_kb": self.model_kb, "placed_by_model": self.placed,
                "agree_1g": self.agree_1g, "agree_total": self.agree_total, "agree_split": self.agree_split,
                "difference_kb": self.difference,
                "named": [{**asdict(n), "text": n.describe()} for n in self.named],
                "named_total_kb": self.named_total, "unattributed": self.unattributed, "explained": self.explained}


@dataclass
class HostCheck:
    """``rofolio host --from`` on the snapshot the guest printed."""

    residual_kb: dict[str, int]
    causes: list[str]
    explained: bool  # the named causes add up to the residual, each of a single placement's shape
    snapshot: str = ""  # where the rebuilt snapshot was kept, if it was
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BootReport:
    mem: str
    cpu: str
    uname: str
    gbpages: bool
    record: str | None  # the boot record the model took: what the guest placed
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    smp: int = 1
    drawn: bool = False  # drawn from the run's seed, not one of the fixed machines
    own: OwnPlacement | None = None  # the same machine without the record
    host: HostCheck | None = None  # rofolio host --from on the guest's snapshot
    notes: list[str] = field(default_factory=list)  # what happened on the way that is not a check (a re-boot)

    @property
    def agree(self) -> bool:
        """With the guest's record, every check agrees."""
        return not self.errors and all(c.agree for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("own", "host")}
        return {**out, "agree": self.agree, "agreeing_checks": f"{sum(c.agree for c in self.checks)}/"
                f"{len(self.checks)}", "without_record": self.own.to_dict() if self.own else None,
                "host_from": self.host.to_dict() if self.host else None}


def meminfo(lines: list[str]) -> dict[str, int]:
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        out[key.strip()] = int(rest.split()[0])
    return out


def check_boot(log: GuestLog, machine: schema.Machine, *, mem: str, cpu: str) -> BootReport:
    """Compare the guest's boot (counters, kc walk, e820) with the model's booted with the guest's record."""
    record = record_of(log, "guest")
    placed = []
    if record.initrd is not None:
        placed.append(f"initrd {record.initrd[1] // PAGE_SIZE} pages at {record.initrd[0]:#x}")
    for _, pages in record.bpf_packs:
        placed.append(f"BPF JIT pack {sum(n for _, n in pages)} pages in {len(pages)} stretch(es)")
    rep = BootReport(mem, cpu, log.uname or "?", log.gbpages, "; ".join(placed) or None)
    if not log.complete:
        rep.errors.append("the guest did not finish booting" + (" (kernel panic)" if log.panic else ""))
        return rep
    m = oracle_model.boot(machine, record)
    kernel_ram = [(s, e) for s, e, kind in log.e820 if kind == "usable"]
    model_ram = [(r.start, r.end) for r in m.memory.ram]
    rep.checks.append(Check("e820 RAM", _ranges(kernel_ram), _ranges(model_ram), kernel_ram == model_ram))
    kmeminfo = {key: v for key, v in log.boot_counters.items() if key.startswith("DirectMap")}
    mmeminfo = meminfo(m.meminfo_lines())
    rep.checks.append(Check("/proc/meminfo", _kv(kmeminfo), _kv(mmeminfo), kmeminfo == mmeminfo))
    kvm = {key: v for key, v in log.boot_counters.items() if key.startswith("direct_map")}
    mvm = m.vmstat_lines()  # the lines themselves too: 6.1 has no collapse counters (41d88484c71c, v6.15)
    rep.checks.append(Check("/proc/vmstat", _kv(kvm), _kv(mvm), kvm == mvm))
    if log.max_pfn_mapped is None or not log.walk_direct:
        rep.errors.append("no kc walk on the guest" + (f": {log.walk_errors[0]}" if log.walk_errors else ""))
        return rep
    rep.checks.append(Check("max_pfn_mapped", hex(log.max_pfn_mapped), hex(m.direct_map_end_pfn),
                            log.max_pfn_mapped == m.direct_map_end_pfn))
    end = min(log.max_pfn_mapped, m.direct_map_end_pfn) << PAGE_SHIFT
    kwalk = clip(log.walk_direct, 0, end)
    mwalk = oracle_model.runs(m, 0, end)
    changes = oracle_model.diff(mwalk, kwalk)
    rep.checks.append(Check("direct map walk (model -> kernel)", f"{len(kwalk)} runs",
                            f"{len(mwalk)} runs" + ("" if not changes else f"; differs: {describe_changes(changes)}"),
                            not changes))
    kcov = _coverage(kwalk)
    mcov = {key: v >> 10 for key, v in zip(("4K", "2M", "1G"), m.direct_map_coverage().values(), strict=True)}
    rep.checks.append(Check("page tables (kB per leaf size)", _kv(kcov), _kv(mcov), kcov == mcov))
    return rep


def _coverage(runs: list[Any]) -> dict[str, int]:
    out = {"4K": 0, "2M": 0, "1G": 0}
    for r in runs:
        if r.present and r.level in out:
            out[r.level] += (r.end - r.start) >> 10
    return out


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"[{s:#x},{e:#x})" for s, e in ranges)


def _kv(d: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


# ------------------------------------------------------------------ without the record
def _splits(m: Machine) -> Counter[tuple[Level, int]]:
    """The leaves boot split that /proc/meminfo counts (split_page_count()), as (level, physical address)."""
    from rofolio.events import Split

    out: Counter[tuple[Level, int]] = Counter()
    for e in m.log.events:
        if isinstance(e, Split) and e.direct:
            pa = m.pa(e.addr) if m.in_direct_map(e.addr) else e.addr
            out[(e.level, pa)] += e.count
    return out


def _user_at(m: Machine, level: Level, pa: int) -> str | None:
    """The boot-time user whose pages lie in the leaf of ``level`` at ``pa``."""
    for placement in m.boot_placements:
        if any(start < pa + level.size and pa < start + n * PAGE_SIZE for start, n in placement.pages):
            return placement.what
    return None


def name_differences(kernel: Machine, model: Machine) -> tuple[list[NamedDifference], list[str]]:
    """The splits one boot made and the other did not, by the boot-time user whose pages are there: per user
    and leaf size, how many more leaves the kernel's placement split than the model's own.  ``kernel`` is the
    model booted with the guest's record (equal to the guest, checked apart).  Also the splits no user
    explains."""
    ks, ms = _splits(kernel), _splits(model)
    only_k, only_m = ks - ms, ms - ks
    groups: dict[tuple[str, Level], tuple[list[int], list[int]]] = {}
    unattributed: list[str] = []
    for side, only, machine in ((0, only_k, kernel), (1, only_m, model)):
        for (level, pa), n in sorted(only.items()):
            user = _user_at(machine, level, pa)
            if user is None:
                unattributed.append(f"{level.leaf_name} leaf at {pa:#x} split {n} time(s) only in the "
                                    f"{'kernel' if side == 0 else 'model'}'s boot, by no boot-time user")
                continue
            groups.setdefault((user, level), ([], []))[side].extend([pa] * n)
    named = []
    for (user, level), (k_leaves, m_leaves) in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        count = len(k_leaves) - len(m_leaves)
        if count:
            named.append(NamedDifference(user, level.leaf_name, count, sorted(k_leaves), sorted(m_leaves),
                                         {k: v * count for k, v in SPLIT_KB[level].items()}))
    return named, unattributed


def own_spec(machine: schema.Machine, config: dict[str, str]) -> Any:
    """The guest's MachineSpec without its record: the initrd the oracle hands QEMU, and the boot-time BPF
    program where the kernel's config builds one (CONFIG_NET_PTP_CLASSIFY with CONFIG_BPF_JIT)."""
    spec = runner.spec_of(machine)
    ptp = config.get("CONFIG_NET_PTP_CLASSIFY") == "y" and config.get("CONFIG_BPF_JIT") == "y"
    options = {**spec.options, "ptp_classifier": ptp}
    return replace(spec, initrd=INITRD_SIZE, options=options)


def check_own_placement(log: GuestLog, machine: schema.Machine, config: dict[str, str]) -> OwnPlacement:
    """The guest against the model that places the boot-time users itself; the build (config, image layout) is
    the guest's, the placements are the model's."""
    record = record_of(log, "guest")
    with_record = oracle_model.boot(machine, record)
    spec = own_spec(machine, config)
    own = Machine.boot(spec, image=spec.entry.image_of(record) if record.image else None)
    own.finish_boot()
    kernel_kb = {k: v for k, v in log.boot_counters.items() if k.startswith("DirectMap")}
    model_kb = meminfo(own.meminfo_lines())
    named, unattributed = name_differences(with_record, own)
    return OwnPlacement(kernel_kb, model_kb, [p.describe() for p in own.boot_placements], named, unattributed)


# ------------------------------------------------------------------ rofolio host --from
def guest_config(root: str | Path, kver: str) -> tuple[str, str]:
    """The guest kernel's config (text, where from): the file its setup recorded (a built kernel's, the prepared
    7.2 tree's), else the installed headers' or /boot's; ("", reason) when there is none."""
    candidates: list[Path] = []
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    if isinstance(manifest.get("config"), str):
        candidates.append(Path(manifest["config"]))
    if isinstance(manifest.get("tree"), str):
        candidates.append(Path(manifest["tree"]) / ".config")
    candidates += [Path(f"/usr/src/linux-headers-{kver}/.config"), Path(f"/boot/config-{kver}")]
    for path in candidates:
        if path.is_file():
            return path.read_text(), str(path)
    return "", "no config file for " + kver


def config_options(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.startswith("CONFIG_") and "=" in line)


def model_options(config: dict[str, str]) -> dict[str, Any]:
    """The machine options a guest kernel's config decides: a kernel built without page-table isolation
    (CONFIG_MITIGATION_PAGE_TABLE_ISOLATION, CONFIG_PAGE_TABLE_ISOLATION before v6.9) has pti "unbuilt", and
    its oops banner names neither PTI nor NOPTI (arch/x86/kernel/dumpstack.c __die_header()).  No config: none."""
    if not config:
        return {}
    built = "y" in (config.get("CONFIG_MITIGATION_PAGE_TABLE_ISOLATION"), config.get("CONFIG_PAGE_TABLE_ISOLATION"))
    return {} if built else {"pti": "unbuilt"}


def write_snapshot(log: GuestLog, directory: Path, config_text: str) -> Path:
    """The guest's printed snapshot as `rofolio host --save` lays it out, with the kernel's config beside it."""
    for name, text in log.snapshot.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (directory / "config").write_text(config_text)
    return directory


def check_host(log: GuestLog, directory: Path, config_text: str) -> HostCheck:
    """``rofolio host --from`` on the guest's snapshot: the causes it names must add up to its residual, each a
    single placement's shape (host.name_residual() names what fits none as such)."""
    from rofolio.errors import RofolioError
    from rofolio.host import host_report, read_host

    if "proc/meminfo" not in log.snapshot:
        return HostCheck({}, [], False, error="the guest printed no snapshot")
    try:
        report, _ = host_report(read_host(write_snapshot(log, directory, config_text)))
    except RofolioError as err:
        return HostCheck({}, [], False, str(directory), f"rofolio host --from failed: {err}")
    return HostCheck(report.residual, [p.describe() for p in report.causes], report.explained, str(directory))
