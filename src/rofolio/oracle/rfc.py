"""``rofolio oracle rfc``: the RFC v2 series on real kernels, beside the model's prediction for the same machine.

For every configuration (x86-64 with and without 1G pages, 1 and 4 CPUs; arm64 with rodata=on, where
``can_set_direct_map()`` is true, and rodata=off, where the arm64 hook says -EOPNOTSUPP) the oracle boots two
kernels built by ``rofolio kernel build`` from the same tree and fragment, without and with the series
(``src/rofolio/kernelbuild/patches/``), and runs the same probes in each (``kmod/rfctest.c`` and
``kmod/rfcuser.c``):

* the boot: x86's /proc/meminfo DirectMap lines and /proc/vmstat direct_map counters; arm64, which has neither,
  the linear map's bytes per leaf size from its kernel page-table dump (debugfs ``kernel_page_tables``);
* the huge zero folio found the way user space finds it: a read fault on a 2M-aligned MADV_HUGEPAGE range,
  pagemap's pfns, /proc/kpageflags' ZERO_PAGE and THP bits; then its direct-map leaf (level, writable);
* a user write to that range (copy on write, no oops);
* patch 5: folio_make_readonly() on a page that is then freed, and on an anonymous page that user space then
  asks to migrate (MADV_SOFT_OFFLINE): the WARN and the refusal;
* last, a kernel store to the huge zero folio through the direct map, in a child (it oopses when read-only).

The model boots the same machine twice (the persistent huge zero folio read-only or not, lifetime model 2) and
answers each probe through the machine's verbs.  Each row states the kernel's and the model's answer for both
kernels; ``agree`` is their equality.  The kernel's huge zero folio pfn is where its page allocator put it; the
model places its own and both are shown (the rows compare what the placement decides: the leaf and the change).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import click

from rofolio.errors import Errno
from rofolio.oracle.errors import OracleError
from rofolio.oracle.guest import (
    INIT_PRELUDE,
    Boot,
    boot_again_before_init,
    cpio_archive,
    extract_oops,
    keep,
    kv,
    run_qemu,
)
from rofolio.oracle.kmodule import module_for
from rofolio.oracle.options import TIMEOUT
from rofolio.oracle.setup import source_hash

__all__ = [
    "CONFIGS", "GuestFacts", "RfcConfig", "RfcReport", "compare_config", "model_facts",
    "parse_guest", "render",
]

SCHEMA = "rofolio.oracle.rfc/1"
HPAGE_PMD_NR = 512


@dataclass(frozen=True)
class RfcConfig:
    """One machine the series is checked on: QEMU's and the model's description of it."""

    name: str
    arch: str
    mem: str
    smp: int
    cpu: str = ""                 # x86 -cpu (pdpe1gb on or off)
    rodata: str = ""              # arm64 rodata=
    options: tuple[tuple[str, Any], ...] = ()  # the model's arch options

    def qemu_command(self, qemu: str, image: str, initrd: Path) -> list[str]:
        if self.arch == "arm64":
            return [qemu, "-M", "virt", "-cpu", "max,pauth-impdef=on", "-accel", "tcg", "-m", self.mem,
                    "-smp", str(self.smp), "-nographic", "-no-reboot", "-kernel", image, "-initrd", str(initrd),
                    "-append", f"console=ttyAMA0 panic=-1 quiet nokaslr rodata={self.rodata}"]
        return [qemu, "-accel", "tcg", "-cpu", self.cpu, "-smp", str(self.smp), "-m", self.mem, "-nographic",
                "-no-reboot", "-kernel", image, "-initrd", str(initrd),
                "-append", "console=ttyS0 panic=-1 quiet nokaslr"]


CONFIGS = (
    RfcConfig("x86_64 1G pages, 1 CPU", "x86_64", "4G", 1, cpu="max,-la57", options=(("gbpages", True),)),
    RfcConfig("x86_64 no 1G pages, 1 CPU", "x86_64", "4G", 1, cpu="max,-la57,-pdpe1gb",
              options=(("gbpages", False),)),
    RfcConfig("x86_64 1G pages, 4 CPUs", "x86_64", "4G", 4, cpu="max,-la57", options=(("gbpages", True),)),
    RfcConfig("x86_64 no 1G pages, 4 CPUs", "x86_64", "4G", 4, cpu="max,-la57,-pdpe1gb",
              options=(("gbpages", False),)),
    RfcConfig("arm64 rodata=on", "arm64", "2G", 1, rodata="on", options=(("rodata", "on"),)),
    RfcConfig("arm64 rodata=off", "arm64", "2G", 1, rodata="off", options=(("rodata", "off"),)),
)

# /init: mount; the boot's direct-map figures; rfcuser finds the huge zero folio (a read fault), then the
# kernel page-table dump of the direct map (x86 "Low Kernel Mapping", arm64 "Linear Mapping") shows its leaf
# as boot left it; then rfctest is loaded (which changes the direct map) and rfcuser probes; the kernel log last
INIT_SH = INIT_PRELUDE + r"""mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo "=== RFC BEGIN"
echo "uname=$(uname -r)"
echo "nproc=$(grep -c '^processor' /proc/cpuinfo)"
echo "boot: $(dm)"
/rfcuser read
# x86: arch/x86/mm/debug_pagetables.c page_tables/kernel; arm64: arch/arm64/mm/ptdump_debugfs.c kernel_page_tables
for f in /sys/kernel/debug/page_tables/kernel /sys/kernel/debug/kernel_page_tables; do
  [ -r $f ] && awk '/^---\[/{on = /Low Kernel Mapping|Linear Mapping start/; next} on && /^0x/{print "dm: " $0}' $f
