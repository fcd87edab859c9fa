"""Boot records from the recorded Debian 6.1 guests: the placements each guest made, read from its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.oracle.guest import parse_log
from rofolio.oracle.record import record_of

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("log", ["boot-2G-max-la57.serial.log", "boot-8G-max-la57.serial.log",
                                 "boot-8G-max-la57-nopdpe1gb.serial.log", "experiments-8G.serial.log"])
def test_a_guest_log_holds_its_initrd_and_bpf_pack(log: str) -> None:
    parsed = parse_log((DATA / log).read_text())
    record = record_of(parsed, log)
    assert record.initrd == (parsed.ramdisk[0], parsed.ramdisk[1] - parsed.ramdisk[0])  # type: ignore[index]
    (va, pages), = record.bpf_packs
    assert va == 0xFFFFFFFFC0000000 and sum(n for _, n in pages) == 512  # one pack: 512 pages
    assert record.source == log


def test_the_record_of_the_8g_guest_is_what_its_module_area_walk_showed() -> None:
    """The pages the 6.1 guest's BPF JIT pack had (the measured profile of earlier versions held the same)."""
    record = record_of(parse_log((DATA / "boot-8G-max-la57.serial.log").read_text()))
    assert record.bpf_packs == ((0xFFFFFFFFC0000000, ((0x237C89000, 7), (0x237CA8000, 88), (0x100300000, 256),
                                                       (0x237D00000, 161))),)
    assert record.initrd == (0xBFE5C000, 388 * 4096)  # the oracle's initramfs, padded to 0x183800 bytes


def test_a_guest_without_a_walk_gives_an_empty_record() -> None:
    from rofolio.oracle.guest import GuestLog

    assert record_of(GuestLog()).bpf_packs == () and record_of(GuestLog()).initrd is None
