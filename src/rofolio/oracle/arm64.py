"""The arm64 oracle: Debian's arm64 kernel under qemu-system-aarch64 (TCG), its boot-time linear map
against the model's.

Setup (as root, into ``$ROFOLIO_ORACLE_DIR/arm64`` or ``~/.cache/rofolio/oracle/arm64``):

1. ``dpkg --add-architecture arm64`` if needed, ``apt-get update``, then the kernel ABI from
   ``apt-cache depends linux-image-arm64:arm64`` (e.g. ``6.1.0-57-arm64``), resolved every time.
2. ``apt-get install`` of qemu-system-arm, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross.
3. ``apt-get download`` of ``linux-image-KVER:arm64`` and ``busybox-static:arm64``; only
   ``boot/vmlinuz-KVER`` (an uncompressed arm64 ``Image`` that QEMU loads directly),
   ``boot/config-KVER`` and ``bin/busybox`` are unpacked.  Nothing arm64 is installed.
4. ``kc_arm64``: the static /proc/kcore walker (``kmod/kc_arm64.c``), cross-compiled.

The guest: ``-M virt -cpu max,pauth-impdef=on -m MEM -smp 1`` with ``nokaslr rodata=X``.
(``pauth-impdef=on`` swaps QEMU's slow QARMA5 emulation for a cheap one: a boot takes 9 s
instead of 75 s; the linear map does not depend on it.)  ``/init`` prints the kernel's
VMCOREINFO note (``swapper_pg_dir``, ``PHYS_OFFSET``, ``kimage_voffset``: Debian's kernel has no
``CONFIG_KALLSYMS_ALL`` and no ``CONFIG_PTDUMP_DEBUGFS``), the kernel image resources of
/proc/iomem, and walks ``[PAGE_OFFSET, PAGE_END)`` of ``swapper_pg_dir`` with ``kc_arm64``.
The walk is printed in the layout of arm64's ptdump (``arch/arm64/mm/ptdump.c``, with the
model's ``pte_bits[]``) and compared line by line with ``Machine.ptdump_lines()``.

Debian's kernel (6.1) is older than the oldest arm64 kernel the model accepts
(``ARM64_MIN_KERNEL``, 6.18), so the model runs with its own minimum version.  Two model
runs are compared: the model as ``Machine.boot()`` builds it (its illustrative kernel image at
the start of RAM), and the same rules with the kernel image where the guest has it
(``_text``, ``_stext``, ``_etext``, ``__init_begin``, ``_end`` measured), which isolates the
linear-map rules from the image placement.  Known causes of the remaining differences are
named per differing range (docs/fidelity-oracle-arm64.md).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

import click

from rofolio.errors import RofolioError
from rofolio.oracle.errors import OracleError
from rofolio.oracle.guest import Boot, boot_again_before_init, cpio_archive, keep, panicked, run_qemu
from rofolio.oracle.options import TIMEOUT, check_guest_mem
from rofolio.oracle.setup import (
    cache_dir,
    fetch_deb_members,
    is_static_elf,
    previous_manifest,
    read_manifest,
    run_command,
)
from rofolio.oracle.setup import source_hash as kmod_source_hash
from rofolio.units import parse_size

__all__ = [
    "CAUSE_JIT", "CAUSE_TEXT", "RODATA_61_TO_MODEL", "Arm64Install", "Arm64Log", "Arm64Report", "Difference", "Entry",
    "ModelCheck", "arm64_boot", "arm64_dir", "boot_guest", "build_initramfs", "compare", "differences", "explain",
    "image_kind", "is_static_aarch64", "load_install", "measured_image", "model_entries", "note_entries", "parse_log",
    "prot_mask", "ptdump_text", "qemu_command", "render", "resolve_kver", "run", "setup", "source_hash", "unified",
]

SUBDIR = "arm64"
MANIFEST = "manifest-arm64.json"
IMAGE_META = "linux-image-arm64:arm64"
PACKAGES = ("qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross")
CROSS_GCC = "aarch64-linux-gnu-gcc"
CROSS_STRIP = "aarch64-linux-gnu-strip"
KC_SOURCE = "kc_arm64.c"
KC_FILES = (KC_SOURCE, "kcore.h")  # kcore.h: the /proc/kcore access both walkers share
QEMU_CPU = "max,pauth-impdef=on"
APPEND = "console=ttyAMA0 panic=-1 quiet nokaslr"
_ARM64_HINT = "is the Debian mirror reachable, and is arm64 a dpkg foreign architecture?"
VA_BITS = 48
PAGE_OFFSET = (-(1 << VA_BITS)) & ((1 << 64) - 1)  # 0xffff000000000000
PAGE_END = (-(1 << (VA_BITS - 1))) & ((1 << 64) - 1)  # 0xffff800000000000
SEGMENT_ALIGN = 64 << 10
EM_AARCH64 = 183
RODATA_CHOICES = ("full", "on", "off", "noalias")
SCHEMA = "rofolio.oracle.arm64/1"


# ==================================================================== setup
@dataclass(frozen=True)
class Arm64Install:
    """A completed arm64 setup: the files an arm64 guest boot needs."""

    root: str
    kver: str
    vmlinuz: str
    config: str
    busybox: str
    kc: str
    qemu: str
    source_hash: str

    def missing(self) -> list[str]:
        return [p for p in (self.vmlinuz, self.config, self.busybox, self.kc, self.qemu) if not Path(p).exists()]


def arm64_dir(root: Path | None = None) -> Path:
    return (root or cache_dir()).expanduser() / SUBDIR


def source_hash() -> str:
    return kmod_source_hash(KC_FILES)


def load_install(root: Path | None = None) -> Arm64Install:
    """The manifest of an earlier arm64 setup; an error that says how to make one otherwise."""
    folder = arm64_dir(root)
    hint = "run `rofolio oracle setup --arch arm64` first (as root, with the Debian mirror reachable)"
    install = read_manifest(folder / MANIFEST, Arm64Install, "the arm64 oracle", hint)
    if install.source_hash != source_hash():
        raise OracleError(f"kc_arm64 in {folder} was built from another {KC_SOURCE}", hint)
    return install


def _installed(pkg: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def resolve_kver() -> str | None:
    """KVER from `apt-cache depends linux-image-arm64:arm64` ("Depends: linux-image-6.1.0-57-arm64:arm64")."""
    try:
        proc = subprocess.run(["apt-cache", "depends", IMAGE_META], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "Depends:" and parts[1].startswith("linux-image-"):
            return parts[1][len("linux-image-"):].removesuffix(":arm64")
    return None


def image_kind(data: bytes) -> str:
    """'image' (arm64 Image: "ARM\\x64" at 0x38), 'gzip', 'zboot' (EFI zboot) or 'unknown'."""
    if len(data) >= 0x3C and data[0x38:0x3C] == b"ARM\x64":
        return "image"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[4:8] == b"zimg":
        return "zboot"
    return "unknown"


def is_static_aarch64(path: Path) -> bool:
    try:
        head = path.read_bytes()[:0x14]
    except OSError:
        return False
    return len(head) == 0x14 and int.from_bytes(head[0x12:0x14], "little") == EM_AARCH64 and is_static_elf(path)


def setup(root: Path | None = None, log: Callable[[str], None] = print) -> Arm64Install:
    """Add the arm64 architecture, install QEMU and the cross compiler, fetch the arm64 pieces, build kc_arm64."""
    t0 = time.monotonic()
    folder = arm64_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise OracleError("apt-get not found: the arm64 oracle takes its pieces from Debian's packages",
                          "run it on Debian")
    is_root = os.geteuid() == 0
    if is_root:
        foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True,
                                 check=False).stdout.split()
        if "arm64" not in foreign:
            log("dpkg --add-architecture arm64")
            run_command(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        log("apt-get update")
        proc = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, check=False)
        lines = (proc.stdout + proc.stderr).splitlines()
        if proc.returncode != 0 or any(x.startswith(("W: Failed to fetch", "E: ", "W: Some index files"))
                                       for x in lines):
            raise OracleError("apt-get update failed; is the Debian mirror reachable?\n" + "\n".join(lines[-6:]),
                              "check the network and /etc/apt/sources.list")
    else:
        log("not root: skipping dpkg --add-architecture, apt-get update and install")
    kver = resolve_kver()
    if kver is None:
        raise OracleError(f"cannot resolve the arm64 kernel ABI: `apt-cache depends {IMAGE_META}` names no "
                          "linux-image package",
                          "run as root (dpkg --add-architecture arm64 and apt-get update), with the mirror reachable")
    log(f"KVER {kver}")
    missing = [p for p in PACKAGES if not _installed(p)]
    if missing:
        if not is_root:
            raise OracleError(f"missing packages: {', '.join(missing)}",
                              f"run the setup as root, or: apt-get install {' '.join(missing)}")
        log(f"apt-get install {' '.join(missing)}")
        run_command(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], "apt-get install",
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, hint="is the Debian mirror reachable?")
    qemu = shutil.which("qemu-system-aarch64")
    if not qemu:
        raise OracleError("qemu-system-aarch64 is missing", "apt-get install qemu-system-arm")
    if not shutil.which(CROSS_GCC):
        raise OracleError(f"{CROSS_GCC} is missing", "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")

    kdir = folder / "kimg" / kver
    vmlinuz, config, busybox = kdir / f"vmlinuz-{kver}", kdir / f"config-{kver}", folder / "busybox"
    if not (vmlinuz.exists() and config.exists()):
        log(f"apt-get download linux-image-{kver}:arm64 (unpacking boot/vmlinuz and boot/config only)")
        fetch_deb_members(f"linux-image-{kver}:arm64",
                          {f"./boot/vmlinuz-{kver}": vmlinuz, f"./boot/config-{kver}": config}, _ARM64_HINT)
        if image_kind(vmlinuz.read_bytes()[:0x40]) == "gzip":  # Debian ships an uncompressed Image; just in case
            vmlinuz.write_bytes(gzip.decompress(vmlinuz.read_bytes()))
    kind = image_kind(vmlinuz.read_bytes()[:0x40])
    if kind != "image":
        vmlinuz.unlink()
        raise OracleError(f"{vmlinuz.name} is not an arm64 Image ({kind}); QEMU -kernel cannot load it directly",
                          "an EFI zboot image needs UEFI firmware (qemu-efi-aarch64); not supported here")
    if not is_static_aarch64(busybox):
        log("apt-get download busybox-static:arm64 (unpacking bin/busybox only)")
        fetch_deb_members("busybox-static:arm64", {"./bin/busybox": busybox}, _ARM64_HINT)
        if not is_static_aarch64(busybox):
            raise OracleError(f"{busybox} is not a static aarch64 executable", "check busybox-static:arm64")
    build = folder / "build"
    kc = build / "kc_arm64"
    digest = source_hash()
    previous = previous_manifest(folder / MANIFEST)
    if not (kc.exists() and previous and previous.get("source_hash") == digest):
        log(f"building kc_arm64 in {build}")
        _build_kc(build)
    install = Arm64Install(root=str(folder), kver=kver, vmlinuz=str(vmlinuz), config=str(config),
                           busybox=str(busybox), kc=str(kc), qemu=qemu, source_hash=digest)
    (folder / MANIFEST).write_text(json.dumps({**asdict(install), "setup_seconds": round(time.monotonic() - t0, 1)},
                                              indent=1) + "\n")
    log(f"done in {time.monotonic() - t0:.1f} s: {folder / MANIFEST}")
    return install



def _build_kc(build: Path) -> None:
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    for name in KC_FILES:
        (build / name).write_bytes((resources.files("rofolio.oracle") / "kmod" / name).read_bytes())
    out = run_command([CROSS_GCC, "-O2", "-static", "-Wall", "-Wextra", "-o", "kc_arm64.full", KC_SOURCE],
               "cross-compiling kc_arm64", cwd=build,
               hint="apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
    if "warning:" in out or "error:" in out:
        raise OracleError("kc_arm64 built with warnings:\n" + out.strip(), f"fix kmod/{KC_SOURCE}")
    run_command([CROSS_STRIP, "-o", "kc_arm64", "kc_arm64.full"], "strip kc_arm64", cwd=build)
    if not is_static_aarch64(build / "kc_arm64"):
        raise OracleError("kc_arm64 is not a static aarch64 executable", "check the cross compiler")


# ==================================================================== guest
INIT_SH = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
vi() { /kc vmcoreinfo | sed -n "s/^KC vmcoreinfo $1=//p"; }
echo "=== ORACLE BEGIN"
echo "uname=$(uname -r)"
echo "version=$(cat /proc/version)"
echo "cmdline=$(cat /proc/cmdline)"
echo "nproc=$(grep -c '^processor' /proc/cpuinfo)"
echo "features=$(grep -m1 '^Features' /proc/cpuinfo | cut -d: -f2)"
for s in _stext _etext __init_begin; do echo "sym $s 0x$(awk -v s=$s '$3==s{print $1; exit}' /proc/kallsyms)"; done
/kc vmcoreinfo | grep -E 'OSRELEASE|SYMBOL\(swapper_pg_dir\)|NUMBER\(|KERNELOFFSET|^KC err'
grep -E 'System RAM|Kernel code|Kernel data' /proc/iomem | sed 's/^ */iomem /'
dmesg | grep -iE 'rodata|KASLR|kpti|Memory: ' | sed 's/^/dmesg /'
grep -E 'bpf|execmem' /proc/vmallocinfo | sed 's/^/vmallocinfo /'
PGD=0x$(vi 'SYMBOL(swapper_pg_dir)')
PO=$(vi 'NUMBER(PHYS_OFFSET)')
echo "=== WALK linear"
/kc walk $PGD $PO 0xffff000000000000 0xffff000000000000 0xffff800000000000
echo "=== WALK end"
echo "=== ORACLE END"
poweroff -f
"""