done
dmesg -c > /dev/null
insmod /rfctest.ko
echo "insmod_rc=$?"
/rfcuser probe
dmesg -c | sed 's/^/k: /'
echo "=== RFC END"
poweroff -f
"""


# ================================================================ the guest
@dataclass
class GuestFacts:
    """What one guest showed, in the terms the rows compare."""

    uname: str = ""
    complete: bool = False
    boot: dict[str, int] = field(default_factory=dict)          # DirectMap* and direct_map_* (x86)
    linear: dict[str, int] = field(default_factory=dict)        # the direct map's bytes per leaf size (ptdump)
    dm: list[tuple[int, int, str, bool]] = field(default_factory=list)  # ptdump runs: start, end, level, RW
    huge_zero_pfn: int | None = None
    read: dict[str, str] = field(default_factory=dict)
    cow: dict[str, str] = field(default_factory=dict)
    freero: dict[str, str] = field(default_factory=dict)
    ro: dict[str, str] = field(default_factory=dict)
    migrate: dict[str, str] = field(default_factory=dict)
    kwrite_survived: bool | None = None
    oops: str = ""
    warnings: list[str] = field(default_factory=list)           # WARN messages (the line after "cut here")
    thp: dict[str, str] = field(default_factory=dict)


_DUMP_RANGE = re.compile(r"^0x([0-9a-f]+)-0x([0-9a-f]+)\s")
X86_PAGE_OFFSET = 0xFFFF888000000000  # PAGE_OFFSET of a 4-level x86-64 kernel booted with nokaslr
ARM64_PAGE_OFFSET = 0xFFFF000000000000  # 48-bit VA (the fragment's ARM64_VA_BITS_48)
VIRT_RAM_BASE = 0x40000000  # QEMU -M virt's RAM (hw/arm/virt.c VIRT_MEM): memstart_addr, the linear map's base


def _dump_run(line: str) -> tuple[int, int, str, bool] | None:
    """One line of the kernel page-table dump (x86 arch/x86/mm/dump_pagetables.c, arm64 arch/arm64/mm/ptdump.c):
    its range, leaf level (x86 names it last, lower case; arm64 third, upper case) and whether it is RW; None for
    a range that is not mapped."""
    m = _DUMP_RANGE.match(line.strip())
    if not m:
        return None
    words = line.split()
    if "F" in words or not ("RW" in words or "ro" in words):
        return None  # not present: arm64 prints F for an invalid entry, x86 no permission at all
    level = next((w.upper() for w in words[1:] if w.upper() in ("PTE", "PMD", "PUD", "P4D", "PGD")), "?")
    return int(m.group(1), 16), int(m.group(2), 16), level, "RW" in words


def direct_map_va(arch: str, pfn: int) -> int:
    """The direct-map address of a pfn in the oracle's guests (nokaslr)."""
    if arch == "arm64":
        return ARM64_PAGE_OFFSET + (pfn << 12) - VIRT_RAM_BASE
    return X86_PAGE_OFFSET + (pfn << 12)


