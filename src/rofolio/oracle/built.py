"""The x86 oracle on kernels rofolio builds: ``--kernel built:7.2`` and ``built:7.2+rfc``.

``rofolio kernel build --arch x86_64 [--rfc]`` makes the kernel (tinyconfig plus rofolio's fragment, from
Debian's linux-source-7.2, with or without the RFC series; taken from its cache where it is there); the oracle's
module and kc are built against that kernel's O= tree; busybox and QEMU are the system's.  The result is an
ordinary oracle ``Install``, so ``rofolio oracle run`` and ``boot`` take it like a Debian kernel.  (A module of
its own because kernelbuild builds on the oracle's setup: oracle.setup cannot import it back.)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rofolio.kernelbuild import build as kernel_build
from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import (
    BUSYBOX,
    MANIFEST,
    Install,
    build_module_and_kc,
    check_kernel,
    ensure_system_packages,
    is_static_elf,
    kernel_root,
    previous_manifest,
    source_hash,
)

__all__ = ["setup_built"]


def setup_built(root: Path | None = None, log: Callable[[str], None] = print, kernel: str = "built:7.2") -> Install:
    """``setup --kernel built:7.2[+rfc]``: the kernel from ``rofolio kernel build``, the module against it."""
    if not check_kernel(kernel).startswith("built:"):
        raise OracleError(f"{kernel} is not a kernel rofolio builds", "use built:7.2 or built:7.2+rfc")
    t0 = time.monotonic()
    root = (root or kernel_root(kernel)).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    ensure_system_packages(["qemu-system-x86", "busybox-static", "make", "gcc", "libc6-dev"], log)
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise OracleError("qemu-system-x86_64 is missing after the install", "apt-get install qemu-system-x86")
    if not is_static_elf(BUSYBOX):
        raise OracleError(f"{BUSYBOX} is missing or not statically linked", "apt-get install busybox-static")
    built = kernel_build("x86_64", rfc=kernel.endswith("+rfc"), log=lambda line: log(f"kernel build: {line}"))
    previous = previous_manifest(root / MANIFEST)
    build = root / "build" / built.key
    digest = source_hash()
    module, kc = build / "dmoracle.ko.stripped", build / "kc.stripped"
    if previous and previous.get("source_hash") == digest and previous.get("key") == built.key \
            and module.exists() and kc.exists():
        log(f"module and kc: up to date in {build}")
    else:
        log(f"building dmoracle.ko and kc in {build} against {built.out}")
        build_module_and_kc(build, Path(built.out), built.make_vars)
    install = Install(root=str(root), kver=built.release, vmlinuz=built.image, module=str(module), kc=str(kc),
                      busybox=str(BUSYBOX), qemu=qemu, source_hash=digest)
    extra = {"kernel": kernel, "key": built.key, "config": built.config, "patches": list(built.patches)}
    (root / MANIFEST).write_text(json.dumps({**asdict(install), **extra,
                                             "setup_seconds": round(time.monotonic() - t0, 1)}, indent=1) + "\n")
    log(f"done in {time.monotonic() - t0:.1f} s: {root / MANIFEST}")
    return install