def build_initramfs(busybox: bytes, kc: bytes, init: str = INIT_SH) -> bytes:
    """A gzip'd newc cpio with busybox, /init and /kc; needs no cpio, mknod or root."""
    files = [(".", 0o040755, b""), ("bin", 0o040755, b""), ("dev", 0o040755, b""), ("proc", 0o040755, b""),
             ("bin/busybox", 0o100755, busybox), ("init", 0o100755, init.encode()), ("kc", 0o100755, kc)]
    return gzip.compress(cpio_archive(files, devnull=False), compresslevel=6, mtime=0)


def qemu_command(install: Arm64Install, initrd: Path, mem: str, rodata: str) -> list[str]:
    return [install.qemu, "-M", "virt", "-cpu", QEMU_CPU, "-accel", "tcg", "-m", mem, "-smp", "1", "-nographic",
            "-no-reboot", "-kernel", install.vmlinuz, "-initrd", str(initrd), "-append", f"{APPEND} rodata={rodata}"]


def boot_guest(install: Arm64Install, mem: str, rodata: str, timeout: float = 300.0, *,
               panic_after_init: bool = True) -> Boot:
    """Boot the arm64 kernel with the walker's initramfs and wait for power-off (or the timeout); a guest that
    never reached /init is booted once more, and so, with ``panic_after_init``, is one that panicked after it
    (the walker's /init loads no module; boot_again_before_init()).  A smoke boot of a newly built kernel
    passes False: there a late panic is what it looks for."""
    def once() -> Boot:
        with tempfile.TemporaryDirectory(prefix="rofolio-arm64-") as tmp:
            initrd = Path(tmp) / "initrd.gz"
            initrd.write_bytes(build_initramfs(Path(install.busybox).read_bytes(), Path(install.kc).read_bytes()))
            return run_qemu(qemu_command(install, initrd, mem, rodata), timeout, "run the arm64 setup again")
    run = boot_again_before_init(once, panic_after_init=panic_after_init)
    return replace(run, serial=run.serial.replace("\r", ""))


