"""The riscv64 oracle: Debian's riscv64 kernel under qemu-system-riscv64 (virt, OpenSBI), its boot-time linear
map against the model's.

Setup (``rofolio oracle setup --arch riscv64``; as root on a clean machine, into
``$ROFOLIO_ORACLE_DIR/riscv64`` or ``~/.cache/rofolio/oracle/riscv64``):

1. ``apt-get install qemu-system-misc`` from the system's own suite (OpenSBI's ``fw_dynamic`` comes with
   qemu-system-data);
2. a private apt state naming unstable for riscv64 (``debian.PrivateApt``; nothing is installed from it), the
   newest ``linux-binary-7.2.*-riscv64`` resolved every time, then ``apt-get download`` of it and of
   ``busybox-static:riscv64``; only ``vmlinuz`` (a riscv ``Image`` QEMU loads directly), ``config`` and
   ``bin/busybox`` are unpacked.

Debian's config has no CONFIG_PTDUMP_DEBUGFS, and reading the page tables from inside would need a cross
compiler for a walker; so the host reads them.  The guest's /init prints the kallsyms addresses of the image's
sections and of ``swapper_pg_dir`` (CONFIG_KALLSYMS_ALL) and /proc/iomem's "Kernel code" start, then waits;
the host asks QEMU's monitor (``info registers`` for satp's mode, ``xp`` for physical memory) and walks
``swapper_pg_dir`` over the linear map and over the vmalloc and module areas, then quits the guest.  The walk is
printed in the layout of riscv's ptdump (``arch/riscv/mm/ptdump.c``) and compared line by line with the model's
``Machine.ptdump_lines()`` for the same machine, given as inputs what the boot placed: the image's section
addresses, where memblock put the KFENCE pool, and which vmalloc pages boot made read-only (their linear
alias is split by __set_memory()).
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from rofolio.oracle import debian
from rofolio.oracle.errors import OracleError
from rofolio.oracle.guest import Boot, booted_again_note, cpio_archive, keep
from rofolio.oracle.options import TIMEOUT, check_guest_mem
from rofolio.oracle.setup import cache_dir, ensure_system_packages, is_static_elf, read_manifest, run_command
from rofolio.units import parse_size

__all__ = [
    "GuestMap", "Riscv64Install", "Riscv64Report", "boot_guest", "guest_lines", "load_install", "model_lines",
    "record", "replay", "resolve", "riscv64_boot", "riscv64_dir", "run", "secretmem_program", "setup", "walk_kernel",
]

SUBDIR = "riscv64"
MANIFEST = "manifest-riscv64.json"
SCHEMA = "rofolio.oracle.riscv64/1"
SERIES = (7, 2)
PACKAGES = ["qemu-system-misc", "qemu-system-data"]
OPENSBI = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin"
APPEND = "console=ttyS0 panic=-1 quiet"
SV_APPEND = {48: "", 39: " no4lvl"}  # QEMU 7.2's virt CPU offers Sv48; no4lvl makes the kernel settle on Sv39
SATP_MODES = {8: 39, 9: 48, 10: 57}
IMAGE_SYMBOLS = ("_start", "_text", "__init_begin", "__init_data_begin", "__init_end", "__start_rodata", "_data",
                 "_end", "swapper_pg_dir", "__kfence_pool")
READY = "rofolio-ready"
PFN_MASK = (1 << 44) - 1
U64 = (1 << 64) - 1


# ==================================================================== setup
@dataclass(frozen=True)
class Riscv64Install:
    """A completed riscv64 setup: the files a guest boot needs."""

    root: str
    kver: str
    vmlinuz: str
    config: str
    busybox: str
    qemu: str
    opensbi: str

    def missing(self) -> list[str]:
        return [p for p in (self.vmlinuz, self.config, self.busybox, self.qemu, self.opensbi) if not Path(p).exists()]


def riscv64_dir(root: Path | None = None) -> Path:
    return (root or cache_dir()).expanduser() / SUBDIR


def load_install(root: Path | None = None) -> Riscv64Install:
    """The manifest of an earlier riscv64 setup; an error that says how to make one otherwise."""
    return read_manifest(riscv64_dir(root) / MANIFEST, Riscv64Install, "the riscv64 oracle",
                         "run `rofolio oracle setup --arch riscv64` first (as root, with the Debian mirror reachable)")


def resolve(names: list[str], series: tuple[int, int] = SERIES) -> tuple[str, str]:
    """(image package, KVER) of the newest riscv64 kernel of ``series`` among package ``names``
    (``debian.resolve()``'s choice; the riscv64 rules are 7.2's, so no other series stands in)."""
    try:
        res = debian.resolve(names, *series, arch="riscv64")
    except OracleError:
        res = None
    if res is None or res.note:
        raise OracleError(f"unstable carries no riscv64 {series[0]}.{series[1]} kernel image package",
                          "is the private apt state updated? run the setup again")
    return res.image_package, res.kver


def setup(root: Path | None = None, log: Callable[[str], None] = print) -> Riscv64Install:
    """Install QEMU for riscv64 (system suite), fetch Debian unstable's riscv64 kernel and busybox (private apt)."""
    t0 = time.monotonic()
    folder = riscv64_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    ensure_system_packages(PACKAGES, log, "rofolio oracle setup --arch riscv64")
    qemu = shutil.which("qemu-system-riscv64")
    if not qemu or not Path(OPENSBI).exists():
        raise OracleError("qemu-system-riscv64 or OpenSBI's fw_dynamic is missing after the install",
                          "apt-get install qemu-system-misc qemu-system-data")
    apt = debian.PrivateApt(cache_dir() / f"apt-{debian.SUITE}-riscv64", arch="riscv64")
    log(f"apt-get update of {apt.suite} for riscv64 in a private state ({apt.root}); nothing is installed from it")
    apt.update(run_command)
    package, kver = resolve(apt.pkgnames(run_command, "linux-binary-") + apt.pkgnames(run_command, "linux-image-"))
    log(f"KVER {kver}")
    dest = folder / kver
    vmlinuz, config, busybox = dest / "vmlinuz", dest / "config", folder / "busybox"
    kernel = [package] + ([f"linux-base-{kver}"] if package.startswith("linux-binary-") else [])  # 7.x: config there
    wanted = (kernel if not (vmlinuz.exists() and config.exists()) else []) + \
        (["busybox-static"] if not is_static_elf(busybox) else [])
    if wanted:
        with tempfile.TemporaryDirectory(prefix="rofolio-riscv64-") as tmp:
            log(f"apt-get download {' '.join(wanted)}")
            for deb in apt.download(run_command, wanted, Path(tmp) / "debs"):
                run_command(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], f"dpkg-deb -x {deb.name}")
            x = Path(tmp) / "x"
            if package in wanted:
                dest.mkdir(parents=True, exist_ok=True)
                for name, target in (("vmlinuz", vmlinuz), ("config", config)):
                    found = sorted(x.glob(f"usr/lib/modules/{kver}/{name}")) + sorted(x.glob(f"boot/{name}-{kver}"))
                    if not found:
                        raise OracleError(f"{package} has no {name}", "check the package layout")
                    shutil.copyfile(found[0], target)
            if "busybox-static" in wanted:
                shutil.copyfile(x / "usr" / "bin" / "busybox", busybox)
    if not is_static_elf(busybox):
        raise OracleError(f"{busybox} is not a static ELF", "delete it and run the setup again")
    install = Riscv64Install(str(folder), kver, str(vmlinuz), str(config), str(busybox), qemu, OPENSBI)
    (folder / MANIFEST).write_text(json.dumps(asdict(install), indent=1) + "\n")
    log(f"riscv64 oracle set up in {time.monotonic() - t0:.0f} s")
    return install


