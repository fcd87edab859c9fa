"""The source trees: the RFC series as package data, applied to a hard-link farm that leaves its base untouched,
and the command line's answer when there is no series or the fragment is wrong (no kernel is built here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.cli import main
from rofolio.errors import EnvironmentFailure
from rofolio.kernelbuild import source
from rofolio.kernelbuild.source import Source, apply_series, check_series, rfc_series, written_after_copy

PATCH = """From 1 Mon Sep 17 00:00:00 2001
Subject: [PATCH 1/1] mm: say TWO

---
 mm/a.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/mm/a.c b/mm/a.c
--- a/mm/a.c
+++ b/mm/a.c
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
"""


def _series(folder: Path, patches: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in patches.items():
        (folder / name).write_text(text)
    return folder


def _base(root: Path) -> Source:
    tree = root / "source-1.0"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm" / "a.c").write_text("one\ntwo\nthree\n")
    (tree / "README").write_text("read me\n")
    source._write_stamp(tree, {"source_version": "1.0", "patches": []})
    return Source(tree, "1.0")


def test_the_series_is_every_patch_but_the_cover_letter_in_name_order(tmp_path: Path) -> None:
    folder = _series(tmp_path / "p", {"0002-b.patch": "b", "0000-cover-letter.patch": "c", "0001-a.patch": "a",
                                      "README.md": "not a patch"})
    series = rfc_series(folder)
    assert series.names == ("0001-a.patch", "0002-b.patch")
    (folder / "0002-b.patch").write_text("b, changed")
    assert rfc_series(folder).sha256 != series.sha256


@pytest.mark.parametrize("patches", [{}, {"0000-cover-letter.patch": "c"}])
def test_no_series_is_an_environment_failure(tmp_path: Path, patches: dict[str, str]) -> None:
    with pytest.raises(EnvironmentFailure) as err:
        rfc_series(_series(tmp_path / "p", patches))
    assert err.value.exit_status == 4 and "no RFC series to apply" in err.value.message


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_apply_replaces_a_patched_file_and_leaves_the_base_untouched(tmp_path: Path) -> None:
    base = _base(tmp_path)
    series = rfc_series(_series(tmp_path / "p", {"0000-cover-letter.patch": "cover", "0001-mm.patch": PATCH}))
    patched = apply_series(base, series, lambda _line: None)
    assert patched.path == tmp_path / f"source-1.0+rfc-{series.sha256[:12]}" and patched.patches == ("0001-mm.patch",)
    assert (patched.path / "mm" / "a.c").read_text() == "one\nTWO\nthree\n"
    assert (base.path / "mm" / "a.c").read_text() == "one\ntwo\nthree\n"
    # the patched file is a new inode; the untouched one is still the base's (a hard link)
    assert os.stat(patched.path / "mm" / "a.c").st_ino != os.stat(base.path / "mm" / "a.c").st_ino
    assert os.stat(patched.path / "README").st_ino == os.stat(base.path / "README").st_ino
    assert source._read_stamp(base.path)["patches"] == []  # the copy's stamp did not write through the link
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["p", patched.path.name, "source-1.0"])
    assert written_after_copy(patched) == []
    later = patched.path / "mm" / "a.c"
    os.utime(later, (later.stat().st_atime, (patched.path / source.STAMP).stat().st_mtime + 5))
    assert written_after_copy(patched) == [str(later)]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_series_that_does_not_apply_names_the_base_and_leaves_no_copy(tmp_path: Path) -> None:
    base = _base(tmp_path)
    (base.path / "mm" / "a.c").write_text("one\nthree\n")
    series = rfc_series(_series(tmp_path / "p", {"0001-mm.patch": PATCH}))
    with pytest.raises(EnvironmentFailure) as err:
        check_series(base, series)
    assert err.value.exit_status == 4
    assert "git apply --check 0001-mm.patch against linux-source-7.2 1.0 failed" in err.value.message
    with pytest.raises(EnvironmentFailure):
        apply_series(base, series, lambda _line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "source-1.0"]


def test_rfc_without_a_series_exits_4_with_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "patches_dir", lambda: _series(tmp_path / "p", {"0000-cover-letter.patch": "c"}))
    result = CliRunner().invoke(main, ["kernel", "build", "--arch", "arm64", "--rfc"])
    assert result.exit_code == 4, result.output
    assert "rofolio: error: no RFC series to apply" in result.output and "Traceback" not in result.output


def test_a_bad_fragment_exits_2_at_its_line(tmp_path: Path) -> None:
    mine = tmp_path / "mine.config"
    mine.write_text("CONFIG_KFENCE=y\nKFENCE=y\n")
    result = CliRunner().invoke(main, ["kernel", "build", "--arch", "x86_64", "--config", str(mine)])
    assert result.exit_code == 2, result.output
    assert f"rofolio: error: {mine}:2: not a Kconfig line" in result.output


@pytest.mark.parametrize("args", [["--arch", "sparc"], [], ["--arch", "x86_64", "--config", "/nonexistent"]])
def test_bad_options_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["kernel", "build", *args])
    assert result.exit_code == 2, result.output
    assert "rofolio: error: command line:" in result.output


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_patch_on_top_of_an_earlier_one_in_the_same_file_checks(tmp_path: Path) -> None:
    """Each patch is checked after the ones before it: the second changes a line the first wrote."""
    base = _base(tmp_path)
    second = PATCH.replace("-two\n+TWO", "-TWO\n+2")
    assert second != PATCH
    series = rfc_series(_series(tmp_path / "p", {"0001-mm.patch": PATCH, "0002-mm.patch": second}))
    check_series(base, series)
    assert (base.path / "mm" / "a.c").read_text() == "one\ntwo\nthree\n"
    assert (apply_series(base, series, lambda _line: None).path / "mm" / "a.c").read_text() == "one\n2\nthree\n"
