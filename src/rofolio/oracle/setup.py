"""``rofolio oracle setup``: what the oracle needs, from Debian's packages, into a cache directory.

Idempotent.  In order:

1. ``apt-get update`` (as root), then the current kernel ABI from
   ``apt-cache depends linux-image-amd64`` (KVER, e.g. ``6.1.0-57-amd64``):
   resolved every time, never hard-coded.  Without the mirror, a complete
   earlier setup is reused with a warning; otherwise the error says so.
2. ``apt-get install`` of what is missing: qemu-system-x86, busybox-static,
   cpio, make, gcc, libc6-dev (for the static ``kc``) and linux-headers-KVER.
   Without root, missing packages are an error that names them.
3. The kernel image: ``apt-get download linux-image-KVER`` into a temporary
   directory, and only ``boot/vmlinuz-KVER`` unpacked into the cache.  The
   package is not installed (it would pull in initramfs-tools and udev).
4. The module ``dmoracle.ko`` and the static /proc/kcore walker ``kc``, built
   from the package's ``kmod/`` sources against the headers; rebuilt only when
   the sources or KVER change.  Both are stripped for the initramfs.
5. ``manifest.json``: what was set up, read by every later oracle command.

The cache is ``$ROFOLIO_ORACLE_DIR`` or ``~/.cache/rofolio/oracle``.

``--kernel debian:7.2`` (any series but the system's 6.1) takes the kernel from
Debian's unstable suite instead, through a private apt state (``debian.py``),
into ``<cache>/debian-7.2/`` with its own manifest; the module is built in a
tree prepared from ``linux-source-7.2`` and cached outside the clone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

from rofolio.oracle.errors import OracleError

__all__ = [
    "BUILT_KERNELS",
    "CACHE_ENV",
    "DEFAULT_KERNEL",
    "MANIFEST",
    "Install",
    "build_module_and_kc",
    "cache_dir",
    "check_kernel",
    "ensure_system_packages",
    "fetch_deb_members",
    "is_static_elf",
    "kernel_root",
    "load_install",
    "packages",
    "previous_manifest",
    "read_manifest",
    "resolve_kver",
    "run_command",
    "setup",
    "source_hash",
]

M = TypeVar("M")

CACHE_ENV = "ROFOLIO_ORACLE_DIR"
MANIFEST = "manifest.json"
KMOD_FILES = ("dmoracle.c", "kc.c", "kcore.h", "kln.h", "Makefile")
BUSYBOX = Path("/bin/busybox")
IMAGE_META = "linux-image-amd64"
DEFAULT_KERNEL = "debian:6.1"  # the system suite's kernel (bookworm); any other series comes from unstable


def packages(kver: str) -> list[str]:
    """The Debian packages the oracle needs for kernel ABI ``kver``."""
    return ["qemu-system-x86", "busybox-static", "cpio", "make", "gcc", "libc6-dev", f"linux-headers-{kver}"]


def cache_dir() -> Path:
    """$ROFOLIO_ORACLE_DIR, else ~/.cache/rofolio/oracle."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rofolio" / "oracle"


@dataclass(frozen=True)
class Install:
    """A completed setup: the files a guest boot needs."""

    root: str
    kver: str
    vmlinuz: str
    module: str
    kc: str
    busybox: str
    qemu: str
    source_hash: str

    @property
    def kernel_series(self) -> str:
        """'6.1' for '6.1.0-57-amd64': the version the model runs with."""
        major, minor = self.kver.split(".")[:2]
        return f"{major}.{minor}"

    def missing(self) -> list[str]:
        return [p for p in (self.vmlinuz, self.module, self.kc, self.busybox, self.qemu) if not Path(p).exists()]


BUILT_KERNELS = ("built:7.2", "built:7.2+rfc")  # rofolio kernel build's 7.2, without and with the RFC series


def check_kernel(kernel: str) -> str:
    """``kernel`` as the oracle takes it (debian:MAJOR.MINOR or built:7.2[+rfc]); OracleError otherwise."""
    from rofolio.oracle import debian

    kernel = kernel.strip()
    if kernel.startswith("built:"):
        if kernel not in BUILT_KERNELS:
            raise OracleError(f"unknown kernel {kernel!r}", f"use one of {', '.join(BUILT_KERNELS)}")
        return kernel
    debian.parse_kernel(kernel)
    return kernel