def config_facts(config: Path) -> dict[str, str]:
    """The options of Debian's config the linear map depends on (and the one that rules out debugfs ptdump)."""
    text = config.read_text()
    out = {}
    for key in ("PTDUMP_DEBUGFS", "KFENCE", "KFENCE_SAMPLE_INTERVAL", "STRICT_KERNEL_RWX", "DEBUG_PAGEALLOC",
                "RELOCATABLE", "PGTABLE_LEVELS"):
        m = re.search(rf"^CONFIG_{key}=(\S+)$", text, re.M)
        out[key] = m.group(1) if m else "n"
    return out


# ===================================================================== guest
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
awk -v names="$SYMS" 'BEGIN{n=split(names, w, " "); for (i = 1; i <= n; i++) want[w[i]] = 1}
  ($3 in want) {print "sym", $3, "0x"$1}' /proc/kallsyms
awk '/Kernel code/{split($1, r, "-"); print "code 0x"r[1]}
  /^[0-9a-f].*System RAM/ && !ram {split($1, r, "-"); print "ram 0x"r[1]; ram = 1}' /proc/iomem
echo "uname $(uname -r)"
RUNTIME
echo READY
sleep 3600
"""


def _i(imm: int, rs1: int, rd: int) -> int:
    """ADDI rd, rs1, imm (RV64I I-type, opcode 0x13)."""
    return (imm & 0xFFF) << 20 | rs1 << 15 | rd << 7 | 0x13


def secretmem_program() -> bytes:
    """A static riscv64 ELF, assembled here (no cross compiler): memfd_secret(0), ftruncate(fd, 4096),
    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), one store (the fault that allocates the page
    and has secretmem_fault() call set_direct_map_invalid_noflush() on it), then ppoll(NULL, 0, NULL, NULL) for
    ever, so the page stays.  Syscall numbers from include/uapi/asm-generic/unistd.h."""
    zero, t0, s0, a0, a1, a2, a3, a4, a5, a7 = 0, 5, 8, 10, 11, 12, 13, 14, 15, 17
    ecall = 0x73
    lui_a1_4096 = 1 << 12 | a1 << 7 | 0x37  # LUI a1, 1
    sb_t0_a0 = t0 << 20 | a0 << 15 | 0x23  # SB t0, 0(a0)
    jal_back = 0xFE9FF06F  # JAL zero, -24: back to the ppoll set-up
    code = [_i(447, zero, a7), _i(0, zero, a0), ecall, _i(0, a0, s0),
            _i(46, zero, a7), _i(0, s0, a0), lui_a1_4096, ecall,
            _i(222, zero, a7), _i(0, zero, a0), lui_a1_4096, _i(3, zero, a2), _i(1, zero, a3), _i(0, s0, a4),
            _i(0, zero, a5), ecall,
            _i(0x5A, zero, t0), sb_t0_a0,
            _i(73, zero, a7), _i(0, zero, a0), _i(0, zero, a1), _i(0, zero, a2), _i(0, zero, a3), ecall, jal_back]
    text = b"".join(c.to_bytes(4, "little") for c in code)
    base, off = 0x10000, 64 + 56
    ehdr = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + (243).to_bytes(2, "little")
            + (1).to_bytes(4, "little") + (base + off).to_bytes(8, "little") + (64).to_bytes(8, "little")
            + bytes(8) + bytes(4) + (64).to_bytes(2, "little") + (56).to_bytes(2, "little") + (1).to_bytes(2, "little")
            + bytes(6))
    size = (off + len(text)).to_bytes(8, "little")
    phdr = ((1).to_bytes(4, "little") + (5).to_bytes(4, "little") + bytes(8) + base.to_bytes(8, "little")
            + base.to_bytes(8, "little") + size + size + (0x1000).to_bytes(8, "little"))
    return ehdr + phdr + text


class Monitor:
    """QEMU's human monitor on a unix socket: one command, its output up to the next prompt."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise OracleError(f"cannot reach QEMU's monitor at {path}: {err}",
                                      "check the QEMU command") from err
                time.sleep(0.1)
        self._read()

    def _read(self) -> str:
        buf = b""
        while not buf.rstrip().endswith(b"(qemu)"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OracleError("QEMU's monitor closed", "see the serial log (--keep-log)")
            buf += chunk
        return buf.decode(errors="replace")

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        out = self._read()
        return out[out.find("\n") + 1:]  # the monitor echoes the command line (with cursor moves) first

    def table(self, pa: int) -> list[int]:
        """The 512 entries of the page table at physical ``pa``."""
        values = [int(v, 16) for line in self.command(f"xp /512gx {pa:#x}").splitlines()
                  if re.match(r"^[0-9a-f]+:", line) for v in line.split(":", 1)[1].split()]
        if len(values) != 512:
            raise OracleError(f"xp of the table at {pa:#x} gave {len(values)} entries", "check the QEMU version")
        return values


@dataclass
class GuestMap:
    """What one guest boot showed: its symbols (physical), satp's mode, and the leaves of its kernel page table."""

    mem: int
    sv: int
    kver: str = ""
    symbols: dict[str, int] = field(default_factory=dict)  # physical addresses of IMAGE_SYMBOLS
    kfence_pool: int | None = None
    linear: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # (va, end, level, flags, pa)
    readonly_vmalloc_pfns: list[int] = field(default_factory=list)  # vmalloc/module PTEs without W
    secretmem: bool = False  # a memfd_secret() page was faulted in before the walk
    invalid_pfns: list[int] = field(default_factory=list)  # linear-map PTEs without V, outside the KFENCE pool
    tables: int = 0
    boot_seconds: float = 0.0
    walk_seconds: float = 0.0
    log: str = ""


def _walk(mon: Monitor, pa: int, level: int, base: int, lo: int, hi: int, out: list[tuple[int, int, int, int]],
          counted: list[int]) -> None:
    """Walk the table at ``pa`` (entries of ``level``, 1 = PTE) over [lo, hi): leaves as (va, level, entry)."""
    counted[0] += 1
    size = 1 << (12 + 9 * (level - 1))
    for i, e in enumerate(mon.table(pa)):
        va = base + i * size
        if va + size <= lo or va >= hi or not e:
            continue
        if e & 0xE or not e & 1:  # R, W or X: a leaf; a non-zero entry without V: a leaf the CPU will not use
            out.append((va, level, e, ((e >> 10) & PFN_MASK) << 12))
        elif level > 1:
            _walk(mon, ((e >> 10) & PFN_MASK) << 12, level - 1, va, lo, hi, out, counted)


def _sign_extend(va: int, bits: int) -> int:
    return va | (U64 ^ ((1 << bits) - 1)) if va >> (bits - 1) & 1 else va


def walk_kernel(mon: Monitor, root: int, sv: int,
                ranges: list[tuple[int, int]]) -> tuple[list[tuple[int, int, int, int]], int]:
    """The leaves of the page table at ``root`` over each [lo, hi) of ``ranges`` (kernel addresses)."""
    levels = {39: 3, 48: 4, 57: 5}[sv]
    top = mon.table(root)
    shift = 12 + 9 * (levels - 1)
    out: list[tuple[int, int, int, int]] = []
    counted = [1]
    for i, e in enumerate(top):
        va = _sign_extend(i << shift, sv)
        if not e & 1 or not any(va < hi and lo < va + (1 << shift) for lo, hi in ranges):
            continue
        if e & 0xE:
            out.append((va, levels, e, ((e >> 10) & PFN_MASK) << 12))
            continue
        for lo, hi in ranges:
            if va < hi and lo < va + (1 << shift):
                _walk(mon, ((e >> 10) & PFN_MASK) << 12, levels - 1, va, lo, hi, out, counted)
    return sorted(set(out)), counted[0]


def _coalesce(leaves: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int, int]]:
    """Consecutive leaves of one level and the same low bits as ptdump prints them: (va, end, level, flags, pa)."""
    runs: list[list[int]] = []
    for va, level, e, pa in leaves:
        size = 1 << (12 + 9 * (level - 1))
        if runs and runs[-1][1] == va and runs[-1][2] == level and runs[-1][3] == e & 0x3FF:
            runs[-1][1] = va + size
        else:
            runs.append([va, va + size, level, e & 0x3FF, pa])
    return [tuple(r) for r in runs]  # type: ignore[misc]


