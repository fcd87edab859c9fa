"""The model of the machine rofolio runs on, beside its live /proc/meminfo and /proc/vmstat: ``rofolio host``.

What the model needs from a running x86-64 Linux, and where each comes from:

* RAM: the firmware's memory map, /sys/firmware/memmap/N/{start,end,type} ("System RAM" entries; the
  kernel builds its direct map from these e820 ranges, arch/x86/kernel/e820.c e820__memblock_setup());
* the initrd: the kernel log's "RAMDISK: [mem A-B]" line (arch/x86/kernel/setup.c reserve_initrd()),
  a placement the boot loader chose, which free_initrd_mem() hands back at boot;
* 1G pages: the CPU's pdpe1gb flag, CONFIG_X86_DIRECT_GBPAGES and the nogbpages/gbpages command line
  (arch/x86/mm/init.c probe_page_size_mask());
* 5-level paging: the la57 CPU flag and the no5lvl command line;
* DEBUG_PAGEALLOC and KFENCE: the command line and the kernel config (/proc/config.gz, else
  /boot/config-RELEASE);
* the kernel version: /proc/version; the CPU count: /proc/cpuinfo.

The live DirectMap lines count what the direct map is now. "At boot" removes what vmstat's
direct_map_level{2,3}_{splits,collapses} counted after SYSTEM_RUNNING (arch/x86/mm/pat/set_memory.c
split_page_count() counts only then); what remains between that and the model is a residual the module
names as whole placements: boot-time changes of single 4K pages inside a 1G or a 2M leaf, each with its
exact size, the way a boot-time set_memory_*() user (a BPF JIT pack, the execmem cache) splits the direct map.

A snapshot (``rofolio host --save DIR``) holds the same files under DIR with the same relative paths, plus
``dmesg.txt`` (the kernel log) and ``config`` (decompressed), so ``rofolio host --from DIR`` models a
machine seen elsewhere. A snapshot is user input and is read strictly (a problem is a ConfigError, exit 2,
naming the file, and the line where there is one):

* required: ``proc/meminfo`` (DirectMap4k and DirectMap2M, DirectMap1G with 1G pages, each ``N kB``),
  ``proc/vmstat`` (direct_map_level2_splits and direct_map_level3_splits; the collapse lines from 6.15),
  ``proc/cmdline`` (may be empty), ``proc/version``, ``proc/cpuinfo`` (processor and flags lines),
  ``sys/firmware/memmap/N/{start,end,type}`` (hexadecimal; ``end`` is the range's last byte) with at
  least one System RAM range, and ``config`` (or ``proc/config.gz``) with CONFIG_ lines. The vmstat counts
  must not undo more than the DirectMap lines hold.
* optional, said so in the output when missing: ``dmesg.txt`` (without a kernel log that reaches back to
  boot the initrd is unknown and modelled as none) and ``proc/vmallocinfo`` (the users of set_memory_*() on
  vmalloc pages are then not named); ``proc/iomem`` is kept but not read.

On the live machine a required file that cannot be read is an environment failure (exit 4); the config,
the kernel log and vmallocinfo may be unreadable there (no IKCONFIG_PROC, dmesg_restrict, not root), which
the output says. ``save_host`` writes only what was read, so ``--from`` on such a snapshot names what is
missing.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rofolio.errors import ConfigError, EnvironmentFailure, RofolioError
from rofolio.kversion import NEWEST_KERNEL, KernelVersion
from rofolio.machine import BootRecord, Machine, MachineSpec

__all__ = ["HostReport", "HostSnapshot", "Placement", "host_report", "read_host", "save_host", "spec_of_host"]

GIB_KB, PMD_KB = 1 << 20, 2 << 10  # a 1G and a 2M leaf in kB, as /proc/meminfo counts
FILES = ("proc/meminfo", "proc/vmstat", "proc/iomem", "proc/cmdline", "proc/version", "proc/cpuinfo",
         "proc/vmallocinfo")
# what each file a snapshot must have gives the model (a missing one is named with this)
REQUIRED = {"proc/meminfo": "the DirectMap lines the model is compared with",
            "proc/vmstat": "the direct_map_* counts that undo the splits since boot",
            "proc/cmdline": "the command line (nogbpages, no5lvl, debug_pagealloc, kfence.sample_interval)",
            "proc/version": "the kernel version",
            "proc/cpuinfo": "the CPU count and the pdpe1gb and la57 flags",
            "sys/firmware/memmap": "the firmware memory map: the RAM the direct map covers",
            "config": "the kernel config (CONFIG_X86_DIRECT_GBPAGES, CONFIG_KFENCE, DEBUG_PAGEALLOC)"}
DIRECTMAP_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G")
SPLITS = ("direct_map_level2_splits", "direct_map_level3_splits")  # the collapse lines come with 6.15
# vmalloc areas whose pages' direct-map aliases their owner changes with set_memory_*() (the caller that
# /proc/vmallocinfo names -> what it is): each such change splits the leaf that maps the page's alias
_ALIAS_CHANGERS = {"bpf_prog_pack_alloc": "BPF JIT pack (kernel/bpf/core.c bpf_prog_pack_alloc())",
                   "execmem_": "execmem allocation (mm/execmem.c)",
                   "arch_ftrace_update_trampoline": "ftrace trampoline (arch/x86/kernel/ftrace.c)",
                   "module_alloc": "module memory", "its_alloc": "ITS thunk page (arch/x86/kernel/alternative.c)"}
_RAMDISK = re.compile(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_VERSION = re.compile(r"Linux version (\d+)\.(\d+)(?:\.(\d+))?")
_NUMBER = re.compile(r"[0-9]+")
_HEX = re.compile(r"(0x)?[0-9a-fA-F]+")
_SAVE_HINT = "rofolio host --save DIR writes every file rofolio host --from DIR reads"


def _problem(live: bool, message: str, hint: str) -> RofolioError:
    """A snapshot's problem is bad input (ConfigError, exit 2); the live machine's, an environment failure (4)."""
    return EnvironmentFailure(message, hint) if live else ConfigError(message, hint)


def _missing(path: Path | str, name: str) -> ConfigError:
    return ConfigError(f"{path}: missing from the snapshot: it holds {REQUIRED[name]}",
                       f"copy the machine's /{name} there; {_SAVE_HINT}" if name != "config" else
                       f"copy the kernel's config there (/boot/config-RELEASE, or zcat /proc/config.gz); {_SAVE_HINT}")


@dataclass(frozen=True)
class HostSnapshot:
    """The files a model of a running machine is built from (read live, or from a saved snapshot).

    ``files`` holds only the files that were read: an optional one (proc/vmallocinfo, proc/iomem) may be
    absent. ``config`` and ``dmesg`` are None when there is none (the live machine could not give it)."""

    files: dict[str, str]  # relative path -> text
    memmap: tuple[tuple[int, int, str], ...]  # firmware memory map: [start, end), type
    config: dict[str, str] | None  # CONFIG_X -> value ("y", "m", a number or string); None: not readable
    dmesg: str | None  # the kernel log; None: none in the snapshot, or not readable here
    source: str  # "live" or the snapshot directory
    config_from: str = ""  # the file the config was read from

    @property
    def live(self) -> bool:
        return self.source == "live"

    def path(self, name: str) -> str:
        """Where ``name`` (a relative path) was read: /proc/... on the live machine, DIR/proc/... else."""
        return f"/{name}" if self.live else str(Path(self.source) / name)

    def _error(self, message: str, hint: str) -> RofolioError:
        return _problem(self.live, message, hint)

    def lines(self, name: str) -> list[str]:
        return self.files.get(name, "").splitlines()

    def _lines_of(self, name: str, prefix: str, sep: str) -> Iterator[tuple[str, str, list[str]]]:
        """(where, key, the words after it) of each line of ``name`` that starts with ``prefix``, its key ending
        at ``sep`` ('Key: N kB' in meminfo, 'key N' in vmstat); a key seen twice is refused once its line has
        been read."""
        seen: set[str] = set()
        for no, line in enumerate(self.lines(name), 1):
            if line.startswith(prefix):
                key, _, rest = line.partition(sep)
                where = f"{self.path(name)}:{no}: {key}"
                yield where, key, rest.split()
                if key in seen:
                    raise self._error(f"{where}: the line appears twice", "keep the one the kernel printed")
                seen.add(key)

    def directmap(self) -> dict[str, int]:
        """The DirectMap lines of /proc/meminfo in kB (arch_report_meminfo(): 4k and 2M always, 1G with
        direct_gbpages; DirectMap1G is 0 when absent); a line that does not read as 'N kB' is refused."""
        name, out = "proc/meminfo", {}
        for where, key, words in self._lines_of(name, "DirectMap", ":"):
            if key not in DIRECTMAP_KEYS:
                raise self._error(f"{where}: not a line x86-64 prints", "rofolio host models an x86-64 machine: "
                                  f"its lines are {', '.join(DIRECTMAP_KEYS)}")
            if len(words) != 2 or words[1] != "kB" or not _NUMBER.fullmatch(words[0]):
                raise self._error(f"{where}: {' '.join(words)!r} is not a count of kB",
                                  f"the kernel prints e.g. '{key}:   2048 kB'")
            out[key] = int(words[0])
        if not out:
            raise self._error(f"{self.path(name)} has no DirectMap lines",
                              "rofolio host models an x86-64 Linux machine (arch_report_meminfo())")
        absent = [k for k in DIRECTMAP_KEYS[:2] if k not in out]
        if absent:
            raise self._error(f"{self.path(name)} has no {' and no '.join(absent)} line",
                              "x86-64 prints DirectMap4k and DirectMap2M always (arch_report_meminfo())")
        out.setdefault("DirectMap1G", 0)
        return out

    def direct_map_vmstat(self) -> dict[str, int]:
        """The direct_map_* lines of /proc/vmstat; a snapshot must have the split lines (the live machine's
        kernel may print none: host_report() says so)."""
        name, out = "proc/vmstat", {}
        for where, key, words in self._lines_of(name, "direct_map", " "):
            if len(words) != 1 or not _NUMBER.fullmatch(words[0]):
                raise self._error(f"{where}: {' '.join(words)!r} is not a count", f"the kernel prints e.g. '{key} 3'")
            out[key] = int(words[0])
        absent = [k for k in SPLITS if k not in out]
        if absent and not self.live:
            raise ConfigError(f"{self.path(name)} has no {' and no '.join(absent)} line: the splits since boot "
                              "cannot be undone", "save the machine's /proc/vmstat whole (x86-64 kernels with "
                              "CONFIG_VM_EVENT_COUNTERS print these lines)")
        return out

    @property
    def cmdline(self) -> list[str]:
        return self.files.get("proc/cmdline", "").split("--")[0].split()

    @property
    def cpu_flags(self) -> set[str]:
        for line in self.lines("proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split()) if ":" in line else set()
        raise self._error(f"{self.path('proc/cpuinfo')} has no 'flags' line: the CPU's pdpe1gb and la57 flags "
                          "are unknown", "save the machine's /proc/cpuinfo whole")

    @property
    def nr_cpus(self) -> int:
        count = sum(1 for line in self.lines("proc/cpuinfo") if line.startswith("processor"))
        if not count:
            raise self._error(f"{self.path('proc/cpuinfo')} has no 'processor' lines: the CPU count is unknown",
                              "save the machine's /proc/cpuinfo whole")
        return count

    @property
    def version(self) -> str:
        match = _VERSION.search(self.files.get("proc/version", ""))
        if not match:
            raise self._error(f"{self.path('proc/version')} names no Linux version",
                              "it holds the kernel's banner, 'Linux version 6.1.0 ...'")
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
        match = _RAMDISK.search(self.dmesg or "")
        if not match:
            return None
        start, last = int(match.group(1), 16), int(match.group(2), 16)
        if last < start:
            raise self._error(f"{self.path('dmesg.txt')}: {match.group(0)!r} ends before it starts",
                              "the kernel prints the initrd's first and last byte")
        return start, last + 1 - start

    def initrd_decided(self) -> str:
        """How the initrd was decided, saying so when the kernel log cannot tell."""
        log = "the kernel log (dmesg)" if self.live else f"the kernel log {self.path('dmesg.txt')}"
        initrd = self.initrd
        if initrd:
            return f"initrd: {initrd[1] >> 10} KiB at {initrd[0]:#x} (kernel log)"
        if self.dmesg is None:
            why = "the kernel log is not readable here" if self.live else \
                f"no kernel log in the snapshot ({self.path('dmesg.txt')})"
        elif not self.dmesg.strip():
            why = f"{log} is empty"
        elif "Linux version" not in self.dmesg:
            why = f"{log} does not reach back to boot (no 'Linux version' line)"
        else:
            return "initrd: none (the kernel log from boot has no RAMDISK line)"
        return f"initrd: unknown, modelled as none: {why}"


def _run_dmesg() -> str | None:
    """The live kernel log, or None when it cannot be read (no dmesg, dmesg_restrict without root)."""
    if shutil.which("dmesg") is None:
        return None
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, errors="replace", timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 and out.stdout.strip() else None


def _read_text(path: Path, live: bool) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as err:
        raise _problem(live, f"{path}: not text ({err.reason} at byte {err.start})",
                       "give the file as the kernel printed it") from err
    except OSError as err:
        raise _problem(live, f"{path}: cannot be read: {err.strerror or err}",
                       "check that the file exists and is readable") from err


def _read_memmap(base: Path, live: bool) -> tuple[tuple[int, int, str], ...]:
    """The firmware memory map: each entry's [start, end) and type, every entry read strictly."""
    folder = base / "sys/firmware/memmap"
    no_memmap = EnvironmentFailure(f"{folder} is missing or empty",
                                   "the firmware memory map needs CONFIG_FIRMWARE_MEMMAP (or a snapshot that has it)")
    if not folder.is_dir():
        raise no_memmap if live else _missing(folder, "sys/firmware/memmap")
    entries = []
    for entry in folder.iterdir():
        if not (entry.is_dir() and entry.name.isascii() and entry.name.isdigit()):
            raise _problem(live, f"{entry}: not an entry of the firmware memory map",
                           "its entries are directories 0, 1, 2, ... each holding start, end and type")
        entries.append(entry)
    memmap: list[tuple[int, int, str]] = []
    ram: list[tuple[int, int, Path]] = []
    for entry in sorted(entries, key=lambda p: int(p.name)):
        text = {}
        for key in ("start", "end", "type"):
            if not (entry / key).exists() and not live:
                raise ConfigError(f"{entry / key}: missing from the snapshot",
                                  f"each entry holds start, end and type; {_SAVE_HINT}")
            text[key] = _read_text(entry / key, live).strip()
            if not text[key]:
                raise _problem(live, f"{entry / key}: empty", "it holds a hexadecimal address (start, end) "
                               "or the range's type ('System RAM')")
        value = {}
        for key in ("start", "end"):
            if not _HEX.fullmatch(text[key]):
                raise _problem(live, f"{entry / key}: {text[key]!r} is not a hexadecimal address",
                               "the kernel writes e.g. 0x100000 (end: the range's last byte, e.g. 0xbfffffff)")
            value[key] = int(text[key], 16)
        start, last = value["start"], value["end"]
        if last < start:
            raise _problem(live, f"{entry}: the range ends before it starts (start {start:#x}, end {last:#x})",
                           "end holds the range's last byte, at or above start")
        memmap.append((start, last + 1, text["type"]))
        if text["type"] == "System RAM":
            ram.append((start, last + 1, entry))
    if not memmap:
        if live:
            raise no_memmap
        raise ConfigError(f"{folder}: empty: the snapshot has no firmware memory map", _SAVE_HINT)
    if not ram:
        raise _problem(live, f"{folder}: no entry is of type 'System RAM'", "the direct map covers the System "
                       "RAM ranges: save the machine's firmware memory map whole")
    ram.sort()
    for (s0, e0, p0), (s1, e1, p1) in itertools.pairwise(ram):
        if s1 < e0:
            raise _problem(live, f"{p0} and {p1}: the System RAM ranges [{s0:#x}, {e0:#x}) and [{s1:#x}, {e1:#x}) "
                           "overlap", "fix the start or end file of one of them")
    return tuple(memmap)


