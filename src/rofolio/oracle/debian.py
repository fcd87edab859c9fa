"""A newer Debian kernel for the oracle, from Debian's unstable suite, without touching the system's apt.

``rofolio oracle setup --kernel debian:7.2`` (any ``debian:MAJOR.MINOR`` but the
system's own 6.1) goes through here:

1. A PRIVATE apt state (``PrivateApt``): its own sources.list naming unstable,
   its own lists, cache and an empty dpkg status, passed to ``apt-get``/
   ``apt-cache`` with ``-o Dir::...``.  Only ``apt-get update`` of that state and
   ``apt-get download`` are run: nothing from unstable is ever installed.
2. The ABI, resolved every time from the package names unstable carries
   (``linux-binary-7.2.13+deb14-amd64``, or the older ``linux-image-…-amd64``
   layout): the newest of the asked series, else the newest of the same major
   (said in the log and the manifest).  Never a literal version.
3. The image ``vmlinuz`` from the binary package; Debian's ``config`` (the base
   package) and ``Module.symvers`` (the headers package).
4. A kernel tree prepared from ``linux-source-MAJOR.MINOR`` with that config
   under the system's gcc (``make olddefconfig && make modules_prepare``):
   Debian's own headers carry host tools built against a newer glibc.  The tree
   is cached OUTSIDE the clone in ``~/.cache/rofolio/linux-MAJOR.MINOR/
   <source version>_gcc-<v>_ld-<v>/`` (``$ROFOLIO_LINUX_CACHE`` overrides the
   parent), so it is prepared once per source version and toolchain and other
   builds can share it.  The module gets the vermagic of Debian's image
   (``KVER SMP preempt mod_unload``); Debian's kernels have CONFIG_MODULE_SIG
   without _FORCE, so the unsigned module loads with a taint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rofolio.oracle.errors import OracleError

__all__ = [
    "BUILD_PACKAGES", "LINUX_CACHE_ENV", "PrivateApt", "Resolved", "candidate_version", "linux_cache_dir",
    "parse_kernel", "prepare_tree", "resolve", "toolchain", "tree_key",
]

SUITE = "unstable"
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LINUX_CACHE_ENV = "ROFOLIO_LINUX_CACHE"
STAMP = "rofolio-prepared.json"
# System (bookworm) packages the tree's host tools need, beyond the oracle's own.
# dwarves (pahole) keeps CONFIG_DEBUG_INFO_BTF(_MODULES) and SCHED_CLASS_EXT on in olddefconfig: without it,
# struct module loses its btf_* fields and the module's init/exit land at the wrong offsets ("Invalid
# relocation target, existing value is nonzero" in .gnu.linkonce.this_module when it is loaded).
BUILD_PACKAGES = ["flex", "bison", "bc", "libelf-dev", "libssl-dev", "xz-utils", "dwarves"]

_SERIES_RE = re.compile(r"^debian:(\d+)\.(\d+)$")
# linux-binary-7.2.13+deb14-amd64 (7.x layout) or linux-image-6.12.9-amd64 (older); not -cloud/-rt/-dbg/-unsigned.
_PKG_PATTERN = r"^linux-(binary|image)-((\d+)\.(\d+)\.(\d+)[^-]*)-{arch}$"


def parse_kernel(kernel: str) -> tuple[int, int]:
    """(major, minor) of ``debian:MAJOR.MINOR``; OracleError otherwise."""
    m = _SERIES_RE.match(kernel.strip())
    if not m:
        raise OracleError(f"unknown kernel {kernel!r}", "use debian:MAJOR.MINOR, e.g. debian:6.1 or debian:7.2")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class PrivateApt:
    """apt-get/apt-cache on a state directory of their own, naming one suite; the system's apt is untouched."""

    root: Path
    suite: str = SUITE
    mirror: str = MIRROR
    arch: str = "amd64"

    def options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::status={r / 'state' / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={r / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            "-o", f"APT::Architecture={self.arch}",
            "-o", f"APT::Architectures={self.arch}",
            "-o", "APT::Sandbox::User=root",  # the state lives under $HOME, where _apt cannot write
        ]

    def sources_line(self) -> str:
        return f"deb [signed-by={KEYRING}] {self.mirror} {self.suite} main\n"

    def command(self, tool: str, *args: str) -> list[str]:
        return [tool, "-q", *self.options(), *args]

    def init(self) -> None:
        for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(self.sources_line())
        (self.root / "state" / "status").touch()

    def update(self, run: Callable[..., str]) -> None:
        self.init()
        out = run(self.command("apt-get", "update"), f"apt-get update ({self.suite}, private state {self.root})",
                  hint="is the Debian mirror reachable?")
        if any(line.startswith(("W: Failed to fetch", "E: ", "W: Some index files")) for line in out.splitlines()):
            raise OracleError(f"apt-get update of {self.suite} failed:\n{out.strip()[-600:]}",
                              "is the Debian mirror reachable?")

    def pkgnames(self, run: Callable[..., str], prefix: str) -> list[str]:
        return run(self.command("apt-cache", "pkgnames", prefix), f"apt-cache pkgnames {prefix}").split()

    def policy(self, run: Callable[..., str], package: str) -> str | None:
        return candidate_version(run(self.command("apt-cache", "policy", package), f"apt-cache policy {package}"))

    def download(self, run: Callable[..., str], packages: list[str], dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        run(self.command("apt-get", "download", *packages), f"apt-get download {' '.join(packages)}", cwd=dest,
            hint="is the Debian mirror reachable?")
        debs = []
        for pkg in packages:
            found = sorted(dest.glob(f"{pkg}_*.deb"))
            if not found:
                raise OracleError(f"apt-get download {pkg} produced no .deb in {dest}", "run the setup again")
            debs.append(found[-1])
        return debs


def candidate_version(policy_output: str) -> str | None:
    """The ``Candidate:`` of ``apt-cache policy`` output; None for a package without one."""
    for line in policy_output.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


@dataclass(frozen=True)
class Resolved:
    """What unstable carries for a requested series."""

    kver: str            # the ABI, e.g. 7.2.13+deb14-amd64
    upstream: str        # 7.2.13
    series: str          # 7.2 (may differ from the requested one: see note)
    image_package: str   # linux-binary-KVER (or linux-image-KVER)
    note: str = ""       # non-empty when the requested series was not there


def _key(upstream: str) -> tuple[int, ...]:
    return tuple(int(x) for x in upstream.split("."))


def resolve(names: list[str], major: int, minor: int, suite: str = SUITE, arch: str = "amd64") -> Resolved:
    """The newest ``arch`` kernel of MAJOR.MINOR among package ``names``, else the newest MAJOR.x, else an error."""
    found: dict[str, tuple[str, str]] = {}  # kver -> (package, upstream)
    pattern = re.compile(_PKG_PATTERN.format(arch=re.escape(arch)))
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        kver = f"{m.group(2)}-{arch}"
        # the 7.x layout splits the image into linux-binary-*: prefer it to the linux-image-* meta package
        if kver not in found or m.group(1) == "binary":
            found[kver] = (name, ".".join(m.group(i) for i in (3, 4, 5)))
    if not found:
        raise OracleError(f"{suite} carries no {arch} kernel image package (linux-binary-*-{arch})",
                          "is the private apt state updated? run the setup again")

    def order(kver: str) -> tuple[tuple[int, ...], str]:
        return _key(found[kver][1]), kver

    same = [k for k in found if _key(found[k][1])[:2] == (major, minor)]
    note = ""
    if same:
        kver = max(same, key=order)
    else:
        newer = [k for k in found if _key(found[k][1])[0] == major]
        if not newer:
            raise OracleError(f"{suite} carries no {major}.x kernel (it has "
                              f"{', '.join(sorted({'.'.join(found[k][1].split('.')[:2]) for k in found}))})",
                              "ask for a series it carries")
        kver = max(newer, key=order)
        note = (f"{suite} no longer carries {major}.{minor}; using the newest {major}.x it has, "
                f"{found[kver][1]}")
    package, upstream = found[kver]
    return Resolved(kver=kver, upstream=upstream, series=".".join(upstream.split(".")[:2]), image_package=package,
                    note=note)


# ---------------------------------------------------------------- the tree
def linux_cache_dir(series: str) -> Path:
    """$ROFOLIO_LINUX_CACHE/linux-SERIES, else ~/.cache/rofolio/linux-SERIES (shared by every clone)."""
    env = os.environ.get(LINUX_CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "rofolio"
    return base / f"linux-{series}"


def toolchain(run: Callable[..., str], prefix: str = "") -> tuple[str, str, str]:
    """(gcc, ld, pahole) versions of the system's toolchain, e.g. ('12.2.0', '2.40', '1.24'); with a
    CROSS_COMPILE ``prefix`` (``aarch64-linux-gnu-``) those of the cross gcc and ld (pahole is the host's)."""
    gcc = run([f"{prefix}gcc", "-dumpfullversion"], f"{prefix}gcc -dumpfullversion").strip().splitlines()[0]
    ld_line = run([f"{prefix}ld", "--version"], f"{prefix}ld --version").splitlines()[0]
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)\s*$", ld_line)
    pahole = run(["pahole", "--version"], "pahole --version", hint="apt-get install dwarves").strip().lstrip("v")
    return gcc, (m.group(1) if m else ld_line.split()[-1]), pahole


def tree_key(source_version: str, gcc: str, ld: str, pahole: str) -> str:
    """The cache key of a prepared tree: the source package's version and the toolchain (pahole sets the config)."""
    return re.sub(r"[^A-Za-z0-9.+~_-]", "_", f"{source_version}_gcc-{gcc}_ld-{ld}_pahole-{pahole}")


def make_command(tree: Path, target: str, localversion: str, jobs: int) -> list[str]:
    """make in the tree; LOCALVERSION makes kernel.release the Debian ABI (7.2.13 + '+deb14-amd64')."""
    return ["make", "-C", str(tree), f"-j{jobs}", f"LOCALVERSION={localversion}", target]


def run_with_progress(cmd: list[str], what: str, log: Callable[[str], None], every: float = 15.0,
                      transcript: Path | None = None) -> None:
    """Run a long make, logging its latest output line every ``every`` seconds; OracleError with the tail on failure.
    ``transcript``: a file that gets the whole output (appended)."""
    t0 = time.monotonic()
    last_report = t0
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    keep = transcript.open("a") if transcript is not None else None
    for line in proc.stdout:
        if keep is not None:
            keep.write(line)
        tail = [*tail, line.rstrip()][-15:]
        now = time.monotonic()
        if now - last_report >= every:
            log(f"  {what}: {now - t0:.0f} s, {line.strip()[:100]}")
            last_report = now
    rc = proc.wait()
    if keep is not None:
        keep.close()
    if rc != 0:
        raise OracleError(f"{what} failed (exit {rc}):\n" + "\n".join(tail),
                          f"see the make output in {transcript}" if transcript else "see the make output")


def prepare_tree(tree: Path, source_deb: Path, config: Path, symvers: Path, kver: str, upstream: str,
                 log: Callable[[str], None], run: Callable[..., str]) -> None:
    """Unpack linux-source's tarball into ``tree``, put Debian's config and Module.symvers in, modules_prepare."""
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=".preparing-", dir=tree.parent))
    try:
        log(f"unpacking {source_deb.name} ({source_deb.stat().st_size >> 20} MiB)")
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(source_deb)], stdout=subprocess.PIPE)
        proc = subprocess.run(["tar", "-x", "-C", str(tmp), "--wildcards", "./usr/src/linux-source-*.tar.xz"],
                              stdin=tar.stdout, capture_output=True, text=True, check=False)
        tar.wait()
        tarballs = sorted((tmp / "usr" / "src").glob("linux-source-*.tar.xz"))
        if proc.returncode or not tarballs:
            raise OracleError(f"no linux-source tarball in {source_deb.name}: {proc.stderr.strip()}",
                              "check dpkg-deb and tar")
        run(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)], f"unpacking {tarballs[0].name}")
        tarballs[0].unlink()
        src = [p for p in tmp.iterdir() if p.name.startswith("linux-source-")]
        if len(src) != 1 or not (src[0] / "Makefile").exists():
            raise OracleError(f"unexpected layout of {tarballs[0].name}", "check the linux-source package")
        work = src[0]
        log(f"  unpacked in {time.monotonic() - t0:.0f} s")
        shutil.copyfile(config, work / ".config")
        shutil.copyfile(symvers, work / "Module.symvers")
        localversion = kver[len(upstream):]  # '+deb14-amd64'
        jobs = os.cpu_count() or 1
        log("make olddefconfig (Debian's config under the system's gcc)")
        run(make_command(work, "olddefconfig", localversion, jobs), "make olddefconfig")
        log(f"make modules_prepare (-j{jobs})")
        run_with_progress(make_command(work, "modules_prepare", localversion, jobs), "modules_prepare", log)
        release = (work / "include" / "config" / "kernel.release").read_text().strip()
        if release != kver:
            raise OracleError(f"the prepared tree's release is {release}, not {kver}",
                              "check LOCALVERSION and the source version")
        if tree.exists():
            shutil.rmtree(tree)
        work.rename(tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"tree prepared in {time.monotonic() - t0:.0f} s: {tree}")


def config_differences(debian_config: Path, tree_config: Path) -> list[str]:
    """Options set in Debian's config that the tree's olddefconfig dropped or changed (compiler-dependent ones)."""
    def read(p: Path) -> dict[str, str]:
        out = {}
        for line in p.read_text().splitlines():
            if line.startswith("CONFIG_"):
                k, _, v = line.partition("=")
                out[k] = v
        return out

    a, b = read(debian_config), read(tree_config)
    return sorted(f"{k}: {a[k]} -> {b.get(k, 'unset')}" for k in a if a[k] != b.get(k))


def stamp(tree: Path) -> dict | None:
    try:
        return json.loads((tree / STAMP).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(tree: Path, data: dict) -> None:
    (tree / STAMP).write_text(json.dumps(data, indent=1) + "\n")