def leaf_of(g: GuestFacts, va: int) -> str:
    """The dump's leaf over ``va``: "PMD RO", or "none"."""
    for start, end, level, rw in g.dm:
        if start <= va < end:
            return f"{level.lower()} {'RW' if rw else 'RO'}"
    return "none"
_WARN = re.compile(r"refusing to (free|migrate) read-only folio pfn:(0x[0-9a-f]+) order:(\d+)")


def parse_guest(serial: str) -> GuestFacts:
    """The facts of one guest's serial log (``INIT_SH``, rfcuser's and rfctest's lines)."""
    g = GuestFacts()
    text = serial.replace("\r", "")
    kernel_lines: list[str] = []
    for raw in text.splitlines():
        line = re.sub(r"^\[\s*\d+\.\d+\]\s?", "", raw)
        if line.startswith("uname="):
            g.uname = line.partition("=")[2].strip()
        elif line.startswith("boot: "):
            g.boot = {k: int(v) for k, v in kv(line[6:]).items() if v.isdigit()}
        elif line.startswith("dm: "):
            run = _dump_run(line[4:])
            if run is not None:
                g.dm.append(run)
                g.linear[run[2]] = g.linear.get(run[2], 0) + run[1] - run[0]
        elif line.startswith("rfcuser: "):
            what, _, rest = line[9:].partition(" ")
            d = kv(rest)
            if what == "thp":
                g.thp.update(d)
            elif what == "read":
                g.read = d
                pfn = int(d.get("pfn", "0"), 16)
                g.huge_zero_pfn = pfn or None
            elif what == "cow":
                g.cow = d
            elif what == "migrate":
                g.migrate = d
            elif what == "kwrite":
                if "survived" in d:
                    g.kwrite_survived = True
                elif g.kwrite_survived is None:
                    g.kwrite_survived = d.get("signal", "0") == "0"
        elif line.startswith("k: "):
            kernel_lines.append(line[3:])
        elif line.startswith("=== RFC END"):
            g.complete = True
    for line in kernel_lines:
        body = re.sub(r"^\[\s*\d+\.\d+\]\s?", "", line)
        if body.startswith("rfctest: cmd="):
            d = kv(body[len("rfctest: "):])
            target = {"freero": g.freero, "ro": g.ro}.get(d.get("cmd", ""))
            if target is not None and "ret" in d:
                target.update(d)
        w = _WARN.search(body)
        if w:
            g.warnings.append(w.group(0))
    g.oops = extract_oops([re.sub(r"^\[\s*\d+\.\d+\]\s?", "", x) for x in kernel_lines]) or ""
    return g


def initramfs(busybox: bytes, module: bytes, user: bytes) -> bytes:
    files = [(".", 0o040755, b""), ("bin", 0o040755, b""), ("dev", 0o040755, b""), ("proc", 0o040755, b""),
             ("sys", 0o040755, b""), ("tmp", 0o041777, b""), ("bin/busybox", 0o100755, busybox),
             ("init", 0o100755, INIT_SH.encode()), ("rfctest.ko", 0o100644, module), ("rfcuser", 0o100755, user)]
    return gzip.compress(cpio_archive(files), compresslevel=6, mtime=0)


# ================================================================ the model
@dataclass
class ModelFacts:
    """The model's answers to the same probes."""

    boot: dict[str, int]
    linear: dict[str, int]
    huge_zero_pfn: int | None
    leaf_level: str
    leaf_rw: bool
    read_huge_zero: bool
    read_pmd_mapped: bool
    cow_new_folio: bool
    cow_oops: bool
    freero_made: int | None
    freero_refused: bool
    migrate_made: int | None
    migrate_ret: int | None
    warnings: list[str]
    kwrite_lands: bool
    oops: str