def _parse_config(text: str, path: Path | str, live: bool) -> dict[str, str]:
    config = {}
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith("CONFIG_"):
            key, eq, value = line.partition("=")
            if not eq:
                raise _problem(live, f"{path}:{no}: {line.strip()!r} is not a CONFIG_X=value line",
                               "a .config line reads CONFIG_X=y (or '# CONFIG_X is not set')")
            config[key] = value
    if not config:
        raise _problem(live, f"{path} has no CONFIG_ lines: it is not a kernel config",
                       "give the kernel's .config (/boot/config-RELEASE, or zcat /proc/config.gz)")
    return config


def _read_config(base: Path, live: bool) -> tuple[dict[str, str] | None, str]:
    """The kernel config and the file it came from: a snapshot's ``config`` (or ``proc/config.gz``); live,
    /proc/config.gz or /boot/config-RELEASE, None when neither is readable."""
    if live:
        candidates = [(Path("/proc/config.gz"), True), (Path(f"/boot/config-{os.uname().release}"), False)]
    else:
        candidates = [(base / "config", False), (base / "proc/config.gz", True)]
    for path, zipped in candidates:
        if not path.exists():
            continue
        try:
            with (gzip.open(path, "rt") if zipped else open(path)) as f:
                text = f.read()
        except (OSError, EOFError, UnicodeDecodeError) as err:
            if live:
                continue  # an unreadable config here is a note, as a missing one
            raise ConfigError(f"{path}: cannot be read: {err}",
                              "give the kernel's .config as text (config) or gzipped (proc/config.gz)") from err
        return _parse_config(text, path, live), str(path)
    if live:
        return None, ""
    raise _missing(base / "config", "config")


