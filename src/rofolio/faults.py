"""Kernel writes and the faults they take: what a CPU store through a kernel mapping does now.

A write names the address it goes through; the architecture's current page
tables decide: a present, writable leaf takes the store; a read-only or
non-present one faults.  A plain store then oopses the writing task; a
``copy_to_kernel_nofault()`` ("probe") returns -EFAULT and prints nothing.

The oops text is the architecture's:

* x86-64: ``page_fault_oops()`` / ``show_fault_oops()`` (arch/x86/mm/fault.c):
  "BUG: unable to handle page fault for address: %px", the access type, the
  error code (bit 0 protection violation, bit 1 write: a read-only present
  entry gives 0x0003, a non-present one 0x0002), the page-table entry
  (``dump_pagetable()``), then the "Oops:" line.  Checked against Debian
  6.1.0-57 under the QEMU oracle, which printed ``PMD 80000001800001e1`` for a
  read-only 2M leaf.
* arm64: ``die_kernel_fault()`` (arch/arm64/mm/fault.c): "Unable to handle
  kernel write to read-only memory at virtual address %016lx" for a permission
  fault, "Unable to handle kernel paging request ..." for a translation fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rofolio.errors import Errno
from rofolio.events import Fault


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    ok: bool
    fault: Fault | None

    @property
    def ret(self) -> int:
        return 0 if self.ok else -Errno.EFAULT


def oops_text(arch: str, addr: int, write: bool, present: bool, number: int = 1,
              entry: str | None = None) -> str:
    """The first lines of the oops for a kernel-mode access to ``addr``.

    ``entry`` is the leaf entry as dump_pagetable() prints it, e.g. "PMD 80000001800001e1".
    """
    access = "write" if write else "read"
    if arch == "x86_64":
        code = (1 if present else 0) | (2 if write else 0)
        reason = "permissions violation" if present else "not-present page"
        lines = [f"BUG: unable to handle page fault for address: {addr:016x}",
                 f"#PF: supervisor {access} access in kernel mode",
                 f"#PF: error_code(0x{code:04x}) - {reason}"]
        if entry:
            lines.append(entry)
        lines.append(f"Oops: {code:04x} [#{number}] PREEMPT SMP NOPTI")
        return "\n".join(lines)
    if arch == "arm64":
        if present and write:
            first = f"Unable to handle kernel write to read-only memory at virtual address {addr:016x}"
        else:
            first = f"Unable to handle kernel paging request at virtual address {addr:016x}"
        esr = "0x000000009600004f" if present else "0x0000000096000047"
        return "\n".join((first, "Mem abort info:", f"  ESR = {esr}", f"Internal error: Oops: {esr} [#{number}] SMP"))
    return (f"Unable to handle kernel {access} at virtual address {addr:016x} "
            f"({'read-only' if present else 'not present'}) [#{number}]")


def leaf_entry(found: Any) -> str | None:
    """The leaf as dump_pagetable() ends its line (arch/x86/mm/fault.c), e.g. "PMD 80000001800001e1".

    The value is the entry as stored: ``Lookup.entry`` inverts the pfn of a
    not-present entry (the L1TF mitigation), as the QEMU oracle showed.  None
    for an empty entry or an architecture whose lookup has no stored value.
    """
    if found is None or not found.flags or not hasattr(found, "entry"):
        return None
    return f"{found.level.entry_name.upper()} {found.entry:x}"


def kernel_write(kernel: Any, addr: int, probe: bool = False, mapping: str = "direct map") -> WriteOutcome:
    """A supervisor store of one byte at ``addr``, checked against the kernel page table now."""
    found = kernel.lookup_address(addr)
    if found is not None and found.present and found.writable:
        return WriteOutcome(True, None)
    present = found is not None and found.present
    reason = "permissions violation" if present else "not-present page"
    text = "" if probe else oops_text(kernel.arch, addr, True, present, kernel.log.counters.oopses + 1,
                                      leaf_entry(found))
    fault = Fault(addr, "write", reason, mapping, text)
    kernel.log.append(fault)
    return WriteOutcome(False, fault)
