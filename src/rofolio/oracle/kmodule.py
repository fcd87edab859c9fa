"""The oracle's modules built out of tree against a kernel from ``rofolio kernel build`` (``dmoracle_arm64.ko``
for ``rofolio oracle arm64-run``, ``rfctest.ko`` for ``rofolio oracle rfc``).

``make -C <O dir> M=<dir> <the Built's make variables> modules`` in a scratch directory holding the module
source, the headers the modules share (``kln.h``) and a one-line Kbuild; the stripped ``.ko`` is cached under
``<oracle cache>/modules/<kernel key>-<module>-<source hash>/`` and rebuilt only when either changes.  A module
built with warnings is refused: they have been real bugs before.
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

__all__ = ["HEADERS", "module_for"]

HEADERS = ("kln.h",)  # what every module includes besides the kernel's headers


def module_for(built: Any, source: str, log: Callable[[str], None] = lambda _line: None) -> Path:
    """``kmod/<source>`` built against ``built`` (a kernelbuild ``Built``), from the cache or built now."""
    stem = Path(source).stem
    module = f"{stem}.ko"
    folder = cache_dir() / "modules" / f"{built.key}-{stem}-{source_hash((source, *HEADERS))}"
    ko = folder / module
    if ko.is_file():
        return ko
    log(f"building {module} against {built.release} ({built.out})")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"rofolio-kmod-{stem}-") as tmp:
        work = Path(tmp)
        for name in (source, *HEADERS):
            (work / name).write_bytes((resources.files("rofolio.oracle") / "kmod" / name).read_bytes())
        (work / "Kbuild").write_text(f"obj-m := {stem}.o\n")
        out = run_command(["make", "-C", built.out, f"M={work}", *built.make_vars, "modules"],
                          f"building {module}", cwd=work,
                          hint=f"is the kernel build complete (rofolio kernel build --arch {built.arch})?")
        warnings = [line for line in out.splitlines() if "warning:" in line or "error:" in line]
        if warnings:
            raise OracleError(f"{module} built with warnings:\n" + "\n".join(warnings[:12]), f"fix kmod/{source}")
        cross = next((v.split("=", 1)[1] for v in built.make_vars if v.startswith("CROSS_COMPILE=")), "")
        run_command([f"{cross}strip", "--strip-debug", "-o", str(work / "stripped.ko"), str(work / module)],
                    f"strip {module}")
        shutil.copyfile(work / "stripped.ko", ko)
    return ko