def read_host(root: Path | str | None = None) -> HostSnapshot:
    """The live machine (``root`` None) or a snapshot directory saved by ``save_host``.

    A snapshot is read strictly (see the module's docstring): a required file missing, or one the model
    reads that does not parse, is a ConfigError naming it."""
    base = Path(root) if root is not None else Path("/")
    live = root is None
    if not live and not base.is_dir():
        raise ConfigError(f"{base}: no such snapshot directory", "give a directory written by rofolio host --save")
    if not live and not (base / "proc/meminfo").is_file():
        raise ConfigError(f"{base} is not a host snapshot: it has no proc/meminfo",
                          "give a directory written by rofolio host --save DIR")
    source = "live" if live else str(base)
    files: dict[str, str] = {}
    for name in FILES:
        path = base / name
        if name not in REQUIRED:  # optional: absent (or, live, not readable) is said in the output
            if not path.exists() and not live:
                continue
            try:
                files[name] = _read_text(path, live)
            except EnvironmentFailure:
                continue
            continue
        if not live and not path.exists():
            raise _missing(path, name)
        files[name] = _read_text(path, live)
        if name == "proc/meminfo":  # is it an x86-64 machine at all, before anything else
            HostSnapshot(files, (), None, None, source).directmap()
    memmap = _read_memmap(base, live)
    config, config_from = _read_config(base, live)
    if live:
        dmesg = _run_dmesg()
    else:
        dmesg = (base / "dmesg.txt").read_text(errors="replace") if (base / "dmesg.txt").is_file() else None
    snapshot = HostSnapshot(files, memmap, config, dmesg, source, config_from)
    # everything the model reads, read now: a snapshot's problem is named before anything is modelled
    snapshot.direct_map_vmstat()
    _ = snapshot.cpu_flags, snapshot.nr_cpus, snapshot.version, snapshot.initrd
    return snapshot


