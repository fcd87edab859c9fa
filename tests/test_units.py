"""Sizes as people read them: exact where short, else one decimal of the unit their magnitude calls for."""

from __future__ import annotations

import pytest

from rofolio.units import approx_size


@pytest.mark.parametrize(("nbytes", "text"), [
    (8 << 30, "8G"), (1536 << 20, "1536M"), (15871 << 10, "15871K"),  # exact and short
    (int(1.5 * (1 << 30)) + 1, "1.5G"), (int(9.3 * (1 << 60)), "9.3E"),
    # just below a unit: the rounded figure is the next unit's, never 1024.0 of this one
    ((1 << 50) - (128 << 10), "1.0P"), ((1 << 40) - 1, "1.0T"), ((1 << 40) - (60 << 30) - 1, "964.0G"),
])
def test_approx_size(nbytes: int, text: str) -> None:
    assert approx_size(nbytes) == text
