"""A kernel from Debian unstable: the private apt command lines, the ABI resolution, the tree's key (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.oracle import debian, setup
from rofolio.oracle.cli import oracle_group
from rofolio.oracle.errors import OracleError

# `apt-cache pkgnames linux-binary-` and `... linux-image-` on unstable (recorded 2026-12, shortened)
PKGNAMES = [
    "linux-binary-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-cloud-amd64", "linux-binary-7.2.13+deb14-rt-amd64",
    "linux-binary-unsigned-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-arm64", "linux-image-7.2.13+deb14-amd64",
    "linux-image-7.2.13+deb14-amd64-dbg", "linux-image-7.2.13+deb14-cloud-amd64", "linux-image-amd64",
    "linux-image-cloud-amd64",
]

POLICY = """linux-source-7.2:
  Installed: (none)
  Candidate: 7.2.13-1
  Version table:
     7.2.13-1 500
        500 http://deb.debian.org/debian unstable/main amd64 Packages
"""


def test_the_kernel_option_names_a_debian_series() -> None:
    assert debian.parse_kernel("debian:7.2") == (7, 2)
    assert debian.parse_kernel("debian:6.1") == (6, 1)
    for bad in ("7.2", "debian:7", "ubuntu:7.2", "debian:7.2.13"):
        with pytest.raises(OracleError, match="unknown kernel"):
            debian.parse_kernel(bad)


def test_the_private_apt_state_never_names_the_systems_files(tmp_path: Path) -> None:
    apt = debian.PrivateApt(tmp_path / "apt")
    cmd = apt.command("apt-get", "download", "linux-source-7.2")
    assert cmd[:2] == ["apt-get", "-q"] and cmd[-2:] == ["download", "linux-source-7.2"]
    opts = dict(o.split("=", 1) for o in cmd[3:-2:2])
    assert cmd[2:-2:2] == ["-o"] * len(opts)
    for key in ("Dir::State", "Dir::State::status", "Dir::Cache", "Dir::Etc::SourceList", "Dir::Etc::SourceParts",
                "Dir::Etc::Preferences", "Dir::Etc::PreferencesParts"):
        assert opts[key].startswith(str(tmp_path / "apt")), key
    assert opts["APT::Architectures"] == "amd64"
    assert "/etc/apt" not in " ".join(cmd) and "/var/lib" not in " ".join(cmd)
    assert apt.sources_line() == ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                  "http://deb.debian.org/debian unstable main\n")


def test_update_writes_its_own_sources_and_runs_only_its_own_apt(tmp_path: Path) -> None:
    apt = debian.PrivateApt(tmp_path / "apt")
    calls: list[list[str]] = []

    def run(cmd: list[str], what: str, **_kw: object) -> str:
        calls.append(cmd)
        return "Get:1 http://deb.debian.org/debian unstable InRelease\nReading package lists...\n"

    apt.update(run)
    assert (tmp_path / "apt" / "sources.list").read_text() == apt.sources_line()
    assert (tmp_path / "apt" / "state" / "status").read_text() == ""  # an empty dpkg status: nothing installed
    assert (tmp_path / "apt" / "state" / "lists" / "partial").is_dir()
    assert calls == [apt.command("apt-get", "update")]
    assert not any(word in ("install", "upgrade", "dist-upgrade") for cmd in calls for word in cmd)


def test_a_failed_private_update_is_an_error(tmp_path: Path) -> None:
    apt = debian.PrivateApt(tmp_path / "apt")
    with pytest.raises(OracleError, match="update of unstable failed"):
        apt.update(lambda *_a, **_k: "W: Failed to fetch http://deb.debian.org/debian/dists/unstable/InRelease\n")


def test_download_runs_apt_get_download_in_the_destination(tmp_path: Path) -> None:
    apt = debian.PrivateApt(tmp_path / "apt")
    seen: dict[str, object] = {}

    def run(cmd: list[str], what: str, *, cwd: Path, **_kw: object) -> str:
        seen.update(cmd=cmd, cwd=cwd)
        (cwd / "linux-source-7.2_7.2.13-1_all.deb").write_bytes(b"x")
        return ""

    debs = apt.download(run, ["linux-source-7.2"], tmp_path / "d")
    assert seen["cmd"] == apt.command("apt-get", "download", "linux-source-7.2") and seen["cwd"] == tmp_path / "d"
    assert debs == [tmp_path / "d" / "linux-source-7.2_7.2.13-1_all.deb"]
    with pytest.raises(OracleError, match=r"produced no \.deb"):
        apt.download(lambda *_a, **_k: "", ["linux-headers-7.2.13+deb14-amd64"], tmp_path / "e")


def test_the_candidate_version_comes_from_apt_cache_policy() -> None:
    assert debian.candidate_version(POLICY) == "7.2.13-1"
    assert debian.candidate_version("linux-source-7.9:\n  Installed: (none)\n  Candidate: (none)\n") is None
    assert debian.candidate_version("") is None


def test_the_abi_is_the_generic_amd64_binary_package_of_the_series() -> None:
    res = debian.resolve(PKGNAMES, 7, 2)
    assert res == debian.Resolved(kver="7.2.13+deb14-amd64", upstream="7.2.13", series="7.2",
                                  image_package="linux-binary-7.2.13+deb14-amd64")


def test_the_newest_patch_release_wins_and_the_older_layout_is_understood() -> None:
    names = ["linux-image-7.2.9+deb14-amd64", "linux-binary-7.2.10+deb14-amd64", "linux-image-7.2.10+deb14-amd64",
             "linux-image-6.12.9-amd64"]
    assert debian.resolve(names, 7, 2).kver == "7.2.10+deb14-amd64"
    assert debian.resolve(names, 7, 2).image_package == "linux-binary-7.2.10+deb14-amd64"
    old = debian.resolve(names, 6, 12)
    assert (old.kver, old.image_package, old.upstream) == ("6.12.9-amd64", "linux-image-6.12.9-amd64", "6.12.9")


def test_when_unstable_left_the_series_the_newest_of_the_major_is_taken_and_said() -> None:
    names = ["linux-binary-7.3.4+deb14-amd64", "linux-binary-7.4.1+deb14-amd64", "linux-binary-8.0.1+deb14-amd64"]
    res = debian.resolve(names, 7, 2)
    assert res.kver == "7.4.1+deb14-amd64" and res.series == "7.4"
    assert "no longer carries 7.2" in res.note and "7.4.1" in res.note
    with pytest.raises(OracleError, match=r"no 9\.x kernel"):
        debian.resolve(names, 9, 0)
    with pytest.raises(OracleError, match="no amd64 kernel image"):
        debian.resolve(["linux-image-amd64", "linux-binary-7.2.13+deb14-arm64"], 7, 2)


def test_the_prepared_tree_is_keyed_by_source_version_and_toolchain(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv(debian.LINUX_CACHE_ENV, str(tmp_path))
    assert debian.linux_cache_dir("7.2") == tmp_path / "linux-7.2"
    monkeypatch.delenv(debian.LINUX_CACHE_ENV)
    assert debian.linux_cache_dir("7.2") == Path.home() / ".cache" / "rofolio" / "linux-7.2"
    assert debian.tree_key("7.2.13-1", "12.2.0", "2.40", "1.24") == "7.2.13-1_gcc-12.2.0_ld-2.40_pahole-1.24"
    assert debian.tree_key("7.2.13-1", "12.2.0", "2.40", "1.24") != debian.tree_key("7.2.13-2", "12.2.0", "2.40",
                                                                                    "1.24")


def test_the_toolchain_versions_are_parsed() -> None:
    out = {"gcc": "12.2.0\n", "ld": "GNU ld (GNU Binutils for Debian) 2.40\nCopyright\n", "pahole": "v1.24\n"}
    assert debian.toolchain(lambda cmd, *_a, **_k: out[cmd[0]]) == ("12.2.0", "2.40", "1.24")


def test_make_gives_the_tree_the_debian_release() -> None:
    assert debian.make_command(Path("/t"), "modules_prepare", "+deb14-amd64", 2) == [
        "make", "-C", "/t", "-j2", "LOCALVERSION=+deb14-amd64", "modules_prepare"]


def test_config_differences_list_what_olddefconfig_dropped(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("CONFIG_RUST=y\nCONFIG_GCC_VERSION=160200\nCONFIG_X=y\n# CONFIG_Y is not set\n")
    (tmp_path / "b").write_text("CONFIG_GCC_VERSION=120200\nCONFIG_X=y\n")
    assert debian.config_differences(tmp_path / "a", tmp_path / "b") == [
        "CONFIG_GCC_VERSION: 160200 -> 120200", "CONFIG_RUST: y -> unset"]


def test_each_kernel_has_its_own_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(setup.CACHE_ENV, str(tmp_path))
    assert setup.kernel_root() == tmp_path
    assert setup.kernel_root("debian:7.2") == tmp_path / "debian-7.2"
    with pytest.raises(OracleError) as err:
        setup.load_install(kernel="debian:7.2")
    assert "for debian:7.2" in err.value.message and "setup --kernel debian:7.2" in err.value.hint


def test_the_cli_refuses_a_malformed_kernel_with_exit_2() -> None:
    for args in (["run", "x86-split-costs", "--kernel", "7.2"], ["boot", "--kernel", "linux"],
                 ["setup", "--kernel", "debian:7"]):
        result = CliRunner().invoke(oracle_group, args)
        assert result.exit_code == 2, (args, result.output)


def test_setup_of_a_newer_kernel_uses_the_manifest_of_that_kernel(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv(setup.CACHE_ENV, str(tmp_path))
    root = tmp_path / "debian-7.2"
    root.mkdir()
    for name in ("vmlinuz", "m.ko", "kc"):
        (root / name).write_bytes(b"x")
    (root / setup.MANIFEST).write_text(json.dumps({
        "root": str(root), "kver": "7.2.13+deb14-amd64", "vmlinuz": str(root / "vmlinuz"),
        "module": str(root / "m.ko"), "kc": str(root / "kc"), "busybox": "/bin/sh", "qemu": "/bin/sh",
        "source_hash": setup.source_hash(), "tree": "/nonexistent"}))
    install = setup.load_install(kernel="debian:7.2")
    assert install.kver == "7.2.13+deb14-amd64" and install.kernel_series == "7.2"
