"""The build cache: a manifest is the only mark of a complete build, and it is trusted only when it names this key
and files that are there; the cross toolchain in the key, the build's transcript (no kernel is built here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rofolio.kernelbuild import kbuild, source
from rofolio.kernelbuild.kbuild import Built
from rofolio.oracle import debian
from rofolio.oracle.errors import OracleError


def _entry(tmp_path: Path, key: str = "0123456789abcdef") -> tuple[Path, Built]:
    out = tmp_path / "build"
    (out / "arch" / "arm64" / "boot").mkdir(parents=True)
    for name in ("arch/arm64/boot/Image", ".config", "System.map"):
        (out / name).write_text(name)
    built = Built(arch="arm64", rfc=True, release="7.2.13-rofolio-rfc", image=str(out / "arch/arm64/boot/Image"),
                  config=str(out / ".config"), system_map=str(out / "System.map"), vmlinux=str(out / "vmlinux"),
                  out=str(out), make_vars=kbuild._make_vars(kbuild.target("arm64"), True), source="/src", key=key,
                  parts={"arch": "arm64"}, patches=("0001-a.patch",), image_bytes=21,
                  seconds={"source": 1.0, "config": 2.0, "make": 150.0, "total": 153.0},
                  built_at="2026-12-05T02:00:00")
    source.replace_json(tmp_path / kbuild.MANIFEST, {k: v for k, v in built.to_dict().items() if k != "cached"})
    return tmp_path, built


def test_a_complete_manifest_is_the_cached_build(tmp_path: Path) -> None:
    entry, built = _entry(tmp_path)
    found = kbuild._cached(entry, built.key)
    assert found is not None and found.cached and found == Built(**{**built.__dict__, "cached": True})
    assert found.build_seconds == 153.0
    assert json.loads((entry / kbuild.MANIFEST).read_text())["schema"] == "rofolio.kernelbuild/1"


def test_the_make_variables_name_the_cross_compiler_and_the_release_suffix() -> None:
    assert kbuild._make_vars(kbuild.target("arm64"), True)[:3] == (
        "ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "LOCALVERSION=-rofolio-rfc")
    assert kbuild._make_vars(kbuild.target("x86_64"), False)[:2] == ("ARCH=x86_64", "LOCALVERSION=-rofolio")


def test_a_manifest_of_another_key_or_with_a_missing_file_is_no_cache(tmp_path: Path) -> None:
    entry, built = _entry(tmp_path)
    assert kbuild._cached(entry, "fedcba9876543210") is None
    Path(built.system_map).unlink()
    assert kbuild._cached(entry, built.key) is None
    (entry / kbuild.MANIFEST).write_text("{not json")
    assert kbuild._cached(entry, built.key) is None
    (entry / kbuild.MANIFEST).unlink()
    assert kbuild._cached(entry, built.key) is None


def test_the_cross_toolchain_is_asked_by_its_prefix() -> None:
    asked: list[str] = []

    def run(cmd: list[str], *_args: object, **_kwargs: object) -> str:
        asked.append(cmd[0])
        return {"aarch64-linux-gnu-gcc": "12.2.0\n", "pahole": "v1.24\n",
                "aarch64-linux-gnu-ld": "GNU ld (GNU Binutils for Debian) 2.40\n"}[cmd[0]]

    assert debian.toolchain(run, "aarch64-linux-gnu-") == ("12.2.0", "2.40", "1.24")
    assert asked == ["aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "pahole"]


def test_a_long_make_keeps_its_whole_output_and_a_failure_names_it(tmp_path: Path) -> None:
    transcript = tmp_path / "build.log"
    debian.run_with_progress(["sh", "-c", "seq 1 40"], "count", lambda _line: None, transcript=transcript)
    assert transcript.read_text().split() == [str(i) for i in range(1, 41)]
    with pytest.raises(OracleError) as err:
        debian.run_with_progress(["sh", "-c", "seq 1 20; exit 3"], "fail", lambda _line: None,
                                 transcript=transcript)
    assert err.value.message.splitlines()[0] == "fail failed (exit 3):"
    assert err.value.message.splitlines()[1:] == [str(i) for i in range(6, 21)]  # the last 15 lines
    assert str(transcript) in err.value.hint and len(transcript.read_text().split()) == 60
