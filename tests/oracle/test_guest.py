"""Serial-log parsing and the initramfs, on recorded logs."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest

from rofolio.oracle import guest
from rofolio.oracle.errors import OracleError
from rofolio.oracle.setup import Install
from tests.oracle.conftest import KVER, recorded


def test_a_module_less_boot_log_parses() -> None:
    log = guest.parse_log(recorded("boot-8G-max-la57.serial.log"))
    assert log.began and log.complete and not log.panic
    assert log.uname == KVER
    assert log.gbpages and not log.la57
    assert log.boot_counters == {"DirectMap4k": 24448, "DirectMap2M": 4169728, "DirectMap1G": 6291456,
                                 "direct_map_level2_splits": 0, "direct_map_level3_splits": 0}
    assert log.ramdisk == (0xBFE5C000, 0xBFFE0000)
    assert log.initrd_freed_kb == 1552
    assert log.max_pfn_mapped == 0x240000
    assert [(s, e) for s, e, kind in log.e820 if kind == "usable"] == [
        (0, 0x9FC00), (0x100000, 0xBFFE0000), (0x100000000, 0x240000000)]
    assert log.insmod_rc is None and not log.steps  # no module in a boot-fidelity run
    walk = guest.clip(log.walk_direct, 0, 0x240000000)
    assert walk[0] == guest.Run(0, 0x98000, "4K", True, True, True, "WB", True, True)
    assert guest.Run(0x40000000, 0x80000000, "1G", True, True, True, "WB", True, True) in walk
    assert guest.Run(0xBFFE0000, 0x100000000, "none") in walk  # none PTEs, then the [3G, 4G) hole
    pack = [(va - guest.MODULES_VADDR, pa, size // 4096) for va, pa, size in log.walk_modules]
    assert pack == [(0, 0x237C89000, 7), (0x7000, 0x237CA8000, 88), (0x5F000, 0x100300000, 256),
                    (0x15F000, 0x237D00000, 161)]


def test_without_pdpe1gb_the_guest_has_no_directmap1g_line() -> None:
    log = guest.parse_log(recorded("boot-8G-max-la57-nopdpe1gb.serial.log"))
    assert not log.gbpages
    assert "DirectMap1G" not in log.boot_counters
    assert log.boot_counters["DirectMap2M"] == 8364032


def test_an_experiment_log_parses_into_steps() -> None:
    log = guest.parse_log(recorded("experiments-8G.serial.log"))
    assert log.complete and log.insmod_rc == 0 and log.uname == KVER
    syms = log.syms()
    assert syms["set_memory_ro"] and syms["set_direct_map_invalid_noflush"] and syms["copy_to_kernel_nofault"]
    assert not syms["set_memory_p"]  # static in 6.1: the module falls back to change_page_attr_set_clr
    assert log.after_insmod_scan()
    grab = log.step("1.g1")
    assert grab is not None and grab.command == "grabpa 0 0x40a00000 512" and grab.ret() == 0
    ro = log.step("1.2")
    assert ro is not None and ro.verb == "ro" and ro.ret() == 0
    assert ro.delta()["DirectMap1G"] == -1048576 and ro.delta()["direct_map_level3_splits"] == 1
    (scan,) = ro.scans()
    assert (scan.map, scan.start, scan.end) == ("direct", 0x40A00000, 0x40C00000)
    assert [r.describe() for r in scan.runs] == ["2M RO NX WB G D"]
    assert ro.states()["after"]["level"] == "2M"
    probe = log.step("1.3")
    assert probe is not None and probe.ret() == -14 and probe.oops() is None


def test_a_plain_store_to_a_read_only_page_is_an_oops_in_the_child() -> None:
    log = guest.parse_log(recorded("experiments-8G.serial.log"))
    write = log.step("1.4")
    assert write is not None and write.command == "write 0 16"
    oops = write.oops()
    assert oops is not None
    assert oops.splitlines()[0] == "BUG: unable to handle page fault for address: ffff888040a10000"
    assert "PMD 8000000040a001e1" in oops
    assert write.rc == 137  # the child shell was killed; init survived
    assert not any(r.get("phase") == "stored" for r in write.results())


def test_the_pa_command_reports_under_its_operation() -> None:
    step = guest.GuestStep("6.2", "pa rw 0x2004000 1", module=["cmd=rw pa=0x2004000 n=1 va=0xffff888002004000 "
                                                               "ret=0 via=set_memory_rw"])
    assert step.verb == "rw" and step.ret() == 0


def test_scan_runs_are_clipped_to_the_scanned_range() -> None:
    scans = guest.parse_scans([
        "run pa=0x40000000-0x80000000 level=1G P=1 RW=1 NX=1 PSE=1 PCD=0 PWT=0 PAT=0 G=1 D=1",
        "cmd=scan map=direct start=0x40a00000 end=0x40c00000 ret=0 runs=1 printed=1 truncated=0",
        "run pa=0x2000000-0x2200000 level=2M P=1 RW=0 NX=1 PSE=1 PCD=1 PWT=0 PAT=0 G=1 D=1",
        "cmd=scan map=high start=0x2000000 end=0x2200000 ret=0 runs=1 printed=1 truncated=0",
    ])
    assert [(s.map, s.runs) for s in scans] == [
        ("direct", [guest.Run(0x40A00000, 0x40C00000, "1G", True, True, True, "WB", True, True)]),
        ("high", [guest.Run(0x2000000, 0x2200000, "2M", True, False, True, "UC-", True, True)])]


def test_cache_modes_follow_linuxs_pat_table() -> None:
    assert guest.cache_mode(False, False, False) == "WB"
    assert guest.cache_mode(True, False, False) == "UC-"
    assert guest.cache_mode(False, True, False) == "WC"
    assert guest.cache_mode(True, True, False) == "UC"


def test_a_truncated_log_is_incomplete() -> None:
    text = recorded("experiments-8G.serial.log")
    log = guest.parse_log(text[: len(text) // 2])
    assert log.began and not log.complete


def _fake_install(tmp_path, module_size: int = 1000) -> Install:  # type: ignore[no-untyped-def]
    files = {}
    for name, size in (("busybox", 5000), ("kc", 3000), ("dmoracle.ko", module_size)):
        path = tmp_path / name
        path.write_bytes(bytes(range(256)) * (size // 256 + 1))
        files[name] = str(path)
    return Install(root=str(tmp_path), kver=KVER, vmlinuz=str(tmp_path / "vmlinuz"), module=files["dmoracle.ko"],
                   kc=files["kc"], busybox=files["busybox"], qemu="/bin/true", source_hash="x")


def _gunzip_first_member(image: bytes) -> bytes:
    """The gzip member before the zero padding (the kernel's unpacker skips the zeros too)."""
    d = zlib.decompressobj(wbits=31)
    raw = d.decompress(image)
    assert d.eof and not d.unused_data.strip(b"\0")
    return raw


def _cpio_names(raw: bytes) -> list[str]:
    names, at = [], 0
    while raw[at:at + 6] == b"070701":
        fields = [int(raw[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = raw[at + 110: at + 110 + namesize - 1].decode()
        names.append(name)
        at += 110 + namesize
        at += (4 - at % 4) % 4
        at += filesize
        at += (4 - at % 4) % 4
        if name == "TRAILER!!!":
            break
    return names


def test_the_initramfs_is_padded_to_a_fixed_size_and_holds_the_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    install = _fake_install(tmp_path)
    image = guest.build_initramfs(install, 'step "1.1" "ro 0 0 512"\n')
    assert len(image) == guest.INITRD_SIZE  # so QEMU loads it where the boot profile measured it
    raw = _gunzip_first_member(image)
    names = _cpio_names(raw)
    assert {"init", "bin/busybox", "kc", "dmoracle.ko", "steps.sh", "dev/console"} <= set(names)
    assert names[-1] == "TRAILER!!!"
    assert b'step "1.1" "ro 0 0 512"' in raw
    without = _cpio_names(_gunzip_first_member(guest.build_initramfs(install, None)))
    assert "dmoracle.ko" not in without and "steps.sh" not in without


def test_an_initramfs_too_large_for_the_fixed_size_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    install = _fake_install(tmp_path)
    big = tmp_path / "big.ko"
    big.write_bytes(os.urandom(guest.INITRD_SIZE))
    install = Install(**{**install.__dict__, "module": str(big)})
    with pytest.raises(OracleError, match="more than the fixed"):
        guest.build_initramfs(install, "")


def test_the_qemu_command_is_the_notes_one() -> None:
    install = Install(root="/c", kver=KVER, vmlinuz="/c/vmlinuz", module="m", kc="k", busybox="b",
                      qemu="qemu-system-x86_64", source_hash="x")
    cmd = guest.GuestConfig().qemu_command(install, Path("/tmp/i.gz"))
    assert cmd == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max,-la57", "-smp", "1", "-m", "8G",
                   "-nographic", "-no-reboot", "-kernel", "/c/vmlinuz", "-initrd", "/tmp/i.gz",
                   "-append", "console=ttyS0 panic=-1 quiet nokaslr"]
    json.dumps(cmd)


def test_only_a_guest_that_never_reached_init_is_booted_again() -> None:
    """boot_again_before_init(): no /init marker (a hang or an early panic) means one more boot, with a note;
    a guest that reached /init and then hung or failed is the caller's to report, booted once."""
    def runs(*boots: guest.Boot) -> tuple[guest.Boot, int]:
        queue = list(boots)
        got = guest.boot_again_before_init(lambda: queue.pop(0))
        return got, len(boots) - len(queue)

    hung_early = guest.Boot([], -9, True, 180.0, "Linux version 7.2\nsmpboot: Allowing 2 CPUs\n", "")
    hung_late = guest.Boot([], -9, True, 180.0, f"{guest.BEGIN}\nEXP 1 x86-10\n", "")
    ok = guest.Boot([], 0, False, 8.0, f"{guest.BEGIN}\n=== ORACLE END\n", "")
    assert runs(ok) == (ok, 1)
    assert runs(hung_late, ok) == (hung_late, 1)
    again, boots = runs(hung_early, ok)
    assert boots == 2 and again.serial == ok.serial and again.notes == (
        "the first guest hung (QEMU killed it after 180.0 s), its console saying 'smpboot: Allowing 2 CPUs', "
        "before /init; booted again",)
    twice, boots = runs(hung_early, hung_early)
    assert boots == 2 and twice.timed_out and len(twice.notes) == 1  # a second failure is returned as it is


def test_a_guest_that_loads_no_module_is_booted_again_after_a_panic_past_init() -> None:
    """boot_again_before_init(panic_after_init=True), for the guests whose /init loads no module: a kernel panic
    after /init cannot be the experiment's, so that guest is booted once more and the note says it came after
    /init; a guest that only hung after /init, or panicked with a module loaded, is booted once."""
    def runs(*boots: guest.Boot, panic_after_init: bool) -> tuple[guest.Boot, int]:
        queue = list(boots)
        got = guest.boot_again_before_init(lambda: queue.pop(0), panic_after_init=panic_after_init)
        return got, len(boots) - len(queue)

    panic_late = guest.Boot([], 0, False, 30.0, f"{guest.BEGIN}\nKC WALK\n"
                            "Kernel panic - not syncing: Fatal exception in interrupt\n", "")
    hung_late = guest.Boot([], -9, True, 180.0, f"{guest.BEGIN}\nKC WALK\n", "")
    ok = guest.Boot([], 0, False, 8.0, f"{guest.BEGIN}\n=== ORACLE END\n", "")
    assert runs(panic_late, ok, panic_after_init=False) == (panic_late, 1)
    assert runs(hung_late, ok, panic_after_init=True) == (hung_late, 1)
    again, boots = runs(panic_late, ok, panic_after_init=True)
    assert boots == 2 and again.serial == ok.serial and again.notes == (
        "the first guest stopped (QEMU exit 0), its console saying 'Kernel panic - not syncing: Fatal exception "
        "in interrupt', after /init, which loads no module; booted again",)
    twice, boots = runs(panic_late, panic_late, panic_after_init=True)
    assert boots == 2 and guest.panicked(twice.serial) and len(twice.notes) == 1
