"""What 7.2's serial log says differently from 6.1's: the exact version (/proc/version), the e820 lines."""

from __future__ import annotations

import pytest

from rofolio.oracle import guest
from tests.oracle.conftest import recorded

V72 = ("Linux version 7.2.13+deb14-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) "
       "16.2.0, GNU ld (GNU Binutils for Debian) 2.47.50.20261021) #1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)")
V61 = ("Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, "
       "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)")


@pytest.mark.parametrize(("version", "uname", "expected"), [
    (V72, "7.2.13+deb14-amd64", "7.2.13"),  # Debian's package version, not the compiler's "(Debian 16.2.0-4)"
    (V61, "6.1.0-57-amd64", "6.1.192"),     # the ABI says 6.1.0; the package version says which stable release
    ("Linux version 7.3.0-rc1 (me@host) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld 2.40) #1 SMP", None, "7.3.0"),
    (None, "7.2.13+deb14-amd64", "7.2.13"),
    (None, None, None),
])
def test_the_exact_version_comes_from_proc_version(version: str | None, uname: str | None,
                                                   expected: str | None) -> None:
    assert guest.kernel_version(version, uname) == expected


def test_a_recorded_61_log_and_a_72_log_name_their_versions() -> None:
    assert guest.parse_log(recorded("boot-8G-max-la57.serial.log")).kernel_version == "6.1.192"
    log = guest.parse_log(f"=== ORACLE BEGIN\nuname=7.2.13+deb14-amd64\nversion={V72}\n=== ORACLE END\n")
    assert (log.uname, log.kernel_version, log.complete) == ("7.2.13+deb14-amd64", "7.2.13", True)


E820_72 = """=== ORACLE BEGIN
e: [    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff]  System RAM
e: [    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff]  device reserved
e: [    0.000000] BIOS-e820: [gap 0x00000000000a0000-0x00000000000effff]
e: [    0.000000] BIOS-e820: [mem 0x0000000000100000-0x00000000bffdffff]  System RAM
e: [    0.000000] BIOS-e820: [mem 0x00000000bffe0000-0x00000000bfffffff]  ACPI NVS
e: [    0.044096] RAMDISK: [mem 0xbfe5c000-0xbffdffff]
=== ORACLE END
"""


def test_72s_e820_names_read_as_61s_and_gaps_are_skipped() -> None:
    log = guest.parse_log(E820_72)
    assert log.e820 == [(0, 0x9FC00, "usable"), (0x9FC00, 0xA0000, "reserved"), (0x100000, 0xBFFE0000, "usable"),
                        (0xBFFE0000, 0xC0000000, "ACPI NVS")]
    assert log.ramdisk == (0xBFE5C000, 0xBFFE0000)
    old = guest.parse_log("e: [    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n")
    assert old.e820 == [(0, 0x9FC00, "usable")]
