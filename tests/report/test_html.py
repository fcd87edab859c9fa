"""The HTML report: one self-contained page that opens in headless Chromium, images and all.

Chromium is Debian's package, which `scripts/test` installs.  Without it these
tests are skipped, unless ROFOLIO_REQUIRE_CHROMIUM=1 (set by scripts/test and
CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rofolio.report import html_report
from rofolio.scenario.runner import run_scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom"]

if not CHROMIUM:
    if os.environ.get("ROFOLIO_REQUIRE_CHROMIUM"):
        raise RuntimeError("chromium is not installed; scripts/test installs Debian's chromium package")
    pytestmark = pytest.mark.skip(reason="chromium is not installed (scripts/test installs it)")


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after load, and every console message the page produced."""
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out.stdout, console


@pytest.mark.parametrize("name", ["rfc-demo", "x86-aliases"])
def test_report_opens_without_console_errors_and_shows_its_images(tmp_path: Path, name: str) -> None:
    page = tmp_path / "report.html"
    page.write_text(html_report(run_scenario(name)))
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert 'data-images-ok="yes"' in dom
    assert len(re.findall(r"<img ", dom)) == 3
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # self-contained


def test_the_console_check_does_catch_a_broken_page(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
                    "<script>undefinedFunction();</script></body></html>")
    dom, console = open_in_chromium(page, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console)
    assert 'data-images-ok="yes"' not in dom


@pytest.mark.parametrize(("args", "images"), [
    (["compare", "rfc-demo", "--set", "gbpages=true,false"], 1),
    (["lifetime", "--mem", "8G", "--model", "1"], 0),
    (["bugs", "--bug", "huge-dirty-cow"], 0),
    (["bugs", "--explain", "huge-dirty-cow", "--config", "x86"], 3),
])
def test_compare_lifetime_and_bugs_write_pages_that_open_cleanly(tmp_path: Path, args: list[str],
                                                                 images: int) -> None:
    from click.testing import CliRunner

    from rofolio.cli import main

    page = tmp_path / "page.html"
    result = CliRunner().invoke(main, [*args, "--report", str(page)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"report written to {page}"
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert len(re.findall(r"<img ", dom)) == images
    if images:
        assert 'data-images-ok="yes"' in dom
