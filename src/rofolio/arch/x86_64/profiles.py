"""Measured boot profiles: where a real kernel's boot-time set_memory_*() users put their pages.

Everything else about boot the model derives from the kernel source.  What it
cannot derive is which pages the page allocator handed to boot-time users such
as the BPF JIT (ptp_classifier_init() -> bpf_prog_pack_alloc()), or where the
boot loader put the initrd.  A profile records those, measured on a real
kernel with QEMU's gdb stub (docs/fidelity.md, "QEMU oracle"); the model then
applies the same calls with its own CPA rules.

``qemu-debian-6.1``: Debian 6.1.0-57-amd64 (6.1.192) under
``qemu-system-x86_64 -accel tcg -cpu max,-la57 -smp 1 -m <mem> ... nokaslr``
with the oracle's initramfs (rofolio.oracle.guest, padded to 0x183800 bytes).
Measured with ``rofolio oracle boot`` (a /proc/kcore walk of the module area
before any module is loaded); with ``-cpu max,-la57,-pdpe1gb`` the pages are
the same, with ``-smp 2`` they are not, so a profile is keyed by memory size and
CPU count.  Stretches are listed in the order the pack maps them.
"""

from __future__ import annotations

from rofolio.arch.x86_64.boot import BootProfile, BpfPack
from rofolio.errors import ConfigError
from rofolio.units import PAGE_SIZE, GiB, format_size

__all__ = ["boot_profile", "measured_profile"]

BPF_PACK_VA = 0xFFFFFFFFC0000000  # the first module_alloc() in MODULES_VADDR
INITRD_PAGES = 388  # the oracle's initramfs, padded to 0x183800 bytes


def _initrd(low_ram_end: int) -> tuple[int, int]:
    """Where QEMU loads the initrd: (end of low RAM - 1 - size) & PAGE_MASK (hw/i386/x86.c x86_load_linux).

    free_initrd_mem() then frees [start, PAGE_ALIGN(start + size)): the last INITRD_PAGES pages of low RAM.
    """
    return (low_ram_end - INITRD_PAGES * PAGE_SIZE, INITRD_PAGES)


QEMU_DEBIAN_6_1: dict[tuple[int, int], BootProfile] = {  # (RAM, -smp) -> profile
    (2 * GiB, 1): BootProfile(
        "qemu-debian-6.1",
        bpf_packs=(BpfPack(BPF_PACK_VA, ((0x4AE4000, 12), (0x4AFC000, 4), (0x7DC50000, 176), (0x4B00000, 256),
                                         (0x5000000, 64))),),
        initrd=_initrd(0x7FFE0000),
    ),
    (8 * GiB, 1): BootProfile(
        "qemu-debian-6.1",
        bpf_packs=(BpfPack(BPF_PACK_VA, ((0x237C89000, 7), (0x237CA8000, 88), (0x100300000, 256),
                                         (0x237D00000, 161))),),
        initrd=_initrd(0xBFFE0000),
    ),
}

PROFILES = {"qemu-debian-6.1": QEMU_DEBIAN_6_1}


def measured_profile(name: str, mem: int, cpus: int) -> BootProfile | None:
    """The profile ``name`` measured with ``mem`` bytes of RAM and ``cpus`` CPUs, if there is one."""
    return PROFILES[name].get((mem, cpus))


def boot_profile(name: str, mem: int, cpus: int) -> BootProfile:
    """The measured profile ``name`` for a machine with ``mem`` bytes of RAM and ``cpus`` CPUs.

    Where the page allocator put a boot-time user depends on both (the per-CPU page
    lists and the boot order of the CPUs), so a profile is never applied to a
    machine it was not measured on: that would be a silently wrong boot.
    """
    if name not in PROFILES:
        raise ConfigError(f"unknown boot profile {name!r}", f"known profiles: {', '.join(PROFILES)}")
    profile = measured_profile(name, mem, cpus)
    if profile is None:
        measured = ", ".join(f"{format_size(m)} with cpus = {c}" for m, c in sorted(PROFILES[name]))
        raise ConfigError(f"boot profile {name!r} was measured for {measured} only, "
                          f"not {format_size(mem)} with cpus = {cpus}",
                          "use one of those machines, or no boot profile")
    return profile
