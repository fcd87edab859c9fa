"""``rofolio kernel build``: Linux 7.2 from Debian's linux-source-7.2, tinyconfig plus rofolio's fragment, for QEMU.

One build, in order (docs/kernel-build.md has the why of each step):

1. The source: the pristine copy of the shared linux-source-7.2 tree, or that copy with the RFC series applied
   (``source.py``).
2. The config, in the output directory only (``make O=``): ``make tinyconfig`` (scripts/kconfig/Makefile:
   allnoconfig with kernel/configs/tiny-base.config, then tiny.config), the merged fragment onto it with
   ``scripts/kconfig/merge_config.sh -m`` and ``make olddefconfig``; then every fragment option must have its
   value in ``.config`` (``fragment.unmet()``), or the build stops before compiling anything.
3. ``make all modules_prepare``: the image (x86 ``arch/x86/boot/bzImage``; arm64 ``arch/arm64/boot/Image``,
   uncompressed, which ``qemu-system-aarch64 -M virt -kernel`` boots directly), vmlinux, System.map,
   Module.symvers and modpost, so an out-of-tree module builds with ``make -C OUT M=DIR`` (plus
   ``Built.make_vars``).  arm64 is cross-built with Debian's gcc-aarch64-linux-gnu.
4. ``make kernelrelease``, then a manifest.  ``LOCALVERSION`` makes the release say what was built
   (``7.2.13-rofolio``, ``7.2.13-rofolio-rfc``), so a guest's ``uname -r`` names its kernel.

The cache: ``kbuild/<arch>[-rfc]-<key>/`` beside the linux cache (``$ROFOLIO_LINUX_CACHE`` or
``~/.cache/rofolio``), keyed by the source package version, the toolchain (gcc, ld, pahole; the cross gcc and
ld for arm64), the architecture, the merged fragment and the series' digest.  The manifest is written last,
so a failed or interrupted build leaves none, and the next run resumes in the same output directory (kbuild
rebuilds what is stale; ``--force`` starts from an empty one).  One build at a time: a lock in ``kbuild/``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rofolio.errors import EnvironmentFailure, RofolioError
from rofolio.kernelbuild import source
from rofolio.kernelbuild.fragment import Option, merge, parse, read, read_config, render, unmet
from rofolio.oracle import debian
from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import run_command

__all__ = [
    "MANIFEST", "RECIPE", "SCHEMA", "TARGETS", "Built", "Target", "build", "cache_key", "kbuild_dir", "options",
    "target",
]

SCHEMA = "rofolio.kernelbuild/1"
# The way a kernel is built (the make goals and variables below): part of the cache key, so a change here
# rebuilds instead of reusing an output directory made the old way.
RECIPE = 1
MANIFEST = "manifest.json"
TRANSCRIPT = "build.log"
OUT = "build"  # the O= directory inside a cache entry
LOCALVERSION = "-rofolio"


@dataclass(frozen=True)
class Target:
    """An architecture a kernel is built for: kbuild's names for it and what the build needs."""

    arch: str                    # rofolio's name (--arch)
    kbuild_arch: str             # make ARCH=
    cross_compile: str           # make CROSS_COMPILE= (a native build on an x86-64 host: "")
    image: str                   # the image QEMU boots, relative to the O= directory
    packages: tuple[str, ...]    # Debian packages beyond the native toolchain and debian.BUILD_PACKAGES


TARGETS: dict[str, Target] = {
    "x86_64": Target("x86_64", "x86_64", "", "arch/x86/boot/bzImage", ()),
    "arm64": Target("arm64", "arm64", "aarch64-linux-gnu-", "arch/arm64/boot/Image", ("gcc-aarch64-linux-gnu",)),
}
HOST = "x86_64"  # the cross prefixes above assume an x86-64 host (Debian amd64, like the oracle)


def target(arch: str) -> Target:
    """The build target of ``arch``; a RofolioError (bad input) for any other name."""
    try:
        return TARGETS[arch]
    except KeyError:
        raise RofolioError(f"no kernel build for architecture {arch!r}",
                           f"choose one of: {', '.join(TARGETS)}") from None


