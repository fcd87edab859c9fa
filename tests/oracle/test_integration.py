"""One real boot: a small scenario on Debian's kernel under QEMU (ROFOLIO_ORACLE=1, after `rofolio oracle setup`)."""

from __future__ import annotations

import os

import pytest

from rofolio.oracle import session
from rofolio.oracle.cli import suite_sources
from rofolio.oracle.setup import load_install

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(os.environ.get("ROFOLIO_ORACLE") != "1",
                                 reason="boots a kernel under QEMU: set ROFOLIO_ORACLE=1 (after rofolio oracle setup)")]


def test_a_2m_ro_in_a_1g_leaf_agrees_with_the_kernel() -> None:
    install = load_install()
    source = next(p for p in suite_sources() if p.endswith("x86-01-2m-ro-in-1g.toml"))
    result = session.run([source], install)
    (rep,) = result.reports
    assert rep.uname == install.kver
    assert rep.agree, rep.disagreements()
    assert result.boots[0]["boot_agrees_with_model"] is True
    assert result.boots[0]["insmod_rc"] == 0
