"""rofolio host: the model of a running machine beside its live DirectMap lines, the residual named exactly.

The snapshots here are made from model boots of machines with boot-time placements the host model is not
told about (a BPF JIT pack's pages), so the expected residual follows from the placements, not from any
figure typed in; the live machine's own report is checked the same way where it can be read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rofolio.errors import ConfigError
from rofolio.host import HostSnapshot, at_boot, host_report, read_host, save_host, spec_of_host
from rofolio.machine import BootRecord, Machine, MachineSpec
from rofolio.units import GiB, MiB

BPF_PACK_VA = 0xFFFFFFFFC0000000  # MODULES_VADDR: where the first pack is mapped


def _snapshot_of(spec: MachineSpec, record: BootRecord, tmp_path: Path, after: int = 0) -> HostSnapshot:
    """What a machine booted as ``spec`` with ``record`` shows in /proc and /sys, saved and read back.

    ``after``: 4K pages made read-only after boot, one per 2M leaf (vmstat counts those splits).
    """
    m = Machine.boot(spec, record=record)
    m.finish_boot()
    base = m.memory.ram[-1].start
    for i in range(after):
        m.set_memory("set_memory_ro", m.va(base + i * 2 * MiB), 1)
    meminfo = "".join(f"{line}\n" for line in m.meminfo_lines())
    vmstat = "".join(f"{k} {v}\n" for k, v in m.counters.vmstat().items())
    memmap = tuple((r.start, r.end, "System RAM") for r in m.memory.ram)
    initrd = f"Linux version {spec.kernel}.0 (model)\n" + ("" if record.initrd is None else
        f"RAMDISK: [mem {record.initrd[0]:#010x}-{record.initrd[0] + record.initrd[1] - 1:#010x}]\n")
    flags = "fpu pse" + (" pdpe1gb" if spec.options["gbpages"] else "")  # the CPU decides 1G pages
    snapshot = HostSnapshot(
        files={"proc/meminfo": meminfo, "proc/vmstat": vmstat, "proc/iomem": "", "proc/cmdline": "quiet",
               "proc/version": f"Linux version {spec.kernel}.0 (model)", "proc/cpuinfo":
               "".join(f"processor\t: {i}\nflags\t\t: {flags}\n" for i in range(spec.cpus))},
        memmap=memmap, config={"CONFIG_X86_DIRECT_GBPAGES": "y"}, dmesg=initrd, source="model")
    return read_host(save_host(snapshot, tmp_path / "snap"))


def _pack(pa: int) -> BootRecord:
    return BootRecord(bpf_packs=((BPF_PACK_VA, ((pa, 100),)),), source="test")  # 100 pages inside one 2M leaf


def _sum(report: object) -> dict[str, int]:
    return {k: sum(p.total.get(k, 0) for p in report.causes) for k in report.residual}  # type: ignore[attr-defined]


def test_a_machine_the_model_knows_whole_has_no_residual(tmp_path: Path) -> None:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2)
    report, _ = host_report(_snapshot_of(spec, BootRecord(), tmp_path))
    assert not any(report.residual.values()) and report.causes == [] and report.explained


@pytest.mark.parametrize("packs_in_1g", [1, 2])
def test_each_unplaced_pack_in_a_1g_leaf_is_named_once(tmp_path: Path, packs_in_1g: int) -> None:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2)
    packs = tuple((BPF_PACK_VA + i * 2 * MiB, (((5 + i) * GiB + 0x3000, 100),)) for i in range(packs_in_1g))
    report, _ = host_report(_snapshot_of(spec, BootRecord(bpf_packs=packs), tmp_path))
    assert [(c.what, c.count) for c in report.causes] == \
        [("a boot-time change of 4K pages in a 1G leaf the model did not place", packs_in_1g)]
    assert _sum(report) == report.residual and report.explained


def test_a_pack_in_a_2m_leaf_splits_only_that_leaf(tmp_path: Path) -> None:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2,
                             gbpages=False)
    report, _ = host_report(_snapshot_of(spec, _pack(6 * GiB + 0x1000), tmp_path))
    assert [c.what for c in report.causes] == ["a boot-time change of 4K pages in a 2M leaf the model did not place"]
    assert report.explained


def test_splits_after_boot_are_undone_from_vmstat(tmp_path: Path) -> None:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2,
                             gbpages=False)
    snapshot = _snapshot_of(spec, BootRecord(), tmp_path, after=3)
    live = snapshot.directmap()
    vmstat = snapshot.direct_map_vmstat()
    assert vmstat["direct_map_level2_splits"] == 3
    report, _ = host_report(snapshot)
    assert report.at_boot == at_boot(live, vmstat) == report.model  # the three runtime splits undone
    assert report.causes == []


def test_the_initrd_comes_from_the_kernel_log(tmp_path: Path) -> None:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2)
    record = BootRecord(initrd=(3 * GiB - 8 * MiB - 0x3000, 8 * MiB), source="test")
    snapshot = _snapshot_of(spec, record, tmp_path)
    assert snapshot.initrd == record.initrd
    report, _ = host_report(snapshot)
    assert report.explained and report.causes == []  # the host model frees it as the kernel did


def test_the_cli_prints_json_and_saves_a_snapshot_it_can_read_back(tmp_path: Path) -> None:
    from rofolio.cli import main

    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2)
    snapshot = _snapshot_of(spec, _pack(5 * GiB + 0x3000), tmp_path)
    out = CliRunner().invoke(main, ["host", "--from", snapshot.source, "--json", "--save", str(tmp_path / "again")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["explained"] and len(data["causes"]) == 1
    again = CliRunner().invoke(main, ["host", "--from", str(tmp_path / "again"), "--json"])
    assert json.loads(again.output)["residual_kb"] == data["residual_kb"]
    # saving over it again is refused: a file of the first snapshot could be read back as the second's
    twice = CliRunner().invoke(main, ["host", "--from", snapshot.source, "--save", str(tmp_path / "again")])
    assert twice.exit_code == 2 and "command line: --save: " in twice.stderr and "is not empty" in twice.stderr


def test_a_snapshot_without_directmap_lines_is_bad_input(tmp_path: Path) -> None:
    """A snapshot is user input: one of a machine rofolio host cannot model is a usage error (2), not an
    environment failure (4, for the live machine)."""
    from rofolio.cli import main

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 1 kB\n")
    out = CliRunner().invoke(main, ["host", "--from", str(tmp_path)])
    assert out.exit_code == 2 and f"{tmp_path / 'proc/meminfo'} has no DirectMap lines" in out.output


def test_a_directory_that_is_not_a_snapshot_is_a_usage_error_that_says_how_to_make_one(tmp_path: Path) -> None:
    from rofolio.cli import main

    for where in (tmp_path, tmp_path / "missing"):
        out = CliRunner().invoke(main, ["host", "--from", str(where)])
        assert out.exit_code == 2 and "rofolio host --save" in out.output
    assert "is not a host snapshot: it has no proc/meminfo" in CliRunner().invoke(
        main, ["host", "--from", str(tmp_path)]).output


@pytest.mark.skipif(not Path("/sys/firmware/memmap").is_dir() or "DirectMap" not in Path("/proc/meminfo").read_text(),
                    reason="this machine shows no firmware memory map or no DirectMap lines")
def test_on_this_machine_the_named_causes_add_up_to_the_residual() -> None:
    report, _ = host_report(read_host())
    assert _sum(report) == report.residual and report.explained
    # where the config came from is said (/proc/config.gz, else /boot/config-RELEASE), or that there was none
    assert next(line for line in report.decided if line.startswith("config: ")) in (
        "config: /proc/config.gz", f"config: /boot/config-{os.uname().release}",
        "config: not readable here (no /proc/config.gz, no /boot/config-RELEASE): every CONFIG_ option is taken as "
        "unset")


@pytest.mark.parametrize(("config", "cmdline", "kfence"), [
    ({"CONFIG_KFENCE": "y", "CONFIG_KFENCE_SAMPLE_INTERVAL": "0"}, "quiet", False),  # Debian's 6.1 and 7.2
    ({"CONFIG_KFENCE": "y", "CONFIG_KFENCE_SAMPLE_INTERVAL": "0"}, "kfence.sample_interval=100", True),
    ({"CONFIG_KFENCE": "y"}, "quiet", True),  # Kconfig's default interval is 100
    ({"CONFIG_KFENCE": "y", "CONFIG_KFENCE_SAMPLE_INTERVAL": "100"}, "kfence.sample_interval=0", False),
    ({}, "kfence.sample_interval=100", False),
])
def test_kfence_makes_a_pool_only_with_a_non_zero_sample_interval(config: dict[str, str], cmdline: str,
                                                                   kfence: bool) -> None:
    """mm/kfence/core.c: kfence_sample_interval is CONFIG_KFENCE_SAMPLE_INTERVAL unless kfence.sample_interval=
    says otherwise, and kfence_alloc_pool_and_metadata() allocates no pool when it is 0."""
    snapshot = HostSnapshot(files={"proc/cmdline": cmdline, "proc/version": "Linux version 7.2.13 (test)",
                                   "proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu pse\n"},
                            memmap=((0, 2 * GiB, "System RAM"),), config=config, dmesg="", source="test")
    spec, _, _ = spec_of_host(snapshot)
    assert spec.kfence is kfence


# ---------------------------------------------------------------- a snapshot is user input, read strictly
# Each case: a good snapshot (saved from a model boot) with one change, then `rofolio host --from`.

def _good_snapshot(tmp_path: Path) -> Path:
    spec = MachineSpec.build(memory_map=((0, 0x9FC00), (1 * MiB, 3 * GiB), (4 * GiB, 9 * GiB)), cpus=2)
    record = BootRecord(initrd=(3 * GiB - 8 * MiB, 8 * MiB), source="test")
    return Path(_snapshot_of(spec, record, tmp_path).source)


def _host_from(snap: Path, *args: str) -> Any:
    from rofolio.cli import main

    out = CliRunner().invoke(main, ["host", "--from", str(snap), *args])
    assert "Traceback" not in out.output and "internal error" not in out.output, out.output
    return out


def _refused(snap: Path, *needles: str) -> str:
    """``host --from`` on ``snap`` ends with status 2 and an error line holding each needle, and a hint."""
    out = _host_from(snap)
    assert out.exit_code == 2, out.output
    error = next(line for line in out.output.splitlines() if line.startswith("rofolio: error: "))
    for needle in needles:
        assert needle in error, out.output
    assert "rofolio: hint: " in out.output
    return error


def _replace_line(path: Path, prefix: str, new: str) -> int:
    """Replace the line of ``path`` starting with ``prefix`` by ``new``; its line number."""
    lines = path.read_text().splitlines()
    no = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    lines[no] = new
    path.write_text("\n".join(lines) + "\n")
    return no + 1


def _ram_entries(snap: Path) -> list[Path]:
    folder = snap / "sys/firmware/memmap"
    return [e for e in sorted(folder.iterdir(), key=lambda p: int(p.name)) if (e / "type").read_text().strip()
            == "System RAM"]


@pytest.mark.parametrize("name", ["config", "proc/cpuinfo", "proc/vmstat", "proc/cmdline", "proc/version",
                                  "sys/firmware/memmap"])
def test_a_snapshot_without_a_file_the_model_needs_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    """Not a guess (no config: nogbpages; no cpuinfo: 1 CPU without pdpe1gb; no vmstat: at boot = now), and
    exit 2 for each, the firmware memory map included."""
    snap = _good_snapshot(tmp_path)
    path = snap / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    _refused(snap, f"{path}: missing from the snapshot")
    assert "rofolio host --save DIR" in _host_from(snap).output


def test_without_a_kernel_log_the_initrd_is_unknown_not_absent(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    found = json.loads(_host_from(snap, "--json").output)
    assert any(line.startswith("initrd: 8192 KiB at") for line in found["decided"])
    log = snap / "dmesg.txt"
    text = log.read_text()
    cases = {"": "the kernel log {log} is empty",
             "[ 9.5] a later line\n": "the kernel log {log} does not reach back to boot",  # no banner, wrapped
             None: "no kernel log in the snapshot ({log})"}
    for content, why in cases.items():
        log.unlink(missing_ok=True)
        if content is not None:
            log.write_text(content)
        out = _host_from(snap, "--json", "--save", str(tmp_path / "again"))
        assert out.exit_code == 0, out.output
        note = f"initrd: unknown, modelled as none: {why.format(log=log)}"
        assert any(line.startswith(note) for line in json.loads(out.output)["decided"]), out.output
        assert (tmp_path / "again/dmesg.txt").exists() is (content is not None)  # saved as it was read
        shutil.rmtree(tmp_path / "again")
    log.write_text(text.replace("RAMDISK", "something else"))  # a log from boot that has no initrd line
    assert "initrd: none (the kernel log from boot has no RAMDISK line)" in \
        json.loads(_host_from(snap, "--json").output)["decided"]


def test_without_vmallocinfo_or_iomem_the_answer_stands_and_says_what_it_cannot_name(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    whole = json.loads(_host_from(snap, "--json").output)
    (snap / "proc/iomem").unlink()
    (snap / "proc/vmallocinfo").unlink(missing_ok=True)
    out = _host_from(snap, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["residual_kb"] == whole["residual_kb"] and data["at_boot_kb"] == whole["at_boot_kb"]
    assert f"vmallocinfo: no {snap / 'proc/vmallocinfo'} in the snapshot: the users of set_memory_*() on " \
        "vmalloc pages are not named" in data["decided"]


def test_a_directmap_line_that_is_not_a_count_is_refused_naming_the_line(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    no = _replace_line(snap / "proc/meminfo", "DirectMap4k", "DirectMap4k:       abc kB")
    _refused(snap, f"{snap / 'proc/meminfo'}:{no}: DirectMap4k: 'abc kB' is not a count of kB")


def test_a_vmstat_line_that_is_not_a_count_is_refused_naming_the_line(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    no = _replace_line(snap / "proc/vmstat", "direct_map_level2_splits", "direct_map_level2_splits x")
    _refused(snap, f"{snap / 'proc/vmstat'}:{no}: direct_map_level2_splits: 'x' is not a count")


@pytest.mark.parametrize(("line", "key", "leaf_kb"), [("direct_map_level2_splits", "DirectMap4k", 2 << 10),
                                                      ("direct_map_level3_collapses", "DirectMap1G", 1 << 20)])
def test_vmstat_counts_that_undo_more_than_the_lines_hold_are_refused(tmp_path: Path, line: str, key: str,
                                                                      leaf_kb: int) -> None:
    """The at-boot figure never goes negative: such a snapshot is inconsistent, and the error names both."""
    snap = _good_snapshot(tmp_path)
    now = read_host(snap).directmap()[key]
    _replace_line(snap / "proc/vmstat", line, f"{line} {now // leaf_kb + 1}")
    _refused(snap, f"{snap / 'proc/vmstat'}: ", f"{line} {now // leaf_kb + 1}",
             f"undo more than {snap / 'proc/meminfo'}'s {key} {now} kB holds")
    with pytest.raises(ConfigError):
        host_report(read_host(snap))


@pytest.mark.parametrize(("end", "problem"), [("0xzz", "'0xzz' is not a hexadecimal address"), ("", "empty")])
def test_a_ram_range_whose_end_does_not_parse_is_refused_not_dropped(tmp_path: Path, end: str, problem: str) -> None:
    snap = _good_snapshot(tmp_path)
    entry = _ram_entries(snap)[-1]
    (entry / "end").write_text(end + "\n")
    _refused(snap, f"{entry / 'end'}: {problem}")


def test_a_ram_range_that_ends_before_it_starts_is_refused_naming_it(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    entry = _ram_entries(snap)[-1]
    start = int((entry / "start").read_text(), 16)
    (entry / "end").write_text(f"{start - 1:#x}\n")
    _refused(snap, f"{entry}: the range ends before it starts (start {start:#x}, end {start - 1:#x})")


def test_overlapping_ram_ranges_and_stray_entries_are_refused(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    stray = snap / "sys/firmware/memmap/notes"
    stray.mkdir()
    _refused(snap, f"{stray}: not an entry of the firmware memory map")
    stray.rmdir()
    first, last = _ram_entries(snap)[-2:]
    (last / "start").write_text((first / "start").read_text())
    _refused(snap, f"{first} and {last}: the System RAM ranges", "overlap")


@pytest.mark.parametrize(("drop", "problem"), [("flags", "has no 'flags' line"),
                                               ("processor", "has no 'processor' lines")])
def test_a_cpuinfo_without_flags_or_processors_is_refused(tmp_path: Path, drop: str, problem: str) -> None:
    snap = _good_snapshot(tmp_path)
    cpuinfo = snap / "proc/cpuinfo"
    cpuinfo.write_text("".join(f"{line}\n" for line in cpuinfo.read_text().splitlines() if not line.startswith(drop)))
    _refused(snap, f"{cpuinfo} {problem}")


@pytest.mark.parametrize(("text", "problem"), [("# a comment only\n", " has no CONFIG_ lines"),
                                               ("CONFIG_X86_DIRECT_GBPAGES=y\nCONFIG_BROKEN\n",
                                                ":2: 'CONFIG_BROKEN' is not a CONFIG_X=value line")])
def test_a_config_that_is_not_a_kernel_config_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    snap = _good_snapshot(tmp_path)
    (snap / "config").write_text(text)
    _refused(snap, f"{snap / 'config'}{problem}")


def test_a_machine_the_model_refuses_is_named_by_its_snapshot(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    (snap / "proc/version").write_text("Linux version 2.6.32 (too old)\n")
    _refused(snap, f"{snap}: the machine it describes cannot be modelled: ", "kernel 2.6")


def test_a_kernel_newer_than_the_model_says_whose_rules_model_it_and_the_table_says_when_it_was_seen(
        tmp_path: Path) -> None:
    from rofolio.kversion import NEWEST_KERNEL

    snap = _good_snapshot(tmp_path)
    (snap / "proc/version").write_text("Linux version 99.1.2 (a kernel from the future)\n")
    out = _host_from(snap)
    assert out.exit_code == 0, out.output
    assert f"kernel: 99.1.2 (modelled with {NEWEST_KERNEL}'s rules); 2 CPUs;" in out.stdout
    assert "DirectMap: the machine when saved and at boot, the model at boot" in out.stdout
    assert "the live machine" not in out.stdout


def test_a_difference_no_placement_explains_is_named_and_ends_with_status_1(tmp_path: Path) -> None:
    """4 kB moved from DirectMap2M to DirectMap4k is no whole placement (a boot-time change splits a whole 2M or
    1G leaf): it is named, and the command ends with status 1 like any check that fails."""
    snap = _good_snapshot(tmp_path)
    meminfo = snap / "proc/meminfo"
    kb = {line.split(":")[0]: int(line.split()[1]) for line in meminfo.read_text().splitlines()
          if line.startswith("DirectMap")}
    _replace_line(meminfo, "DirectMap4k:", f"DirectMap4k:    {kb['DirectMap4k'] + 4} kB")
    _replace_line(meminfo, "DirectMap2M:", f"DirectMap2M:    {kb['DirectMap2M'] - 4} kB")
    out = _host_from(snap)
    assert out.exit_code == 1, out.output
    assert "residual: 1 x a difference of no single-placement shape" in out.stdout
    assert out.stderr.strip() == ("rofolio: the residual is not made of whole placements: the model does not explain "
                                  "this boot")


def test_a_good_snapshot_saves_back_byte_for_byte(tmp_path: Path) -> None:
    snap = _good_snapshot(tmp_path)
    save_host(read_host(snap), tmp_path / "again")
    files = sorted(p.relative_to(snap) for p in snap.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((snap / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