# ==================================================================== parse
_RUN_RE = re.compile(r"KC run va=0x([0-9a-f]+)-0x([0-9a-f]+) pa=0x([0-9a-f]+) level=(PGD|PUD|PMD|PTE) "
                     r"attrs=0x([0-9a-f]+)")


@dataclass(frozen=True)
class Entry:
    """Consecutive ptdump entries: [start, end) at one level with one descriptor (attrs: all but the address)."""

    start: int
    end: int
    level: str
    attrs: int
    pa: int = 0


@dataclass
class Arm64Log:
    """What the guest printed."""

    uname: str | None = None
    version: str | None = None
    cmdline: str | None = None
    nproc: int | None = None
    features: str | None = None
    syms: dict[str, int] = field(default_factory=dict)
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    ram: list[tuple[int, int]] = field(default_factory=list)
    kernel_code: tuple[int, int] | None = None
    kernel_data: tuple[int, int] | None = None
    dmesg: list[str] = field(default_factory=list)
    walk: list[Entry] = field(default_factory=list)
    walk_summary: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    complete: bool = False
    panic: bool = False

    def number(self, key: str) -> int | None:
        value = self.vmcoreinfo.get(key)
        if value is None:
            return None
        hexadecimal = value.startswith("0x") or key.startswith("SYMBOL(") or key == "KERNELOFFSET"  # "%lx"
        try:
            return int(value, 16) if hexadecimal else int(value, 10)
        except ValueError:
            return None