def _spec(config: RfcConfig, readonly: bool) -> Any:
    from rofolio.machine import MachineSpec, MMConfig
    from rofolio.units import parse_size

    mm = MMConfig(persistent_huge_zero_folio=True, readonly_huge_zero_folio=readonly, lifetime="model2")
    return MachineSpec.build(arch=config.arch, mem=parse_size(config.mem), kernel="7.2", cpus=config.smp, mm=mm,
                             **dict(config.options))


def model_facts(config: RfcConfig, patched: bool) -> ModelFacts:
    """Boot the model of ``config`` (the series applied or not) and answer every probe through the machine."""
    from rofolio.machine import Machine
    from rofolio.units import PAGE_SHIFT, PMD_SIZE, Level

    m = Machine.boot(_spec(config, patched))
    m.finish_boot()
    boot = {}
    if config.arch == "x86_64":
        boot = {**m.counters.meminfo_kb(), **{k: v for k, v in m.counters.vmstat().items() if "splits" in k}}
    linear: dict[str, int] = {}
    if config.arch == "arm64":
        for leaf in m.leaves(m.va(m.memory.ram[0].start), m.va(m.memory.ram[-1].end)):
            if leaf.present:
                name = {Level.PTE: "PTE", Level.PMD: "PMD", Level.PUD: "PUD"}.get(leaf.level, str(leaf.level))
                linear[name] = linear.get(name, 0) + (leaf.end - leaf.start)
    hz = m.huge_zero_folio
    found = m.lookup(m.va(hz.pfn << PAGE_SHIFT)) if hz is not None else None
    level = {Level.PTE: "pte", Level.PMD: "pmd", Level.PUD: "pud"}.get(found.level, "?") if found else "none"
    mark = len(m.log.events)
    # user space: a read fault on a 2M-aligned hugepage range, then a write to it
    p = m.process()
    addr = m.mmap(p, PMD_SIZE, write=True, hugepage=True)
    m.user_read(p, addr)
    read_folio = m.folio_at(p, addr)
    read_huge_zero = hz is not None and read_folio is hz
    read_pmd = read_huge_zero and m.maps(p, hz.pfn + HPAGE_PMD_NR - 1)
    m.user_write(p, addr, 0x5A)
    cow_folio = m.folio_at(p, addr)
    cow_oops = any(e.kind == "fault" for e in m.log.events[mark:])
    # patch 5: a page made read-only and freed; an anonymous page made read-only and migrated
    warnings: list[str] = []
    freero_made = freero_refused = None
    migrate_made = migrate_ret = None
    if patched:
        folio = m.alloc_folio("kernel")
        assert folio is not None
        freero_made = m.make_readonly(folio, "rfctest freero")
        m.folio_put(folio)
        freero_refused = folio.leaked
        q = m.process()
        a = m.mmap(q, 1 << PAGE_SHIFT, write=True, hugepage=False)
        m.user_write(q, a, 1)
        anon = m.folio_at(q, a)
        assert anon is not None
        migrate_made = m.make_readonly(anon, "rfctest ro")
        migrate_ret, _ = m.migrate(anon, 0)
        for e in m.log.events[mark:]:
            if e.kind == "warning":
                w = _WARN.search(e.text)  # type: ignore[attr-defined]
                if w:
                    warnings.append(w.group(0))
    # last: the kernel store to the huge zero folio (the child that oopses)
    lands, oops = True, ""
    if hz is not None:
        outcome = m.kernel_store(m.va(hz.pfn << PAGE_SHIFT))
        lands = outcome.ok
        oops = outcome.fault.text if outcome.fault is not None else ""
    return ModelFacts(boot, linear, hz.pfn if hz else None, level, bool(found and found.writable), read_huge_zero,
                      bool(read_pmd), cow_folio is not None and cow_folio is not hz, cow_oops, freero_made,
                      bool(freero_refused), migrate_made, migrate_ret, warnings, lands, oops)