def kbuild_dir() -> Path:
    """``kbuild/`` beside the linux trees: ``$ROFOLIO_LINUX_CACHE/kbuild``, else ``~/.cache/rofolio/kbuild``."""
    return debian.linux_cache_dir(source.KERNEL_SERIES).parent / "kbuild"


def _fragments_dir() -> Path:
    return Path(str(resources.files("rofolio.kernelbuild"))) / "fragments"


def options(arch: str, extra: Path | None = None) -> dict[str, Option]:
    """The options a build of ``arch`` asks for: fragments/common.config, then fragments/ARCH.config, then the
    user's ``extra`` fragment, a later one's value of a symbol replacing an earlier one's."""
    folder = _fragments_dir()
    parts = [parse((folder / f"{name}.config").read_text(), f"fragments/{name}.config")
             for name in ("common", target(arch).arch)]
    if extra is not None:
        parts.append(read(extra))
    return merge(*parts)


def cache_key(parts: dict[str, Any]) -> str:
    """The first 16 hex digits of the sha256 of the key parts (sorted JSON)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _fragment_sha256(wanted: dict[str, Option]) -> str:
    """What the options say, not where they were written: the sorted .config lines (Kconfig reads a .config
    in any order), so moving a line or editing a comment does not rebuild."""
    return hashlib.sha256("\n".join(sorted(o.config_line() for o in wanted.values())).encode()).hexdigest()


@dataclass(frozen=True)
class Built:
    """A kernel built from source: where its files are, and how it was made."""

    arch: str
    rfc: bool
    release: str                 # make kernelrelease: what the guest's uname -r says
    image: str                   # what QEMU boots (-kernel)
    config: str                  # the built .config
    system_map: str
    vmlinux: str
    out: str                     # the O= directory: `make -C OUT M=DIR modules` (with make_vars) builds a module
    make_vars: tuple[str, ...]   # ARCH=, CROSS_COMPILE=, LOCALVERSION=: every make against OUT needs them
    source: str                  # the source tree (make -C)
    key: str
    parts: dict[str, Any] = field(default_factory=dict)   # what the key was made of
    patches: tuple[str, ...] = ()
    image_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # source, config, make, total
    built_at: str = ""           # when the build finished (local time, ISO 8601)
    cached: bool = False         # this call found it built

    @property
    def build_seconds(self) -> float:
        return self.seconds.get("total", 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_manifest(cls, data: dict[str, Any], *, cached: bool) -> Built:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields.update(make_vars=tuple(data["make_vars"]), patches=tuple(data.get("patches", ())), cached=cached)
        return cls(**fields)


def _make(t: Target, src: Path, out: Path, *goals: str, rfc: bool, jobs: int | None = None) -> list[str]:
    return ["make", "-C", str(src), f"O={out}", *_make_vars(t, rfc), *([f"-j{jobs}"] if jobs else []), *goals]


def _make_vars(t: Target, rfc: bool) -> tuple[str, ...]:
    cross = (f"CROSS_COMPILE={t.cross_compile}",) if t.cross_compile else ()
    # KBUILD_BUILD_USER/HOST: /proc/version says "(rofolio@rofolio)", not who built it where
    return (f"ARCH={t.kbuild_arch}", *cross, f"LOCALVERSION={LOCALVERSION}{'-rfc' if rfc else ''}",
            "KBUILD_BUILD_USER=rofolio", "KBUILD_BUILD_HOST=rofolio")


def _ensure_tools(t: Target, rfc: bool, log: Callable[[str], None]) -> None:
    """Debian's packages for the build (installed as root, as the oracle's setup does), then the commands."""
    if platform.machine() != HOST:
        raise EnvironmentFailure(f"kernel builds run on an x86-64 host; this one is {platform.machine()}",
                                 "run it on Debian amd64")
    packages = ["make", "gcc", "libc6-dev", *debian.BUILD_PACKAGES, *t.packages, *(["git"] if rfc else [])]
    if shutil.which("dpkg-query") and shutil.which("apt-get"):
        from rofolio.oracle.setup import ensure_system_packages

        ensure_system_packages(packages, log, command="rofolio kernel build")
    commands = ["make", "gcc", "flex", "bison", "bc", "pahole", f"{t.cross_compile}gcc", f"{t.cross_compile}ld",
                *(["git"] if rfc else [])]
    missing = [c for c in dict.fromkeys(commands) if not shutil.which(c)]
    if missing:
        raise EnvironmentFailure(f"missing tools for the kernel build: {', '.join(missing)}",
                                 f"install them (on Debian: apt-get install {' '.join(packages)})")


@contextmanager
def _one_build_at_a_time(folder: Path, log: Callable[[str], None]) -> Iterator[None]:
    """An exclusive lock on ``kbuild/.lock`` for the whole build: two builds on 2 CPUs only slow each other, and
    two of the same key would share an output directory."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another rofolio kernel build to finish (it holds {folder / '.lock'})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cached(entry: Path, key: str) -> Built | None:
    """The entry's build, if its manifest is complete and names files that are there."""
    try:
        data = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("schema") != SCHEMA or data.get("key") != key:
        return None
    try:
        built = Built.from_manifest(data, cached=True)
    except (KeyError, TypeError):
        return None
    if not all(Path(p).is_file() for p in (built.image, built.config, built.system_map)):
        return None
    return built