def kernel_root(kernel: str = DEFAULT_KERNEL) -> Path:
    """Where the setup of ``kernel`` lives: the cache itself for debian:6.1, ``<cache>/debian-7.2`` for other
    Debian kernels, ``<cache>/built-7.2[+rfc]`` for the kernels rofolio builds."""
    from rofolio.oracle import debian

    if check_kernel(kernel).startswith("built:"):
        return cache_dir() / kernel.replace(":", "-")
    major, minor = debian.parse_kernel(kernel)
    return cache_dir() if kernel == DEFAULT_KERNEL else cache_dir() / f"debian-{major}.{minor}"


def load_install(root: Path | None = None, kernel: str = DEFAULT_KERNEL) -> Install:
    """The manifest of an earlier ``rofolio oracle setup``; an error that says to run it otherwise."""
    root = root or kernel_root(kernel)
    flag = "" if kernel == DEFAULT_KERNEL else f" --kernel {kernel}"
    install = read_manifest(root / MANIFEST, Install, "the oracle" + (f" for {kernel}" if flag else ""),
                            f"run `rofolio oracle setup{flag}` first (as root, with the Debian mirror reachable)")
    if install.source_hash != source_hash():
        raise OracleError(f"the module in {root} was built from other sources than this rofolio's kmod/",
                          f"run `rofolio oracle setup{flag}` again to rebuild it")
    return install


def read_manifest(path: Path, kind: type[M], what: str, hint: str) -> M:
    """A setup's manifest (a dataclass with ``missing()``), checked: it exists, parses and names existing files."""
    if not path.exists():
        raise OracleError(f"{what} is not set up: no {path}", hint)
    try:
        data = json.loads(path.read_text())
        install = kind(**{k: data[k] for k in kind.__dataclass_fields__})  # type: ignore[attr-defined]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OracleError(f"cannot read {path}: {err}", hint) from err
    if install.missing():
        raise OracleError(f"the setup of {what} in {path.parent} is incomplete: missing "
                          f"{', '.join(install.missing())}", hint)
    return install


def source_hash(names: tuple[str, ...] = KMOD_FILES) -> str:
    """A digest of the kmod/ sources a build came from (a changed source means a rebuild)."""
    digest = hashlib.sha256()
    folder = resources.files("rofolio.oracle") / "kmod"
    for name in names:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ helpers
def run_command(cmd: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                hint: str = "") -> str:
    """Run a setup command; its output, or an OracleError with the last lines of it."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    except FileNotFoundError as err:
        raise OracleError(f"{what}: {cmd[0]} not found", hint or "install it, or run on Debian") from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise OracleError(f"{what} failed (exit {proc.returncode}):\n{tail}", hint)
    return proc.stdout + proc.stderr


def _is_root() -> bool:
    return os.geteuid() == 0


def _installed(pkg: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def resolve_kver() -> str | None:
    """KVER from `apt-cache depends linux-image-amd64` ("Depends: linux-image-6.1.0-57-amd64")."""
    proc = subprocess.run(["apt-cache", "depends", IMAGE_META], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "Depends:" and parts[1].startswith("linux-image-"):
            return parts[1][len("linux-image-"):]
    return None


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP program header (statically linked)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        p_type = int.from_bytes(data[phoff + i * phentsize: phoff + i * phentsize + 4], "little")
        if p_type == 3:  # PT_INTERP
            return False
    return True


def previous_manifest(path: Path) -> dict | None:
    """What an earlier setup wrote, to skip work it already did; None if there is none."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------- setup