# ================================================================ the rows
def _boot_delta(base: dict[str, int], rfc: dict[str, int]) -> str:
    keys = sorted(set(base) | set(rfc))
    parts = [f"{k} {rfc.get(k, 0) - base.get(k, 0):+d}" for k in keys if rfc.get(k, 0) != base.get(k, 0)]
    return ", ".join(parts) or "no change"


def _errno(ret: int) -> str:
    return "0" if ret == 0 else Errno.describe(ret)


def _oops_key(text: str) -> str:
    """The lines of an oops both sides print: the access and the reason (addresses and entries differ with the
    placement, which the pfn rows show)."""
    keep = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#PF:") or line.startswith("Unable to handle kernel") or "Oops" in line.split(" [#")[0]:
            keep.append(re.sub(r"\s*\[#\d+\].*$", "", re.sub(r"address[: ]+[0-9a-fx]+", "address", line)))
    return " / ".join(keep) or "(no oops)"


ROWS = ("huge zero folio: leaf", "user read", "user write", "patch 5: free a read-only folio",
        "patch 5: migrate a read-only folio", "kernel write to the huge zero folio")


def _pairs(boot_change: str, answers: tuple[Callable[[Any], str], ...], base: Any,
           rfc: Any) -> dict[str, tuple[str, str]]:
    """Row name -> (unpatched, patched): the boot's change first, then each answer of both kernels."""
    pairs = {"boot: direct map change": ("(baseline)", boot_change)}
    for name, answer in zip(ROWS, answers, strict=True):
        pairs[name] = (answer(base), answer(rfc))
    return pairs


def kernel_rows(config: RfcConfig, base: GuestFacts, rfc: GuestFacts) -> dict[str, tuple[str, str]]:
    """Row name -> (unpatched, patched) as the kernels showed them."""
    def leaf(g: GuestFacts) -> str:
        return leaf_of(g, direct_map_va(config.arch, g.huge_zero_pfn)) if g.huge_zero_pfn else "no huge zero folio"

    def read(g: GuestFacts) -> str:
        r = g.read
        if not r:
            return "no read"
        served = r.get("zero") == "1" and r.get("thp") == "1"
        pmd = r.get("aligned") == "1" and int(r.get("last", "0"), 16) == int(r.get("pfn", "0"), 16) + 511
        return f"{'huge zero folio' if served else 'another page'}, {'PMD-mapped' if pmd else 'not PMD-mapped'}"

    def cow(g: GuestFacts) -> str:
        c = g.cow
        if not c:
            return "no result (rfcuser died before its write)"
        new = int(c.get("pfn", "0"), 16) not in (0, g.huge_zero_pfn)
        ok = c.get("value") == "0x5a" and c.get("nonzero_rest") == "0"
        return "copied on write" if new and ok else "NOT copied"

    def freero(g: GuestFacts) -> str:
        f = g.freero
        if not f or f.get("ret") == "missing":
            return "no folio_make_readonly()"
        made, free = int(f.get("ret", "0")), f.get("free")
        if free not in ("0", "1"):
            return "not known (no drain_all_pages() or is_free_buddy_page() to ask)"
        if made:
            return f"not made read-only ({_errno(made)}), {'freed' if free == '1' else 'not freed'}"
        warned = any(w.startswith("refusing to free") for w in g.warnings)
        return f"{'WARN, ' if warned else ''}{'freed' if free == '1' else 'refused (leaked)'}"

    def migrate(g: GuestFacts) -> str:
        r = g.ro
        if not r or r.get("ret") == "missing":
            return "no folio_make_readonly()"
        made = int(r.get("ret", "0"))
        mv = g.migrate
        failed = mv.get("ret") not in ("0", None)
        errno = int(mv.get("errno", "0"))
        warned = any(w.startswith("refusing to migrate") for w in g.warnings)
        what = f"refused ({_errno(-errno)})" if failed else "migrated"
        return (f"not made read-only ({_errno(made)}), " if made else "") + ("WARN, " if warned else "") + what

    def kwrite(g: GuestFacts) -> str:
        if g.kwrite_survived:
            return "the store lands"
        return "oops: " + _oops_key(g.oops) if g.oops else "killed without an oops"

    def boot(g: GuestFacts) -> dict[str, int]:
        return g.boot if config.arch == "x86_64" else g.linear

    return _pairs(_boot_delta(boot(base), boot(rfc)), (leaf, read, cow, freero, migrate, kwrite), base, rfc)