def _configure(t: Target, src: Path, out: Path, entry: Path, wanted: dict[str, Option], rfc: bool,
               log: Callable[[str], None]) -> None:
    """tinyconfig, the merged fragment onto it, olddefconfig; a failure for any option that did not stick."""
    log(f"make tinyconfig, then the fragment ({len(wanted)} options) with merge_config.sh -m, make olddefconfig")
    run_command(_make(t, src, out, "tinyconfig", rfc=rfc), "make tinyconfig", hint="see the kbuild output above")
    merged = entry / "rofolio.config"
    merged.write_text(render(wanted))
    # merge_config.sh makes its temporary file in the current directory: the output directory, not the source
    run_command([str(src / "scripts" / "kconfig" / "merge_config.sh"), "-m", "-O", str(out), str(out / ".config"),
                 str(merged)], "scripts/kconfig/merge_config.sh -m", cwd=out)
    run_command(_make(t, src, out, "olddefconfig", rfc=rfc), "make olddefconfig")
    got = read_config((out / ".config").read_text())
    lost = unmet(wanted, got)
    if lost:
        lines = [f"{o.where}: {o.config_line()} did not stick (the built .config has "
                 f"{got.get(o.name, 'it unset')})" for o in lost]
        error = EnvironmentFailure if all(o.source.startswith("fragments/") for o in lost) else RofolioError
        raise error("\n".join([f"{len(lost)} option(s) of the fragment are not in the {t.arch} .config:", *lines]),
                    f"the symbol does not exist or a `depends on` of it is unmet (see the source's Kconfig files); "
                    f"add what it needs to the fragment ({out / '.config'})")


def _key(t: Target, wanted: dict[str, Option], patches: source.PatchSeries | None,
         base: source.Source) -> tuple[str, dict[str, Any]]:
    """The cache key of a build and what it is made of: the recipe, the source version, the toolchain (the
    cross one too), the fragment's options and the series' digest."""
    gcc, ld, pahole = debian.toolchain(run_command)
    parts: dict[str, Any] = {"recipe": RECIPE, "arch": t.arch,
                             "source": f"linux-source-{source.KERNEL_SERIES} {base.source_version}",
                             "gcc": gcc, "ld": ld, "pahole": pahole,
                             "fragment_sha256": _fragment_sha256(wanted),
                             "patches_sha256": patches.sha256 if patches is not None else None}
    if t.cross_compile:
        cross_gcc, cross_ld, _ = debian.toolchain(run_command, t.cross_compile)
        parts.update(cross_gcc=cross_gcc, cross_ld=cross_ld)
    return cache_key(parts), parts


