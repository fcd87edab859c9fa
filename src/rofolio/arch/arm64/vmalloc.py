"""The vm_struct facts change_memory_common() checks (include/linux/vmalloc.h)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VM_ALLOC", "VM_ALLOW_HUGE_VMAP", "VM_MAP", "VmArea"]

VM_ALLOC = 0x00000002
VM_MAP = 0x00000004
VM_ALLOW_HUGE_VMAP = 0x00000400


@dataclass(frozen=True, slots=True)
class VmArea:
    """A vm_struct: ``size`` includes the guard page, ``pages`` are the backing pfns (area->pages)."""

    addr: int
    size: int
    flags: int
    pages: tuple[int, ...]
