"""The model of the machine rofolio runs on, beside its live /proc/meminfo and /proc/vmstat: ``rofolio host``.

What the model needs from a running x86-64 Linux, and where each comes from:

* RAM: the firmware's memory map, /sys/firmware/memmap/N/{start,end,type} ("System RAM" entries; the
  kernel builds its direct map from these e820 ranges, arch/x86/kernel/e820.c e820__memblock_setup());
* the initrd: the kernel log's "RAMDISK: [mem A-B]" line (arch/x86/kernel/setup.c reserve_initrd()),
  a placement the boot loader chose, which free_initrd_mem() hands back at boot;
* 1G pages: the CPU's pdpe1gb flag, CONFIG_X86_DIRECT_GBPAGES and the nogbpages/gbpages command line
  (arch/x86/mm/init.c probe_page_size_mask());
* 5-level paging: the la57 CPU flag and the no5lvl command line;
* DEBUG_PAGEALLOC and KFENCE: the command line and /proc/config.gz;
* the kernel version: /proc/version; the CPU count: /proc/cpuinfo.

The live DirectMap lines count what the direct map is now. "At boot" removes what vmstat's
direct_map_level{2,3}_{splits,collapses} counted after SYSTEM_RUNNING (arch/x86/mm/pat/set_memory.c
split_page_count() counts only then); what remains between that and the model is a residual the module
names as whole placements: boot-time changes of single 4K pages inside a 1G or a 2M leaf, each with its
exact size, the way a boot-time set_memory_*() user (a BPF JIT pack, the execmem cache) splits the direct map.

A snapshot (``rofolio host --save DIR``) holds the same files under DIR with the same relative paths, plus
``dmesg.txt`` and ``config`` (decompressed), so ``rofolio host --from DIR`` models a machine seen elsewhere.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rofolio.errors import ConfigError, EnvironmentFailure
from rofolio.machine import BootRecord, Machine, MachineSpec

__all__ = ["HostReport", "HostSnapshot", "Placement", "host_report", "read_host", "save_host", "spec_of_host"]

GIB_KB, PMD_KB = 1 << 20, 2 << 10  # a 1G and a 2M leaf in kB, as /proc/meminfo counts
FILES = ("proc/meminfo", "proc/vmstat", "proc/iomem", "proc/cmdline", "proc/version", "proc/cpuinfo",
         "proc/vmallocinfo")
# vmalloc areas whose pages' direct-map aliases their owner changes with set_memory_*() (the caller that
# /proc/vmallocinfo names -> what it is): each such change splits the leaf that maps the page's alias
_ALIAS_CHANGERS = {"bpf_prog_pack_alloc": "BPF JIT pack (kernel/bpf/core.c bpf_prog_pack_alloc())",
                   "execmem_": "execmem allocation (mm/execmem.c)",
                   "arch_ftrace_update_trampoline": "ftrace trampoline (arch/x86/kernel/ftrace.c)",
                   "module_alloc": "module memory", "its_alloc": "ITS thunk page (arch/x86/kernel/alternative.c)"}
_RAMDISK = re.compile(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_VERSION = re.compile(r"Linux version (\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class HostSnapshot:
    """The files a model of a running machine is built from (read live, or from a saved snapshot)."""

    files: dict[str, str]  # relative path -> text
    memmap: tuple[tuple[int, int, str], ...]  # firmware memory map: [start, end), type
    config: dict[str, str]  # CONFIG_X -> value ("y", "m", a number or string)
    dmesg: str
    source: str  # "live" or the snapshot directory

    def lines(self, name: str) -> list[str]:
        return self.files.get(name, "").splitlines()

    def counters(self, name: str) -> dict[str, int]:
        """'Key: value kB' (meminfo) or 'key value' (vmstat) lines as ints."""
        out = {}
        for line in self.lines(name):
            parts = line.replace(":", " ").split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
        return out

    @property
    def cmdline(self) -> list[str]:
        return self.files.get("proc/cmdline", "").split("--")[0].split()

    @property
    def cpu_flags(self) -> set[str]:
        for line in self.lines("proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
        return set()

    @property
    def nr_cpus(self) -> int:
        return sum(1 for line in self.lines("proc/cpuinfo") if line.startswith("processor")) or 1

    @property
    def version(self) -> str:
        match = _VERSION.search(self.files.get("proc/version", ""))
        if not match:
            raise ConfigError(f"{self.source}: /proc/version names no Linux version", "check the snapshot")
        return ".".join(g for g in match.groups() if g is not None)

    @property
    def alias_changers(self) -> dict[str, int]:
        """vmalloc areas this machine has now whose owners change their pages' direct-map aliases."""
        out: dict[str, int] = {}
        for line in self.lines("proc/vmallocinfo"):
            parts = line.split()
            caller = parts[2] if len(parts) > 2 else ""
            for prefix, what in _ALIAS_CHANGERS.items():
                if caller.startswith(prefix):
                    out[what] = out.get(what, 0) + 1
        return out

    @property
    def initrd(self) -> tuple[int, int] | None:
        """(physical start, bytes) of the initrd, from the RAMDISK line of the kernel log."""
        match = _RAMDISK.search(self.dmesg)
        if not match:
            return None
        start, last = int(match.group(1), 16), int(match.group(2), 16)
        return start, last + 1 - start


