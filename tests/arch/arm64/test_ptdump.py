"""arm64 ptdump text (arch/arm64/mm/ptdump.c) for the worked examples E1-E4 of the arm64 notes.

The machines have MTE (the linear map is Normal-Tagged) and KPTI-style nG
mappings, like the systems the example dumps come from; B = 0xffff000040000000
(PA 2 GiB) is a 1G PUD block under BBML2.
"""

from __future__ import annotations

import pytest

from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.arch.arm64.ptdump import format_size, note_lines, ptdump_lines
from rofolio.units import PAGE_SIZE, GiB, MiB
from tests.arch.arm64.conftest import B_PA, B_VA, boot_arm64

TAGGED = "NX SHD AF NG {cb} UXN    MEM/NORMAL-TAGGED"


def _window(k: Arm64Kernel) -> list[str]:
    return note_lines(k, B_VA, B_VA + GiB)


def _bbml2() -> Arm64Kernel:
    return boot_arm64(bbml2=True, ng_mappings=True)


def test_format_size_shifts_while_the_size_divides_by_1024() -> None:
    assert [format_size(n) for n in (4096, 0x130000, 2 * MiB, 992 * MiB, 130560 * GiB)] == [
        "        4K", "     1216K", "        2M", "      992M", "   130560G"]


def test_e1_bbml2_2m_read_only_inside_a_pud_block() -> None:
    k = _bbml2()
    assert _window(k) == [
        "0xffff000040000000-0xffff000080000000           1G PUD       RW NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED"]
    assert k.make_linear_range_readonly(B_PA + 10 * MiB, 2 * MiB) == 0
    assert _window(k) == [
        "0xffff000040000000-0xffff000040a00000          10M PMD       RW NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a00000-0xffff000040c00000           2M PMD       ro NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040c00000-0xffff000042000000          20M PMD       RW NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000042000000-0xffff000080000000         992M PMD       RW NX SHD AF NG CON BLK UXN    "
        "MEM/NORMAL-TAGGED",
    ]


def test_e2_bbml2_one_page_read_only_inside_a_pud_block() -> None:
    k = _bbml2()
    assert k.make_linear_range_readonly(B_PA + 10 * MiB + 0x5000, PAGE_SIZE) == 0
    assert _window(k) == [
        "0xffff000040000000-0xffff000040a00000          10M PMD       RW NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a00000-0xffff000040a05000          20K PTE       RW NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a05000-0xffff000040a06000           4K PTE       ro NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a06000-0xffff000040a10000          40K PTE       RW NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a10000-0xffff000040c00000        1984K PTE       RW NX SHD AF NG CON     UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040c00000-0xffff000042000000          20M PMD       RW NX SHD AF NG     BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000042000000-0xffff000080000000         992M PMD       RW NX SHD AF NG CON BLK UXN    "
        "MEM/NORMAL-TAGGED",
    ]


def test_e3_bbml2_32m_aligned_range_keeps_its_cont_bits() -> None:
    k = _bbml2()
    assert k.make_linear_range_readonly(B_PA + 32 * MiB, 32 * MiB) == 0
    assert _window(k) == [
        "0xffff000040000000-0xffff000042000000          32M PMD       RW NX SHD AF NG CON BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000042000000-0xffff000044000000          32M PMD       ro NX SHD AF NG CON BLK UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000044000000-0xffff000080000000         960M PMD       RW NX SHD AF NG CON BLK UXN    "
        "MEM/NORMAL-TAGGED",
    ]


def test_e4_no_bbml2_2m_read_only_in_the_pte_mapped_linear_map() -> None:
    k = boot_arm64(ng_mappings=True)
    assert _window(k) == [
        "0xffff000040000000-0xffff000080000000           1G PTE       RW NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED"]
    assert k.make_linear_range_readonly(B_PA + 10 * MiB, 2 * MiB) == 0
    assert _window(k) == [
        "0xffff000040000000-0xffff000040a00000          10M PTE       RW NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040a00000-0xffff000040c00000           2M PTE       ro NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
        "0xffff000040c00000-0xffff000080000000        1012M PTE       RW NX SHD AF NG         UXN    "
        "MEM/NORMAL-TAGGED",
    ]


def test_whole_linear_map_of_a_default_machine_before_the_v7_2_linear_alias_series() -> None:
    k = boot_arm64(kernel="7.1")
    assert ptdump_lines(k) == [
        "---[ Linear Mapping start ]---",
        # the Image at RAM + 2M as QEMU loads it; RAM Normal-Tagged, the alias plain PAGE_KERNEL: Debian 6.1's
        # own dump (arm64 oracle) has the same lines from 0x1800000 on
        "0xffff000000000000-0xffff000000200000           2M PTE       RW NX SHD AF            UXN    MEM/NORMAL-TAGGED",
        "0xffff000000200000-0xffff000001800000          22M PMD       ro NX SHD AF        BLK UXN    MEM/NORMAL",
        "0xffff000001800000-0xffff000001860000         384K PTE       ro NX SHD AF            UXN    MEM/NORMAL",
        "0xffff000001860000-0xffff000100000000     4169344K PTE       RW NX SHD AF            UXN    MEM/NORMAL-TAGGED",
        "0xffff000100000000-0xffff008000000000         508G PUD",
        "0xffff008000000000-0xffff800000000000      130560G PGD",
        "---[ Linear Mapping end ]---",
    ]


# from 15bfba1ad77f (v7.0) a kernel invalid entry is present-invalid: PTE_PRESENT_INVALID is the nG bit
# (arch/arm64/include/asm/pgtable-prot.h), which ptdump prints
@pytest.mark.parametrize(("kernel", "invalid"), [
    ("6.18", "8K PTE F     RW NX SHD AF            UXN    MEM/NORMAL-TAGGED"),
    ("7.0", "8K PTE F     RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED"),
])
def test_invalid_pages_print_f_and_vmalloc_areas_show_in_their_section(kernel: str, invalid: str) -> None:
    k = boot_arm64(kernel=kernel)
    k.set_memory_valid(k.va(B_PA), 2, False)
    vaddr = k.vmalloc([B_PA >> 12])
    lines = ptdump_lines(k, ("Linear Mapping", "vmalloc"))
    assert f"0xffff000040000000-0xffff000040002000           {invalid}" in lines
    vm = f"0x{vaddr:016x}-0x{vaddr + PAGE_SIZE:016x}           4K PTE       RW NX SHD AF            UXN    MEM/NORMAL"
    assert lines[lines.index("---[ vmalloc() area ]---") + 2] == vm
