"""Plots say nothing on stderr.  A log-scale axis labels its ticks with mathtext (10^3), whose font lookup can
miss the STIX fonts matplotlib looks for first; the font manager logs each miss as a warning, which reached
stderr under rofolio's own output (`rofolio survey --report` printed 21 such lines where matplotlib's font
cache listed them).  Whether a lookup misses depends on the machine's cache, so the test logs one miss the
way the font manager does."""

from __future__ import annotations

import subprocess
import sys

FONT_MISS = ("import rofolio.report.plots\n"
             "from matplotlib import font_manager\n"
             "font_manager._log.warning(\"findfont: Font family ['STIXGeneral'] not found.\")\n")


def test_a_font_the_font_manager_misses_is_no_line_on_stderr() -> None:
    out = subprocess.run([sys.executable, "-c", FONT_MISS], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stderr) == (0, "")