def _range(text: str) -> tuple[int, int]:
    lo, hi = text.split("-")
    return int(lo, 16), int(hi, 16) + 1


def parse_log(serial: str) -> Arm64Log:
    """Parse the serial console of one arm64 guest boot."""
    log = Arm64Log()
    log.panic = panicked(serial)
    body = serial.split("=== ORACLE BEGIN", 1)
    if len(body) < 2:
        log.errors.append("no '=== ORACLE BEGIN' on the serial console: the guest did not reach /init")
        return log
    log.complete = "=== ORACLE END" in body[1]
    in_walk = False
    for raw in body[1].splitlines():
        line = raw.strip()
        if line.startswith("=== WALK linear"):
            in_walk = True
        elif line.startswith("=== WALK end"):
            in_walk = False
        elif line.startswith("uname="):
            log.uname = line[6:]
        elif line.startswith("version="):
            log.version = line[8:]
        elif line.startswith("cmdline="):
            log.cmdline = line[8:]
        elif line.startswith("nproc="):
            log.nproc = int(line[6:] or 0)
        elif line.startswith("features="):
            log.features = line[9:].strip()
        elif line.startswith("sym "):
            parts = line.split()
            if len(parts) == 3 and parts[2] != "0x":
                log.syms[parts[1]] = int(parts[2], 16)
        elif line.startswith("KC vmcoreinfo "):
            key, _, value = line[len("KC vmcoreinfo "):].partition("=")
            log.vmcoreinfo[key] = value
        elif line.startswith("iomem "):
            span, _, what = line[6:].partition(" : ")
            if what == "System RAM":
                log.ram.append(_range(span))
            elif what == "Kernel code":
                log.kernel_code = _range(span)
            elif what == "Kernel data":
                log.kernel_data = _range(span)
        elif line.startswith("dmesg "):
            log.dmesg.append(line[6:])
        elif line.startswith("KC err"):
            log.errors.append(line)
        elif in_walk and line.startswith("KC run "):
            m = _RUN_RE.match(line)
            if m:
                log.walk.append(Entry(int(m[1], 16), int(m[2], 16), m[4], int(m[5], 16), int(m[3], 16)))
        elif in_walk and line.startswith("KC walk_summary"):
            for item in line.split()[2:]:
                key, _, value = item.partition("=")
                log.walk_summary[key] = int(value, 0)
    if not log.complete:
        log.errors.append("the guest did not finish (no '=== ORACLE END')" + (": kernel panic" if log.panic else ""))
    elif not log.walk:
        log.errors.append("no linear-map walk on the guest")
    elif log.walk_summary.get("ret", 1) != 0:
        log.errors.append("the walk of swapper_pg_dir stopped early")
    return log


