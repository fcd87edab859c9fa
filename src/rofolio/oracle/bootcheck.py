"""Boot fidelity: the model's boot against the kernel's, before any module is loaded.

The guest prints /proc/meminfo's DirectMap lines and /proc/vmstat at boot and
walks its page tables through /proc/kcore with ``kc`` (no module: loading one
changes the direct map).  The model boots the same machine (QEMU's e820 map,
the guest's GB-page support, the measured boot profile) to SYSTEM_RUNNING.
Compared: the e820 RAM ranges, max_pfn_mapped, every direct-map run (leaf
size, present, RW, NX, cache mode), the DirectMap lines (which over-count what
the page tables hold, docs/fidelity.md finding 5), the split counters, and,
where a profile exists, where the initrd and the BPF JIT pack landed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rofolio.oracle import model as oracle_model
from rofolio.oracle.compare import Check, describe_changes
from rofolio.oracle.guest import GuestLog, clip
from rofolio.oracle.record import record_of
from rofolio.scenario import schema
from rofolio.units import PAGE_SHIFT, PAGE_SIZE

__all__ = ["BootReport", "check_boot", "meminfo"]


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

    @property
    def agree(self) -> bool:
        return not self.errors and all(c.agree for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agree": self.agree}


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
    mvm = {key: v for key, v in m.counters.vmstat().items() if key in kvm}
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
