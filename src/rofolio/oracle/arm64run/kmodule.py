"""``dmoracle_arm64.ko``: the oracle's arm64 module, built out of tree against a kernel from ``rofolio kernel build``.

``make -C <O dir> M=<dir> ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules`` (the ``Built``'s make
variables) in a scratch directory holding the module source and a one-line Kbuild; the stripped ``.ko`` is
cached under ``<oracle cache>/arm64run/<kernel key>-<source hash>/`` and rebuilt only when either changes.
A module built with warnings is refused: they have been real bugs before.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import cache_dir, run_command, source_hash

__all__ = ["MODULE", "SOURCE", "module_path"]

SOURCE = "dmoracle_arm64.c"
MODULE = "dmoracle_arm64.ko"


def module_path(built: Any, log: Callable[[str], None] = lambda _line: None) -> Path:
    """The module for the kernel ``built`` (a kernelbuild ``Built``), from the cache or built now."""
    digest = source_hash((SOURCE,))
    folder = cache_dir() / "arm64run" / f"{built.key}-{digest}"
    ko = folder / MODULE
    if ko.is_file():
        return ko
    log(f"building {MODULE} against {built.release} ({built.out})")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rofolio-kmod-arm64-") as tmp:
        work = Path(tmp)
        (work / SOURCE).write_bytes((resources.files("rofolio.oracle") / "kmod" / SOURCE).read_bytes())
        (work / "Kbuild").write_text(f"obj-m := {Path(SOURCE).stem}.o\n")
        out = run_command(["make", "-C", built.out, f"M={work}", *built.make_vars, "modules"],
                          f"building {MODULE}", cwd=work,
                          hint="is the kernel build complete (rofolio kernel build --arch arm64)?")
        warnings = [line for line in out.splitlines() if "warning:" in line or "error:" in line]
        if warnings:
            raise OracleError(f"{MODULE} built with warnings:\n" + "\n".join(warnings[:12]),
                              f"fix kmod/{SOURCE}")
        cross = next((v.split("=", 1)[1] for v in built.make_vars if v.startswith("CROSS_COMPILE=")), "")
        run_command([f"{cross}strip", "--strip-debug", "-o", str(work / "stripped.ko"), str(work / MODULE)],
                    f"strip {MODULE}")
        shutil.copyfile(work / "stripped.ko", ko)
    return ko
