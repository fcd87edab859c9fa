"""Kernel versions, and the version at which each modelled behaviour changed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rofolio.errors import ConfigError

__all__ = ["DEFAULT_KERNEL", "X86_CPA_COLLAPSE", "X86_RO_CLEARS_DIRTY", "KernelVersion"]

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)\s*$")


@dataclass(frozen=True, slots=True, order=True)
class KernelVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str | KernelVersion) -> KernelVersion:
        if isinstance(text, KernelVersion):
            return text
        match = _VERSION_RE.match(str(text))
        if not match:
            raise ConfigError(
                f"cannot parse kernel version {text!r}", "write MAJOR.MINOR, e.g. 6.1, 6.15 or 6.18"
            )
        version = cls(int(match.group(1)), int(match.group(2)))
        if version < MIN_KERNEL:
            raise ConfigError(
                f"kernel {version} is older than the oldest modelled kernel {MIN_KERNEL}",
                f"use {MIN_KERNEL} or newer",
            )
        return version

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, other: KernelVersion) -> bool:
        return self >= other


MIN_KERNEL = KernelVersion(6, 1)

# x86 set_memory_ro() also clears _PAGE_DIRTY: commit f788b71768ff
# "x86/mm: Remove _PAGE_DIRTY from kernel RO pages" (shadow stacks, merged for v6.6).
X86_RO_CLEARS_DIRTY = KernelVersion(6, 6)

# "x86/mm/pat: restore large ROX pages after fragmentation" (Kirill Shutemov, Mike Rapoport):
# CPA_COLLAPSE, collapse_large_pages(), _PAGE_KERNEL_4K in set_memory_4k(); queued for v6.15.
X86_CPA_COLLAPSE = KernelVersion(6, 15)

DEFAULT_KERNEL = KernelVersion(6, 18)
