"""The source trees kernels are built from: a pristine copy of Debian's linux-source-7.2, and that copy with the
RFC series applied.

The linux-source-7.2 tree that ``rofolio oracle setup --kernel debian:7.2`` prepares (``oracle.debian
.prepare_tree()``: Debian's amd64 config, ``modules_prepare``) is shared with the fidelity oracle and must stay
as it is.  It holds a ``.config`` and generated files, so kbuild refuses ``make O=...`` from it (the top
Makefile's "source tree is not clean, please run 'make mrproper'").  So, once per source version:

* ``source-<version>/``, beside it in the linux cache: a hard-link farm of it (``cp -al``, about 1 s for its
  ~100k files) on which ``make mrproper`` removed the config and every generated file.  The farm is safe
  because nothing writes a source file in place: kbuild with ``O=`` writes only below the output directory,
  ``make mrproper`` only unlinks, and ``git apply`` writes a patched file as a new inode (checked on
  mm/huge_memory.c: the patched copy's link count drops to 1, the shared tree's file is unchanged).  After
  every build, ``written_after_copy()`` checks that nothing in the copy is newer than its stamp.  (Unpacking the
  linux-source package again would need its 150 MiB .deb, which the oracle's setup does not keep, and
  about half a minute of xz.)
* ``source-<version>+rfc-<sha>/``: a hard-link farm of the pristine copy with the series applied, one patch
  at a time in name order with ``git apply --check`` then ``git apply`` (the cover letter is not a patch).
  ``<sha>`` is the series' digest, so a changed series gets a new copy.  The whole series is also checked
  against the pristine copy with ``git apply --check`` on every ``--rfc`` build, cached or not.

Each copy is made under a temporary name and renamed into place when complete, with a stamp
(``rofolio-source.json``) that says what it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rofolio.errors import EnvironmentFailure
from rofolio.oracle import debian
from rofolio.oracle.setup import run_command

__all__ = [
    "COVER_LETTER", "KERNEL_SERIES", "STAMP", "PatchSeries", "Source", "apply_series", "check_series", "patches_dir",
    "pristine", "replace_json", "rfc_series", "shared_tree", "written_after_copy",
]

KERNEL_SERIES = "7.2"  # linux-source-7.2: the kernel series the RFC is written against
STAMP = "rofolio-source.json"
COVER_LETTER = "0000-cover-letter.patch"  # git format-patch --cover-letter's name


@dataclass(frozen=True)
class Source:
    """A source tree kernels are built from (``make -C path O=...``)."""

    path: Path
    source_version: str                # Debian's linux-source package version, e.g. 7.2.13-1
    patches: tuple[str, ...] = ()      # the series' file names applied, in order (none: pristine)


@dataclass(frozen=True)
class PatchSeries:
    """The RFC series shipped as package data: its patches in the order ``git apply`` takes them."""

    folder: Path
    patches: tuple[Path, ...]
    sha256: str  # of each patch's name and contents, in order

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.patches)


def patches_dir() -> Path:
    """``rofolio/kernelbuild/patches/``: where the series lives in the installed package."""
    return Path(str(resources.files("rofolio.kernelbuild"))) / "patches"


def rfc_series(folder: Path | None = None) -> PatchSeries:
    """Every ``*.patch`` in ``folder`` but the cover letter, in name order; an EnvironmentFailure when there is
    none (this rofolio carries no series to build)."""
    folder = folder or patches_dir()
    patches = tuple(sorted(p for p in folder.glob("*.patch") if p.name != COVER_LETTER and p.is_file()))
    if not patches:
        raise EnvironmentFailure(f"no RFC series to apply: {folder} holds no *.patch besides the cover letter",
                                 "the series is package data (git format-patch files); build without --rfc")
    digest = hashlib.sha256()
    for patch in patches:
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return PatchSeries(folder, patches, digest.hexdigest())


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def _newest_prepared(parent: Path) -> tuple[Path, str] | None:
    """The newest prepared tree in ``parent`` (its stamp names a source version) and that version, or None."""
    trees = []
    if parent.is_dir():
        for tree in parent.iterdir():
            stamp = debian.stamp(tree) if tree.is_dir() else None
            if stamp and stamp.get("source_version"):
                trees.append((_version_key(stamp["source_version"]), tree, stamp["source_version"]))
    if not trees:
        return None
    _, tree, version = max(trees)
    return tree, version


def shared_tree(log: Callable[[str], None]) -> tuple[Path, str]:
    """The newest prepared linux-source-7.2 tree in the linux cache and its source version; prepared as
    ``rofolio oracle setup --kernel debian:7.2`` does (oracle.setup.setup_unstable) when there is none."""
    parent = debian.linux_cache_dir(KERNEL_SERIES)
    for attempt in (1, 2):
        newest = _newest_prepared(parent)
        if newest is not None:
            return newest
        if attempt == 1:
            log(f"no prepared linux-source-{KERNEL_SERIES} tree in {parent}: preparing it as "
                f"`rofolio oracle setup --kernel debian:{KERNEL_SERIES}` does")
            from rofolio.oracle.setup import setup

            setup(kernel=f"debian:{KERNEL_SERIES}", log=log)
    raise EnvironmentFailure(f"the oracle's setup left no prepared linux-source-{KERNEL_SERIES} tree in {parent}",
                             f"run `rofolio oracle setup --kernel debian:{KERNEL_SERIES}` and see what it says")


def replace_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` as a new file renamed into place: never half written, and in a hard-link farm
    never through an inherited link (which would change the other tree's file too)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _write_stamp(tree: Path, data: dict) -> None:
    replace_json(tree / STAMP, data)


def _read_stamp(tree: Path) -> dict | None:
    try:
        return json.loads((tree / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _link_farm(src: Path, dest: Path, log: Callable[[str], None]) -> Path:
    """``cp -al src`` to a temporary name beside ``dest``; returns that name."""
    tmp = dest.parent / f".copying-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    run_command(["cp", "-al", str(src), str(tmp)], f"cp -al {src} {tmp}",
                hint="the linux cache must be one file system with room for ~100k directory entries")
    log(f"  hard-linked {src.name} in {time.monotonic() - t0:.1f} s")
    return tmp


def pristine_if_made() -> Source | None:
    """The pristine copy when it is already made (nothing is prepared, copied or written), else None."""
    newest = _newest_prepared(debian.linux_cache_dir(KERNEL_SERIES))
    if newest is None:
        return None
    shared, version = newest
    dest = shared.parent / f"source-{version}"
    stamp = _read_stamp(dest)
    ok = stamp is not None and stamp.get("source_version") == version and not stamp.get("patches")
    return Source(dest, version) if ok else None


def pristine(log: Callable[[str], None]) -> Source:
    """The pristine copy of the newest shared tree (made once: ``cp -al`` and ``make mrproper``)."""
    shared, version = shared_tree(log)
    dest = shared.parent / f"source-{version}"
    stamp = _read_stamp(dest)
    if stamp is not None and stamp.get("source_version") == version and not stamp.get("patches"):
        return Source(dest, version)
    log(f"making a pristine source copy of linux-source-{KERNEL_SERIES} {version}: {dest}")
    t0 = time.monotonic()
    tmp = _link_farm(shared, dest, log)
    try:
        run_command(["make", "-C", str(tmp), "-s", "mrproper"], "make mrproper in the source copy",
                    hint="check make and the copy's disk")
        (tmp / debian.STAMP).unlink(missing_ok=True)  # the shared tree's own stamp: not this copy's
        _write_stamp(tmp, {"source_version": version, "from": str(shared), "patches": [],
                           "made": time.strftime("%Y-%m-%dT%H:%M:%S")})
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  pristine copy made in {time.monotonic() - t0:.1f} s")
    return Source(dest, version)


def _git_apply(tree: Path, *args: str, what: str, hint: str) -> str:
    """``git apply`` as a patch tool in ``tree``, never inside a repository that happens to contain the cache
    (GIT_CEILING_DIRECTORIES stops the search for one at the tree)."""
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}
    return run_command(["git", "apply", *args], what, cwd=tree, env=env, hint=hint)


_DIFF_PATH = re.compile(r"^diff --git a/(\S+) b/\S+$", re.MULTILINE)


def check_series(base: Source, patches: PatchSeries) -> None:
    """``git apply --check`` of each patch in turn, each on top of the ones before it, against ``base``.

    One ``git apply --check`` of every patch at once would check each against the pristine files, so a patch
    that touches a file an earlier one changed would fail.  The check runs in a scratch copy of only the files
    the series touches (nothing in ``base`` is written)."""
    touched = sorted({m for patch in patches.patches for m in _DIFF_PATH.findall(patch.read_text())})
    with tempfile.TemporaryDirectory(prefix=".rofolio-check-", dir=base.path.parent) as tmp:
        scratch = Path(tmp) / "tree"
        for rel in touched:
            if (base.path / rel).is_file():
                (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base.path / rel, scratch / rel)
        for patch in patches.patches:
            hint = (f"{patch.name} must apply, after the patches before it, to linux-source-{KERNEL_SERIES} "
                    f"{base.source_version} (the series is in {patches.folder})")
            _git_apply(scratch, "--check", str(patch), hint=hint,
                       what=f"git apply --check {patch.name} against linux-source-{KERNEL_SERIES} "
                            f"{base.source_version}")
            _git_apply(scratch, str(patch), what=f"git apply {patch.name} (scratch copy)", hint=hint)


def apply_series(base: Source, patches: PatchSeries, log: Callable[[str], None]) -> Source:
    """``base`` with the series applied, in its own hard-link farm (made once per series digest)."""
    check_series(base, patches)
    dest = base.path.parent / f"source-{base.source_version}+rfc-{patches.sha256[:12]}"
    stamp = _read_stamp(dest)
    if stamp is not None and stamp.get("patches_sha256") == patches.sha256:
        return Source(dest, base.source_version, patches.names)
    log(f"applying the RFC series ({len(patches.patches)} patches) to a copy: {dest}")
    tmp = _link_farm(base.path, dest, log)
    try:
        for patch in patches.patches:
            hint = f"{patch.name} must apply after the patches before it to linux-source-{KERNEL_SERIES} " \
                   f"{base.source_version}"
            _git_apply(tmp, "--check", str(patch), what=f"git apply --check {patch.name}", hint=hint)
            _git_apply(tmp, str(patch), what=f"git apply {patch.name}", hint=hint)
            log(f"  applied {patch.name}")
        _write_stamp(tmp, {"source_version": base.source_version, "from": str(base.path),
                           "patches": list(patches.names), "patches_sha256": patches.sha256,
                           "made": time.strftime("%Y-%m-%dT%H:%M:%S")})
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Source(dest, base.source_version, patches.names)


def written_after_copy(source: Source, limit: int = 5) -> list[str]:
    """Files in the copy written after its stamp (a build that wrote into the source: none expected)."""
    stamp = source.path / STAMP
    found = run_command(["find", str(source.path), "-newer", str(stamp), "-type", "f"], "find in the source copy")
    return [line for line in found.splitlines() if line.strip()][:limit]
