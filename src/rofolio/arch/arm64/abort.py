"""The text of a kernel data abort on arm64: the syndrome the CPU reports and what the kernel prints about it.

A load or store by the kernel (EL1) that the stage-1 walk refuses is a data abort taken to the current
exception level: ESR_EL1 holds EC 0x25 (ESR_ELx_EC_DABT_CUR), IL set (a 32-bit instruction), WnR for a
store, and a fault status code naming the kind and the table level (arch/arm64/include/asm/esr.h:
ESR_ELx_FSC_FAULT_L(n) = 0x04 + n, ESR_ELx_FSC_PERM_L(n) = 0x0c + n).  An EL1 stage-1 abort carries no
instruction syndrome (ISV = 0, as QEMU reports it and as real kernels' oopses show).

``mem_abort_decode()`` and ``data_abort_decode()`` (arch/arm64/mm/fault.c) print the decoded fields, and
``__die()`` (arch/arm64/kernel/traps.c) the "Internal error:" line with the raw ESR as ``%016lx``.
"""

from __future__ import annotations

from rofolio.units import Level

__all__ = ["ESR_ELX_EC_DABT_CUR", "FAULT_LEVEL", "data_abort_esr", "die_line", "mem_abort_decode"]

ESR_ELX_EC_DABT_CUR = 0x25
ESR_ELX_EC_SHIFT = 26
ESR_ELX_IL = 1 << 25
ESR_ELX_WNR = 1 << 6
ESR_ELX_FSC = 0x3F
ESR_ELX_ISS_MASK = (1 << 25) - 1
ESR_ELX_FSC_FAULT = 0x04  # translation fault, level 0
ESR_ELX_FSC_PERM = 0x0C  # permission fault, level 0

# The table level a descriptor sits at, as the fault status code counts it (4K granule, 4 levels)
FAULT_LEVEL = {Level.P4D: 0, Level.PUD: 1, Level.PMD: 2, Level.PTE: 3}

# esr_class_str[] (traps.c) for the one class the model produces
_EC_NAMES = {ESR_ELX_EC_DABT_CUR: "DABT (current EL)"}


def data_abort_esr(*, write: bool, permission: bool, level: int) -> int:
    """ESR_EL1 of a kernel data abort: a permission fault on a valid leaf, else a translation fault."""
    fsc = (ESR_ELX_FSC_PERM if permission else ESR_ELX_FSC_FAULT) + level
    return (ESR_ELX_EC_DABT_CUR << ESR_ELX_EC_SHIFT) | ESR_ELX_IL | (ESR_ELX_WNR if write else 0) | fsc


def _fault_name(fsc: int) -> str:
    """fault_info[].name (fault.c) of the status codes data_abort_esr() makes."""
    kind = "permission" if fsc & ~3 == ESR_ELX_FSC_PERM else "translation"
    return f"level {fsc & 3} {kind} fault"


def mem_abort_decode(esr: int) -> list[str]:
    """mem_abort_decode() then data_abort_decode() for a syndrome without ISV (fault.c)."""
    ec = esr >> ESR_ELX_EC_SHIFT & 0x3F
    wnr = int(bool(esr & ESR_ELX_WNR))
    return [
        "Mem abort info:",
        f"  ESR = 0x{esr:016x}",
        f"  EC = 0x{ec:02x}: {_EC_NAMES[ec]}, IL = {32 if esr & ESR_ELX_IL else 16} bits",
        "  SET = 0, FnV = 0",
        "  EA = 0, S1PTW = 0",
        f"  FSC = 0x{esr & ESR_ELX_FSC:02x}: {_fault_name(esr & ESR_ELX_FSC)}",
        "Data abort info:",
        f"  ISV = 0, ISS = 0x{esr & ESR_ELX_ISS_MASK:08x}, ISS2 = 0x00000000",
        f"  CM = 0, WnR = {wnr}, TnD = 0, TagAccess = 0",
        "  GCS = 0, Overlay = 0, DirtyBit = 0",
    ]


def die_line(what: str, esr: int, number: int) -> str:
    """__die(): "Internal error: %s: %016lx [#%d] " S_SMP, with S_SMP = " SMP" (two spaces before SMP)."""
    return f"Internal error: {what}: {esr:016x} [#{number}]  SMP"
