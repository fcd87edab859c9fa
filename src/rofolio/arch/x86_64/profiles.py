"""Measured boot profiles: where a real kernel's boot-time set_memory_*() users put their pages.

Everything else about boot the model derives from the kernel source.  What it
cannot derive is which pages the page allocator handed to boot-time users such
as the BPF JIT (ptp_classifier_init() -> bpf_prog_pack_alloc()), or where the
boot loader put the initrd.  A profile records those, measured on a real
kernel with QEMU's gdb stub (docs/fidelity.md, "QEMU oracle"); the model then
applies the same calls with its own CPA rules.

``qemu-debian-6.1``: Debian 6.1.0-57-amd64 (6.1.192) under
``qemu-system-x86_64 -accel tcg -cpu max,-la57 -smp 1 -m <mem> ... nokaslr``.
"""

from __future__ import annotations

from rofolio.arch.x86_64.boot import BootProfile, BpfPack
from rofolio.errors import ConfigError
from rofolio.units import GiB, format_size

BPF_PACK_VA = 0xFFFFFFFFC0000000  # the first module_alloc() in MODULES_VADDR

QEMU_DEBIAN_6_1: dict[int, BootProfile] = {
    8 * GiB: BootProfile(
        "qemu-debian-6.1",
        bpf_packs=(BpfPack(BPF_PACK_VA, ((0x237C89000, 7), (0x237CA8000, 249), (0x100300000, 256))),),
        initrd=(0xBFE5C000, 388),
    ),
}

PROFILES = {"qemu-debian-6.1": QEMU_DEBIAN_6_1}


def boot_profile(name: str, mem: int) -> BootProfile:
    """The measured profile ``name`` for a machine with ``mem`` bytes of RAM."""
    if name not in PROFILES:
        raise ConfigError(f"unknown boot profile {name!r}", f"known profiles: {', '.join(PROFILES)}")
    by_mem = PROFILES[name]
    if mem not in by_mem:
        sizes = ", ".join(format_size(m) for m in sorted(by_mem))
        raise ConfigError(f"boot profile {name!r} was measured for {sizes} only, not {format_size(mem)}",
                          "use one of those memory sizes, or no boot profile")
    return by_mem[mem]
