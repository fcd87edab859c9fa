"""The arm64 kernel image in RAM: the section symbols whose linear alias map_mem() treats apart.

Only physical addresses matter to the linear map.  The defaults describe an
Image loaded by QEMU's ``-kernel`` at the start of RAM (text_offset is 0 since
v5.8), with section sizes shaped like a defconfig 6.18 build: they are
illustrative, not measured (docs/fidelity.md, arm64).  ``_stext`` is 64 KiB
after ``_text`` because arch/arm64/kernel/vmlinux.lds.S starts ``.text`` at
``ALIGN(SEGMENT_ALIGN)`` (SZ_64K) right after the small ``.head.text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from rofolio.units import PAGE_SIZE

SEGMENT_ALIGN = 64 << 10


@dataclass(frozen=True, slots=True)
class Arm64KernelImage:
    """Physical addresses of vmlinux section symbols (arch/arm64/kernel/vmlinux.lds.S)."""

    text: int  # _text
    stext: int  # _stext
    etext: int  # _etext
    start_rodata: int  # __start_rodata
    init_begin: int  # __init_begin: the end of the [_text, __init_begin) linear alias
    init_end: int  # __init_end
    end: int  # _end

    def __post_init__(self) -> None:
        order = [self.text, self.stext, self.etext, self.start_rodata, self.init_begin, self.init_end, self.end]
        if any(b < a for a, b in pairwise(order)) or any(v % PAGE_SIZE for v in order):
            raise ValueError("kernel image sections must be page aligned and in order")

    @classmethod
    def qemu_virt(cls, load: int) -> Arm64KernelImage:
        """An Image loaded at ``load`` (QEMU -kernel: the start of RAM)."""
        return cls(
            text=load,
            stext=load + SEGMENT_ALIGN,
            etext=load + 0x1170000,
            start_rodata=load + 0x1180000,
            init_begin=load + 0x1B30000,
            init_end=load + 0x1CC0000,
            end=load + 0x2200000,
        )

    @property
    def alias(self) -> tuple[int, int]:
        """[__pa(_text), __pa(__init_begin)): what map_mem() maps apart, without CONT."""
        return self.text, self.init_begin
