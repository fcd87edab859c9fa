"""Kernel versions, and the version at which each modelled behaviour changed.

One grammar everywhere a kernel version is given (the CLI's ``--kernel``, a
scenario's ``[machine] kernel``, ``compare --set kernel=...``):
``[v]MAJOR.MINOR[.PATCH]``.

* ``MAJOR.MINOR.PATCH`` is that exact release: ``6.1.192``, ``6.12.57``;
  ``6.15.0`` is the mainline release v6.15 itself.
* ``MAJOR.MINOR`` is the newest stable of that line the model knows
  (``STABLE``): ``6.1`` is ``6.1.192``.  A line without an entry is its
  mainline release: ``6.15`` is ``6.15.0``.

A version newer than the model knows (a line after the newest in ``STABLE``,
or a patch level past its line's entry) is accepted, modelled with the newest
rules the model has, and warned about once on stderr.

A behaviour that changed with the kernel is a ``Gate``: on since a mainline
release, and in the stable lines it was backported to from a patch level on.
Each gate cites the commit; docs/fidelity.md ("Kernel versions") lists them
with their sources.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rofolio.errors import ConfigError

__all__ = [
    "DEFAULT_KERNEL", "GATES", "HUGE_ZERO_WP_ALLOCATES_THP", "MIN_KERNEL", "NEWEST_KERNEL",
    "RESERVED_PAGEBLOCKS_MOVABLE", "SET_MEMORY_ROX", "STABLE", "X86_CPA_COLLAPSE",
    "X86_DIRTY_CLEARED_WITH_RW", "X86_NX_CHECKS_ALIAS", "X86_OOPS_NO_PREEMPT", "X86_OOPS_PREFIX",
    "X86_RO_CLEARS_DIRTY", "X86_RWX_AT_BOOT", "X86_SET_MEMORY_ROX",
    "ZERO_PAGE_NOT_PINNED", "Gate", "KernelVersion", "beyond_model", "register",
]

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")
_GRAMMAR_HINT = "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"


@dataclass(frozen=True, slots=True, order=True)
class KernelVersion:
    """One kernel release: ``major.minor.patch`` (patch 0 is the mainline release)."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str | KernelVersion) -> KernelVersion:
        """The release ``text`` names (see the module docstring); ConfigError with a hint otherwise."""
        if isinstance(text, KernelVersion):
            return text
        raw = str(text).strip()
        match = _VERSION_RE.match(raw)
        if not match:
            raise ConfigError(f"cannot parse kernel version {raw!r}", _hint_for(raw))
        major, minor = int(match.group(1)), int(match.group(2))
        if match.group(3) is None:
            version = cls(major, minor, STABLE.get((major, minor), 0))
        else:
            version = cls(major, minor, int(match.group(3)))
        if version.line < MIN_KERNEL.line:
            raise ConfigError(
                f"kernel {raw} is older than the oldest modelled kernel line {MIN_KERNEL.series}",
                f"use {MIN_KERNEL.series} or newer",
            )
        note = beyond_model(version)
        if note and str(version) not in _warned:
            _warned.add(str(version))
            print(f"rofolio: warning: {note}", file=sys.stderr)
        return version

    def __str__(self) -> str:
        """'6.1.192'; a mainline release is 'MAJOR.MINOR' ('6.2') unless that would parse as a stable ('6.1.0')."""
        if self.patch == 0 and not STABLE.get(self.line):
            return self.series
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def line(self) -> tuple[int, int]:
        """(major, minor): the stable line."""
        return (self.major, self.minor)

    @property
    def series(self) -> str:
        """'6.1' for 6.1.192."""
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The git tag: 'v6.15' for a mainline release, 'v6.1.130' for a stable one."""
        return f"v{self.series}" if self.patch == 0 else f"v{self}"

    def at_least(self, other: KernelVersion | Gate) -> bool:
        """``self >= other``; for a Gate, whether this version has the gate's behaviour."""
        if isinstance(other, Gate):
            return other.applies(self)
        return self >= other


def _hint_for(raw: str) -> str:
    if re.match(r"^v?\d+\.\d+\.\d+-", raw):
        return f"{_GRAMMAR_HINT}; a distribution release such as 6.1.0-57-amd64 hides the patch level"
    if re.match(r"^v?\d+\.\d+(\.\d+)?-rc\d+$", raw):
        return f"{_GRAMMAR_HINT}; release candidates are not modelled"
    return _GRAMMAR_HINT


MIN_KERNEL = KernelVersion(6, 1)

# The newest stable release of each line the model knows: what MAJOR.MINOR means.
# Sources in docs/fidelity.md ("Kernel versions").
STABLE: Mapping[tuple[int, int], int] = MappingProxyType({
    (6, 1): 192,   # Debian's 6.1.192-3, the oracle guest's /proc/version (tests/oracle/data)
    (6, 6): 88,    # the newest 6.6 stable read for the gates (6.6.88, April 2025)
    (6, 12): 57,   # issue 12's example; not checked against a release mail
    (6, 18): 0,    # no stable release mail read: the mainline release
    (7, 0): 1,     # Linux 7.0.1 (22 April 2026), whose release mail lists the arm64 present-invalid backport
    (7, 2): 0,     # no stable release mail read: the mainline release
})
NEWEST_KERNEL = KernelVersion(*max(STABLE), STABLE[max(STABLE)])
_warned: set[str] = set()


