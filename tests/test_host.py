"""rofolio host: the model of a running machine beside its live DirectMap lines, the residual named exactly.

The snapshots here are made from model boots of machines with boot-time placements the host model is not
told about (a BPF JIT pack's pages), so the expected residual follows from the placements, not from any
figure typed in; the live machine's own report is checked the same way where it can be read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

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
    initrd = "" if record.initrd is None else \
        f"RAMDISK: [mem {record.initrd[0]:#010x}-{record.initrd[0] + record.initrd[1] - 1:#010x}]\n"
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
    live = {k: v for k, v in snapshot.counters("proc/meminfo").items()}
    vmstat = snapshot.counters("proc/vmstat")
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


def test_a_snapshot_without_directmap_lines_is_an_environment_failure(tmp_path: Path) -> None:
    from rofolio.cli import main

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 1 kB\n")
    out = CliRunner().invoke(main, ["host", "--from", str(tmp_path)])
    assert out.exit_code == 4 and "no DirectMap lines" in out.output


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