def qemu_command(install: Riscv64Install, initrd: Path, mem: str, sv: int, monitor: Path) -> list[str]:
    return [install.qemu, "-M", "virt", "-m", mem, "-smp", "1", "-nographic", "-no-reboot", "-bios", install.opensbi,
            "-kernel", install.vmlinuz, "-initrd", str(initrd), "-append", APPEND + SV_APPEND[sv],
            "-monitor", f"unix:{monitor},server,nowait"]


class NotAtInit(OracleError):
    """A guest that never printed /init's marker: QEMU killed it at the timeout, or it stopped (a panic)."""

    def __init__(self, message: str, hint: str, boot: Boot) -> None:
        super().__init__(message, hint)
        self.boot = boot


def boot_guest(install: Riscv64Install, mem: str, sv: int, timeout: float, secretmem: bool = False) -> GuestMap:
    """Boot one guest (with ``secretmem``: fault in one memfd_secret() page first), read its symbols, walk its
    kernel page table through the monitor, and kill it."""
    guest = GuestMap(parse_size(mem), sv, secretmem=secretmem)
    busybox = Path(install.busybox).read_bytes()
    runtime = "/bin/secret &\nsleep 1" if secretmem else ""
    init = INIT.replace("$SYMS", " ".join(IMAGE_SYMBOLS)).replace("RUNTIME", runtime).replace("READY", READY)
    with tempfile.TemporaryDirectory(prefix="rofolio-riscv64-guest-") as tmp:
        initrd, monitor = Path(tmp) / "initrd.cpio", Path(tmp) / "monitor.sock"
        initrd.write_bytes(cpio_archive([("bin", 0o040755, b""), ("proc", 0o040755, b""),
                                         ("bin/busybox", 0o100755, busybox), ("init", 0o100755, init.encode()),
                                         ("bin/secret", 0o100755, secretmem_program())]))
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(qemu_command(install, initrd, mem, sv, monitor), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as err:
            raise OracleError(f"cannot start {install.qemu}: {err}", "run the riscv64 setup again") from err
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.extend(iter(lambda: proc.stdout.read1(4096), b"")),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        try:
            while READY.encode() not in b"".join(out):
                if proc.poll() is not None or time.monotonic() - t0 > timeout:
                    seconds = round(time.monotonic() - t0, 1)
                    raise NotAtInit(f"the riscv64 guest ({mem}, Sv{sv}) did not reach /init's marker in "
                                    f"{timeout:.0f} s", "see the serial log (--keep-log)",
                                    Boot([], proc.poll() or 0, proc.poll() is None, seconds,
                                         b"".join(out).decode(errors="replace"), ""))
                time.sleep(0.2)
            guest.boot_seconds = round(time.monotonic() - t0, 1)
            _read_guest(guest, b"".join(out).decode(errors="replace"), Monitor(monitor, 30.0))
        finally:
            proc.kill()
            proc.wait()
            reader.join(timeout=5)
            guest.log = b"".join(out).decode(errors="replace")
    return guest


def _read_guest(guest: GuestMap, text: str, mon: Monitor) -> None:
    t0 = time.monotonic()
    virt = {m.group(1): int(m.group(2), 16) for m in re.finditer(r"^sym (\S+) 0x([0-9a-f]+)", text, re.M)}
    code = re.search(r"^code 0x([0-9a-f]+)", text, re.M)
    ram = re.search(r"^ram 0x([0-9a-f]+)", text, re.M)
    uname = re.search(r"^uname (\S+)", text, re.M)
    if code is None or ram is None or any(s not in virt for s in IMAGE_SYMBOLS):
        raise OracleError("the guest printed no kernel image layout (kallsyms, /proc/iomem)",
                          "see the serial log (--keep-log)")
    guest.kver = uname.group(1) if uname else ""
    phys_ram_base = int(ram.group(1), 16) & ~((2 << 20) - 1)  # setup_bootmem(): DRAM's start rounded down to 2M
    pa_start = int(code.group(1), 16) - (virt["_text"] - virt["_start"])  # iomem's "Kernel code" starts at _text
    guest.symbols = {s: v - virt["_start"] + pa_start for s, v in virt.items()}
    satp = re.search(r"satp\s+([0-9a-f]+)", mon.command("info registers"))
    if satp is None or int(satp.group(1), 16) >> 60 not in SATP_MODES:
        raise OracleError("no satp in QEMU's `info registers`", "check the QEMU version")
    guest.sv = SATP_MODES[int(satp.group(1), 16) >> 60]
    pool_var = re.search(r":\s+0x([0-9a-f]+)", mon.command(f"xp /1gx {guest.symbols['__kfence_pool']:#x}"))
    pool_va = int(pool_var.group(1), 16) if pool_var else 0  # __kfence_pool's value: NULL without a pool
    from rofolio.arch.riscv64.config import Riscv64Layout

    layout = Riscv64Layout(guest.sv, 0)
    linear = (layout.page_offset, layout.page_offset + layout.kern_virt_size)
    if pool_va:
        guest.kfence_pool = pool_va - layout.page_offset + phys_ram_base
    modules = ((virt["_end"] + 0xFFF & ~0xFFF) - (2 << 30), virt["_start"])  # MODULES_VADDR, MODULES_END
    leaves, guest.tables = walk_kernel(mon, guest.symbols["swapper_pg_dir"], guest.sv,
                                       [(layout.vmalloc_start, layout.page_offset), linear, modules])
    guest.linear = _coalesce([leaf for leaf in leaves if linear[0] <= leaf[0] < linear[1]])
    pool = range(guest.kfence_pool or 0, (guest.kfence_pool or 0) + (2 << 20))
    guest.invalid_pfns = sorted(pa >> 12 for va, level, e, pa in leaves
                                if linear[0] <= va < linear[1] and not e & 1 and pa not in pool)
    guest.readonly_vmalloc_pfns = sorted({pa >> 12 for va, level, e, pa in leaves if level == 1 and e & 5 == 1
                                          and (layout.vmalloc_start <= va < layout.page_offset
                                               or modules[0] <= va < modules[1])})
    guest.walk_seconds = round(time.monotonic() - t0, 2)


# ===================================================================== compare
def guest_lines(guest: GuestMap) -> list[str]:
    """The guest's linear map in riscv ptdump's layout."""
    from rofolio.arch.riscv64.ptdump import format_line

    return ["---[ Linear mapping ]---", *(format_line(va, end, pa, level, flags)  # type: ignore[arg-type]
                                         for va, end, level, flags, pa in guest.linear)]


def model_lines(guest: GuestMap) -> tuple[list[str], list[str]]:
    """The model's linear map for the guest's machine, with the guest's placements as inputs: (ptdump lines,
    the inputs it was given)."""
    from rofolio.machine import BootRecord, Machine, MachineSpec

    image = tuple((s, guest.symbols[s]) for s in ("_start", "__init_begin", "__init_data_begin", "__init_end",
                                                  "__start_rodata", "_data", "_end"))
    pool = (("__kfence_pool", guest.kfence_pool),) if guest.kfence_pool is not None else ()
    machine = Machine.boot(MachineSpec.build(arch="riscv64", mem=guest.mem, cpus=1, kfence=True, sv=guest.sv,
                                             kfence_sample_interval=0),
                           record=BootRecord(image=image + pool, source="riscv64 guest"))
    inputs = [f"image at {guest.symbols['_start']:#x}", f"KFENCE pool at {guest.kfence_pool or 0:#x}"]
    if guest.readonly_vmalloc_pfns:  # boot's set_memory_ro() of vmalloc pages: the alias follows
        pfns = guest.readonly_vmalloc_pfns
        machine.set_memory("set_memory_ro", machine.vmalloc(pfns), len(pfns))
        inputs.append("read-only vmalloc pages at pfn " + ", ".join(f"{p:#x}" for p in pfns))
    machine.finish_boot()
    for pfn in guest.invalid_pfns:  # secretmem_fault(): the page the page allocator gave it leaves the map
        machine.set_direct_map("set_direct_map_invalid_noflush", pfn)
        inputs.append(f"secretmem page at pfn {pfn:#x}")
    return machine.ptdump_lines(), inputs


def record(guest: GuestMap) -> dict[str, Any]:
    """What a boot showed, as JSON (the serial log included): tests replay it without QEMU."""
    return asdict(guest)


def replay(data: dict[str, Any]) -> GuestMap:
    """A GuestMap from ``record()``'s JSON."""
    guest = GuestMap(**data)
    guest.linear = [tuple(r) for r in guest.linear]  # type: ignore[misc]
    return guest


@dataclass
class Riscv64Report:
    mem: str
    sv: int
    secretmem: bool
    kver: str
    agree: bool
    lines: int
    diff: list[str]
    inputs: list[str]
    facts: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # why the guest was booted again (booted_again_note())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(install: Riscv64Install, configs: list[tuple[str, int, bool]], timeout: float, keep_log: Path | None,
        progress: Callable[[str], None] | None) -> list[Riscv64Report]:
    """Boot each (mem, sv, secretmem) configuration and compare its linear map with the model's."""
    reports = []
    facts = config_facts(Path(install.config))
    for mem, sv, secretmem in configs:
        what = f"{mem}, Sv{sv}" + (", a secretmem page" if secretmem else "")
        if progress:
            progress(f"booting {install.kver} with {what}")
        try:
            guest, notes = boot_guest(install, mem, sv, timeout, secretmem), []
        except NotAtInit as err:  # as the other oracle guests: once more (guest.boot_again_before_init())
            notes = [booted_again_note(err.boot)]
            if progress:
                progress(f"{what}: {notes[0]}")
            guest = boot_guest(install, mem, sv, timeout, secretmem)
        name = f"riscv64-{mem}-sv{sv}" + ("-secretmem" if secretmem else "")
        keep(keep_log, f"{name}.log", guest.log)
        keep(keep_log, f"{name}.json", json.dumps(record(guest), indent=1) + "\n")
        want = guest_lines(guest)
        have, inputs = model_lines(guest)
        diff = list(difflib.unified_diff(want, have, "guest", "model", lineterm="", n=0))
        reports.append(Riscv64Report(mem, guest.sv, secretmem, guest.kver, want == have, len(want) - 1, diff, inputs, {
            "boot_s": guest.boot_seconds, "walk_s": guest.walk_seconds, "tables_read": guest.tables,
            **{f"CONFIG_{k}": v for k, v in facts.items()}}, notes))
    return reports


