"""Installing rofolio is quiet: scripts/demo's `pip install --quiet -e .` printed about 40 lines of warnings first."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def test_the_license_is_an_spdx_expression_not_the_deprecated_table() -> None:
    # setuptools >= 77 warns (BuildBackendWarning, a 12-line box, three times per build) for license = { text = }
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "GPL-2.0-only"
    assert "setuptools>=77" in data["build-system"]["requires"]  # the first to read a license expression