# ============================================================== ptdump text
def prot_mask() -> int:
    from rofolio.arch.arm64.ptdump import PROT_MASK

    return PROT_MASK


def note_entries(entries: list[Entry]) -> list[Entry]:
    """note_page(): merge consecutive entries whose level and masked descriptor (``val & mask``) agree."""
    mask = prot_mask()
    out: list[Entry] = []
    for e in entries:
        prot = e.attrs & mask
        if out and out[-1].end == e.start and out[-1].level == e.level and out[-1].attrs == prot:
            out[-1] = Entry(out[-1].start, e.end, e.level, prot, out[-1].pa)
        else:
            out.append(Entry(e.start, e.end, e.level, prot, e.pa))
    return out


def ptdump_text(entries: list[Entry], first: str = "Linear Mapping start",
                last: str = "Linear Mapping end") -> list[str]:
    """The lines arm64's ptdump prints for ``entries`` (formatted with the model's pte_bits[])."""
    from rofolio.arch.arm64.ptdump import dump_prot, format_size

    lines = [f"---[ {first} ]---"]
    for e in note_entries(entries):
        text = f"0x{e.start:016x}-0x{e.end:016x}   {format_size(e.end - e.start)} {e.level}"
        lines.append(text + dump_prot(e.attrs) if e.attrs else text)
    lines.append(f"---[ {last} ]---")
    return lines


def model_entries(machine: Any, start: int = PAGE_OFFSET, end: int = PAGE_END) -> list[Entry]:
    """The model's page table over [start, end) as ptdump entries."""
    from rofolio.arch.arm64.ptdump import LEVEL_NAMES, WALK_LEVELS

    out = []
    for s, e, level, flags in machine.page_table_walk(start, end, WALK_LEVELS):
        out.append(Entry(s, e, LEVEL_NAMES[level], 0 if flags is None else flags))
    return note_entries(out)


# ==================================================================== model
def measured_image(log: Arm64Log) -> Any:
    """The kernel image where the guest has it (physical addresses), as the model's Arm64KernelImage.

    _text is KIMAGE_VADDR (= MODULES_END on 6.1) + KERNELOFFSET; PA = VA - kimage_voffset.
    /proc/iomem gives [_stext, __init_begin) ("Kernel code") and [_sdata, _end) ("Kernel data").
    __start_rodata and __init_end are not needed by the linear map: they are set to stand-ins.
    """
    from rofolio.arch.arm64.image import Arm64KernelImage
    from rofolio.units import align_up

    voff = log.number("NUMBER(kimage_voffset)")
    kimage = log.number("NUMBER(MODULES_END)")
    koff = log.number("KERNELOFFSET") or 0
    if voff is None or kimage is None or log.kernel_code is None or log.kernel_data is None:
        raise OracleError("the guest printed no kimage_voffset, MODULES_END or kernel resources",
                          "check the guest's VMCOREINFO note and /proc/iomem")
    text = kimage + koff - voff
    stext, init_begin = log.kernel_code
    etext = log.syms["_etext"] - voff if "_etext" in log.syms else init_begin
    sdata, end = log.kernel_data
    start_rodata = min(align_up(etext, SEGMENT_ALIGN), init_begin)
    return Arm64KernelImage(text=text, stext=stext, etext=etext, start_rodata=start_rodata, init_begin=init_begin,
                            init_end=max(init_begin, sdata), end=align_up(end, 4096))