def beyond_model(version: KernelVersion) -> str | None:
    """Why ``version`` is newer than the model knows, or None."""
    if version > NEWEST_KERNEL:
        return (f"kernel {version} is newer than the newest modelled kernel {NEWEST_KERNEL}; "
                f"it is modelled with {NEWEST_KERNEL}'s rules")
    known = STABLE.get(version.line)
    if known is not None and version.patch > known:
        return (f"kernel {version} is newer than the newest modelled {version.series} stable "
                f"({version.series}.{known}); later stable backports are not modelled")
    return None


@dataclass(frozen=True, slots=True)
class Gate:
    """A kernel behaviour: on since ``mainline``, and in each stable line of ``backports`` from its patch level.

    ``commit`` is the mainline commit (12 hex digits) and ``title`` its subject;
    ``backports`` maps (major, minor) to the first stable patch level that has it.
    """

    name: str
    mainline: KernelVersion
    commit: str
    title: str
    backports: Mapping[tuple[int, int], int] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        for line in self.backports:
            if line >= self.mainline.line:
                raise ValueError(f"{self.name}: a backport to {line} is not older than mainline {self.mainline}")

    def applies(self, version: KernelVersion) -> bool:
        """Whether ``version`` has the behaviour."""
        if version >= self.mainline:
            return True
        first = self.backports.get(version.line)
        return first is not None and version.patch >= first

    def cite(self) -> str:
        """'commit f788b71768ff ("...") (v6.6)', with the backports."""
        text = f'commit {self.commit} ("{self.title}") ({self.mainline.tag}'
        if self.backports:
            text += "; " + ", ".join(f"v{m}.{n}.{p}" for (m, n), p in sorted(self.backports.items()))
        return text + ")"


# x86 set_memory_ro() and set_memory_rox() also clear _PAGE_DIRTY
# (arch/x86/mm/pat/set_memory.c, set_memory_ro()/set_memory_rox()): shadow stacks made
# Write=0,Dirty=1 special, so kernel read-only entries must not look like one.
# Since commit f788b71768ff ("x86/mm: Remove _PAGE_DIRTY from kernel RO pages") (v6.6)
X86_RO_CLEARS_DIRTY = Gate(
    "x86-ro-clears-dirty", KernelVersion(6, 6), "f788b71768ff", "x86/mm: Remove _PAGE_DIRTY from kernel RO pages")

# x86 __set_pages_np() (set_direct_map_invalid_noflush(), __kernel_map_pages() unmapping) and
# kernel_unmap_pages_in_pgd() clear _PAGE_DIRTY together with _PAGE_PRESENT|_PAGE_RW, and
# kernel_map_pages_in_pgd() clears it with _PAGE_RW (arch/x86/mm/pat/set_memory.c).
# Since commit c1fcf41cf37f ("x86/mm: Clear _PAGE_DIRTY for kernel mappings when we clear _PAGE_RW")
# (v6.15); stable: 6.6.88 (review patch 6.6 040/393), 6.12.24 (AUTOSEL on 6.12.21, released with
# 6.14.3; see docs/fidelity.md), 6.14.3 (release announcement).
X86_DIRTY_CLEARED_WITH_RW = Gate(
    "x86-np-clears-dirty", KernelVersion(6, 15), "c1fcf41cf37f",
    "x86/mm: Clear _PAGE_DIRTY for kernel mappings when we clear _PAGE_RW",
    MappingProxyType({(6, 6): 88, (6, 12): 24, (6, 14): 3}),
)

# CPA_COLLAPSE, collapse_large_pages(), _PAGE_KERNEL_4K in set_memory_4k()
# (arch/x86/mm/pat/set_memory.c): set_memory_rox() restores large pages after fragmentation.
# Since commit 41d88484c71c ("x86/mm/pat: restore large ROX pages after fragmentation") (v6.15)
X86_CPA_COLLAPSE = Gate(
    "x86-cpa-collapse", KernelVersion(6, 15), "41d88484c71c",
    "x86/mm/pat: restore large ROX pages after fragmentation")

# pin_user_pages() leaves the shared zero page unpinned and unpin_user_page() ignores it
# (mm/gup.c try_grab_folio()/gup_put_folio(), is_zero_folio()).
# Since commit c8070b787519 ("mm: Don't pin ZERO_PAGE in pin_user_pages()") (v6.5);
# stable: 6.1.130 (as 476c1dfefab8).
ZERO_PAGE_NOT_PINNED = Gate(
    "gup-zero-page-not-pinned", KernelVersion(6, 5), "c8070b787519", "mm: Don't pin ZERO_PAGE in pin_user_pages()",
    MappingProxyType({(6, 1): 130}),
)