def model_rows(config: RfcConfig, base: ModelFacts, rfc: ModelFacts) -> dict[str, tuple[str, str]]:
    def leaf(f: ModelFacts) -> str:
        return f"{f.leaf_level} {'RW' if f.leaf_rw else 'RO'}"

    def read(f: ModelFacts) -> str:
        return (f"{'huge zero folio' if f.read_huge_zero else 'another page'}, "
                f"{'PMD-mapped' if f.read_pmd_mapped else 'not PMD-mapped'}")

    def cow(f: ModelFacts) -> str:
        if f.cow_oops:
            return "no result (rfcuser died before its write)"
        return "copied on write" if f.cow_new_folio else "NOT copied"

    def freero(f: ModelFacts) -> str:
        if f.freero_made is None:
            return "no folio_make_readonly()"
        if f.freero_made:
            return f"not made read-only ({_errno(f.freero_made)}), {'not freed' if f.freero_refused else 'freed'}"
        warned = any(w.startswith("refusing to free") for w in f.warnings)
        return f"{'WARN, ' if warned else ''}{'refused (leaked)' if f.freero_refused else 'freed'}"

    def migrate(f: ModelFacts) -> str:
        if f.migrate_made is None:
            return "no folio_make_readonly()"
        warned = any(w.startswith("refusing to migrate") for w in f.warnings)
        what = f"refused ({_errno(f.migrate_ret)})" if f.migrate_ret else "migrated"
        return (f"not made read-only ({_errno(f.migrate_made)}), " if f.migrate_made else "") + \
            ("WARN, " if warned else "") + what

    def kwrite(f: ModelFacts) -> str:
        return "the store lands" if f.kwrite_lands else "oops: " + _oops_key(f.oops)

    def boot(f: ModelFacts) -> dict[str, int]:
        return f.boot if config.arch == "x86_64" else f.linear

    return _pairs(_boot_delta(boot(base), boot(rfc)), (leaf, read, cow, freero, migrate, kwrite), base, rfc)


@dataclass
class ConfigReport:
    config: str
    kernels: dict[str, str]                       # unpatched/patched -> uname -r
    pfns: dict[str, Any]                          # the huge zero folio's pfn, kernel and model
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def agree(self) -> bool:
        return not self.errors and all(r["agree"] for r in self.rows)


def compare_config(config: RfcConfig, base: GuestFacts, rfc: GuestFacts, wall_s: float = 0.0) -> ConfigReport:
    rep = ConfigReport(config.name, {"unpatched": base.uname, "patched": rfc.uname}, {}, wall_s=round(wall_s, 1))
    for label, g in (("unpatched", base), ("patched", rfc)):
        if not g.complete:
            rep.errors.append(f"the {label} guest did not finish")
    if rep.errors:
        return rep
    mb, mr = model_facts(config, False), model_facts(config, True)
    rep.pfns = {"kernel unpatched": base.huge_zero_pfn, "kernel patched": rfc.huge_zero_pfn,
                "model": mr.huge_zero_pfn}
    k, m = kernel_rows(config, base, rfc), model_rows(config, mb, mr)
    for name in k:
        (kb, kr), (mbv, mrv) = k[name], m[name]
        rep.rows.append({"row": name, "kernel unpatched": kb, "model unpatched": mbv, "kernel patched": kr,
                         "model patched": mrv, "agree": kb == mbv and kr == mrv})
    return rep


@dataclass
class RfcReport:
    configs: list[ConfigReport]
    series: list[str]

    @property
    def agree(self) -> bool:
        return all(c.agree for c in self.configs)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "series": self.series, "agree": self.agree,
                "configs": [{**asdict(c), "agree": c.agree} for c in self.configs]}


