"""The guest: an initramfs written in Python, a QEMU boot with a timeout, the serial log parsed.

The initramfs holds a static busybox, ``/init`` (below), the static /proc/kcore
walker ``kc``, and, when there are steps, ``dmoracle.ko`` and ``/steps.sh``.
``/init`` prints the DirectMap lines of /proc/meminfo and the ``direct_map_*``
lines of /proc/vmstat at boot, walks the boot-time page tables with ``kc``
before any module is loaded, loads the module, and sources ``/steps.sh``:
each ``step`` runs one module command in a child shell (an oops kills only the
child), prints the counters before and after, runs the step's queries (scans,
levels) and copies the kernel log.

The initramfs is padded with zeros to a fixed size (the kernel's unpacker
skips zero padding), so QEMU puts it at the same physical address in every
run: the boot-time page allocations and the freed initrd pages, which the
boot profile records, stay where they were measured.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rofolio.host import FILES as HOST_FILES
from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import Install

__all__ = [
    "BEGIN", "DIRECT_MAP", "IMAGE_SYMBOLS", "INITRD_SIZE", "MODULES_VADDR", "Boot", "GuestConfig", "GuestLog",
    "GuestStep", "Run", "Scan", "boot", "boot_again_before_init", "boot_to_init", "booted_again_note",
    "build_initramfs", "cache_mode", "clip", "coalesce", "counters", "cpio_archive", "extract_oops", "keep",
    "kernel_version", "kv", "panicked", "parse_log", "parse_run", "parse_scans", "run_qemu", "shell_quote_ok",
]

INITRD_SIZE = 0x183800  # padded size: QEMU loads it at (end of low RAM - 1 - size) & PAGE_MASK, 388 pages
APPEND = "console=ttyS0 panic=-1 quiet nokaslr"
DIRECT_MAP = 0xFFFF888000000000  # PAGE_OFFSET with nokaslr and 4-level paging
MODULES_VADDR = 0xFFFFFFFFC0000000

# The kernel image's section symbols the model's KernelImage holds (arch/x86/kernel/vmlinux.lds.S): kallsyms
# name -> KernelImage field.  The guest prints them; the model boots with the image where that kernel has it.
IMAGE_SYMBOLS = {
    "_text": "text", "_etext": "etext", "__start_rodata": "start_rodata", "__end_rodata": "end_rodata",
    "__end_rodata_hpage_align": "end_rodata_hpage_align", "_sdata": "sdata", "__init_begin": "init_begin",
    "__init_end": "init_end", "__smp_locks_end": "smp_locks_end", "__bss_start": "bss_start",
    "__start_bss_decrypted_unused": "bss_decrypted_unused", "__end_bss_decrypted": "bss_decrypted_end",
    "__bss_stop": "bss_stop", "_end": "end", "idt_table": "idt_table", "empty_zero_page": "empty_zero_page",
}

# What every oracle guest's /init starts with: busybox's applets, /proc, /sys, /dev, and dm(), the DirectMap lines of
# /proc/meminfo and the direct_map counters of /proc/vmstat on one line
INIT_PRELUDE = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
dm() {
  awk '/^DirectMap/{sub(":","",$1); printf "%s=%s ", $1, $2}' /proc/meminfo
  awk '/^direct_map/{printf "%s=%s ", $1, $2}' /proc/vmstat
  echo
}
"""