def model_machine(mem: int, rodata: str | None, image: Any | None) -> Any:
    """The model booted to SYSTEM_RUNNING at its minimum arm64 version, one CPU, no BBML2 (QEMU 7.2 has none).

    ``image`` None: the machine's default image (Debian 6.1's, where QEMU loads it).
    """
    from rofolio.arch.arm64.config import ARM64_MIN_KERNEL
    from rofolio.machine import Machine, MachineSpec

    m = Machine.boot(MachineSpec(arch="arm64", mem=mem, kernel=str(ARM64_MIN_KERNEL), cpus=1,
                                 options={"rodata": rodata}), image=image)
    m.finish_boot()
    return m


# =================================================================== compare
@dataclass
class Difference:
    start: int
    end: int
    kernel: str
    model: str
    cause: str = ""
    kernel_entry: Entry | None = field(default=None, repr=False)
    model_entry: Entry | None = field(default=None, repr=False)


@dataclass
class ModelCheck:
    """One model run against the kernel's walk."""

    name: str
    agree: bool
    diff: list[str]
    differences: list[Difference]

    @property
    def explained(self) -> bool:
        """Every differing range has a known cause."""
        return all(d.cause != UNEXPLAINED for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "agree": self.agree, "all_differences_explained": self.explained,
                "diff": self.diff,
                "differences": [{"start": f"{d.start:#x}", "end": f"{d.end:#x}", "kernel": d.kernel,
                                 "model": d.model, "cause": d.cause} for d in self.differences]}


@dataclass
class Arm64Report:
    mem: str
    rodata: str
    uname: str
    model_kernel: str
    wall_s: float
    kernel_lines: list[str] = field(default_factory=list)
    checks: list[ModelCheck] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a second boot's reason (boot_again_before_init())

    @property
    def agree(self) -> bool:
        """The model with the measured image agrees with the kernel (the first check)."""
        return not self.errors and bool(self.checks) and self.checks[0].agree

    def to_dict(self) -> dict[str, Any]:
        return {"mem": self.mem, "rodata": self.rodata, "uname": self.uname, "model_kernel": self.model_kernel,
                "wall_s": self.wall_s, "agree": self.agree, "facts": self.facts, "errors": self.errors,
                "notes": self.notes, "kernel_ptdump": self.kernel_lines, "checks": [c.to_dict() for c in self.checks]}


def _describe(e: Entry | None) -> str:
    from rofolio.arch.arm64.ptdump import dump_prot

    if e is None:
        return "(nothing)"
    return f"{e.level}{dump_prot(e.attrs) if e.attrs else ''}".strip()


