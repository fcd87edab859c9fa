"""The arm64 kernel image in RAM: the section symbols whose linear alias map_mem() treats apart.

Only physical addresses matter to the linear map.  The defaults are Debian's
6.1.0-57-arm64 Image as QEMU's ``-kernel`` loads it on the virt machine, as the
arm64 QEMU oracle measured it: ``_text`` at the start of RAM + 2 MiB (QEMU
hw/arm/boot.c ``load_aarch64_image()`` for an Image whose text_offset is 0),
``[_stext, __init_begin)`` and ``[_sdata, _end)`` from /proc/iomem, ``_etext``
from kallsyms.  ``__start_rodata`` (the first 64K boundary after ``_etext``) and
``__init_end`` (``_sdata``) stand in for symbols the linear map does not use.
A 6.18 build differs in its sizes, not in the shape (docs/fidelity.md, arm64).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from rofolio.units import PAGE_SIZE

__all__ = ["Arm64KernelImage"]

SEGMENT_ALIGN = 64 << 10
QEMU_IMAGE_OFFSET = 2 << 20  # _text = RAM + 2 MiB on QEMU virt (measured: 0x40200000)


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
    bss_stop: int | None = None  # __bss_stop (the end of .bss, before the page tables at the image's end); _end if None

    def __post_init__(self) -> None:
        order = [self.text, self.stext, self.etext, self.start_rodata, self.init_begin, self.init_end,
                 self.data_end, self.end]
        if any(b < a for a, b in pairwise(order)) or any(v % PAGE_SIZE for v in order):
            raise ValueError("kernel image sections must be page aligned and in order")

    @classmethod
    def qemu_virt(cls, ram_start: int) -> Arm64KernelImage:
        """The Image QEMU virt loads at ``ram_start`` + 2 MiB (Debian 6.1.0-57-arm64's section offsets)."""
        load = ram_start + QEMU_IMAGE_OFFSET
        return cls(
            text=load,
            stext=load + SEGMENT_ALIGN,
            etext=load + 0xD00000,
            start_rodata=load + 0xD00000,
            init_begin=load + 0x1660000,
            init_end=load + 0x1CB0000,
            end=load + 0x2010000,
        )

    @property
    def data_end(self) -> int:
        """__bss_stop: where the kernel's data and bss end (map_mem()'s kernel_end since v7.2)."""
        return self.end if self.bss_stop is None else self.bss_stop

    @property
    def alias(self) -> tuple[int, int]:
        """[__pa(_text), __pa(__init_begin)): what map_mem() maps apart, without CONT."""
        return self.text, self.init_begin
