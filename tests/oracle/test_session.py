"""Grouping experiments into boots, and the guest's CPU as the model sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.oracle import bootcheck, guest, session
from rofolio.oracle.setup import Install
from tests.oracle.conftest import DATA, KVER, recorded

INSTALL = Install(root="/nowhere", kver=KVER, vmlinuz="v", module="m", kc="k", busybox="b", qemu="q", source_hash="x")


def _write(tmp: Path, name: str, body: str, machine: str = 'mem = "8G"') -> str:
    path = tmp / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[machine]\n{machine}\n' + body)
    return str(path)


def _ro(pa: str, pages: int = 1) -> str:
    return f'[[steps]]\nop = "set_memory_ro"\npa = "{pa}"\npages = {pages}\n'


def _groups(sources: list[str], cpu: str = "max,-la57") -> list[list[str]]:
    """Grouped as after one earlier 8G boot of the guest (the recorded one), whose BPF pack split [4G, 5G)."""
    from dataclasses import replace

    from rofolio.oracle import guest
    from tests.oracle.conftest import recorded

    root = Path(sources[0]).parent / "install"
    install = replace(INSTALL, root=str(root))
    session.remember_record(install, 8 << 30, cpu, 1, guest.parse_log(recorded("boot-8G-max-la57.serial.log")))
    exps = session.load_experiments(sources, None, cpu)
    session.prepare(exps, install, 1)
    return [[e.scenario.name for e in g] for g in session.group(exps)]


def test_without_an_earlier_boot_experiments_in_one_1g_region_are_kept_apart(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "c", _ro("0x200000000")), _write(tmp_path, "d", _ro("0x200400000"))]
    exps = session.load_experiments(sources, None, "max,-la57")
    session.prepare(exps, INSTALL, 1)  # no record: the model places no pack, [8G, 9G) stays one 1G leaf
    assert [[e.scenario.name for e in g] for g in session.group(exps)] == [["c"], ["d"]]


def test_experiments_in_different_1g_leaves_or_2m_regions_share_a_boot(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "a", _ro("5G")), _write(tmp_path, "b", _ro("6G")),
               _write(tmp_path, "c", _ro("0x200000000")), _write(tmp_path, "d", _ro("0x200400000"))]
    assert _groups(sources) == [["a", "b", "c", "d"]]


def test_experiments_in_the_same_1g_leaf_do_not(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "a", _ro("6G")), _write(tmp_path, "b", _ro("0x1bfe00000"))]
    assert _groups(sources) == [["a"], ["b"]]


def test_the_same_4m_block_of_2m_leaves_is_shared_by_nobody(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "a", _ro("0x200000000")), _write(tmp_path, "b", _ro("0x200200000"))]
    assert _groups(sources) == [["a"], ["b"]]


def test_experiments_holding_most_1g_leaves_are_placed_first(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "one", _ro("6G")), _write(tmp_path, "two", _ro("0x17ffff000", 2)),
               _write(tmp_path, "other", _ro("7G"))]
    assert _groups(sources) == [["two", "other"], ["one"]]


def test_machines_that_differ_boot_separately(tmp_path: Path) -> None:
    sources = [_write(tmp_path, "big", _ro("0x200000000")),
               _write(tmp_path, "small", _ro("0x40000000"), 'mem = "2G"'),
               _write(tmp_path, "nogb", _ro("0x300000000"), 'mem = "8G"\ngbpages = false')]
    exps = session.load_experiments(sources, None, "max,-la57")
    assert [(e.mem >> 30, e.cpu) for e in exps] == [(8, "max,-la57"), (2, "max,-la57"), (8, "max,-la57,-pdpe1gb")]
    assert _groups(sources) == [["big"], ["small"], ["nogb"]]


def test_mem_from_the_command_line_wins(tmp_path: Path) -> None:
    (exp,) = session.load_experiments([_write(tmp_path, "a", _ro("1G"))], "2G", "max,-la57")
    assert exp.mem == 2 << 30


def test_cpu_strings() -> None:
    assert session.predicted_gbpages("max,-la57")
    assert not session.predicted_gbpages("max,-la57,-pdpe1gb")
    assert not session.predicted_gbpages("qemu64")
    assert session.predicted_gbpages("qemu64,+pdpe1gb")
    assert session.predicted_la57("max") and not session.predicted_la57("max,-la57")
    assert session.qemu_mem(8 << 30) == "8G" and session.qemu_mem(1536 << 20) == "1536M"


def test_footprint_of_a_range_across_a_1g_boundary() -> None:
    from rofolio.oracle import model
    from rofolio.scenario.loader import parse

    sc = parse('name = "t"\n[machine]\nmem = "8G"\n[[steps]]\nop = "snapshot"\n')
    from rofolio.oracle import guest
    from rofolio.oracle.record import record_of
    from tests.oracle.conftest import recorded

    record = record_of(guest.parse_log(recorded("boot-8G-max-la57.serial.log")))
    m = model.boot(model.oracle_machine(sc, mem=8 << 30, kernel="6.1", cpus=1, gbpages=True), record)
    assert session.footprint(m, [(0x17FFFF000, 0x180001000)]) == {(0x140000000, 1 << 30), (0x180000000, 1 << 30)}
    assert session.footprint(m, [(0x200001000, 0x200002000)]) == {(0x200000000, 4 << 20)}


def test_an_experiment_guest_that_hangs_before_init_is_booted_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """`oracle run` boots a guest that never reached /init again (guest.boot_to_init()), says so on its progress
    line and in the boot's "notes", and compares the second guest's log; the experiment still agrees."""
    source = str(DATA / "scenarios" / "x86-10-write-fault-in-1g.toml")  # EXP 1 of the recorded 8G boot
    hung = guest.Boot([], -9, True, 600.0, "Linux version 6.1\nsmpboot: Allowing 1 CPUs\n", "")
    ok = guest.Boot([], 0, False, 8.0, recorded("experiments-8G.serial.log"), "")
    boots = [hung, ok]
    monkeypatch.setattr(guest, "boot", lambda *_a, **_k: boots.pop(0))
    monkeypatch.setattr(bootcheck, "guest_config", lambda *_: ("", "no config"))
    monkeypatch.setattr(session, "remember_record", lambda *_a, **_k: None)
    monkeypatch.setattr(session, "known_record", lambda *_a, **_k: None)
    said: list[str] = []
    result = session.run([source], INSTALL, mem="8G", progress=said.append)
    assert not boots and [r.agree for r in result.reports] == [True]
    note = ("the first guest hung (QEMU killed it after 600.0 s), its console saying 'smpboot: Allowing 1 CPUs', "
            "before /init; booted again")
    assert result.boots[0]["notes"] == [note] and f"boot 1/1: {note}" in said