# Symbols come from one pass over /proc/kallsyms (kallsyms_pass): under TCG each pass costs about 0.5 s of
# guest time on 6.1 and 1.1 s on 7.2, and one awk per symbol took 10 s (6.1) and 22 s (7.2) of every boot.
INIT_SH = INIT_PRELUDE + r"""kallsyms_pass() {
  awk -v names="$*" 'BEGIN{n=split(names, w, " "); for (i = 1; i <= n; i++) want[w[i]] = 1}
    ($3 in want) && !($3 in got) {got[$3] = 1; print $3, "0x"$1}' /proc/kallsyms > /tmp/ksyms
}
ksym() { awk -v s="$1" '$1==s{print $2; exit}' /tmp/ksyms; }
step() {
  id=$1; cmd=$2; shift 2
  echo "--- STEP $id: $cmd"
  echo "  before: $(dm)"
  ( echo "$cmd" > /proc/dmoracle )
  echo "  rc=$?"
  echo "  after: $(dm)"
  for q in "$@"; do echo "$q" > /proc/dmoracle; done
  dmesg -c | sed 's/^/  k: /'
  echo "--- END $id"
}
echo "=== ORACLE BEGIN"
echo "uname=$(uname -r)"
echo "version=$(cat /proc/version)"
echo "cmdline=$(cat /proc/cmdline)"
echo "nproc=$(grep -c '^processor' /proc/cpuinfo)"
echo "cpuflags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
dmesg | grep -E 'BIOS-e820|RAMDISK:|Freeing initrd' | sed 's/^/e: /'
echo "boot: $(dm)"
if [ -x /kc ] && ! grep -qw la57 /proc/cpuinfo; then
  kallsyms_pass init_top_pgt max_pfn_mapped _brk_end IMAGE_SYMBOLS
  PGD=$(ksym init_top_pgt)
  echo "init_top_pgt=$PGD"
  /kc read $(ksym max_pfn_mapped) 8 | sed 's/^/max_pfn_mapped: /'
  for s in IMAGE_SYMBOLS; do echo "imagesym $s=$(ksym $s)"; done
  /kc read $(ksym _brk_end) 8 | sed 's/^/brk_end: /'
  echo "=== WALK direct"
  /kc walk $PGD 0xffff888000000000 0xffff890000000000
  echo "=== WALK modules"
  /kc walk $PGD 0xffffffffc0000000 0xffffffffff000000  # MODULES_VADDR .. MODULES_END
  echo "=== WALK end"
fi
# the files `rofolio host --save` keeps, at boot (rofolio.host.FILES, the firmware memory map, the kernel log):
# the oracle rebuilds the snapshot from the serial log and checks `rofolio host --from` on it
echo "=== SNAPSHOT BEGIN"
for f in SNAPSHOT_FILES; do echo "--- file $f"; cat /$f 2>/dev/null; done
for d in /sys/firmware/memmap/*; do
  for k in start end type; do echo "--- file ${d#/}/$k"; cat $d/$k; done
done
echo "--- file dmesg.txt"
dmesg
echo "=== SNAPSHOT END"
dmesg -c > /dev/null
if [ -f /dmoracle.ko ]; then
  insmod /dmoracle.ko
  echo "insmod_rc=$?"
  echo info > /proc/dmoracle
  echo scan > /proc/dmoracle
  dmesg -c | sed 's/^/i: /'
  echo "after_insmod: $(dm)"
  . /steps.sh
fi
echo "final: $(dm)"
echo "=== ORACLE END"
poweroff -f
""".replace("IMAGE_SYMBOLS", " ".join(IMAGE_SYMBOLS)).replace("SNAPSHOT_FILES", " ".join(HOST_FILES))

SAFE_COMMAND = re.compile(r"^[A-Za-z0-9_ x.]+$")