def _run_dmesg() -> str:
    if shutil.which("dmesg") is None:
        return ""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def read_host(root: Path | str | None = None) -> HostSnapshot:
    """The live machine (``root`` None) or a snapshot directory saved by ``save_host``."""
    base = Path(root) if root is not None else Path("/")
    live = root is None
    if not live and not base.is_dir():
        raise ConfigError(f"{base}: no such snapshot directory", "give a directory written by rofolio host --save")
    if not live and not (base / "proc/meminfo").is_file():
        raise ConfigError(f"{base} is not a host snapshot: it has no proc/meminfo",
                          "give a directory written by rofolio host --save DIR")
    files: dict[str, str] = {}
    for name in FILES:
        try:
            files[name] = (base / name).read_text()
        except OSError:
            files[name] = ""
    if "DirectMap" not in files["proc/meminfo"]:
        raise EnvironmentFailure(f"{base / 'proc/meminfo'} has no DirectMap lines",
                                 "rofolio host models an x86-64 Linux machine (arch_report_meminfo())")
    memmap = []
    folder = base / "sys/firmware/memmap"
    entries = sorted(folder.iterdir(), key=lambda p: int(p.name)) if folder.is_dir() else []
    for entry in entries:
        try:
            start = int((entry / "start").read_text(), 16)
            end = int((entry / "end").read_text(), 16) + 1  # the file holds the last byte
            memmap.append((start, end, (entry / "type").read_text().strip()))
        except (OSError, ValueError):
            continue
    if not memmap:
        raise EnvironmentFailure(f"{folder} is missing or empty",
                                 "the firmware memory map needs CONFIG_FIRMWARE_MEMMAP (or a snapshot that has it)")
    config_text = ""
    for candidate, opener in ((base / "config", open), (base / "proc/config.gz", gzip.open)):
        if candidate.exists():
            with opener(candidate, "rt") as f:  # type: ignore[operator]
                config_text = f.read()
            break
    config = dict(line.split("=", 1) for line in config_text.splitlines() if line.startswith("CONFIG_"))
    dmesg = (base / "dmesg.txt").read_text() if (base / "dmesg.txt").exists() else (_run_dmesg() if live else "")
    return HostSnapshot(files, tuple(memmap), config, dmesg, "live" if live else str(base))


def save_host(snapshot: HostSnapshot, directory: Path | str) -> Path:
    """Write the snapshot's files under ``directory`` (the layout read_host() reads)."""
    out = Path(directory)
    for name, text in snapshot.files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    for i, (start, end, kind) in enumerate(snapshot.memmap):
        entry = out / "sys/firmware/memmap" / str(i)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "start").write_text(f"{start:#x}\n")
        (entry / "end").write_text(f"{end - 1:#x}\n")
        (entry / "type").write_text(kind + "\n")
    (out / "config").write_text("".join(f"{k}={v}\n" for k, v in snapshot.config.items()))
    (out / "dmesg.txt").write_text(snapshot.dmesg)
    return out


