"""The text a kernel prints when a store through the direct map faults, per architecture.

x86-64: ``show_fault_oops()`` / ``page_fault_oops()`` (arch/x86/mm/fault.c):
"BUG: unable to handle page fault for address: %px", then the access type and
the error code (bit 0 = protection violation, bit 1 = write; a read-only
present entry gives 0x0003, a non-present one 0x0002).  arm64:
``die_kernel_fault()`` (arch/arm64/mm/fault.c): "Unable to handle kernel
write to read-only memory at virtual address %016lx" for a permission fault,
"Unable to handle kernel paging request at virtual address %016lx" for a
translation fault.  Other architectures get a neutral one-liner.
"""

from __future__ import annotations


def oops_text(arch: str, addr: int, write: bool, present: bool, number: int) -> str:
    """The first lines of the oops for a kernel-mode access to ``addr``."""
    if arch == "x86_64":
        code = (1 if present else 0) | (2 if write else 0)
        reason = "permissions violation" if present else "not-present page"
        return "\n".join((
            f"BUG: unable to handle page fault for address: {addr:016x}",
            f"#PF: supervisor {'write' if write else 'read'} access in kernel mode",
            f"#PF: error_code(0x{code:04x}) - {reason}",
            f"Oops: Oops: {code:04x} [#{number}] SMP NOPTI",
        ))
    if arch == "arm64":
        if present and write:
            first = f"Unable to handle kernel write to read-only memory at virtual address {addr:016x}"
        else:
            first = f"Unable to handle kernel paging request at virtual address {addr:016x}"
        esr = "0x000000009600004f" if present else "0x0000000096000047"
        return "\n".join((first, "Mem abort info:", f"  ESR = {esr}",
                          f"Internal error: Oops: {esr} [#{number}] SMP"))
    return (f"Unable to handle kernel {'write' if write else 'read'} at virtual address {addr:016x} "
            f"({'read-only' if present else 'not present'}) [#{number}]")


def warning_text(where: str, message: str) -> str:
    """A WARN()-style report: the cut-here line, the location, the message."""
    return "\n".join(("------------[ cut here ]------------", f"WARNING: CPU: 0 PID: 1 at {where}", message))
