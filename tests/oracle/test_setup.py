"""Setup: the cache directory, the manifest, and clear errors without root or without the mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rofolio.oracle import setup
from rofolio.oracle.errors import OracleError


def test_the_cache_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(setup.CACHE_ENV, str(tmp_path / "c"))
    assert setup.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(setup.CACHE_ENV)
    assert setup.cache_dir() == Path.home() / ".cache" / "rofolio" / "oracle"


def test_not_set_up_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(OracleError) as err:
        setup.load_install(tmp_path)
    assert "not set up" in err.value.message and "rofolio oracle setup" in err.value.hint


def test_a_manifest_with_missing_files_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / setup.MANIFEST).write_text(json.dumps({
        "root": str(tmp_path), "kver": "6.1.0-57-amd64", "vmlinuz": str(tmp_path / "vmlinuz"),
        "module": str(tmp_path / "m.ko"), "kc": str(tmp_path / "kc"), "busybox": "/bin/sh", "qemu": "/bin/sh",
        "source_hash": setup.source_hash()}))
    with pytest.raises(OracleError, match="incomplete"):
        setup.load_install(tmp_path)


def test_a_module_built_from_other_sources_must_be_rebuilt(tmp_path: Path) -> None:
    for name in ("vmlinuz", "m.ko", "kc"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / setup.MANIFEST).write_text(json.dumps({
        "root": str(tmp_path), "kver": "6.1.0-57-amd64", "vmlinuz": str(tmp_path / "vmlinuz"),
        "module": str(tmp_path / "m.ko"), "kc": str(tmp_path / "kc"), "busybox": "/bin/sh", "qemu": "/bin/sh",
        "source_hash": "0000"}))
    with pytest.raises(OracleError, match="other sources"):
        setup.load_install(tmp_path)


def test_the_kmod_sources_ship_with_the_package() -> None:
    assert len(setup.source_hash()) == 16
    assert "linux-headers-6.1.0-57-amd64" in setup.packages("6.1.0-57-amd64")


def test_without_apt_get_setup_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(setup.shutil, "which", lambda _name: None)
    with pytest.raises(OracleError, match="apt-get not found"):
        setup.setup(tmp_path, log=lambda _s: None)


def test_without_root_missing_packages_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(setup.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(setup, "_is_root", lambda: False)
    monkeypatch.setattr(setup, "resolve_kver", lambda: "6.1.0-57-amd64")
    monkeypatch.setattr(setup, "_installed", lambda pkg: pkg != "qemu-system-x86")
    with pytest.raises(OracleError) as err:
        setup.setup(tmp_path, log=lambda _s: None)
    assert err.value.message == "missing packages: qemu-system-x86"
    assert "as root" in err.value.hint and "apt-get install qemu-system-x86" in err.value.hint


class _Proc:
    def __init__(self, returncode: int, stdout: str = "", stderr: str = "") -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_without_the_mirror_and_nothing_cached_setup_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(setup.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(setup, "_is_root", lambda: True)
    failed = _Proc(100, "", "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  "
                   "Temporary failure resolving 'deb.debian.org'\nE: Some index files failed to download.")
    monkeypatch.setattr(setup.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(OracleError) as err:
        setup.setup(tmp_path, log=lambda _s: None)
    assert "mirror reachable" in err.value.message and "nothing is cached" in err.value.hint


def _elf(program_headers: list[int]) -> bytes:
    """A minimal 64-bit ELF header followed by program headers of the given p_type values."""
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    header[0x20:0x28] = (64).to_bytes(8, "little")  # e_phoff
    header[0x36:0x38] = (56).to_bytes(2, "little")  # e_phentsize
    header[0x38:0x3A] = len(program_headers).to_bytes(2, "little")
    return bytes(header) + b"".join(t.to_bytes(4, "little") + bytes(52) for t in program_headers)


def test_static_elf_detection(tmp_path: Path) -> None:
    static, dynamic = tmp_path / "static", tmp_path / "dynamic"
    static.write_bytes(_elf([1, 1]))  # PT_LOAD only
    dynamic.write_bytes(_elf([6, 3, 1]))  # PT_PHDR, PT_INTERP, PT_LOAD
    assert setup.is_static_elf(static)
    assert not setup.is_static_elf(dynamic)
    assert not setup.is_static_elf(tmp_path / "missing")


def test_the_kernels_rofolio_builds_have_their_own_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(setup.CACHE_ENV, str(tmp_path))
    assert setup.check_kernel(" built:7.2+rfc ") == "built:7.2+rfc"
    assert setup.kernel_root("built:7.2") == tmp_path / "built-7.2"
    assert setup.kernel_root("built:7.2+rfc") == tmp_path / "built-7.2+rfc"
    assert setup.kernel_root("debian:7.2") == tmp_path / "debian-7.2"
    with pytest.raises(OracleError, match=r"built:7\.2, built:7\.2\+rfc"):
        setup.check_kernel("built:6.1")
    with pytest.raises(OracleError, match=r"run `rofolio oracle setup --kernel built:7\.2\+rfc`"):
        setup.load_install(kernel="built:7.2+rfc")