def setup(root: Path | None = None, log: Callable[[str], None] = print, kernel: str = DEFAULT_KERNEL) -> Install:
    """Install, download and build what the oracle needs; returns the completed setup."""
    if check_kernel(kernel).startswith("built:"):
        raise OracleError(f"{kernel} is set up by rofolio.oracle.built.setup_built()",
                          f"run `rofolio oracle setup --kernel {kernel}`")
    if kernel != DEFAULT_KERNEL:
        return setup_unstable(root or kernel_root(kernel), log, kernel)
    t0 = time.monotonic()
    root = (root or cache_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if not shutil.which("apt-get") or not shutil.which("dpkg-query"):
        raise OracleError("apt-get not found: the oracle installs its tools from Debian's packages",
                          "run it on Debian or Ubuntu")
    previous = previous_manifest(root / MANIFEST)
    root_user = _is_root()
    offline = False
    if root_user:
        log("apt-get update")
        proc = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, check=False)
        failed = proc.returncode != 0 or any(line.startswith(("W: Failed to fetch", "E: ", "W: Some index files"))
                                             for line in (proc.stdout + proc.stderr).splitlines())
        if failed:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
            if previous is None:
                raise OracleError(f"apt-get update failed; is the Debian mirror reachable?\n{tail}",
                                  "check the network and /etc/apt/sources.list; nothing is cached to fall back on")
            log(f"warning: apt-get update failed (mirror unreachable?); reusing KVER {previous['kver']}\n{tail}")
            offline = True
    else:
        log("not root: skipping apt-get update and install; only checking and building")
    kver = None if offline else resolve_kver()
    if kver is None:
        if previous is None:
            raise OracleError(f"cannot resolve the kernel ABI: `apt-cache depends {IMAGE_META}` names no "
                              "linux-image package",
                              "run as root so apt-get update fills the package lists, with the mirror reachable")
        kver = previous["kver"]
        log(f"warning: using the cached KVER {kver}")
    log(f"KVER {kver}")

    missing = [p for p in packages(kver) if not _installed(p)]
    if missing:
        if not root_user:
            raise OracleError(f"missing packages: {', '.join(missing)}",
                              f"run `rofolio oracle setup` as root, or: apt-get install {' '.join(missing)}")
        if offline:
            raise OracleError(f"missing packages {', '.join(missing)} and the Debian mirror is unreachable",
                              "check the network and run setup again")
        log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run_command(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], "apt-get install", env=env,
             hint="is the Debian mirror reachable, and does the package exist for this release?")
    else:
        log("packages: all installed")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise OracleError("qemu-system-x86_64 is missing after the install", "apt-get install qemu-system-x86")
    if not is_static_elf(BUSYBOX):
        raise OracleError(f"{BUSYBOX} is missing or not statically linked", "apt-get install busybox-static")
    headers = Path(f"/usr/src/linux-headers-{kver}")
    if not headers.is_dir():
        raise OracleError(f"{headers} is missing", f"apt-get install linux-headers-{kver}")

    vmlinuz = root / "kimg" / kver / f"vmlinuz-{kver}"
    if not vmlinuz.exists():
        if offline:
            raise OracleError(f"the kernel image {vmlinuz.name} is not cached and the mirror is unreachable",
                              "check the network and run setup again")
        log(f"apt-get download linux-image-{kver} (unpacking boot/vmlinuz-{kver} only)")
        fetch_deb_members(f"linux-image-{kver}", {f"./boot/vmlinuz-{kver}": vmlinuz})
    else:
        log(f"kernel image: {vmlinuz}")

    build = root / "build" / kver
    digest = source_hash()
    module, kc = build / "dmoracle.ko.stripped", build / "kc.stripped"
    if previous and previous.get("source_hash") == digest and previous.get("kver") == kver \
            and module.exists() and kc.exists():
        log(f"module and kc: up to date in {build}")
    else:
        log(f"building dmoracle.ko and kc in {build}")
        build_module_and_kc(build, headers)
    install = Install(root=str(root), kver=kver, vmlinuz=str(vmlinuz), module=str(module), kc=str(kc),
                      busybox=str(BUSYBOX), qemu=qemu, source_hash=digest)
    (root / MANIFEST).write_text(json.dumps({**asdict(install), "setup_seconds": round(time.monotonic() - t0, 1)},
                                            indent=1) + "\n")
    log(f"done in {time.monotonic() - t0:.1f} s: {root / MANIFEST}")
    return install