# ---------------------------------------------------------------- initramfs
def _cpio_entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"",
                rdev: tuple[int, int] = (0, 0)) -> None:
    nameb = name.encode() + b"\0"
    nlink = 2 if mode & 0o040000 else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0)
    out.write(("070701" + "".join(f"{v:08X}" for v in fields)).encode())
    out.write(nameb)
    out.write(b"\0" * ((4 - (110 + len(nameb)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def cpio_archive(files: list[tuple[str, int, bytes]], *, devnull: bool = True) -> bytes:
    """A newc cpio (what the kernel's initramfs unpacker reads, init/initramfs.c) of ``(name, mode, data)``
    entries plus /dev/console (and /dev/null), padded to 512 bytes; needs no cpio, mknod or root."""
    buf = io.BytesIO()
    ino = 1
    for name, mode, data in files:
        _cpio_entry(buf, ino, name, mode, data)
        ino += 1
    _cpio_entry(buf, ino, "dev/console", 0o020600, rdev=(5, 1))
    if devnull:
        _cpio_entry(buf, ino + 1, "dev/null", 0o020666, rdev=(1, 3))
    _cpio_entry(buf, 0, "TRAILER!!!", 0)
    raw = buf.getvalue()
    return raw + b"\0" * ((512 - len(raw) % 512) % 512)


def build_initramfs(install: Install, steps_sh: str | None, *, with_kc: bool = True) -> bytes:
    """A newc cpio, gzip-compressed and zero-padded to INITRD_SIZE; needs no cpio, mknod or root.

    ``steps_sh`` None boots without the module (boot fidelity).
    """
    files: list[tuple[str, int, bytes]] = [
        (".", 0o040755, b""), ("bin", 0o040755, b""), ("dev", 0o040755, b""), ("proc", 0o040755, b""),
        ("sys", 0o040755, b""), ("tmp", 0o041777, b""),
        ("bin/busybox", 0o100755, Path(install.busybox).read_bytes()),
        ("init", 0o100755, INIT_SH.encode()),
    ]
    if with_kc:
        files.append(("kc", 0o100755, Path(install.kc).read_bytes()))
    if steps_sh is not None:
        files.append(("dmoracle.ko", 0o100644, Path(install.module).read_bytes()))
        files.append(("steps.sh", 0o100644, steps_sh.encode()))
    packed = gzip.compress(cpio_archive(files), compresslevel=9, mtime=0)
    if len(packed) > INITRD_SIZE:
        raise OracleError(f"the initramfs is {len(packed)} bytes, more than the fixed {INITRD_SIZE}",
                          "fewer or shorter steps; the size is fixed so the initrd lands where the boot "
                          "profile measured it")
    return packed + b"\0" * (INITRD_SIZE - len(packed))


# --------------------------------------------------------------------- boot
@dataclass(frozen=True)
class GuestConfig:
    cpu: str = "max,-la57"
    mem: str = "8G"
    smp: int = 1
    timeout: float = 600.0
    append: str = APPEND

    def qemu_command(self, install: Install, initrd: Path) -> list[str]:
        return [install.qemu, "-accel", "tcg", "-cpu", self.cpu, "-smp", str(self.smp), "-m", self.mem,
                "-nographic", "-no-reboot", "-kernel", install.vmlinuz, "-initrd", str(initrd),
                "-append", self.append]


@dataclass
class Boot:
    """One QEMU run: its command, exit, wall time and the raw serial console; ``notes`` say why it is a second
    boot (boot_again_before_init())."""

    command: list[str]
    returncode: int
    timed_out: bool
    wall_s: float
    serial: str
    stderr: str
    notes: tuple[str, ...] = ()


def boot(install: Install, config: GuestConfig, steps_sh: str | None, *, with_kc: bool = True) -> Boot:
    """Boot the kernel with an initramfs running ``steps_sh`` (None: no module) and wait for power-off."""
    with tempfile.TemporaryDirectory(prefix="rofolio-oracle-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(build_initramfs(install, steps_sh, with_kc=with_kc))
        return run_qemu(config.qemu_command(install, initrd), config.timeout, "run `rofolio oracle setup`")


BEGIN = "=== ORACLE BEGIN"  # the first line every oracle /init prints


def boot_again_before_init(run: Callable[[], Boot], marker: str = BEGIN, *, panic_after_init: bool = False) -> Boot:
    """run() (one QEMU boot), and once more when the guest never printed ``marker``, its /init's first line
    (QEMU killed it, or the kernel panicked in early boot), or, with ``panic_after_init``, when the kernel
    panicked after it.  Under TCG such a boot is rare and says nothing about the direct map.  The second case
    is for guests that load no module of rofolio's (the boot-fidelity guests, whose /init only reads files and
    runs kc): their panic is not a rofolio module's doing, and one that repeats is still reported; one was seen
    at -m 22G -smp 2 with both CPUs of the host busy.  The second boot's note says what the first guest did,
    with the console line that says most (the panic's, else the last); a second failure is returned as it is,
    for the caller to report."""
    first = run()
    reached = marker in first.serial
    if reached and not (panic_after_init and panicked(first.serial)):
        return first  # whatever it did after /init is the caller's to report
    return replace(run(), notes=(booted_again_note(first, after_init=reached),))


def panicked(serial: str) -> bool:
    """The kernel's console says it panicked."""
    return "Kernel panic" in serial


def booted_again_note(first: Boot, after_init: bool = False) -> str:
    """Why a guest was booted again: what the first one did, and the console line that says most (the
    panic's, else the last)."""
    lines = [line.strip() for line in first.serial.splitlines() if line.strip()]
    said = next((line for line in lines if panicked(line)), lines[-1] if lines else "(nothing)")
    how = (f"hung (QEMU killed it after {first.wall_s} s)" if first.timed_out
           else f"stopped (QEMU exit {first.returncode})")
    when = "after /init, which loads no module" if after_init else "before /init"
    return f"the first guest {how}, its console saying {said[:160]!r}, {when}; booted again"


def boot_to_init(install: Install, config: GuestConfig, steps_sh: str | None) -> tuple[Boot, GuestLog]:
    """boot() through boot_again_before_init(), and its parsed log; a guest with no steps (no module) is
    booted again after a panic at any point."""
    b = boot_again_before_init(lambda: boot(install, config, steps_sh), panic_after_init=steps_sh is None)
    return b, parse_log(b.serial)


def keep(folder: Path | None, name: str, text: str) -> Path | None:
    """``--keep-log``: write ``text`` as ``folder/name`` (making the folder); nothing without a folder."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def run_qemu(cmd: list[str], timeout: float, hint: str) -> Boot:
    """Run a QEMU guest to power-off (killed after ``timeout`` s), collecting its serial console and stderr."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        raise OracleError(f"cannot start {cmd[0]}: {err}", hint) from err
    out: list[bytes] = []
    err_out: list[bytes] = []

    def pump(src: Any, dst: list[bytes]) -> None:
        for chunk in iter(lambda: src.read1(65536), b""):
            dst.append(chunk)

    threads = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err_out), daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        rc = proc.wait()
    for t in threads:
        t.join(timeout=5)
    return Boot(cmd, rc, timed_out, round(time.monotonic() - t0, 2), b"".join(out).decode(errors="replace"),
                b"".join(err_out).decode(errors="replace").strip())


# ------------------------------------------------------------------ parsing
_KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)")
_TS = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")
# x86's page_fault_oops() opens with "BUG: unable to handle"; arm64's die_kernel_fault() (arch/arm64/mm/fault.c)
# with "Unable to handle kernel ..." before the "Internal error: Oops:" line
_OOPS_START = re.compile(r"BUG: unable to handle|BUG: kernel NULL pointer|general protection fault|"
                         r"kernel BUG at|Oops:|Kernel panic|Unable to handle kernel")
_OOPS_END = re.compile(r"---\[ end trace|---\[ end Kernel panic")


def kv(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _KV.findall(text)}


def counters(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in _KV.findall(text) if v.isdigit()}


def extract_oops(lines: list[str]) -> str | None:
    start = None
    for i, line in enumerate(lines):
        if start is None and _OOPS_START.search(line):
            start = i
        elif start is not None and _OOPS_END.search(line):
            return "\n".join(lines[start:i + 1])
    return "\n".join(lines[start:]) if start is not None else None


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of the direct map with one leaf size and one protection (physical addresses)."""

    start: int
    end: int
    level: str  # "4K", "2M", "1G", or "none" (no entry: a zero entry or no table)
    present: bool = False
    rw: bool = False
    nx: bool = False
    cache: str = "WB"
    glb: bool = False  # _PAGE_GLOBAL (cleared on entries made not present, and not set again)
    dirty: bool = False  # _PAGE_DIRTY (set_memory_ro() clears it from v6.6)

    def attrs(self) -> tuple[str, bool, bool, bool, str, bool, bool]:
        return (self.level, self.present, self.rw, self.nx, self.cache, self.glb, self.dirty)

    def describe(self) -> str:
        if self.level == "none":
            return "none"
        prot = ("RW" if self.rw else "RO") if self.present else "not-present"
        return f"{self.level} {prot} {'NX' if self.nx else 'X'} {self.cache}{' G' if self.glb else ''}" \
               f"{' D' if self.dirty else ''}"


# Linux's PAT table (arch/x86/mm/pat/memtype.c pat_init): index = PAT << 2 | PCD << 1 | PWT
PAT_MODES = ("WB", "WC", "UC-", "UC", "WB", "WP", "UC-", "WT")


def cache_mode(pcd: bool, pwt: bool, pat: bool) -> str:
    return PAT_MODES[(int(pat) << 2) | (int(pcd) << 1) | int(pwt)]


def parse_run(d: dict[str, str], start: int, end: int) -> Run:
    level = d.get("level", "none")
    if level in ("hole", "none"):
        return Run(start, end, "none")
    flag = lambda k: d.get(k) == "1"  # noqa: E731
    return Run(start, end, level, flag("P"), flag("RW"), flag("NX"), cache_mode(flag("PCD"), flag("PWT"), flag("PAT")),
               flag("G"), flag("D"))


def coalesce(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for r in runs:
        if out and out[-1].end == r.start and out[-1].attrs() == r.attrs():
            out[-1] = Run(out[-1].start, r.end, *r.attrs())
        else:
            out.append(r)
    return out


def clip(runs: list[Run], start: int, end: int) -> list[Run]:
    out = []
    for r in runs:
        s, e = max(r.start, start), min(r.end, end)
        if s < e:
            out.append(Run(s, e, *r.attrs()))
    return coalesce(out)


@dataclass
class Scan:
    start: int
    end: int
    runs: list[Run]
    truncated: bool
    map: str = "direct"  # or "high": the high kernel map, by physical address


def parse_scans(module_lines: list[str]) -> list[Scan]:
    """The module's ``scan``/``scanhigh`` outputs: "run pa=A-B level=..." lines, then "cmd=scan map= start= end=".

    Scan ranges are physical; runs are clipped to them (a 1G leaf is reported whole).
    """
    scans: list[Scan] = []
    pending: list[Run] = []
    for line in module_lines:
        if line.startswith("run "):
            d = kv(line)
            lo, hi = (int(x, 16) for x in d["pa"].split("-"))
            pending.append(parse_run(d, lo, hi))
        elif line.startswith("cmd=scan"):
            d = kv(line)
            if d.get("ret") == "0":
                start, end = int(d["start"], 16), int(d["end"], 16)
                scans.append(Scan(start, end, clip(pending, start, end), d.get("truncated") == "1",
                                  d.get("map", "direct")))
            pending = []
    return scans


@dataclass
class GuestStep:
    """What the guest printed for one ``step``."""

    id: str
    command: str
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    rc: int | None = None
    module: list[str] = field(default_factory=list)  # "dmoracle: " lines, prefix removed
    kernel: list[str] = field(default_factory=list)  # other kernel log lines
    console: list[str] = field(default_factory=list)

    @property
    def verb(self) -> str:
        """The command's verb; for "pa OP PA N" (pages the module does not own) it is OP."""
        words = self.command.split()
        return words[1] if words[0] == "pa" and len(words) > 1 else words[0]

    def results(self) -> list[dict[str, str]]:
        return [kv(line) for line in self.module if line.startswith("cmd=")]

    def result(self, verb: str | None = None) -> dict[str, str] | None:
        """The module's result line for the step's command (the one carrying ret=)."""
        verb = verb or self.verb
        found = [r for r in self.results() if r.get("cmd") == verb and "ret" in r]
        return found[0] if found else None

    def ret(self) -> int | str | None:
        r = self.result()
        if r is None:
            return None
        value = r["ret"]
        return int(value) if re.fullmatch(r"-?\d+", value) else value

    def states(self) -> dict[str, dict[str, str]]:
        """'state cmd=.. when=before|after|last level=..' lines of a set_memory/set_direct_map command."""
        return {d["when"]: d for d in (kv(line) for line in self.module if line.startswith("state "))}

    def paths(self) -> list[dict[str, str]]:
        """'path cmd=.. va=.. pgd=.. p4d=.. [pud=.. [pmd=.. [pte=..]]]' lines: the entries down to a store's
        address before it ran."""
        return [kv(line) for line in self.module if line.startswith("path ")]

    def levels(self) -> list[dict[str, str]]:
        return [r for r in self.results() if r.get("cmd") == "level"]

    def scans(self) -> list[Scan]:
        return parse_scans(self.module)

    def oops(self) -> str | None:
        return extract_oops(self.kernel) or extract_oops(self.console)

    def delta(self) -> dict[str, int]:
        keys = set(self.before) | set(self.after)
        return {k: self.after.get(k, 0) - self.before.get(k, 0) for k in sorted(keys)}


@dataclass
class GuestLog:
    """The parsed serial log of one boot."""

    began: bool = False
    complete: bool = False
    uname: str | None = None
    version: str | None = None
    cmdline: str | None = None
    nproc: int | None = None
    cpuflags: list[str] = field(default_factory=list)
    e820: list[tuple[int, int, str]] = field(default_factory=list)
    ramdisk: tuple[int, int] | None = None  # [start, end) of the initrd, from "RAMDISK: [mem a-b]"
    initrd_freed_kb: int | None = None
    boot_counters: dict[str, int] = field(default_factory=dict)
    max_pfn_mapped: int | None = None
    image_symbols: dict[str, int] = field(default_factory=dict)  # kallsyms name -> address (IMAGE_SYMBOLS)
    brk_end: int | None = None  # the value of _brk_end (a variable: where the brk area ends)
    walk_direct: list[Run] = field(default_factory=list)
    walk_modules: list[tuple[int, int, int]] = field(default_factory=list)  # (va, pa, bytes) of present pages
    walk_errors: list[str] = field(default_factory=list)
    insmod_rc: int | None = None
    module_init: list[str] = field(default_factory=list)
    after_insmod: dict[str, int] = field(default_factory=dict)
    final_counters: dict[str, int] = field(default_factory=dict)
    steps: list[GuestStep] = field(default_factory=list)
    panic: bool = False
    console_oops: str | None = None
    snapshot: dict[str, str] = field(default_factory=dict)  # the host snapshot the guest printed: path -> text

    def step(self, step_id: str) -> GuestStep | None:
        for s in self.steps:
            if s.id == step_id:
                return s
        return None

    def after_insmod_scan(self) -> list[Run]:
        """The module's scan of the whole direct map right after it was loaded."""
        scans = parse_scans(self.module_init)
        return scans[0].runs if scans else []

    def syms(self) -> dict[str, bool]:
        out = {}
        for line in self.module_init:
            if line.startswith("sym "):
                d = kv(line)
                out[d.get("name", "?")] = d.get("found") == "1"
        return out

    @property
    def gbpages(self) -> bool:
        return "pdpe1gb" in self.cpuflags

    @property
    def kernel_version(self) -> str | None:
        """The guest's exact upstream version, from /proc/version: see ``kernel_version``."""
        return kernel_version(self.version, self.uname)

    @property
    def la57(self) -> bool:
        return "la57" in self.cpuflags


_DEBIAN_VERSION = re.compile(r"\bDebian (\d+\.\d+\.\d+)[-+~]")
_LINUX_VERSION = re.compile(r"^Linux version (\d+\.\d+(?:\.\d+)?)")
_RELEASE = re.compile(r"^(\d+\.\d+(?:\.\d+)?)")


def kernel_version(version: str | None, uname: str | None = None) -> str | None:
    """MAJOR.MINOR.PATCH of a guest kernel: Debian's package version at the end of /proc/version ("#1 SMP ...
    Debian 6.1.192-3 (2026-11-26)" for the ABI 6.1.0-57-amd64, whose release says patch 0; the compiler's
    "(Debian 12.2.0-14)" comes earlier), else the release at the start of /proc/version or of ``uname -r``;
    None if neither names one."""
    build = (version or "").rpartition("#")[2]  # "1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)"
    m = _DEBIAN_VERSION.search(build)
    if m:
        return m.group(1)
    for text, pattern in ((version, _LINUX_VERSION), (uname, _RELEASE)):
        m = pattern.search(text) if text else None
        if m:
            return m.group(1)
    return None


def _clean(text: str) -> list[str]:
    return _ANSI.sub("", text.replace("\r", "")).split("\n")


def _dmesg(line: str, prefix: str) -> str:
    return _TS.sub("", line[len(prefix):])


def parse_log(text: str) -> GuestLog:
    """Parse the serial console of a boot into a GuestLog."""
    lines = _clean(text)
    log = GuestLog()
    log.began = any(BEGIN in line for line in lines)  # SeaBIOS may leave text before it
    log.complete = any(line.rstrip() == "=== ORACLE END" for line in lines)
    walk: str | None = None
    current: GuestStep | None = None
    step_re = re.compile(r"^--- STEP (\S+): (.*)$")
    snapshot: str | None = None  # the snapshot file being read
    for raw in lines:
        line = raw.rstrip()
        if snapshot is not None:
            if line == "=== SNAPSHOT END":
                snapshot = None
            elif line.startswith("--- file "):
                snapshot = line[len("--- file "):]
                log.snapshot[snapshot] = ""
            elif snapshot:
                log.snapshot[snapshot] += line + "\n"
            continue
        if line == "=== SNAPSHOT BEGIN":
            snapshot = ""
            continue
        if current is not None:
            if line == f"--- END {current.id}":
                log.steps.append(current)
                current = None
                continue
            if step_re.match(line) or line.startswith("=== ORACLE END"):
                log.steps.append(current)  # the step never finished (the guest died)
                current = None
            else:
                _step_line(current, line)
                continue
        m = step_re.match(line)
        if m:
            current = GuestStep(m.group(1), m.group(2).strip())
            continue
        if walk is not None:
            if line.startswith("=== WALK "):
                walk = line[len("=== WALK "):]
                walk = None if walk == "end" else walk
            elif line.startswith("KC run "):
                _walk_line(log, walk, kv(line))
            elif line.startswith("KC err"):
                log.walk_errors.append(line)
            continue
        if line.startswith("=== WALK "):
            walk = line[len("=== WALK "):]
            walk = None if walk == "end" else walk
        elif line.startswith(("uname=", "version=", "cmdline=")):
            key, _, value = line.partition("=")
            setattr(log, key, value.strip())
        elif line.startswith("nproc="):
            log.nproc = int(line[6:]) if line[6:].strip().isdigit() else None
        elif line.startswith("cpuflags="):
            log.cpuflags = line[9:].split()
        elif line.startswith("e: "):
            _e820_line(log, _dmesg(line, "e: "))
        elif line.startswith("boot: "):
            log.boot_counters = counters(line[6:])
        elif line.startswith("max_pfn_mapped: "):
            q = kv(line).get("q")
            log.max_pfn_mapped = int(q, 16) if q else None
        elif line.startswith("imagesym "):
            name, _, value = line[len("imagesym "):].partition("=")
            if value.strip().startswith("0x"):
                log.image_symbols[name.strip()] = int(value.strip(), 16)
        elif line.startswith("brk_end: "):
            q = kv(line).get("q")
            log.brk_end = int(q, 16) if q else None
        elif line.startswith("insmod_rc="):
            log.insmod_rc = int(line[10:]) if line[10:].strip().lstrip("-").isdigit() else None
        elif line.startswith("i: "):
            entry = _dmesg(line, "i: ")
            if "dmoracle: " in entry:
                log.module_init.append(entry.split("dmoracle: ", 1)[1])
        elif line.startswith("after_insmod: "):
            log.after_insmod = counters(line[14:])
        elif line.startswith("final: "):
            log.final_counters = counters(line[7:])
    if current is not None:
        log.steps.append(current)
    log.panic = any(panicked(line) for line in lines)
    outside = [line for line in lines if not line.startswith(("e: ", "i: ", "  k: "))]
    log.console_oops = extract_oops(outside) if log.panic or not log.complete else None
    return log


def _step_line(step: GuestStep, line: str) -> None:
    s = line.strip()
    if s.startswith("k: "):
        entry = _TS.sub("", s[3:])
        if "dmoracle: " in entry:
            step.module.append(entry.split("dmoracle: ", 1)[1])
        else:
            step.kernel.append(entry)
    elif s.startswith("before: "):
        step.before = counters(s[8:])
    elif s.startswith("after: "):
        step.after = counters(s[7:])
    elif s.startswith("rc="):
        step.rc = int(s[3:]) if s[3:].lstrip("-").isdigit() else None
    elif s:
        step.console.append(_TS.sub("", line))


def _walk_line(log: GuestLog, walk: str | None, d: dict[str, str]) -> None:
    va_lo, va_hi = (int(x, 16) for x in d["va"].split("-"))
    if walk == "direct":
        log.walk_direct.append(parse_run(d, va_lo - DIRECT_MAP, va_hi - DIRECT_MAP))
    elif walk == "modules" and d.get("P") == "1" and "pa" in d:
        pa_lo = int(d["pa"].split("-")[0], 16)
        log.walk_modules.append((va_lo, pa_lo, va_hi - va_lo))


_E820 = re.compile(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]\s+(\S.*?)\s*$")
# e820_print_type()'s names since the 6.16 cleanup ("System RAM", "device reserved", two spaces before them;
# "[gap ...]" lines between entries) in the names 6.1 printed, which the model's e820 uses.
_E820_TYPES = {"system ram": "usable", "device reserved": "reserved", "acpi data": "ACPI data",
               "acpi nvs": "ACPI NVS", "soft reserved": "soft reserved", "unusable": "unusable"}
_RAMDISK = re.compile(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")
_INITRD = re.compile(r"Freeing initrd memory: (\d+)K")


def _e820_line(log: GuestLog, line: str) -> None:
    if m := _E820.search(line):
        kind = _E820_TYPES.get(m.group(3).lower(), m.group(3))
        log.e820.append((int(m.group(1), 16), int(m.group(2), 16) + 1, kind))
    elif m := _RAMDISK.search(line):
        log.ramdisk = (int(m.group(1), 16), int(m.group(2), 16) + 1)
    elif m := _INITRD.search(line):
        log.initrd_freed_kb = int(m.group(1))


def shell_quote_ok(command: str) -> bool:
    """Module commands go into /steps.sh inside double quotes: only these characters are allowed."""
    return bool(SAFE_COMMAND.match(command))