def render(rep: RfcReport) -> list[str]:
    out = []
    for c in rep.configs:
        out.append(f"== {c.config}: {'agree' if c.agree else 'DIFFER'} ({c.kernels.get('unpatched')} vs "
                   f"{c.kernels.get('patched')}, {c.wall_s:.0f} s)")
        for e in c.errors:
            out.append(f"   error: {e}")
        if c.pfns:
            out.append("   huge zero folio pfn: " + ", ".join(f"{k} {v:#x}" if v is not None else f"{k} none"
                                                             for k, v in c.pfns.items()))
        for r in c.rows:
            mark = "  " if r["agree"] else "!!"
            out.append(f" {mark} {r['row']}")
            out.append(f"      unpatched  kernel: {r['kernel unpatched']}")
            if r["model unpatched"] != r["kernel unpatched"]:
                out.append(f"                 model: {r['model unpatched']}")
            out.append(f"      patched    kernel: {r['kernel patched']}")
            if r["model patched"] != r["kernel patched"]:
                out.append(f"                 model: {r['model patched']}")
    agree = sum(c.agree for c in rep.configs)
    out.append(f"{agree}/{len(rep.configs)} configurations agree with the model on every row")
    return out


# ================================================================ running
def build_user(arch: str, cache: Path, log: Callable[[str], None]) -> Path:
    """rfcuser, static, for ``arch`` (the cross gcc for arm64), cached by the source's digest."""
    src = Path(str(resources.files("rofolio.oracle") / "kmod" / "rfcuser.c"))
    out = cache / f"rfcuser-{arch}-{source_hash(('rfcuser.c',))}"
    if out.exists():
        return out
    cc = "aarch64-linux-gnu-gcc" if arch == "arm64" else "gcc"
    log(f"building rfcuser ({cc} -static)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    proc = subprocess.run([cc, "-O2", "-static", "-Wall", "-o", str(tmp_out), str(src)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise OracleError(f"building rfcuser with {cc} failed:\n{proc.stderr.strip()[-2000:]}",
                          "install gcc (and gcc-aarch64-linux-gnu, libc6-dev-arm64-cross for arm64)")
    tmp_out.rename(out)
    return out


def run_guest(config: RfcConfig, qemu: str, image: str, busybox: bytes, module: Path, user: Path,
              timeout: float) -> tuple[GuestFacts, Boot]:
    """Boot one guest (once more if it never reached /init: boot_again_before_init()) and read its facts."""
    def once() -> Boot:
        with tempfile.TemporaryDirectory(prefix="rofolio-rfc-") as tmp:
            initrd = Path(tmp) / "initrd.gz"
            initrd.write_bytes(initramfs(busybox, module.read_bytes(), user.read_bytes()))
            return run_qemu(config.qemu_command(qemu, image, initrd), timeout, "run `rofolio kernel build` again")
    boot = boot_again_before_init(once, "=== RFC BEGIN")
    if boot.timed_out:
        raise OracleError(f"the {config.name} guest ({image}) did not power off within {timeout:.0f} s",
                          "raise --timeout, or look at the serial log with --keep-log")
    return parse_guest(boot.serial), boot


def to_json(rep: RfcReport) -> str:
    return json.dumps(rep.to_dict(), indent=1)


def _busybox_and_qemu(arch: str) -> tuple[bytes, str]:
    """The static busybox and the QEMU of the oracle's setup for ``arch`` (x86-64: ``rofolio oracle setup``;
    arm64: ``rofolio oracle setup --arch arm64``)."""
    if arch == "arm64":
        from rofolio.oracle import arm64

        inst = arm64.load_install()
        return Path(inst.busybox).read_bytes(), inst.qemu
    from rofolio.oracle import setup as oracle_setup

    x86 = oracle_setup.load_install()
    return Path(x86.busybox).read_bytes(), x86.qemu


