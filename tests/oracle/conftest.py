"""Shared data for the oracle tests: serial logs recorded from real boots (no QEMU needed to read them).

Recorded on Debian 6.1.0-57-amd64 under QEMU 7.2 (TCG) with:

* ``rofolio oracle boot --keep-log DIR`` (boot-*.serial.log: no module, kc walks), and
* ``rofolio oracle run data/scenarios/*.toml --keep-log DIR`` (experiments-8G.*: one boot, seven
  experiments; the scenarios are copies of suite files as they were when the log was recorded).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
KVER = "6.1.0-57-amd64"


@pytest.fixture
def data() -> Path:
    return DATA


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def recorded_scenarios() -> list[str]:
    return sorted(str(p) for p in (DATA / "scenarios").glob("*.toml"))
