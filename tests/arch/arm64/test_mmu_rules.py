"""arch/arm64/mm/mmu.c's rules for live kernel mappings: pgattr_change_is_safe() (what may change without
break-before-make) and update_mapping_prot() (mark_rodata_ro()'s rewrite before the v7.2 linear-alias series),
on a QEMU virt machine with 4 GiB of RAM from 1 GiB, kernel 6.18."""

from __future__ import annotations

import pytest

from rofolio.arch.arm64 import mmu
from rofolio.arch.arm64.mmu import KernelBug, pgattr_change_is_safe
from rofolio.arch.arm64.prot import ARM64, attrindx, page_kernel, page_kernel_ro
from rofolio.units import Level
from tests.arch.arm64.conftest import B_PA, boot_arm64, step

RW = page_kernel(False) | ARM64.VALID  # a live, global, Normal-memory kernel entry
RO = page_kernel_ro(False) | ARM64.VALID
DEVICE = (RW & ~ARM64.ATTRINDX_MASK) | attrindx(ARM64.MT_DEVICE_nGnRE)
TAGGED = page_kernel(False, tagged=True) | ARM64.VALID


def test_making_or_taking_down_an_entry_is_always_safe() -> None:
    assert pgattr_change_is_safe(0, DEVICE) and pgattr_change_is_safe(DEVICE, 0)
    assert pgattr_change_is_safe(RW & ~ARM64.VALID, DEVICE | ARM64.CONT)  # whatever the bits of either


def test_a_live_entry_may_change_its_permissions_but_not_its_memory_type() -> None:
    assert pgattr_change_is_safe(RW, RO) and pgattr_change_is_safe(RO, RW)
    assert pgattr_change_is_safe(RW, RW | ARM64.PXN)
    assert pgattr_change_is_safe(RW, TAGGED) and pgattr_change_is_safe(TAGGED, RO)  # Tagged counts as permission
    assert not pgattr_change_is_safe(RW, DEVICE) and not pgattr_change_is_safe(DEVICE, RW)


def test_a_live_entry_may_become_non_global_but_not_global_again() -> None:
    assert pgattr_change_is_safe(RW, RW | ARM64.NG)
    assert not pgattr_change_is_safe(RW | ARM64.NG, RW)


def test_before_7_2_no_change_of_a_live_cont_entry_is_safe_from_7_2_its_pfn_only_must_stay() -> None:
    assert not pgattr_change_is_safe(RW | ARM64.CONT, RO | ARM64.CONT)
    assert not pgattr_change_is_safe(RW, RW | ARM64.CONT)
    assert pgattr_change_is_safe(RW | ARM64.CONT, RO | ARM64.CONT, cont_allowed=True)
    assert not pgattr_change_is_safe(RW, RW, cont_allowed=True, same_pfn=False)
    assert not pgattr_change_is_safe(RW | ARM64.NG, RW, cont_allowed=True)  # the other rules still hold


def test_update_mapping_prot_rewrites_each_pte_in_place_and_flushes_the_range() -> None:
    k = boot_arm64(rodata="full", kernel="6.18")  # the linear map is PTEs only
    va = k.va(B_PA)
    s = step(k, lambda: mmu.update_mapping_prot(k, B_PA, va, 16 * 4096, page_kernel_ro(False), "test"))
    assert s.delta == {"entries_written": 16, "flushes": 1, "flushes_range": 1, "flushed_pages": 16}
    assert k.lookup(va).read_only and k.lookup(va + 15 * 4096).read_only and k.lookup(va + 16 * 4096).writable


def test_an_unsafe_update_is_a_bug_on_ptes_and_refused_on_a_block() -> None:
    # init_pte() BUG_ON()s an unsafe change; pmd_set_huge()/pud_set_huge() return 0 and leave the block
    k = boot_arm64(rodata="full", kernel="6.18")
    with pytest.raises(KernelBug, match="kernel BUG in init_pte"):
        mmu.update_mapping_prot(k, B_PA, k.va(B_PA), 4096, DEVICE, "test")
    blocks = boot_arm64(rodata="noalias", kernel="6.18")  # B is a 1G block
    va = blocks.va(B_PA)
    before = blocks.lookup(va).flags
    s = step(blocks, lambda: mmu.update_mapping_prot(blocks, B_PA, va, 1 << 30, DEVICE, "test"))
    assert blocks.lookup(va).level == Level.PUD and blocks.lookup(va).flags == before
    assert "entries_written" not in s.delta