def differences(kernel: list[Entry], model: list[Entry]) -> list[Difference]:
    """The VA ranges where level or masked descriptor differ, merged."""
    mask = prot_mask()
    cuts = sorted({e.start for e in kernel + model} | {e.end for e in kernel + model})

    def at(entries: list[Entry], va: int) -> Entry | None:
        lo, hi = 0, len(entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if entries[mid].end <= va:
                lo = mid + 1
            else:
                hi = mid
        return entries[lo] if lo < len(entries) and entries[lo].start <= va else None

    out: list[Difference] = []
    for lo, hi in pairwise(cuts):
        k, m = at(kernel, lo), at(model, lo)
        key_k = (k.level, k.attrs & mask) if k else None
        key_m = (m.level, m.attrs & mask) if m else None
        if key_k == key_m:
            continue
        kd, md = _describe(k), _describe(m)
        if out and out[-1].end == lo and out[-1].kernel == kd and out[-1].model == md:
            out[-1].end = hi
        else:
            out.append(Difference(lo, hi, kd, md, kernel_entry=k, model_entry=m))
    return out


UNEXPLAINED = "unexplained"
CAUSE_TEXT = ("version: Debian 6.1 maps [_text, _stext) as ordinary RAM and starts the read-only alias at "
              "_stext (map_mem(): kernel_start = __pa_symbol(_stext)), so the alias's first 2M up to the next "
              "PMD boundary cannot be a block; v6.18 starts the alias at _text (5973a62efa34 'arm64: map "
              "[_text, _stext) virtual address range non-executable+read-only')")
CAUSE_JIT = ("boot: a page made read-only after map_mem(): under rodata_full, change_memory_common() also "
             "changes the linear alias of every page of a vmalloc area (in these boots the one-page BPF JIT "
             "image from bpf_jit_alloc_exec(), see /proc/vmallocinfo); the model's arm64 boot runs no BPF JIT")
CAUSE_IMAGE = ("model: Machine.boot()'s kernel image (Arm64KernelImage.qemu_virt() at the start of RAM, "
               "illustrative section sizes) is not where QEMU loads this Image (RAM start + 2 MiB, "
               "hw/arm/boot.c) nor its size")


def explain(d: Difference, kimage: Any, mimage: Any, *, rodata_full: bool) -> str:
    """The known cause of one differing range, or 'unexplained'.

    ``kimage`` is the guest's kernel image, ``mimage`` the one the model ran with.
    """
    from rofolio.units import align_up

    k = d.kernel_entry
    lm = lambda pa: (pa - (1 << 30)) | PAGE_OFFSET  # noqa: E731 - PHYS_OFFSET of QEMU virt
    pmd = 2 << 20
    if mimage != kimage and d.start >= PAGE_OFFSET and \
            d.end <= lm(align_up(max(kimage.init_begin, mimage.init_begin), pmd)):
        return CAUSE_IMAGE
    if lm(kimage.text) <= d.start and d.end <= lm(align_up(kimage.stext, pmd)):
        return CAUSE_TEXT
    if rodata_full and k is not None and k.level == "PTE" and "ro" in d.kernel.split() \
            and "RW" in d.model.split() and (d.end <= lm(kimage.text) or d.start >= lm(kimage.init_begin)):
        return CAUSE_JIT
    return UNEXPLAINED


def unified(kernel_lines: list[str], model_lines: list[str]) -> list[str]:
    import difflib

    return [line for line in difflib.unified_diff(kernel_lines, model_lines, "kernel", "model", n=0, lineterm="")
            if not line.startswith(("---", "+++"))]


# rodata= on Debian's 6.1 -> the model's (v6.18) string with the same effect.  6.1's arch_parse_debug_rodata()
# (asm/setup.h before "arm64: refactor the rodata=xxx") knows full (rodata_full), off, on (!rodata_full);
# anything else warns and keeps the defaults (rodata_full with CONFIG_RODATA_FULL_DEFAULT_ENABLED=y).
# The refactor renamed full -> on and on -> noalias.
RODATA_61_TO_MODEL: dict[str, str | None] = {"full": "on", "on": "noalias", "off": "off", "noalias": None}
RODATA_FULL_61 = {"full": True, "on": False, "off": False, "noalias": True}


def compare(log: Arm64Log, mem: str, rodata: str, wall_s: float = 0.0) -> Arm64Report:
    """The guest's linear map against the model's (measured image, then Machine.boot's default image)."""
    from rofolio.arch.arm64.config import ARM64_MIN_KERNEL

    rep = Arm64Report(mem, rodata, log.uname or "?", str(ARM64_MIN_KERNEL), wall_s, errors=list(log.errors))
    if rep.errors:
        return rep
    size = parse_size(mem)
    va_bits = log.number("NUMBER(VA_BITS)")
    phys_offset = log.number("NUMBER(PHYS_OFFSET)")
    if va_bits != VA_BITS or phys_offset != 1 << 30:
        rep.errors.append(f"the guest has VA_BITS={va_bits} PHYS_OFFSET={phys_offset}; the model has "
                          f"48 and {1 << 30:#x} (QEMU virt)")
        return rep
    model_ram = [(1 << 30, (1 << 30) + size)]
    if log.ram != model_ram:
        rep.errors.append(f"guest RAM {log.ram} is not the model's {model_ram}")
        return rep
    image = measured_image(log)
    rep.facts = {"RAM": ", ".join(f"[{s:#x}, {e:#x})" for s, e in log.ram),
                 "_text": f"{image.text:#x}", "_stext": f"{image.stext:#x}", "__init_begin": f"{image.init_begin:#x}",
                 "_end": f"{image.end:#x}", "kimage_voffset": log.vmcoreinfo.get("NUMBER(kimage_voffset)", "?"),
                 "walk kB (PTE/PMD/PUD)": f"{log.walk_summary.get('kb_pte')}/{log.walk_summary.get('kb_pmd')}/"
                                          f"{log.walk_summary.get('kb_pud')}"}
    kernel = note_entries(log.walk)
    rep.kernel_lines = ptdump_text(kernel)
    model_rodata = RODATA_61_TO_MODEL[rodata]
    rep.facts["model rodata="] = model_rodata or "(none: the default)"

    runs = (("model, measured kernel image", image),
            ("model, Machine.boot default image", None),
            # what 6.1 does, in the model's terms: the alias starts at _stext
            ("model as 6.1 (alias from _stext)", replace(image, text=image.stext)))
    for name, img in runs:
        try:
            k = model_machine(size, model_rodata, img)
        except RofolioError as err:
            rep.errors.append(f"{name}: {err}")
            continue
        entries = model_entries(k)
        lines = ptdump_text(entries)
        diffs = differences(kernel, entries)
        for d in diffs:
            d.cause = explain(d, image, k.kernel_image, rodata_full=RODATA_FULL_61[rodata])
        rep.checks.append(ModelCheck(name, lines == rep.kernel_lines, unified(rep.kernel_lines, lines), diffs))
    return rep


def run(install: Arm64Install, mems: list[str], rodatas: list[str], *, timeout: float = 300.0,
        keep_log: Path | None = None, progress: Callable[[str], None] | None = None) -> list[Arm64Report]:
    reports = []
    for mem in mems:
        for rodata in rodatas:
            if progress:
                progress(f"booting {install.kver} under qemu-system-aarch64 -m {mem}, rodata={rodata}")
            g = boot_guest(install, mem, rodata, timeout)
            keep(keep_log, f"arm64-boot-{mem}-rodata-{rodata}.serial.log", g.serial)
            log = parse_log(g.serial)
            if g.timed_out:
                log.errors.insert(0, f"QEMU timed out after {timeout:.0f} s")
            rep = compare(log, mem, rodata, g.wall_s)
            rep.notes = list(g.notes)
            for note in g.notes:
                if progress:
                    progress(f"-m {mem} rodata={rodata}: {note}")
            reports.append(rep)
    return reports


# ====================================================================== CLI
def _say(text: str) -> None:
    click.echo(f"rofolio oracle: {text}", err=True)


def render(rep: Arm64Report) -> list[str]:
    out = [f"arm64 -m {rep.mem} rodata={rep.rodata}: kernel {rep.uname} (boot {rep.wall_s} s) vs model "
           f"{rep.model_kernel} (rodata={rep.facts.get('model rodata=', '?')})"]
    for err in rep.errors:
        out.append(f"  error: {err}")
    for note in rep.notes:
        out.append(f"  note: {note}")
    facts = [f"{k} {v}" for k, v in rep.facts.items() if k != "model rodata="]
    if facts:
        out.append("  guest: " + "; ".join(facts))
    causes: list[str] = []
    for check in rep.checks:
        verdict = "agree" if check.agree else \
            f"DISAGREE ({len(check.differences)} ranges, " + \
            ("all with a known cause)" if check.explained else
             f"{sum(d.cause == UNEXPLAINED for d in check.differences)} unexplained)")
        out.append(f"  {check.name}: {verdict}")
        for line in check.diff:
            out.append(f"    {line}")
        for d in check.differences:
            if d.cause not in causes:
                causes.append(d.cause)
            out.append(f"    range 0x{d.start:016x}-0x{d.end:016x}: cause [{causes.index(d.cause) + 1}]")
    for i, cause in enumerate(causes, 1):
        out.append(f"  [{i}] {cause}")
    return out


@click.command(name="arm64-boot")
@click.option("--mem", "mems", multiple=True, callback=check_guest_mem, help="QEMU -m, repeatable [default: 2G].")
@click.option("--rodata", "rodatas", multiple=True, type=click.Choice(RODATA_CHOICES),
              help="rodata= on the kernel command line, repeatable [default: full and off].")
@click.option("--timeout", default=300.0, show_default=True, type=TIMEOUT, help="Seconds before a boot is killed.")
@click.option("--json", "as_json", is_flag=True, help=f"Print the result as JSON ({SCHEMA}).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each serial console log in this directory.")
@click.option("--setup", "do_setup", is_flag=True, help="Run the arm64 setup first (as root; idempotent).")
def arm64_boot(mems: tuple[str, ...], rodatas: tuple[str, ...], timeout: float, as_json: bool,
               keep_log: Path | None, do_setup: bool) -> None:
    """arm64: Debian's arm64 kernel under qemu-system-aarch64; its boot-time linear map against the model's."""
    # errors are the command line's contract (rofolio.exitstatus): a missing setup is an environment failure
    install = setup(log=_say) if do_setup else load_install()
    reports = run(install, list(mems) or ["2G"], list(rodatas) or ["full", "off"], timeout=timeout,
                  keep_log=keep_log, progress=None if as_json else _say)
    if as_json:
        click.echo(json.dumps({"schema": SCHEMA, "kernel": install.kver,
                               "agreement": f"{sum(r.agree for r in reports)}/{len(reports)}",
                               "boots": [r.to_dict() for r in reports]}, indent=1))
    else:
        for rep in reports:
            click.echo("\n".join(render(rep)))
        click.echo(f"arm64 linear map: {sum(r.agree for r in reports)}/{len(reports)} configurations agree "
                   f"(kernel {install.kver}, model {reports[0].model_kernel if reports else '?'})")
    if not all(r.agree for r in reports):
        from rofolio.errors import ChecksFailed

        raise ChecksFailed(f"{sum(not r.agree for r in reports)} of {len(reports)} arm64 boot configuration(s) "
                           "disagree with the model")
