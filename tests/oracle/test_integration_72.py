"""Real boots of Debian unstable's 7.x kernel (ROFOLIO_ORACLE=1, after `rofolio oracle setup --kernel debian:7.2`)."""

from __future__ import annotations

import os

import pytest

from rofolio.oracle import guest, session
from rofolio.oracle.cli import suite_sources
from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import load_install

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(os.environ.get("ROFOLIO_ORACLE") != "1",
                                 reason="boots a kernel under QEMU: set ROFOLIO_ORACLE=1 "
                                        "(after rofolio oracle setup --kernel debian:7.2)")]


def _install():  # type: ignore[no-untyped-def]
    try:
        return load_install(kernel="debian:7.2")
    except OracleError as err:
        pytest.skip(f"7.2 oracle not set up: {err}")


def test_the_module_loads_into_72_and_a_2m_ro_agrees() -> None:
    install = _install()
    source = next(p for p in suite_sources() if p.endswith("x86-01-2m-ro-in-1g.toml"))
    result = session.run([source], install)
    (rep,) = result.reports
    assert rep.uname == install.kver and install.kver.startswith("7.")
    assert result.boots[0]["insmod_rc"] == 0
    assert rep.agree, rep.disagreements()


def test_the_72_guest_reports_its_exact_version() -> None:
    install = _install()
    log = guest.parse_log(guest.boot(install, guest.GuestConfig(mem="2G"), None).serial)
    assert log.complete and log.uname == install.kver
    assert log.kernel_version is not None and install.kver.startswith(log.kernel_version)
