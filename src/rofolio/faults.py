"""Kernel writes and the faults they take: what a CPU store through a kernel mapping does now.

A write names the address it goes through; the architecture's current page
tables decide: a present, writable leaf takes the store; a read-only or
non-present one faults.  A plain store then oopses the writing task, as
``page_fault_oops()`` (arch/x86/mm/fault.c) prints it; ``copy_to_kernel_nofault()``
(a "probe") returns -EFAULT instead and prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from rofolio.errors import Errno
from rofolio.events import Fault
from rofolio.units import Level


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    ok: bool
    fault: Fault | None

    @property
    def ret(self) -> int:
        return 0 if self.ok else -Errno.EFAULT


def x86_oops(addr: int, reason: str, level: Level | None, entry: int | None) -> str:
    """The first lines of an x86-64 oops for a supervisor write (page_fault_oops(), show_fault_oops())."""
    code = 0x3 if reason == "permissions violation" else 0x2  # X86_PF_WRITE | X86_PF_PROT, or X86_PF_WRITE
    lines = [
        f"BUG: unable to handle page fault for address: {addr:016x}",
        "#PF: supervisor write access in kernel mode",
        f"#PF: error_code(0x{code:04x}) - {reason}",
    ]
    if level is not None and entry is not None:
        lines.append(f"{level.entry_name.upper()} {entry:x}")  # dump_pagetable(): the leaf entry
    lines.append(f"Oops: {code:04x} [#1] PREEMPT SMP NOPTI")
    return "\n".join(lines)


def kernel_write(kernel: object, addr: int, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
    """A supervisor write of one byte at ``addr`` on an x86-64 kernel model."""
    found = kernel.lookup_address(addr)  # type: ignore[attr-defined]
    if found is not None and found.present and found.writable:
        return WriteOutcome(True, None)
    if found is None or not found.present:
        reason, level, entry = "not-present page", (found.level if found else None), None
    else:
        reason, level = "permissions violation", found.level
        entry = (found.pfn << 12) | found.flags
    text = "" if probe else x86_oops(addr, reason, level, entry)
    fault = Fault(addr, "write", reason, mapping, text)
    kernel.log.append(fault)  # type: ignore[attr-defined]
    return WriteOutcome(False, fault)