def spec_of_host(snapshot: HostSnapshot, cpus: int | None = None) -> tuple[MachineSpec, BootRecord, list[str]]:
    """The MachineSpec and boot record of the machine the snapshot describes, and how each was decided."""
    cmd, flags, config = snapshot.cmdline, snapshot.cpu_flags, snapshot.config
    ram = [(s, e) for s, e, kind in snapshot.memmap if kind == "System RAM"]
    why = [f"RAM: {len(ram)} System RAM range(s) of the firmware memory map"]
    # probe_page_size_mask(): 1G pages need the CPU feature and direct_gbpages (Kconfig default, command line)
    gbpages = "pdpe1gb" in flags and (config.get("CONFIG_X86_DIRECT_GBPAGES") == "y" or "gbpages" in cmd) \
        and "nogbpages" not in cmd
    why.append(f"1G pages: {'on' if gbpages else 'off'} (pdpe1gb {'yes' if 'pdpe1gb' in flags else 'no'}, "
               f"CONFIG_X86_DIRECT_GBPAGES={config.get('CONFIG_X86_DIRECT_GBPAGES', 'unset')})")
    la57 = "la57" in flags and "no5lvl" not in cmd and config.get("CONFIG_X86_5LEVEL", "y") == "y"
    debug_pagealloc = "debug_pagealloc=on" in cmd or (
        config.get("CONFIG_DEBUG_PAGEALLOC_ENABLE_DEFAULT") == "y" and "debug_pagealloc=off" not in cmd)
    # mm/kfence/core.c: kfence_sample_interval starts at CONFIG_KFENCE_SAMPLE_INTERVAL (Kconfig default 100; Debian
    # sets 0) and kfence.sample_interval= overrides it; kfence_alloc_pool_and_metadata() allocates no pool at 0
    interval = config.get("CONFIG_KFENCE_SAMPLE_INTERVAL", "100")
    for word in cmd:
        if word.startswith("kfence.sample_interval="):
            interval = word.split("=", 1)[1]
    kfence = config.get("CONFIG_KFENCE") == "y" and interval.strip() not in ("0", "")
    version = snapshot.version
    major, minor = version.split(".")[:2]
    spec = MachineSpec.build(arch="x86_64", memory_map=tuple(ram), kernel=f"{major}.{minor}",
                             cpus=cpus or snapshot.nr_cpus, debug_pagealloc=debug_pagealloc, kfence=kfence,
                             gbpages=gbpages, paging=5 if la57 else 4)
    why.append(f"kernel: {version} (modelled as {major}.{minor}); {spec.cpus} CPU(s); "
               f"{'5' if la57 else '4'}-level paging; DEBUG_PAGEALLOC {'on' if debug_pagealloc else 'off'}; "
               f"KFENCE {'on' if kfence else 'off'}")
    initrd = snapshot.initrd
    why.append(f"initrd: {initrd[1] >> 10} KiB at {initrd[0]:#x} (kernel log)" if initrd else
               "initrd: none in the kernel log")
    return spec, BootRecord(initrd=initrd, source=snapshot.source), why


@dataclass(frozen=True)
class Placement:
    """A named part of the residual: ``count`` changes of one shape, each moving these kB between levels."""

    what: str
    count: int
    each: dict[str, int]  # DirectMap key -> kB, for one

    @property
    def total(self) -> dict[str, int]:
        return {k: v * self.count for k, v in self.each.items()}

    def describe(self) -> str:
        sizes = ", ".join(f"{k.removeprefix('DirectMap')} {v:+d} kB" for k, v in self.each.items() if v)
        return f"{self.count} x {self.what} (each: {sizes})"


# The shapes a boot-time change of single 4K pages leaves in /proc/meminfo (split_page_count() per split,
# set_memory.c): inside a 1G leaf, one split to 2M and one to 4K; inside a 2M leaf, one split to 4K.
IN_1G = {"DirectMap4k": PMD_KB, "DirectMap2M": GIB_KB - PMD_KB, "DirectMap1G": -GIB_KB}
IN_2M = {"DirectMap4k": PMD_KB, "DirectMap2M": -PMD_KB, "DirectMap1G": 0}


