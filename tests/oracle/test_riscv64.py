"""The riscv64 oracle on recorded boots, its page-table walk on a made-up table, and real boots (ROFOLIO_ORACLE=1).

data/riscv64/*.json were recorded with ``rofolio oracle riscv64-boot --keep-log DIR`` (8G Sv48, 2G Sv39, and
8G Sv48 after a memfd_secret() page was faulted in)
on Debian's 7.2.13+deb14-riscv64 under qemu-system-riscv64 7.2 (TCG, -M virt, OpenSBI fw_dynamic, -smp 1): the
guest's image layout, its KFENCE pool, the linear map as read from swapper_pg_dir through QEMU's monitor,
and the vmalloc pages boot had made read-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rofolio.oracle import riscv64
from rofolio.oracle.errors import OracleError
from tests.oracle.conftest import DATA

KVER = "7.2.13+deb14-riscv64"


def recorded(name: str) -> riscv64.GuestMap:
    return riscv64.replay(json.loads((DATA / "riscv64" / f"riscv64-{name}.json").read_text()))


@pytest.mark.parametrize("name", ["8G-sv48", "2G-sv39", "8G-sv48-secretmem"])
def test_the_model_builds_the_recorded_linear_maps_line_for_line(name: str) -> None:
    """Given the placements the boot made (image at 0x80200000, the KFENCE pool memblock chose, the vmalloc
    page boot made read-only), the model's linear map is the guest's, every ptdump line."""
    guest = recorded(name)
    have, inputs = riscv64.model_lines(guest)
    assert have == riscv64.guest_lines(guest)
    assert inputs[0] == "image at 0x80200000"


def test_a_guest_that_panics_before_init_is_booted_once_more_and_the_report_says_so(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rofolio.oracle.guest import Boot

    died = Boot([], 0, False, 3.0, "OpenSBI v1.5\nKernel panic - not syncing: Attempted to kill the idle task!\n", "")
    guests: list[object] = [riscv64.NotAtInit("did not reach /init's marker", "see the serial log", died),
                            recorded("2G-sv39")]

    def boot_guest(*_a: object, **_k: object) -> riscv64.GuestMap:
        got = guests.pop(0)
        if isinstance(got, Exception):
            raise got
        return got  # type: ignore[return-value]

    monkeypatch.setattr(riscv64, "boot_guest", boot_guest)
    config = tmp_path / "config"
    config.write_text("CONFIG_KFENCE=y\n")
    install = riscv64.Riscv64Install("/c", KVER, "/c/Image", str(config), "/c/bb", "qemu-system-riscv64", "/c/fw")
    said: list[str] = []
    [rep] = riscv64.run(install, [("2G", 39, False)], 60.0, None, said.append)
    note = ("the first guest stopped (QEMU exit 0), its console saying 'Kernel panic - not syncing: Attempted to "
            "kill the idle task!', before /init; booted again")
    assert not guests and rep.agree and rep.notes == [note] and f"2G, Sv39: {note}" in said
    assert f"  note: {note}" in riscv64.render(rep) and rep.to_dict()["notes"] == [note]


def test_the_recorded_boots_show_the_rules_the_model_follows() -> None:
    big, small = recorded("8G-sv48"), recorded("2G-sv39")
    assert (big.kver, big.sv, small.sv) == (KVER, 48, 39)
    levels = {48: {r[2] for r in big.linear}, 39: {r[2] for r in small.linear}}
    assert levels == {48: {1, 2, 3}, 39: {1, 2}}  # 1G leaves need Sv48 (best_map_size())
    # memblock's top-down pool: the top of the 8G machine's RAM, below the 2G machine's device tree and initrd
    assert (big.kfence_pool, small.kfence_pool) == (0x27FE00000, 0xF7E00000)
    # one vmalloc page made read-only at boot splits its linear alias down to 4K: the only lone 4K RO run
    lone = [r for r in big.linear if r[2] == 1 and not r[3] & 4]
    assert [(r[4] >> 12, r[1] - r[0]) for r in lone] == [(pfn, 4096) for pfn in big.readonly_vmalloc_pfns]


def test_a_secretmem_page_leaves_the_map_with_g_still_set() -> None:
    """secretmem_fault() -> set_direct_map_invalid_noflush(): its 2M leaf split to PTEs, V cleared on the one
    PTE (0xe7 -> 0xe6) and G kept, which pte_present() counts (_PAGE_PROT_NONE): the entry reads as present to
    kernel_page_present() while the CPU faults on it."""
    guest = recorded("8G-sv48-secretmem")
    (pfn,) = guest.invalid_pfns
    [entry] = [r for r in guest.linear if r[4] == pfn << 12]
    assert (entry[1] - entry[0], entry[2], entry[3]) == (4096, 1, 0xE6)
    lo = entry[0] & ~((2 << 20) - 1)
    assert {r[2] for r in guest.linear if r[0] < lo + (2 << 20) and lo < r[1]} == {1}  # the whole 2M is in PTEs


def test_the_secretmem_program_is_a_static_riscv64_elf() -> None:
    elf = riscv64.secretmem_program()
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 243  # EM_RISCV
    assert int.from_bytes(elf[24:32], "little") == 0x10000 + 64 + 56  # the entry: the code after the headers
    assert int.from_bytes(elf[120:124], "little") == (447 << 20) | (17 << 7) | 0x13  # li a7, __NR_memfd_secret


class FakeMonitor:
    """Page tables in a dict: physical address -> 512 entries."""

    def __init__(self, tables: dict[int, list[int]]) -> None:
        self.tables = tables

    def table(self, pa: int) -> list[int]:
        return self.tables[pa]


def _entry(pa: int, bits: int) -> int:
    return (pa >> 12) << 10 | bits


def test_the_walk_reads_tables_and_leaves_in_the_kernel_half() -> None:
    """Sv48: a PGD entry in the upper half points to a PUD table with one 1G leaf and one PMD table holding a
    2M leaf and a PTE table; a non-zero entry without V is a leaf too (set_direct_map_invalid_noflush()'s),
    a zero one is skipped, the user half is not read."""
    pgd, pud, pmd, pte = 0x1000, 0x2000, 0x3000, 0x4000
    tables = {pgd: [0] * 512, pud: [0] * 512, pmd: [0] * 512, pte: [0] * 512}
    tables[pgd][0] = _entry(pud, 1)  # user half: outside the ranges
    tables[pgd][351] = _entry(pud, 1)  # 0xffffaf8000000000, PAGE_OFFSET for Sv48
    tables[pud][0] = _entry(0x80000000, 0xE7)
    tables[pud][1] = _entry(pmd, 1)
    tables[pmd][0] = _entry(0xC0000000, 0xE3)
    tables[pmd][1] = _entry(pte, 1)
    tables[pte][0] = _entry(0xC0200000, 0xE7)
    tables[pte][1] = _entry(0xC0201000, 0xE6)  # V clear: a leaf the CPU will not use, read as one
    tables[pte][2] = 0  # none: skipped
    page_offset = 0xFFFFAF8000000000
    leaves, read = riscv64.walk_kernel(FakeMonitor(tables), pgd, 48,  # type: ignore[arg-type]
                                       [(page_offset, page_offset + (64 << 40))])
    assert read == 4
    assert [(va - page_offset, level, e & 0x3FF, pa) for va, level, e, pa in leaves] == [
        (0, 3, 0xE7, 0x80000000), (1 << 30, 2, 0xE3, 0xC0000000), ((1 << 30) + (2 << 20), 1, 0xE7, 0xC0200000),
        ((1 << 30) + (2 << 20) + 4096, 1, 0xE6, 0xC0201000)]


def test_resolve_takes_the_newest_72_binary_package() -> None:
    names = ["linux-image-7.2.13+deb14-riscv64", "linux-binary-7.2.13+deb14-riscv64", "linux-binary-7.2.9-riscv64",
             "linux-binary-7.3.1-riscv64", "linux-image-riscv64", "linux-binary-7.2.13+deb14-amd64"]
    assert riscv64.resolve(names) == ("linux-binary-7.2.13+deb14-riscv64", KVER)
    with pytest.raises(OracleError, match=r"no riscv64 7\.2 kernel"):
        riscv64.resolve(["linux-binary-7.3.1-riscv64"])


def test_without_setup_the_command_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROFOLIO_ORACLE_DIR", str(tmp_path))
    from rofolio.cli import main

    result = CliRunner().invoke(main, ["oracle", "riscv64-boot"])
    assert result.exit_code == 4  # the environment: no setup yet
    assert "the riscv64 oracle is not set up" in result.output and "Traceback" not in result.output


@pytest.mark.oracle
@pytest.mark.skipif(os.environ.get("ROFOLIO_ORACLE") != "1",
                    reason="boots a kernel under QEMU: set ROFOLIO_ORACLE=1 (after the riscv64 setup)")
def test_real_riscv64_boots_agree_with_the_model() -> None:
    install = riscv64.load_install()
    reports = riscv64.run(install, [("8G", 48, False), ("2G", 39, False), ("8G", 48, True)], timeout=180,
                          keep_log=None, progress=None)
    assert [(r.sv, r.agree) for r in reports] == [(48, True), (39, True), (48, True)], \
        [riscv64.render(r) for r in reports]
    assert any(i.startswith("secretmem page at pfn") for i in reports[2].inputs)
    assert reports[0].facts["CONFIG_PTDUMP_DEBUGFS"] == "n" and reports[0].facts["CONFIG_KFENCE_SAMPLE_INTERVAL"] == "0"
