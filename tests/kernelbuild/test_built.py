"""Kernels built from linux-source-7.2 (ROFOLIO_ORACLE=1, the oracle stage of scripts/test, which builds them
first): every option of rofolio's fragment is in the built .config, and each kernel boots under QEMU TCG to its
/init and powers off.  A cold cache is not a reason to skip: ``build()`` then builds (minutes, not seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rofolio.kernelbuild import build, options, smoke_boot
from rofolio.kernelbuild.fragment import read_config, unmet
from rofolio.kernelbuild.source import rfc_series

from .test_fragment import CONSOLE, ISSUE_OPTIONS

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(os.environ.get("ROFOLIO_ORACLE") != "1",
                                 reason="builds kernels and boots them under QEMU: set ROFOLIO_ORACLE=1")]

KERNELS = [("x86_64", False), ("x86_64", True), ("arm64", False), ("arm64", True)]
IDS = [f"{arch}{'+rfc' if rfc else ''}" for arch, rfc in KERNELS]


def _log(line: str) -> None:
    print(f"kernel build: {line}", file=sys.stderr)


@pytest.mark.parametrize(("arch", "rfc"), KERNELS, ids=IDS)
def test_every_fragment_option_is_in_the_built_config(arch: str, rfc: bool) -> None:
    built = build(arch, rfc=rfc, log=_log)
    config = read_config(Path(built.config).read_text())
    assert [o.where + ": " + o.config_line() for o in unmet(options(arch), config)] == []
    assert [name for name in (*ISSUE_OPTIONS, *CONSOLE[arch]) if config.get(name) != "y"] == []
    assert built.release.endswith("-rofolio-rfc" if rfc else "-rofolio") and built.release.startswith("7.2.")
    assert built.patches == (rfc_series().names if rfc else ())


@pytest.mark.parametrize(("arch", "rfc"), KERNELS, ids=IDS)
def test_the_built_kernel_boots_to_init_and_powers_off(arch: str, rfc: bool) -> None:
    built = build(arch, rfc=rfc, log=_log)
    boot = smoke_boot(built, timeout=300.0)
    print(f"smoke boot {arch}{'+rfc' if rfc else ''}: {boot.seconds:.1f} s", file=sys.stderr)
    assert boot.reached_init and boot.powered_off, boot.serial_tail
    assert boot.release == built.release
    assert boot.notes == (), boot.notes