# set_memory_rox() (include/linux/set_memory.h, arch/x86/mm/pat/set_memory.c) exists.
# Since commit d48567c9a0d1 ("mm: Introduce set_memory_rox()") (v6.2)
SET_MEMORY_ROX = Gate("set-memory-rox", KernelVersion(6, 2), "d48567c9a0d1", "mm: Introduce set_memory_rox()")

# The same release for x86's own set_memory_rox() (arch/x86/mm/pat/set_memory.c): commit
# 60463628c9e0 ("x86/mm: Implement native set_memory_rox()") (v6.2), b38994948567 in tip.
X86_SET_MEMORY_ROX = SET_MEMORY_ROX.mainline

# x86 set_memory_x()/set_memory_nx() (an _PAGE_NX-only change) go through alias processing and run as a
# primary change; before, change_page_attr_set_clr() skipped both for them (arch/x86/mm/pat/set_memory.c).
# Since commit d597416683d5 ("x86/mm: Inhibit _PAGE_NX changes from cpa_process_alias()") (v6.2)
X86_NX_CHECKS_ALIAS = Gate(
    "x86-nx-checks-alias", KernelVersion(6, 2), "d597416683d5",
    "x86/mm: Inhibit _PAGE_NX changes from cpa_process_alias()")

# x86 verify_rwx() (arch/x86/mm/pat/set_memory.c) also warns while system_state is SYSTEM_BOOTING.
# Since commit 414ebf148cb5 ("x86/mm: Do verify W^X at boot up") (v6.2), the revert of a970174d7a10 (v6.1-rc3)
X86_RWX_AT_BOOT = Gate("x86-rwx-at-boot", KernelVersion(6, 2), "414ebf148cb5", "x86/mm: Do verify W^X at boot up")

# x86 __die_header() (arch/x86/kernel/dumpstack.c) puts "Oops: " before the die() string, so a page
# fault's oops (page_fault_oops() passes "Oops") begins "Oops: Oops: ".
# Since commit f9f62a877da1 ("x86/dumpstack: Use uniform "Oops: " prefix for die() messages") (v6.10)
X86_OOPS_PREFIX = Gate(
    "x86-oops-prefix", KernelVersion(6, 10), "f9f62a877da1",
    'x86/dumpstack: Use uniform "Oops: " prefix for die() messages')

# x86 __die_header() no longer prints PREEMPT; the preemption model moves to the CPU: line that
# show_regs() prints (dump_stack_print_info()).
# Since commit 96389cf36591 ("x86: Rely on generic printing of preemption model") (v6.15)
X86_OOPS_NO_PREEMPT = Gate(
    "x86-oops-no-preempt", KernelVersion(6, 15), "96389cf36591", "x86: Rely on generic printing of preemption model")

# With CONFIG_DEFERRED_STRUCT_PAGE_INIT, a reserved page in the deferred part of a node is initialised by
# init_reserved_page() (mm/mm_init.c), which left its pageblock's migratetype at 0 (MIGRATE_UNMOVABLE); it
# now marks a pageblock-aligned one MIGRATE_MOVABLE, as memmap_init_range() does for the rest.
# Since commit 98b7beba1ee6 ("memblock: uniformly initialize all reserved pages to MIGRATE_MOVABLE") (v6.13)
RESERVED_PAGEBLOCKS_MOVABLE = Gate(
    "reserved-pageblocks-movable", KernelVersion(6, 13), "98b7beba1ee6",
    "memblock: uniformly initialize all reserved pages to MIGRATE_MOVABLE")

# A write fault on a huge zero PMD allocates a PMD-sized THP and maps it in place of the huge zero folio
# (mm/huge_memory.c do_huge_pmd_wp_page() -> do_huge_zero_wp_pmd()); only when that allocation fails does it
# split the PMD into zero-page PTEs and COW one 4K page, which before was the only path.
# Since commit 1ced09e0331f ("mm: allocate THP on hugezeropage wp-fault") (v6.13: pushed to mainline on
# 23 Nov 2024, in the v6.13 merge window)
HUGE_ZERO_WP_ALLOCATES_THP = Gate(
    "huge-zero-wp-allocates-thp", KernelVersion(6, 13), "1ced09e0331f", "mm: allocate THP on hugezeropage wp-fault")

DEFAULT_KERNEL = KernelVersion(7, 2, STABLE[(7, 2)])

GATES: dict[str, Gate] = {}


def register(gate: Gate) -> Gate:
    """Add a gate to GATES (by name; a second gate of the same name is an error)."""
    if gate.name in GATES:
        raise ValueError(f"gate {gate.name!r} is defined twice")
    GATES[gate.name] = gate
    return gate


for _gate in (X86_RO_CLEARS_DIRTY, X86_DIRTY_CLEARED_WITH_RW, X86_CPA_COLLAPSE, ZERO_PAGE_NOT_PINNED, SET_MEMORY_ROX,
              X86_NX_CHECKS_ALIAS, X86_RWX_AT_BOOT, X86_OOPS_PREFIX, X86_OOPS_NO_PREEMPT, RESERVED_PAGEBLOCKS_MOVABLE,
              HUGE_ZERO_WP_ALLOCATES_THP):
    register(_gate)
