"""The arm64 guest: one boot per ``rodata=`` value runs every experiment of that value, in order.

The initramfs holds Debian's static arm64 busybox (from ``rofolio oracle setup --arch arm64``), the module
and ``/steps.sh``.  ``/init`` prints the kernel's identity and RAM, loads the module, asks it for ``info``
(rodata_full, can_set_direct_map(), MIDR_EL1, cpu_supports_bbml2_noabort(), the image's section addresses)
and sources the steps.  Each step writes its module commands from a child shell, so an oops kills only
that child, then copies the kernel log (``dmesg -c``) between ``--- STEP id`` and ``--- END id``; the steps
print into a file that ``/init`` copies to the console at the end, once the kernel is quiet.

Every experiment gets its own module slots, so one boot holds all of them; slot ``s`` of experiment ``e``
is module slot ``base(e) + s``.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rofolio.oracle.arm64run.suite import STATE_VERBS, Experiment, Step
from rofolio.oracle.errors import OracleError
from rofolio.oracle.guest import Boot, cpio_archive, kv, panicked, run_qemu

__all__ = [
    "APPEND", "MODULE_SLOTS", "BootLog", "Placement", "StepLog", "build_initramfs", "guest_commands",
    "parse_serial", "placements", "qemu_command", "run_boot", "steps_script",
]

QEMU_CPU = "max,pauth-impdef=on"  # pauth-impdef: QEMU's cheap pointer-authentication, not QARMA5 (9 s vs 75 s)
MEM = "1G"
APPEND = "console=ttyAMA0 panic=-1 quiet nokaslr"
MODULE_SLOTS = 32  # NSLOTS of dmoracle_arm64.c
PROC = "/proc/dmoracle_arm64"

INIT_SH = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
step() {
  id=$1; shift
  echo "--- STEP $id"
  for c in "$@"; do ( echo "$c" > PROC ); echo "  rc=$?"; done
  dmesg -c | sed 's/^/  k: /'
  echo "--- END $id"
}
echo "=== ORACLE BEGIN"
echo "uname=$(uname -r)"
echo "cmdline=$(cat /proc/cmdline)"
grep 'System RAM' /proc/iomem | sed 's/^ */iomem /'
dmesg | grep -iE 'rodata|BBML2' | sed 's/^/boot: /'
dmesg -c > /dev/null
insmod /dmoracle_arm64.ko
echo "insmod_rc=$?"
echo info > PROC
dmesg -c | sed 's/^/i: /'
# the steps' output goes to a file first: an oops turns the console verbose (console_verbose()), and kernel
# lines written to the console would land in the middle of lines the shell is still sending to the UART
. /steps.sh > /steps.out 2>&1
dmesg -n 1
cat /steps.out
echo "=== ORACLE END"
poweroff -f
""".replace("PROC", PROC)

_TS = re.compile(r"^\[\s*\d+\.\d+\] ?")


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Placement:
    """An experiment in a boot: its position and its first module slot."""

    index: int
    base: int
    experiment: Experiment


def placements(experiments: list[Experiment], rodata: str) -> list[Placement]:
    """The guest experiments of one ``rodata=`` boot, with their module slots."""
    out: list[Placement] = []
    base = 0
    for e in experiments:
        if e.model_only or rodata not in e.rodata:
            continue
        out.append(Placement(len(out), base, e))
        base += e.slots
    if base > MODULE_SLOTS:
        raise OracleError(f"the rodata={rodata} boot needs {base} module slots; dmoracle_arm64 has {MODULE_SLOTS}",
                          "split the suite, or raise NSLOTS in kmod/dmoracle_arm64.c")
    return out


def guest_commands(step: Step, base: int) -> list[str]:
    """The module commands of one step (then ``state`` of its slot where a leaf may have changed)."""
    s = base + step["slot"]
    verb = step.verb
    if verb in ("vmalloc", "vmalloc_huge", "vmap"):
        cmd = f"{verb} {s} {step['pages']}"
    elif verb == "page":
        cmd = f"page {s}"
    elif verb == "image":
        cmd = f"image {s} {step['symbol']}"
    elif verb in ("set_memory_ro", "set_memory_rw"):
        cmd = f"{verb[-2:]} {s} {step['off']} {step['pages']} {step['delta']}"
    elif verb in ("set_direct_map_invalid", "set_direct_map_default"):
        cmd = f"{'dminv' if verb.endswith('invalid') else 'dmdef'} {s} {step['off']}"
    elif verb == "store":
        cmd = f"store {s} {step['off']} {step['via']} {step['value']}"
    else:  # load, probe, peek
        cmd = f"{verb} {s} {step['off']} {step['via']}"
    return [cmd, f"state {s}"] if verb in STATE_VERBS else [cmd]


def step_id(index: int, j: int) -> str:
    return f"{index}.{j}"


