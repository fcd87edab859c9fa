"""Boot fidelity on recorded boots: the model's boot equals the kernel's at 2G and 8G, with and without 1G pages."""

from __future__ import annotations

import pytest

from rofolio.machine import Machine, MachineSpec
from rofolio.oracle import bootcheck, guest
from rofolio.oracle import model as oracle_model
from rofolio.oracle.record import record_of
from rofolio.scenario.loader import parse
from rofolio.units import GiB, Level
from tests.oracle.conftest import recorded

EMPTY = parse('name = "boot"\n[[steps]]\nop = "snapshot"\n')


@pytest.mark.parametrize(("log_name", "mem"), [
    ("boot-2G-max-la57.serial.log", "2G"), ("boot-2G-max-la57-nopdpe1gb.serial.log", "2G"),
    ("boot-8G-max-la57.serial.log", "8G"), ("boot-8G-max-la57-nopdpe1gb.serial.log", "8G")])
def test_the_models_boot_is_the_kernels(log_name: str, mem: str) -> None:
    log = guest.parse_log(recorded(log_name))
    machine = oracle_model.oracle_machine(EMPTY, mem=int(mem[:-1]) * GiB, kernel="6.1", cpus=1, gbpages=log.gbpages)
    rep = bootcheck.check_boot(log, machine, mem=mem, cpu="max,-la57")
    assert rep.agree, [(c.what, c.kernel, c.model) for c in rep.checks if not c.agree] + rep.errors
    assert {c.what for c in rep.checks} >= {"e820 RAM", "/proc/meminfo", "/proc/vmstat", "max_pfn_mapped",
                                            "direct map walk (model -> kernel)"}
    assert rep.record is not None and "BPF JIT pack 512 pages" in rep.record  # the guest's record, as input


def test_a_different_boot_is_flagged() -> None:
    text = recorded("boot-2G-max-la57.serial.log").replace("DirectMap4k:      26496", "DirectMap4k:      28544")
    text = text.replace("boot: DirectMap4k=26496", "boot: DirectMap4k=28544")
    log = guest.parse_log(text)
    machine = oracle_model.oracle_machine(EMPTY, mem=2 * GiB, kernel="6.1", cpus=1, gbpages=True)
    rep = bootcheck.check_boot(log, machine, mem="2G", cpu="max,-la57")
    assert [c.what for c in rep.checks if not c.agree] == ["/proc/meminfo"]


def test_the_2g_guests_record_splits_what_the_kernel_split() -> None:
    """The 2G guest's BPF pack (docs/fidelity.md, the 2G boot) splits 0x4a00000, 0x7dc00000 and 0x5000000."""
    record = record_of(guest.parse_log(recorded("boot-2G-max-la57.serial.log")))
    assert record.initrd == (0x7FE5C000, 388 * 4096)
    m = Machine.boot(MachineSpec.build(mem=2 * GiB, kernel="6.1", cpus=1), record=record)
    m.finish_boot()
    assert m.counters.meminfo_kb() == {"DirectMap4k": 26496, "DirectMap2M": 2070528, "DirectMap1G": 0}
    k = m.kernel
    for region in (0x4A00000, 0x7DC00000, 0x5000000):
        assert k.lookup_address(k.va(region)).level == Level.PTE
    bare = Machine.boot(MachineSpec.build(mem=2 * GiB, kernel="6.1", cpus=1))
    bare.finish_boot()
    assert bare.counters.meminfo_kb()["DirectMap4k"] == 26496 - 3 * 2048