def name_residual(residual: dict[str, int]) -> list[Placement]:
    """The residual (live at boot minus model) as whole placements; what does not fit is named as such."""
    out: list[Placement] = []
    g, k4 = residual.get("DirectMap1G", 0), residual.get("DirectMap4k", 0)
    in_1g = -g // GIB_KB if g % GIB_KB == 0 else 0
    rest = {key: residual.get(key, 0) - IN_1G[key] * in_1g for key in IN_1G}
    in_2m = rest["DirectMap4k"] // PMD_KB if rest["DirectMap4k"] % PMD_KB == 0 else 0
    rest = {key: rest[key] - IN_2M[key] * in_2m for key in IN_2M}
    for count, shape, what in ((in_1g, IN_1G, "a boot-time change of 4K pages in a 1G leaf"),
                               (in_2m, IN_2M, "a boot-time change of 4K pages in a 2M leaf")):
        if count > 0:
            out.append(Placement(what + " the model did not place", count, shape))
        elif count < 0:
            out.append(Placement(what + " the model made and the kernel did not", -count,
                                 {k: -v for k, v in shape.items()}))
    if any(rest.values()) or (k4 and not out and not any(rest.values())):
        out.append(Placement("a difference of no single-placement shape", 1, rest))
    return out


@dataclass
class HostReport:
    source: str
    machine: dict[str, Any]
    decided: list[str]
    live: dict[str, int]
    vmstat: dict[str, int]
    at_boot: dict[str, int]
    model: dict[str, int]
    model_vmstat: dict[str, int]
    residual: dict[str, int]
    causes: list[Placement] = field(default_factory=list)
    alias_changers: dict[str, int] = field(default_factory=dict)  # candidates for the causes, seen now

    @property
    def explained(self) -> bool:
        """The named causes add up to the residual exactly."""
        total = {k: sum(p.total.get(k, 0) for p in self.causes) for k in self.residual}
        return total == self.residual

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "rofolio.host/1", "source": self.source, "machine": self.machine,
                "decided": self.decided, "live_kb": self.live, "live_vmstat": self.vmstat,
                "at_boot_kb": self.at_boot, "model_kb": self.model, "model_vmstat": self.model_vmstat,
                "residual_kb": self.residual,
                "causes": [{"what": p.what, "count": p.count, "each_kb": p.each, "total_kb": p.total}
                           for p in self.causes],
                "alias_changers_now": self.alias_changers,
                "explained": self.explained}


def at_boot(live: dict[str, int], vmstat: dict[str, int]) -> dict[str, int]:
    """The DirectMap lines before SYSTEM_RUNNING: undo each split and collapse vmstat counted since."""
    s2, s3 = vmstat.get("direct_map_level2_splits", 0), vmstat.get("direct_map_level3_splits", 0)
    c2, c3 = vmstat.get("direct_map_level2_collapses", 0), vmstat.get("direct_map_level3_collapses", 0)
    return {"DirectMap4k": live.get("DirectMap4k", 0) - PMD_KB * (s2 - c2),
            "DirectMap2M": live.get("DirectMap2M", 0) + PMD_KB * (s2 - c2) - GIB_KB * (s3 - c3),
            "DirectMap1G": live.get("DirectMap1G", 0) + GIB_KB * (s3 - c3)}


def host_report(snapshot: HostSnapshot) -> tuple[HostReport, Machine]:
    """Boot the model of the snapshot's machine and compare its DirectMap lines with the live ones."""
    spec, record, decided = spec_of_host(snapshot)
    m = Machine.boot(spec, record=record)
    m.finish_boot()
    live = {k: v for k, v in snapshot.counters("proc/meminfo").items() if k.startswith("DirectMap")}
    live.setdefault("DirectMap1G", 0)
    vmstat = {k: v for k, v in snapshot.counters("proc/vmstat").items() if k.startswith("direct_map")}
    model = {k: v for k, v in m.counters.meminfo_kb().items() if k.startswith("DirectMap")}
    boot = at_boot(live, vmstat)
    residual = {k: boot.get(k, 0) - model.get(k, 0) for k in ("DirectMap4k", "DirectMap2M", "DirectMap1G")}
    report = HostReport(snapshot.source, spec.describe(), decided, live, vmstat, boot, model, m.vmstat_lines(),
                        residual, name_residual(residual), snapshot.alias_changers)
    return report, m