def build(arch: str, *, rfc: bool = False, fragment: Path | None = None, force: bool = False,
          log: Callable[[str], None] = lambda _line: None) -> Built:
    """Build Linux 7.2 for ``arch`` (with the RFC series when ``rfc``), or return the cached build.

    ``fragment``: a user's Kconfig fragment merged last (part of the cache key).  ``force``: build again
    from an empty output directory.  ``log`` gets progress lines (every ~15 s during make)."""
    t = target(arch)
    wanted = options(arch, fragment)
    patches = source.rfc_series() if rfc else None
    _ensure_tools(t, rfc, log)
    folder = kbuild_dir()
    made = source.pristine_if_made()
    if not force and made is not None:
        # a finished build needs no lock (its manifest is written last, renamed into place): only building does
        if patches is not None:
            source.check_series(made, patches)
        key, _ = _key(t, wanted, patches, made)
        if (built := _cached(folder / f"{t.arch}{'-rfc' if rfc else ''}-{key}", key)) is not None:
            log(f"cached: built in {built.build_seconds:.0f} s on {built.built_at}")
            return built
    with _one_build_at_a_time(folder, log):
        t0 = time.monotonic()
        base = source.pristine(log)
        src = source.apply_series(base, patches, log) if patches is not None else base
        if patches is not None:
            log(f"the RFC series ({len(patches.patches)} patches) applies to linux-source-{source.KERNEL_SERIES} "
                f"{base.source_version}: {src.path}")
        key, parts = _key(t, wanted, patches, base)
        entry = folder / f"{t.arch}{'-rfc' if rfc else ''}-{key}"
        if not force and (built := _cached(entry, key)) is not None:
            log(f"cached: built in {built.build_seconds:.0f} s on {built.built_at}")
            return built
        if force and entry.exists():
            shutil.rmtree(entry)
        out = entry / OUT
        resuming = (out / ".config").exists()
        out.mkdir(parents=True, exist_ok=True)
        (entry / MANIFEST).unlink(missing_ok=True)
        log(f"{'resuming the unfinished build' if resuming else 'building'} in {entry}")
        seconds = {"source": round(time.monotonic() - t0, 1)}
        t1 = time.monotonic()
        _configure(t, src.path, out, entry, wanted, rfc, log)
        seconds["config"] = round(time.monotonic() - t1, 1)
        jobs = os.cpu_count() or 1
        log(f"make -j{jobs} all modules_prepare (ARCH={t.kbuild_arch}"
            f"{f' CROSS_COMPILE={t.cross_compile}' if t.cross_compile else ''}); the output goes to "
            f"{entry / TRANSCRIPT}")
        t2 = time.monotonic()
        try:
            debian.run_with_progress(_make(t, src.path, out, "all", "modules_prepare", rfc=rfc, jobs=jobs),
                                     f"make ({t.arch}{', rfc' if rfc else ''})", log,
                                     transcript=entry / TRANSCRIPT)
        except OracleError as err:
            raise EnvironmentFailure(f"the {t.arch} kernel build failed: {err.message}",
                                     f"{err.hint}; the next run resumes there, --force starts over") from err
        seconds["make"] = round(time.monotonic() - t2, 1)
        release = run_command(_make(t, src.path, out, "-s", "kernelrelease", rfc=rfc), "make kernelrelease").strip()
        image = out / t.image
        if not image.is_file():
            raise EnvironmentFailure(f"the {t.arch} build made no {t.image} in {out}",
                                     f"see {entry / TRANSCRIPT}; --force starts over")
        written = source.written_after_copy(src)
        if written:
            raise EnvironmentFailure(f"the build wrote into the source copy {src.path}: {', '.join(written)}",
                                     "kbuild with O= must not; the copy shares its files with the oracle's tree")
        seconds["total"] = round(time.monotonic() - t0, 1)
        built = Built(arch=t.arch, rfc=rfc, release=release, image=str(image), config=str(out / ".config"),
                      system_map=str(out / "System.map"), vmlinux=str(out / "vmlinux"), out=str(out),
                      make_vars=_make_vars(t, rfc), source=str(src.path), key=key, parts=parts,
                      patches=src.patches, image_bytes=image.stat().st_size, seconds=seconds,
                      built_at=time.strftime("%Y-%m-%dT%H:%M:%S"), cached=False)
        source.replace_json(entry / MANIFEST, {k: v for k, v in built.to_dict().items() if k != "cached"})
        log(f"built {release} in {seconds['total']:.0f} s (make {seconds['make']:.0f} s): {image}")
        return built