def steps_script(plan: list[Placement]) -> str:
    lines = []
    for p in plan:
        lines.append(f"echo '=== EXPERIMENT {p.index} {p.experiment.name}'")
        for j, step in enumerate(p.experiment.steps):
            args = " ".join(f"'{c}'" for c in guest_commands(step, p.base))
            lines.append(f"step {step_id(p.index, j)} {args}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- boot
def build_initramfs(busybox: bytes, module: bytes, steps_sh: str) -> bytes:
    files = [(".", 0o040755, b""), ("bin", 0o040755, b""), ("dev", 0o040755, b""), ("proc", 0o040755, b""),
             ("bin/busybox", 0o100755, busybox), ("init", 0o100755, INIT_SH.encode()),
             ("dmoracle_arm64.ko", 0o100644, module), ("steps.sh", 0o100644, steps_sh.encode())]
    return gzip.compress(cpio_archive(files, devnull=False), compresslevel=6, mtime=0)


def qemu_command(qemu: str, image: str, initrd: Path, rodata: str, mem: str = MEM) -> list[str]:
    return [qemu, "-M", "virt", "-cpu", QEMU_CPU, "-accel", "tcg", "-m", mem, "-smp", "1", "-nographic",
            "-no-reboot", "-kernel", image, "-initrd", str(initrd), "-append", f"{APPEND} rodata={rodata}"]


def run_boot(qemu: str, image: str, busybox: str, module: str, rodata: str, steps_sh: str,
             timeout: float) -> Boot:
    """Boot the built kernel with the experiments' initramfs and wait for power-off (or the timeout)."""
    with tempfile.TemporaryDirectory(prefix="rofolio-arm64run-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(build_initramfs(Path(busybox).read_bytes(), Path(module).read_bytes(), steps_sh))
        run = run_qemu(qemu_command(qemu, image, initrd, rodata), timeout,
                       "run `rofolio oracle setup --arch arm64` and `rofolio kernel build --arch arm64`")
    run.serial = run.serial.replace("\r", "")
    return run


# ------------------------------------------------------------------ parsing
@dataclass
class StepLog:
    """What the guest printed for one step: the shells' exit codes and the kernel's log, read."""

    id: str
    rcs: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the kernel log, timestamps stripped

    def records(self, cmd: str) -> list[dict[str, str]]:
        """The module's ``cmd=<cmd>`` result lines, as key=value dicts."""
        return [kv(line) for line in self.lines if line.startswith(f"dma64: cmd={cmd} ")]

    def tagged(self, tag: str) -> list[dict[str, str]]:
        """The module's ``<tag> ...`` lines (``page``, ``leaf``), as key=value dicts."""
        return [kv(line) for line in self.lines if line.startswith(f"dma64: {tag} ")]

    def oops(self) -> list[str] | None:
        """From die_kernel_fault()'s first line to __die()'s "Internal error:" line, if the step oopsed."""
        start = next((i for i, line in enumerate(self.lines) if line.startswith("Unable to handle kernel")), None)
        if start is None:
            return None
        end = next((i for i in range(start, len(self.lines)) if self.lines[i].startswith("Internal error:")),
                   len(self.lines) - 1)
        return self.lines[start:end + 1]

    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("WARNING:")]


@dataclass
class BootLog:
    uname: str | None = None
    cmdline: str | None = None
    ram: list[tuple[int, int]] = field(default_factory=list)
    boot_lines: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    image: dict[str, int] = field(default_factory=dict)
    symbols: dict[str, bool] = field(default_factory=dict)
    steps: dict[str, StepLog] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    complete: bool = False


def _kernel_line(text: str) -> str:
    """A kernel log line without its timestamp; the leading spaces of an oops's indented lines stay."""
    return _TS.sub("", text.rstrip())


def parse_serial(serial: str) -> BootLog:
    """Read one boot's serial console."""
    log = BootLog()
    body = serial.split("=== ORACLE BEGIN", 1)
    if len(body) < 2:
        log.errors.append("no '=== ORACLE BEGIN' on the serial console: the guest did not reach /init"
                          + (" (kernel panic)" if panicked(serial) else ""))
        return log
    log.complete = "=== ORACLE END" in body[1]
    current: StepLog | None = None
    for raw in body[1].splitlines():
        line = raw.rstrip()
        if line.startswith("--- STEP "):
            current = log.steps.setdefault(line[9:].strip(), StepLog(line[9:].strip()))
        elif line.startswith("--- END "):
            current = None
        elif current is not None and re.fullmatch(r"  rc=\d+", line):
            current.rcs.append(int(line[5:]))
        elif current is not None and line.startswith("  k: "):
            current.lines.append(_kernel_line(line[5:]))
        elif line.startswith("uname="):
            log.uname = line[6:]
        elif line.startswith("cmdline="):
            log.cmdline = line[8:]
        elif line.startswith("iomem "):
            span = line[6:].split(" : ")[0]
            lo, hi = span.split("-")
            log.ram.append((int(lo, 16), int(hi, 16) + 1))
        elif line.startswith("boot: "):
            log.boot_lines.append(_kernel_line(line[6:]))
        elif line.startswith("insmod_rc=") and line != "insmod_rc=0":
            log.errors.append(f"insmod dmoracle_arm64.ko failed ({line})")
        elif line.startswith("i: "):
            text = _kernel_line(line[3:])
            if text.startswith("dma64: cmd=info "):
                log.info = kv(text[len("dma64: "):])
            elif text.startswith("dma64: image "):
                d = kv(text)
                log.image[d["sym"]] = int(d["pa"], 16)
            elif text.startswith("dma64: sym "):
                d = kv(text)
                log.symbols[d["name"]] = d.get("found") == "1"
    if not log.complete:
        log.errors.append("the guest did not finish (no '=== ORACLE END')"
                          + (": kernel panic" if panicked(serial) else ""))
    elif not log.info:
        log.errors.append("the module printed no info: was it loaded?")
    missing = [name for name, found in log.symbols.items() if not found]
    if missing:
        log.errors.append(f"the kernel has no {', '.join(missing)} (kallsyms_lookup_name() found none)")
    return log