def save_host(snapshot: HostSnapshot, directory: Path | str) -> Path:
    """Write the snapshot's files under ``directory`` (the layout read_host() reads): only what was read, so
    a snapshot of a machine whose config or kernel log could not be read says so when read back."""
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
    if snapshot.config is not None:
        (out / "config").write_text("".join(f"{k}={v}\n" for k, v in snapshot.config.items()))
    if snapshot.dmesg is not None:
        (out / "dmesg.txt").write_text(snapshot.dmesg)
    return out


def _modelled(snapshot: HostSnapshot, err: RofolioError) -> RofolioError:
    """A refusal of the model, naming the machine it came from."""
    where = "this machine" if snapshot.live else snapshot.source
    message = f"{where}: the machine it describes cannot be modelled: {err.message}"
    return EnvironmentFailure(message, err.hint) if isinstance(err, EnvironmentFailure) else \
        ConfigError(message, err.hint)


def spec_of_host(snapshot: HostSnapshot, cpus: int | None = None) -> tuple[MachineSpec, BootRecord, list[str]]:
    """The MachineSpec and boot record of the machine the snapshot describes, and how each was decided."""
    cmd, flags, config = snapshot.cmdline, snapshot.cpu_flags, snapshot.config or {}
    ram = [(s, e) for s, e, kind in snapshot.memmap if kind == "System RAM"]
    why = [f"RAM: {len(ram)} System RAM range(s) of the firmware memory map"]
    if snapshot.live and snapshot.config is not None:
        why.append(f"config: {snapshot.config_from}")
    if snapshot.config is None:  # only the live machine gets here without one (read_host() refuses a snapshot)
        why.append(("config: not readable here (no /proc/config.gz, no /boot/config-RELEASE)" if snapshot.live else
                    "config: none given") + ": every CONFIG_ option is taken as unset")
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
    try:
        spec = MachineSpec.build(arch="x86_64", memory_map=tuple(ram), kernel=f"{major}.{minor}",
                                 cpus=cpus or snapshot.nr_cpus, debug_pagealloc=debug_pagealloc, kfence=kfence,
                                 gbpages=gbpages, paging=5 if la57 else 4)
        rules = KernelVersion.parse(spec.kernel)
    except RofolioError as err:
        raise _modelled(snapshot, err) from err
    modelled = f"modelled with {NEWEST_KERNEL}'s rules" if rules > NEWEST_KERNEL else f"modelled as {rules}"
    why.append(f"kernel: {version} ({modelled}); {spec.cpus} CPU{'s' if spec.cpus != 1 else ''}; "
               f"{'5' if la57 else '4'}-level paging; DEBUG_PAGEALLOC {'on' if debug_pagealloc else 'off'}; "
               f"KFENCE {'on' if kfence else 'off'}")
    why.append(snapshot.initrd_decided())
    if "proc/vmallocinfo" not in snapshot.files:
        why.append("vmallocinfo: " + ("not readable here (root only)" if snapshot.live else
                                      f"no {snapshot.path('proc/vmallocinfo')} in the snapshot")
                   + ": the users of set_memory_*() on vmalloc pages are not named")
    return spec, BootRecord(initrd=snapshot.initrd, source=snapshot.source), why


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
SHAPELESS = "a difference of no single-placement shape"  # what name_residual() calls what fits no placement


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
        out.append(Placement(SHAPELESS, 1, rest))
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
        """The named causes add up to the residual exactly, each a whole placement (a difference of no
        placement's shape is named, but explains nothing)."""
        total = {k: sum(p.total.get(k, 0) for p in self.causes) for k in self.residual}
        return total == self.residual and all(p.what != SHAPELESS for p in self.causes)

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


