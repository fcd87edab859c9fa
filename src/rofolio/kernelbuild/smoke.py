"""A smoke boot of a built kernel under QEMU TCG: does it reach /init and power off?

The guests are the oracle's own, so a kernel that passes here boots the way the oracle will boot it:

* x86-64: ``oracle.guest``'s initramfs (the host's static busybox and its ``/init``, without kc or a module)
  under ``qemu-system-x86_64 -accel tcg -cpu max,-la57 -nographic`` with ``console=ttyS0``
  (``GuestConfig.qemu_command()``); the init prints ``=== ORACLE BEGIN``, the release, the DirectMap and
  vmstat lines, ``=== ORACLE END`` and runs ``poweroff -f`` (ACPI S5 on the PC machine).
* arm64: ``oracle.arm64``'s initramfs (Debian's arm64 static busybox and kc_arm64, from ``rofolio oracle
  setup --arch arm64``) under ``qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on`` with
  ``console=ttyAMA0 rodata=full`` (``arm64.qemu_command()``); its init also walks the linear map through
  /proc/kcore, whose problems are reported as notes (``poweroff -f`` is PSCI SYSTEM_OFF).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace

from rofolio.errors import EnvironmentFailure
from rofolio.kernelbuild.kbuild import Built

__all__ = ["SmokeBoot", "smoke_boot"]

@dataclass(frozen=True)
class SmokeBoot:
    """What one boot showed."""

    arch: str
    release: str | None       # the guest's uname -r
    reached_init: bool        # /init ran
    powered_off: bool         # /init ran to its end and QEMU exited by itself
    seconds: float            # QEMU's wall time, start to exit
    command: tuple[str, ...]
    notes: tuple[str, ...] = ()   # what else the guest's log says went wrong
    serial_tail: str = ""     # the end of the serial console, to show when it did not boot

    @property
    def ok(self) -> bool:
        return self.reached_init and self.powered_off


def _x86_64(built: Built, timeout: float) -> SmokeBoot:
    from rofolio.oracle import guest
    from rofolio.oracle.setup import BUSYBOX, Install, is_static_elf

    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise EnvironmentFailure("qemu-system-x86_64 is missing", "apt-get install qemu-system-x86")
    if not is_static_elf(BUSYBOX):
        raise EnvironmentFailure(f"{BUSYBOX} is missing or not statically linked", "apt-get install busybox-static")
    install = Install(root="", kver=built.release, vmlinuz=built.image, module="", kc="", busybox=str(BUSYBOX),
                      qemu=qemu, source_hash="")
    run = guest.boot_again_before_init(
        lambda: guest.boot(install, guest.GuestConfig(mem="2G", timeout=timeout), None, with_kc=False))
    log = guest.parse_log(run.serial)
    notes = [*run.notes, *([f"panic: {log.console_oops.splitlines()[0]}"] if log.console_oops else [])]
    return SmokeBoot("x86_64", log.uname, log.began, log.complete and not run.timed_out, run.wall_s,
                     tuple(run.command), tuple(notes), _tail(run.serial))


def _arm64(built: Built, timeout: float) -> SmokeBoot:
    from rofolio.oracle import arm64, guest

    install = replace(arm64.load_install(), vmlinuz=built.image)
    run = arm64.boot_guest(install, mem="1G", rodata="full", timeout=timeout, panic_after_init=False)
    log = arm64.parse_log(run.serial)
    reached = guest.BEGIN in run.serial  # both guests' /init print it first
    return SmokeBoot("arm64", log.uname, reached, log.complete and not run.timed_out, run.wall_s,
                     tuple(run.command), run.notes + tuple(log.errors), _tail(run.serial))


def _tail(serial: str, lines: int = 12) -> str:
    return "\n".join(serial.replace("\r", "").rstrip().splitlines()[-lines:])


_BOOTS: dict[str, Callable[[Built, float], SmokeBoot]] = {"x86_64": _x86_64, "arm64": _arm64}


def smoke_boot(built: Built, timeout: float = 300.0) -> SmokeBoot:
    """Boot ``built`` once under QEMU TCG with the oracle's initramfs for its architecture."""
    return _BOOTS[built.arch](built, timeout)