def render(rep: Riscv64Report) -> list[str]:
    what = f"{rep.mem} Sv{rep.sv}" + (" + a secretmem page" if rep.secretmem else "")
    out = [f"riscv64 {rep.kver} {what}: linear map {'agrees' if rep.agree else 'DISAGREES'} "
           f"({rep.lines} ptdump lines; boot {rep.facts['boot_s']} s, walk {rep.facts['walk_s']} s, "
           f"{rep.facts['tables_read']} tables read)", "  inputs from the guest: " + "; ".join(rep.inputs)]
    out += [f"  note: {note}" for note in rep.notes]
    out += [f"  {line}" for line in rep.diff]
    return out


@click.command(name="riscv64-boot")
@click.option("--mem", "mems", multiple=True, callback=check_guest_mem,
              help="QEMU -m, repeatable [default: 8G Sv48, 2G Sv39, and 8G Sv48 with a secretmem page].")
@click.option("--sv", "svs", multiple=True, type=click.Choice(["48", "39"]),
              help="The paging mode, repeatable (39: no4lvl on the command line) [default: 48 with 8G, 39 with 2G].")
@click.option("--secretmem", is_flag=True, help="Fault in one memfd_secret() page before the walk (with --mem/--sv).")
@click.option("--timeout", default=180.0, show_default=True, type=TIMEOUT, help="Seconds before a boot is given up.")
@click.option("--json", "as_json", is_flag=True, help=f"Print the result as JSON ({SCHEMA}).")
@click.option("--keep-log", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each serial console log in this directory.")
@click.option("--setup", "do_setup", is_flag=True, help="Run the riscv64 setup first (as root; idempotent).")
def riscv64_boot(mems: tuple[str, ...], svs: tuple[str, ...], secretmem: bool, timeout: float, as_json: bool,
                 keep_log: Path | None, do_setup: bool) -> None:
    """riscv64: Debian's riscv64 kernel under qemu-system-riscv64; its boot-time linear map against the model's."""
    install = setup(log=lambda s: click.echo(s, err=True)) if do_setup else load_install()
    if mems or svs or secretmem:
        configs = [(m, int(s), secretmem) for m in (mems or ("8G",)) for s in (svs or ("48",))]
    else:  # the boot layouts, then set_direct_map_invalid_noflush() at run time through secretmem
        configs = [("8G", 48, False), ("2G", 39, False), ("8G", 48, True)]
    reports = run(install, configs, timeout, keep_log, None if as_json else lambda s: click.echo(s, err=True))
    agreement = f"{sum(r.agree for r in reports)}/{len(reports)}"
    if as_json:
        click.echo(json.dumps({"schema": SCHEMA, "kernel": install.kver, "agreement": agreement,
                               "boots": [r.to_dict() for r in reports]}, indent=1))
    else:
        for rep in reports:
            click.echo("\n".join(render(rep)))
        click.echo(f"riscv64 linear map: {agreement} configurations agree (kernel {install.kver})")
    if not all(r.agree for r in reports):
        from rofolio.errors import ChecksFailed

        raise ChecksFailed(f"{sum(not r.agree for r in reports)} of {len(reports)} riscv64 boot configuration(s) "
                           "disagree with the model")
