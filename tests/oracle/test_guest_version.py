"""The guest's exact kernel version, from /proc/version as /init prints it."""

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