def fetch_deb_members(package: str, members: dict[str, Path], hint: str = "is the Debian mirror reachable?") -> None:
    """apt-get download ``package`` and unpack ``members`` (path in the .deb -> destination); nothing is installed."""
    with tempfile.TemporaryDirectory(prefix="rofolio-oracle-deb-") as tmp:
        if _is_root() and _has_user("_apt"):
            shutil.chown(tmp, user="_apt")  # apt downloads as _apt; avoids the "unsandboxed" warning
        run_command(["apt-get", "download", "-q", package], f"apt-get download {package}", cwd=Path(tmp), hint=hint)
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise OracleError(f"apt-get download {package} produced no .deb", "run the setup again")
        unpack = Path(tmp) / "unpack"
        unpack.mkdir()
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
        proc = subprocess.run(["tar", "-x", "-C", str(unpack), *members], stdin=tar.stdout, capture_output=True,
                              text=True, check=False)
        tar.wait()
        for member, dest in members.items():
            src = unpack / member
            if proc.returncode != 0 or not src.exists():
                raise OracleError(f"cannot unpack {member} from {debs[0].name}: {proc.stderr.strip()}",
                                  "check dpkg-deb and tar")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def build_module_and_kc(build: Path, headers: Path, make_vars: tuple[str, ...] = ()) -> None:
    """dmoracle.ko and kc from kmod/ in ``build``, against the kernel tree ``headers`` (make_vars: what every
    make against that tree needs, e.g. a built kernel's ARCH= and LOCALVERSION=)."""
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    folder = resources.files("rofolio.oracle") / "kmod"
    for name in KMOD_FILES:
        (build / name).write_bytes((folder / name).read_bytes())
    out = run_command(["make", f"KDIR={headers}", *make_vars], "building the module and kc", cwd=build,
               hint=f"check the compiler and {headers}")
    warnings = [line for line in out.splitlines() if "warning:" in line or "error:" in line]
    if warnings:
        raise OracleError("the module build printed warnings:\n" + "\n".join(warnings[:10]),
                          "fix kmod/ so it builds cleanly against these headers")
    if not (build / "dmoracle.ko").exists() or not (build / "kc").exists():
        raise OracleError(f"the build produced no dmoracle.ko or kc in {build}", "see the make output")
    run_command(["strip", "--strip-debug", "-o", str(build / "dmoracle.ko.stripped"), str(build / "dmoracle.ko")],
         "strip dmoracle.ko")
    run_command(["strip", "-o", str(build / "kc.stripped"), str(build / "kc")], "strip kc")


# ------------------------------------------------- a kernel from unstable
def _deb_file(deb_dir: Path, candidates: list[str]) -> Path | None:
    for rel in candidates:
        if (deb_dir / rel).is_file():
            return deb_dir / rel
    return None


def ensure_system_packages(wanted: list[str], log: Callable[[str], None],
                            command: str = "rofolio oracle setup") -> None:
    """The system's (bookworm's) packages ``command`` needs; installed as root, else an error naming them."""
    missing = [p for p in wanted if not _installed(p)]
    if not missing:
        log("packages: all installed")
        return
    if not _is_root():
        raise OracleError(f"missing packages: {', '.join(missing)}",
                          f"run `{command}` as root, or: apt-get install {' '.join(missing)}")
    log(f"apt-get update; apt-get install {' '.join(missing)} (the system's own suite)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_command(["apt-get", "update", "-q"], "apt-get update", env=env)
    run_command(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], "apt-get install", env=env,
                hint="is the Debian mirror reachable?")


