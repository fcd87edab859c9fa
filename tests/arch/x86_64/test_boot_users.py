"""Boot-time users the model places itself when no boot record says where: the boot loader's initrd rule,
memblock's top-down allocations (NODE_DATA, the memmap, the per-CPU first chunk), the migratetype of reserved
pageblocks by version, and the BPF JIT pack that ptp_classifier_init() makes, from the model's buddy allocator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rofolio.arch.x86_64.boot import qemu_initrd_address
from rofolio.arch.x86_64.image import KernelImage
from rofolio.kversion import RESERVED_PAGEBLOCKS_MOVABLE, KernelVersion
from rofolio.machine import Machine, MachineSpec
from rofolio.mm.bootmem import PERCPU_DYNAMIC_RESERVE, PERCPU_MODULE_RESERVE, percpu_first_chunk
from rofolio.mm.gfp import MigrateType
from rofolio.mm.mm_init import first_deferred_pfn
from rofolio.oracle.guest import INITRD_SIZE, parse_log
from rofolio.physmem import MemoryMap
from rofolio.units import PAGE_SHIFT, GiB, Level, MiB, align_up

DATA = Path(__file__).parents[2] / "oracle" / "data"
GB_PFN = GiB >> PAGE_SHIFT


@pytest.mark.parametrize("log", sorted(DATA.glob("boot-*.serial.log")), ids=lambda p: p.name)
def test_qemus_loader_puts_the_initrd_where_each_recorded_guest_found_it(log: Path) -> None:
    """hw/i386/x86.c x86_load_linux(): initrd_max is UINT32_MAX for a kernel with XLF_CAN_BE_LOADED_ABOVE_4G,
    capped below below_4g_mem_size - acpi_data_size; the initrd ends there, page aligned down."""
    guest = parse_log(log.read_text())
    assert guest.ramdisk is not None
    ram = [(s, e) for s, e, kind in guest.e820 if kind == "usable"]
    memory = MemoryMap.from_ram(ram)
    assert qemu_initrd_address(memory, INITRD_SIZE) == guest.ramdisk[0]
    # reserve_initrd() prints [ramdisk_image, ramdisk_end - 1] with ramdisk_end = PAGE_ALIGN(image + size)
    assert guest.ramdisk[1] == align_up(guest.ramdisk[0] + INITRD_SIZE, 4096)


PERCPU = re.compile(r"percpu: Embedded (\d+) pages/cpu s(\d+) r(\d+) d(\d+) u(\d+)")
ALLOC = re.compile(r"pcpu-alloc: s\d+ r\d+ d\d+ u\d+ alloc=(\d+)\*(\d+)")


@pytest.mark.parametrize("log", sorted(p for p in DATA.glob("boot-*.serial.log") if PERCPU.search(p.read_text())),
                         ids=lambda p: p.name)
def test_the_per_cpu_first_chunk_is_what_each_recorded_guest_logged(log: Path) -> None:
    """pcpu_build_alloc_info(): size_sum = static + PERCPU_MODULE_RESERVE + PERCPU_DYNAMIC_RESERVE; a PMD_SIZE
    atom holds power-of-two units while no more than a third of them go unused; the guests log the result."""
    text = log.read_text()
    pages, static, reserved, dynamic, unit = (int(x) for x in PERCPU.search(text).groups())  # type: ignore[union-attr]
    allocs, atom = (int(x) for x in ALLOC.search(text).groups())  # type: ignore[union-attr]
    assert (reserved, dynamic) == (PERCPU_MODULE_RESERVE, PERCPU_DYNAMIC_RESERVE)
    cpus = parse_log(text).nproc
    assert cpus is not None
    unit_pages, units, used = percpu_first_chunk(cpus, static)
    assert (unit_pages << PAGE_SHIFT, used, units * unit_pages << PAGE_SHIFT) == (unit, pages, allocs * atom)


def test_more_cpus_share_the_2m_atom_in_smaller_units() -> None:
    static = KernelImage().percpu_static  # Debian 6.1's; its guests log it (above)
    assert [percpu_first_chunk(n, static)[:2] for n in (1, 2, 3, 8, 16)] == [
        (512, 1), (256, 2), (128, 4), (64, 8), (64, 16)]  # 3 CPUs: 4 units, one unused (1 <= 3 // 3)


def test_defer_init_keeps_one_section_of_the_last_range_of_the_node() -> None:
    # ZONE_NORMAL of a QEMU machine from 4 GiB: the section after the first one is deferred
    assert first_deferred_pfn(4 * GB_PFN, 4 * GB_PFN, 9 * GB_PFN) == 4 * GB_PFN + (128 * MiB >> PAGE_SHIFT)
    # ZONE_DMA32 from 16 MiB on a 1G machine: 16M + one section, rounded up to a section boundary
    assert first_deferred_pfn(16 * MiB >> PAGE_SHIFT, 1 << 8, GB_PFN) == 256 * MiB >> PAGE_SHIFT
    assert first_deferred_pfn(4 * GB_PFN, 4 * GB_PFN, 4 * GB_PFN + 100) is None


def _percpu_block(machine: Machine) -> int:
    return min(s for s, _, what in machine.mm.reserved if what.startswith("per-CPU"))


@pytest.mark.parametrize("kernel", ["6.1", "6.13"])
def test_a_reserved_first_page_leaves_its_deferred_pageblock_unmovable_before_6_13(kernel: str) -> None:
    """Before 98b7beba1ee6 the tail pcpu_fc_free() hands back from the per-CPU first chunk sits in an
    unmovable pageblock (its first page is the unit's used part), so it goes to the unmovable free lists."""
    m = Machine.boot(MachineSpec.build(mem="8G", kernel=kernel, cpus=1))
    block = _percpu_block(m)
    normal = m.mm.zones[-1]
    unmovable = not RESERVED_PAGEBLOCKS_MOVABLE.applies(KernelVersion.parse(kernel))
    assert normal.pageblocks.get(block) == (MigrateType.UNMOVABLE if unmovable else MigrateType.MOVABLE)
    tail = [b for b in normal.free.blocks(block, block + 512)]
    assert sum(1 << b.order for b in tail) == 512 - 62 and {b.mt for b in tail} == {normal.pageblocks.get(block)}


def _pack_2m_leaves(machine: Machine) -> set[int]:
    [pack] = [p for p in machine.boot_placements if p.what == "BPF JIT pack"]
    return {(pa + i * 4096) & ~(Level.PMD.size - 1) for pa, n in pack.pages for i in range(n)}


def test_without_ptp_classifier_the_model_places_no_bpf_jit_pack() -> None:
    m = Machine.boot(MachineSpec.build(mem="8G", kernel="6.1", cpus=1))
    assert [p.what for p in m.boot_placements] == []


def test_6_1s_pack_takes_the_per_cpu_tail_first_then_the_lowest_block_of_the_highest_zone() -> None:
    """vmalloc's order-0 GFP_KERNEL pages: __rmqueue_smallest() finds the unmovable tail of the per-CPU chunk
    (450 pages), then __rmqueue_claim() claims the lowest order-10 block of ZONE_NORMAL for the other 62."""
    m = Machine.boot(MachineSpec.build(mem="8G", kernel="6.1", cpus=1, ptp_classifier=True))
    block = _percpu_block(m)
    assert _pack_2m_leaves(m) == {4 * GiB, block << PAGE_SHIFT}
    [pack] = m.boot_placements
    assert sum(n for pa, n in pack.pages if pa >> PAGE_SHIFT >= block) == 512 - 62
    assert pack.by == "the model (its buddy allocator)"


def test_7_2s_pack_is_one_aligned_2m_block_from_a_fresh_claim() -> None:
    """Since 98b7beba1ee6 the per-CPU tail is movable; the 512 unmovable pages come in address order from the
    order-10 block __rmqueue_claim() takes: one 2M-aligned stretch, as the 7.2 guests show."""
    m = Machine.boot(MachineSpec.build(mem="8G", kernel="7.2", cpus=1, ptp_classifier=True))
    [pack] = m.boot_placements
    assert pack.pages == ((4 * GiB, 512),)
    dmap = {line.split(":")[0]: int(line.split()[1]) for line in m.meminfo_lines()}
    bare = Machine.boot(MachineSpec.build(mem="8G", kernel="7.2", cpus=1))
    base = {line.split(":")[0]: int(line.split()[1]) for line in bare.meminfo_lines()}
    # the pack's set_memory_ro() splits the 1G leaf [4G, 5G) and then its first 2M leaf
    assert {k: dmap[k] - base[k] for k in dmap} == {"DirectMap4k": 2048, "DirectMap2M": 1048576 - 2048,
                                                    "DirectMap1G": -1048576}


def test_the_initrd_of_a_spec_is_placed_by_the_loader_rule_and_said_so() -> None:
    m = Machine.boot(MachineSpec.build(mem="2G", kernel="6.1", cpus=1, initrd=INITRD_SIZE))
    [initrd] = m.boot_placements
    assert initrd.what == "initrd" and initrd.by == "the model (the boot loader's rule)"
    assert initrd.pages == ((qemu_initrd_address(m.memory, INITRD_SIZE), -(-INITRD_SIZE // 4096)),)


def test_rofolio_meminfo_says_who_placed_the_boot_time_users() -> None:
    from click.testing import CliRunner

    from rofolio.cli import main

    args = ["meminfo", "--mem", "8G", "--kernel", "6.1", "--cpus", "1", "--ptp-classifier"]
    out = CliRunner().invoke(main, args).stdout.splitlines()
    assert out[-1].startswith("boot-time user: BPF JIT pack: 512 pages at ")
    assert out[-1].endswith("placed by the model (its buddy allocator)")
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    assert data["boot_placements"] == [out[-1].removeprefix("boot-time user: ")]
    assert json.loads(CliRunner().invoke(main, ["meminfo", "--json"]).stdout)["boot_placements"] == []
