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
    "CACHE_ENV", "MANIFEST", "Install", "cache_dir", "fetch_deb_members", "is_static_elf", "load_install", "packages",
    "previous_manifest", "read_manifest", "resolve_kver", "run_command", "setup", "source_hash",
]

M = TypeVar("M")

CACHE_ENV = "ROFOLIO_ORACLE_DIR"
MANIFEST = "manifest.json"
KMOD_FILES = ("dmoracle.c", "kc.c", "kcore.h", "Makefile")
BUSYBOX = Path("/bin/busybox")
IMAGE_META = "linux-image-amd64"


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


def load_install(root: Path | None = None) -> Install:
    """The manifest of an earlier ``rofolio oracle setup``; an error that says to run it otherwise."""
    root = root or cache_dir()
    install = read_manifest(root / MANIFEST, Install, "the oracle",
                            "run `rofolio oracle setup` first (as root, with the Debian mirror reachable)")
    if install.source_hash != source_hash():
        raise OracleError(f"the module in {root} was built from other sources than this rofolio's kmod/",
                          "run `rofolio oracle setup` again to rebuild it")
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
def setup(root: Path | None = None, log: Callable[[str], None] = print) -> Install:
    """Install, download and build what the oracle needs; returns the completed setup."""
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
        _build(build, headers)
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


def _build(build: Path, headers: Path) -> None:
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    folder = resources.files("rofolio.oracle") / "kmod"
    for name in KMOD_FILES:
        (build / name).write_bytes((folder / name).read_bytes())
    out = run_command(["make", f"KDIR={headers}"], "building the module and kc", cwd=build,
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