def setup_unstable(root: Path, log: Callable[[str], None], kernel: str) -> Install:
    """``setup --kernel debian:MAJOR.MINOR``: the image from unstable (private apt), the module against a tree
    prepared from linux-source under the system's gcc (cached in ``debian.linux_cache_dir``)."""
    from rofolio.oracle import debian

    t0 = time.monotonic()
    major, minor = debian.parse_kernel(kernel)
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise OracleError("apt-get not found: the oracle takes its kernel from Debian's packages",
                          "run it on Debian or Ubuntu")
    previous = previous_manifest(root / MANIFEST)
    ensure_system_packages(["qemu-system-x86", "busybox-static", "cpio", "make", "gcc", "libc6-dev",
                             *debian.BUILD_PACKAGES], log)
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise OracleError("qemu-system-x86_64 is missing after the install", "apt-get install qemu-system-x86")
    if not is_static_elf(BUSYBOX):
        raise OracleError(f"{BUSYBOX} is missing or not statically linked", "apt-get install busybox-static")

    apt = debian.PrivateApt(cache_dir() / f"apt-{debian.SUITE}")
    log(f"apt-get update of {apt.suite} in a private state ({apt.root}); nothing is installed from it")
    try:
        apt.update(run_command)
        names = apt.pkgnames(run_command, "linux-binary-") + apt.pkgnames(run_command, "linux-image-")
        res = debian.resolve(names, major, minor, apt.suite)
        source_pkg = f"linux-source-{res.series}"
        source_version = apt.policy(run_command, source_pkg)
        if source_version is None or source_version.split("-")[0] != res.upstream:
            raise OracleError(f"{apt.suite} has {res.image_package} but {source_pkg} "
                              f"{source_version or 'is missing'}", "the mirror may be mid-sync; try again later")
    except OracleError as err:
        if previous is None or not Path(previous.get("tree", "")).is_dir():
            raise
        log(f"warning: {err}; reusing the earlier setup "
            f"(KVER {previous['kver']})")
        res = debian.Resolved(kver=previous["kver"], upstream=previous["upstream"], series=previous["series"],
                              image_package=previous["image_package"])
        source_version = previous["source_version"]
    if res.note:
        log(f"note: {res.note}")
    log(f"KVER {res.kver} (Linux {res.upstream}, linux-source-{res.series} {source_version})")

    gcc, ld, pahole = debian.toolchain(run_command)
    tree = debian.linux_cache_dir(res.series) / debian.tree_key(source_version, gcc, ld, pahole)
    vmlinuz = root / "kimg" / res.kver / f"vmlinuz-{res.kver}"
    done = debian.stamp(tree)
    tree_ok = done is not None and done.get("kver") == res.kver
    downloads = ([] if vmlinuz.exists() else [res.image_package]) + \
        ([] if tree_ok else [f"linux-headers-{res.kver}", f"linux-source-{res.series}"])
    if downloads and apt.policy(run_command, f"linux-base-{res.kver}") and not tree_ok:
        downloads.append(f"linux-base-{res.kver}")  # the 7.x layout keeps the config there
    if downloads:
        t_dl = time.monotonic()
        tree.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rofolio-debs-", dir=tree.parent) as tmp:
            log(f"apt-get download {' '.join(downloads)}")
            debs = apt.download(run_command, downloads, Path(tmp) / "debs")
            log(f"  downloaded {sum(d.stat().st_size for d in debs) >> 20} MiB in {time.monotonic() - t_dl:.0f} s")
            unpacked = Path(tmp) / "x"
            for deb in debs:
                if not deb.name.startswith("linux-source-"):
                    run_command(["dpkg-deb", "-x", str(deb), str(unpacked)], f"dpkg-deb -x {deb.name}")
            mods = f"usr/lib/modules/{res.kver}"
            if not vmlinuz.exists():
                image = _deb_file(unpacked, [f"{mods}/vmlinuz", f"boot/vmlinuz-{res.kver}"])
                if image is None:
                    raise OracleError(f"no vmlinuz in {res.image_package}", "check the package's layout")
                vmlinuz.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, vmlinuz)
            if not tree_ok:
                config = _deb_file(unpacked, [f"{mods}/config", f"boot/config-{res.kver}",
                                              f"usr/src/linux-headers-{res.kver}/.config"])
                symvers = _deb_file(unpacked, [f"usr/src/linux-headers-{res.kver}/Module.symvers"])
                if config is None or symvers is None:
                    raise OracleError(f"no config or Module.symvers for {res.kver} in {', '.join(downloads)}",
                                      "check the packages' layout")
                source_deb = next(d for d in debs if d.name.startswith("linux-source-"))
                debian.prepare_tree(tree, source_deb, config, symvers, res.kver, res.upstream, log, run_command)
                dropped = debian.config_differences(config, tree / ".config")
                debian.write_stamp(tree, {"kver": res.kver, "source_version": source_version, "gcc": gcc, "ld": ld,
                                          "pahole": pahole,
                                          "config_differences": dropped})
                log(f"  olddefconfig under gcc {gcc} changed {len(dropped)} of Debian's options "
                    f"(compiler- and tool-dependent ones; listed in {tree / debian.STAMP})")
    else:
        log(f"kernel image {vmlinuz}; tree {tree}: cached")

    build = root / "build" / res.kver
    digest = source_hash()
    module, kc = build / "dmoracle.ko.stripped", build / "kc.stripped"
    if previous and previous.get("source_hash") == digest and previous.get("kver") == res.kver \
            and previous.get("tree") == str(tree) and module.exists() and kc.exists():
        log(f"module and kc: up to date in {build}")
    else:
        log(f"building dmoracle.ko and kc in {build} against {tree}")
        build_module_and_kc(build, tree)
    install = Install(root=str(root), kver=res.kver, vmlinuz=str(vmlinuz), module=str(module), kc=str(kc),
                      busybox=str(BUSYBOX), qemu=qemu, source_hash=digest)
    extra = {"kernel": kernel, "upstream": res.upstream, "series": res.series, "image_package": res.image_package,
             "source_version": source_version, "suite": apt.suite, "tree": str(tree), "note": res.note}
    (root / MANIFEST).write_text(json.dumps({**asdict(install), **extra,
                                             "setup_seconds": round(time.monotonic() - t0, 1)}, indent=1) + "\n")
    log(f"done in {time.monotonic() - t0:.1f} s: {root / MANIFEST}")
    return install