# the vmstat lines each DirectMap line's at-boot figure undoes
_UNDONE_BY = {"DirectMap4k": ("direct_map_level2_splits", "direct_map_level2_collapses"),
              "DirectMap2M": ("direct_map_level2_splits", "direct_map_level2_collapses",
                              "direct_map_level3_splits", "direct_map_level3_collapses"),
              "DirectMap1G": ("direct_map_level3_splits", "direct_map_level3_collapses")}


def _check_at_boot(snapshot: HostSnapshot, live: dict[str, int], vmstat: dict[str, int],
                   boot: dict[str, int]) -> None:
    """Refuse vmstat counts that undo more than the DirectMap lines hold (an at-boot figure below 0)."""
    for key, kb in boot.items():
        if kb >= 0:
            continue
        lines = ", ".join(f"{n} {vmstat[n]}" for n in _UNDONE_BY[key] if n in vmstat)
        hint = ("the two were read at different moments: run rofolio host again" if snapshot.live else
                "the two files disagree: save them together from one machine (rofolio host --save DIR)")
        raise snapshot._error(f"{snapshot.path('proc/vmstat')}: {lines} undo more than "
                              f"{snapshot.path('proc/meminfo')}'s {key} {live[key]} kB holds "
                              f"(at boot it would be {kb} kB)", hint)


def host_report(snapshot: HostSnapshot) -> tuple[HostReport, Machine]:
    """Boot the model of the snapshot's machine and compare its DirectMap lines with the live ones."""
    live, vmstat = snapshot.directmap(), snapshot.direct_map_vmstat()
    boot = at_boot(live, vmstat)
    _check_at_boot(snapshot, live, vmstat, boot)
    spec, record, decided = spec_of_host(snapshot)
    absent = [k for k in SPLITS if k not in vmstat]
    if absent:  # only the live machine gets here without them (read_host() refuses such a snapshot)
        decided.append(f"vmstat: this kernel prints no {' and no '.join(absent)} line: the DirectMap lines now "
                       "are taken as at boot")
    try:
        m = Machine.boot(spec, record=record)
        m.finish_boot()
    except RofolioError as err:
        raise _modelled(snapshot, err) from err
    model = {k: v for k, v in m.counters.meminfo_kb().items() if k.startswith("DirectMap")}
    residual = {k: boot.get(k, 0) - model.get(k, 0) for k in DIRECTMAP_KEYS}
    report = HostReport(snapshot.source, spec.describe(), decided, live, vmstat, boot, model, m.vmstat_lines(),
                        residual, name_residual(residual), snapshot.alias_changers)
    return report, m
