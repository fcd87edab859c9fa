"""Malformed scenario files: each mistake gets its own message, the file and line, and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD_STEP = '[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n'
HEAD = 'name = "t"\n[machine]\nmem = "8G"\n'

CASES = [
    # (id, file text, expected message fragment, expected line or None)
    ("toml-syntax", 'name = "t\n' + GOOD_STEP, "not valid TOML", 1),
    # tomllib says "at end of document" with no line for a file cut short: the last line (found by the loader fuzz)
    ("toml-cut-short", HEAD + '[[steps]]\nop = "set_memory_ro"\npa = ', "not valid TOML", 6),
    ("unknown-top-key", HEAD.replace('name = "t"', 'name = "t"\nnmae = "u"') + GOOD_STEP, "unknown key 'nmae'", 2),
    ("missing-name", '[machine]\nmem = "8G"\n' + GOOD_STEP, "missing key 'name'", None),
    ("no-steps", HEAD, "missing key 'steps'", None),
    ("unknown-op", HEAD + GOOD_STEP.replace("set_memory_ro", "set_memory_rwx"), "unknown op 'set_memory_rwx'", 5),
    ("missing-pages", HEAD + '[[steps]]\nop = "set_memory_ro"\npa = "6G"\n', "missing key 'pages'", 4),
    ("zero-pages", HEAD + GOOD_STEP.replace("pages = 1", "pages = 0"), "greater than or equal to 1", 7),
    ("pages-not-a-number", HEAD + GOOD_STEP.replace("pages = 1", 'pages = "many"'), "valid integer", 7),
    ("foreign-arch-option", HEAD + 'arch = "arm64"\ngbpages = false\n' + GOOD_STEP,
     "gbpages is not an option of arm64 machines", 5),
    ("two-targets", HEAD + GOOD_STEP.replace('pa = "6G"', 'pa = "6G"\nva = 0xffff888180000000'),
     "give exactly one of pa, va, mapping or folio (got pa, va)", 4),
    ("no-target", HEAD + '[[steps]]\nop = "set_memory_ro"\npages = 1\n',
     "give exactly one of pa, va, mapping or folio", 4),
    ("bad-size", HEAD.replace('"8G"', '"8Q"') + GOOD_STEP, "cannot parse size '8Q'", 3),
    ("size-without-a-unit", HEAD.replace('"8G"', "8") + GOOD_STEP, 'a size without a unit is bytes: 8 GiB is '
     'written "8G"', 3),
    ("unknown-machine-key", HEAD + "gbpage = false\n" + GOOD_STEP, "unknown key 'gbpage'", 4),
    ("unsupported-arch", HEAD + 'arch = "sparc"\n' + GOOD_STEP, "unknown architecture 'sparc'", 4),
    ("old-kernel", HEAD + 'kernel = "5.10"\n' + GOOD_STEP, "older than the oldest modelled kernel", 4),
    ("pa-in-a-hole", HEAD + GOOD_STEP.replace('"6G"', '"3584M"'), "is not RAM on this machine", 6),
    # the last page below the EBDA is RAM only up to 0x9fc00 (QEMU's e820): not a whole page of RAM
    ("pa-in-a-partial-page", HEAD + GOOD_STEP.replace('"6G"', '"0x9f000"'),
     "the page at 0x9f000 is only partly RAM on this machine: a step acts on whole pages", 6),
    ("past-end-of-ram", HEAD + GOOD_STEP.replace("pages = 1", "pages = 1000000"), "run past the end of RAM", 7),
    ("mapping-before-vmap", HEAD + '[[steps]]\nop = "set_memory_ro"\nmapping = "buf"\npages = 1\n',
     "uses mapping 'buf' before a step names it", None),
    ("phase-when-running", HEAD + GOOD_STEP + '[[steps]]\nop = "phase"\nto = "running"\n',
     'start = "running" (the default) already boots fully', None),
    ("phase-when-start-says-running", HEAD.replace("[machine]", 'start = "running"\n[machine]') + GOOD_STEP
     + '[[steps]]\nop = "phase"\nto = "running"\n', 'start = "running" already boots fully', None),
    ("unknown-expectation", HEAD + GOOD_STEP + "expect = { splits = 1 }\n", "unknown expectation 'splits'", 8),
    # refused by the architecture at boot, not by the schema: the error names [machine] (found by the loader fuzz)
    ("secondary-cpu-without-a-second", 'name = "t"\n[machine]\narch = "arm64"\nmem = "2G"\ncpus = 1\n'
     'secondary_without_bbml2 = true\n[[steps]]\nop = "compact"\n', "machine: a secondary CPU without BBML2 needs", 2),
    ("mem-and-map", HEAD + 'memory_map = [[0, "2G"]]\n' + GOOD_STEP, "give mem or memory_map, not both", 3),
    ("zero-cpus", HEAD + "cpus = 0\n" + GOOD_STEP, "greater than or equal to 1", 4),
    ("bad-phase", 'name = "t"\nstart = "initcalls"\n' + GOOD_STEP + '[[steps]]\nop = "phase"\nto = "halted"\n',
     "input should be 'running'", 9),
    ("as-twice", HEAD + '[[steps]]\nop = "alloc"\nas = "a"\n[[steps]]\nop = "alloc"\nas = "a"\n',
     "as = 'a' already names the folio of step 1", 9),
    ("as-a-built-in", HEAD + '[[steps]]\nop = "alloc"\nas = "zero_page"\n', "already names the built-in folio", 6),
    ("byte-order-mark", "\ufeff" + HEAD + GOOD_STEP, "a byte-order mark (U+FEFF), which TOML does not allow", 1),
]


@pytest.mark.parametrize(("case", "text", "message", "line"), CASES, ids=[c[0] for c in CASES])
def test_malformed_scenario_gives_its_own_error_and_exit_2(tmp_path: Path, case: str, text: str, message: str,
                                                           line: int | None) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "rofolio", "run", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert message.lower() in out.stderr.lower(), out.stderr
    if line is not None:
        assert f"{path}:{line}:" in out.stderr, out.stderr
    assert out.stdout == ""  # nothing ran half-way


def test_at_least_fifteen_distinct_mistakes_are_covered() -> None:
    assert len({c[2] for c in CASES}) >= 15


def test_unknown_builtin_name_lists_the_builtins() -> None:
    out = subprocess.run([sys.executable, "-m", "rofolio", "run", "no-such-scenario"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "built-ins: " in out.stderr and "rfc-demo" in out.stderr


def _run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rofolio", "run", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_a_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # nothing ever writes it: reading it would hang
    out = _run(fifo)
    assert out.returncode == 2 and f"{fifo}: not a regular file" in out.stderr


def test_an_oversized_scenario_is_refused_with_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text(HEAD + GOOD_STEP + "#" * (2 << 20))
    out = _run(big)
    assert out.returncode == 2 and "larger than 1024 KiB" in out.stderr


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path: Path) -> None:
    # found by the loader fuzz: the error named the byte's offset in the file but neither a line nor a key
    path = tmp_path / "latin1.toml"
    path.write_bytes(HEAD.replace('"t"', '"caf\xe9"').encode("latin-1") + GOOD_STEP.encode())
    out = subprocess.run([sys.executable, "-m", "rofolio", "run", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{path}:1: not UTF-8 text: byte 0xe9 at column 12 (invalid continuation byte)" in out.stderr