def run(configs: list[RfcConfig], *, timeout: float = 300.0, keep_log: Path | None = None,
        log: Callable[[str], None] = lambda _line: None) -> RfcReport:
    """Build (or take from the cache) both kernels of each architecture, boot each configuration on both."""
    from rofolio.kernelbuild import build
    from rofolio.kernelbuild.source import rfc_series
    from rofolio.oracle import setup as oracle_setup

    series = list(rfc_series().names)
    arches = list(dict.fromkeys(c.arch for c in configs))
    kernels: dict[tuple[str, bool], Any] = {}
    modules: dict[tuple[str, bool], Path] = {}
    tools: dict[str, tuple[bytes, str, Path]] = {}
    for arch in arches:
        busybox, qemu = _busybox_and_qemu(arch)
        for patched in (False, True):
            log(f"kernel build --arch {arch}{' --rfc' if patched else ''}")
            built = build(arch, rfc=patched, log=lambda line: log(f"  {line}"))
            kernels[(arch, patched)] = built
            modules[(arch, patched)] = module_for(built, "rfctest.c", log)
        tools[arch] = (busybox, qemu, build_user(arch, oracle_setup.cache_dir() / "rfc", log))
    reports = []
    for config in configs:
        busybox, qemu, user = tools[config.arch]
        facts, wall = [], 0.0
        for patched in (False, True):
            built = kernels[(config.arch, patched)]
            log(f"{config.name}: booting {'the patched' if patched else 'the unpatched'} kernel")
            g, boot = run_guest(config, qemu, built.image, busybox, modules[(config.arch, patched)], user, timeout)
            for note in boot.notes:
                log(f"{config.name}: {note}")
            slug = re.sub(r"[^A-Za-z0-9]+", "-", config.name).strip("-")
            keep(keep_log, f"rfc-{slug}-{'rfc' if patched else 'base'}.serial.log", boot.serial)
            facts.append(g)
            wall += boot.wall_s
        reports.append(compare_config(config, facts[0], facts[1], wall))
        log(f"{config.name}: {'agree' if reports[-1].agree else 'DIFFER'} ({wall:.0f} s of boots)")
    return RfcReport(reports, series)


def _slug(config: RfcConfig) -> str:
    return re.sub(r"[^a-z0-9]+", "-", config.name.lower().replace("x86_64", "x86")).strip("-")


@click.command(name="rfc")
@click.option("--config", "names", multiple=True, type=click.Choice([_slug(c) for c in CONFIGS]),
              help="Only this configuration (repeatable) [default: all six].")
@click.option("--arch", "arches", multiple=True, type=click.Choice(["x86_64", "arm64"]),
              help="Only the configurations of this architecture (repeatable).")
@click.option("--timeout", default=300.0, show_default=True, type=TIMEOUT, help="Seconds before a boot is killed.")
@click.option("--json", "as_json", is_flag=True, help=f"Print the result as JSON ({SCHEMA}).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each guest's serial console log in this directory.")
def rfc_command(names: tuple[str, ...], arches: tuple[str, ...], timeout: float, as_json: bool,
                keep_log: Path | None) -> None:
    """The RFC v2 series on real kernels: boot the unpatched and the patched 7.2 kernel on each configuration
    (x86-64 with and without 1G pages, 1 and 4 CPUs; arm64 rodata=on and off) and print, beside the model's
    prediction for the same machine, what the series changed: the boot's direct map, the huge zero folio's leaf,
    a user read and write of it, the patch-5 refusals, and a kernel write to it.

    Needs `rofolio oracle setup` (x86-64) and `rofolio oracle setup --arch arm64` (their busybox and QEMU); the
    kernels come from `rofolio kernel build` (built here if not cached: minutes per kernel)."""
    configs = [c for c in CONFIGS if (not names or _slug(c) in names) and (not arches or c.arch in arches)]
    if not configs:
        raise click.BadParameter("no configuration matches --config and --arch together", param_hint="--config")
    rep = run(configs, timeout=timeout, keep_log=keep_log,
              log=lambda line: click.echo(f"rofolio oracle rfc: {line}", err=True))
    if as_json:
        click.echo(to_json(rep))
    else:
        click.echo("\n".join(render(rep)))
    if not rep.agree:
        from rofolio.errors import ChecksFailed

        raise ChecksFailed(f"{sum(not c.agree for c in rep.configs)} of {len(rep.configs)} configuration(s) "
                           "disagree with the model on some row")
