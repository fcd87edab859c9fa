"""arm64 at run time, as the QEMU oracle (rofolio oracle arm64-run) measured Linux 7.2: set_memory_ro() on part of
a vmalloc area, the guard page the range check counts, the text of a kernel data abort, kernel loads, and the
kernel image taken from a boot record.  Machines: QEMU virt, 1 GiB of RAM from 1 GiB, one CPU, kernel 7.2."""

from __future__ import annotations

import pytest

from rofolio.arch.arm64.abort import data_abort_esr, die_line, mem_abort_decode
from rofolio.arch.arm64.mmu import KernelBug
from rofolio.arch.arm64.prot import ARM64
from rofolio.errors import ConfigError, Errno
from rofolio.events import EntryWrite
from rofolio.machine import BootRecord, Machine, MachineSpec
from rofolio.units import PAGE_SIZE, Level

# _text .. _end of the 7.2 tinyconfig Image QEMU loads at RAM + 2 MiB (the guest's __pa_symbol() values)
IMAGE = (("_text", 0x40200000), ("_stext", 0x40210000), ("_etext", 0x40430000), ("__start_rodata", 0x40430000),
         ("__init_begin", 0x40560000), ("__init_end", 0x405C0000), ("__bss_stop", 0x406B9000), ("_end", 0x406D0000))


def machine(rodata: str, **options: object) -> Machine:
    m = Machine.boot(MachineSpec.build(arch="arm64", mem="1G", kernel="7.2", cpus=1, rodata=rodata, **options),
                     record=BootRecord(image=IMAGE, source="test"))
    m.finish_boot()
    return m


def pages(m: Machine, n: int) -> list[int]:
    return [int(m.alloc_folio("kernel", 0).pfn) for _ in range(n)]  # type: ignore[union-attr]


def test_set_memory_ro_on_part_of_an_area_changes_only_those_pages_aliases_under_rodata_on() -> None:
    # change_memory_common(): area->pages[idx] from the index of start, numpages of them
    m = machine("on")
    pfns = pages(m, 8)
    va = m.vmalloc(pfns)
    assert m.set_memory("set_memory_ro", va + 2 * PAGE_SIZE, 3) == 0
    ro = [i for i in range(8) if m.lookup(m.page_address(pfns[i])).read_only]
    assert ro == [2, 3, 4]
    assert [i for i in range(8) if m.lookup(va + i * PAGE_SIZE).read_only] == [2, 3, 4]


def test_set_memory_ro_leaves_the_alias_block_writable_under_noalias() -> None:
    m = machine("noalias")
    pfns = pages(m, 2)
    va = m.vmalloc(pfns)
    assert m.set_memory("set_memory_ro", va, 2) == 0
    alias = m.lookup(m.page_address(pfns[0]))
    assert (alias.level, alias.writable) == (Level.PMD, True)
    assert m.lookup(va).read_only


def test_a_range_into_the_guard_page_passes_the_check_and_marks_the_empty_pte_rdonly_under_noalias() -> None:
    # area->size counts the guard page (mm/vmalloc.c __get_vm_area_node()), so 3 pages of a 2-page area pass,
    # and pageattr_pte_entry() writes the masks into the guard's none PTE
    m = machine("noalias")
    va = m.vmalloc(pages(m, 2))
    assert m.set_memory("set_memory_ro", va, 3) == 0
    guard = m.lookup(va + 2 * PAGE_SIZE)
    assert (guard.level, guard.flags) == (Level.PTE, ARM64.RDONLY)
    assert m.set_memory("set_memory_ro", va, 4) == -Errno.EINVAL  # past area->addr + area->size


def test_a_range_into_the_guard_page_reads_past_area_pages_under_rodata_on() -> None:
    m = machine("on")
    va = m.vmalloc(pages(m, 2))
    with pytest.raises(KernelBug, match=r"area->pages\[2\]"):
        m.set_memory("set_memory_ro", va, 3)


def test_store_to_a_read_only_pte_prints_a_level_3_permission_fault() -> None:
    m = machine("on")
    pfns = pages(m, 1)
    va = m.vmalloc(pfns)
    m.set_memory("set_memory_ro", va, 1)
    alias = m.page_address(pfns[0])
    out = m.kernel_store(alias, mapping="linear map")
    assert not out.ok
    assert out.fault.text.splitlines() == [
        f"Unable to handle kernel write to read-only memory at virtual address {alias:016x}",
        "Mem abort info:",
        "  ESR = 0x000000009600004f",
        "  EC = 0x25: DABT (current EL), IL = 32 bits",
        "  SET = 0, FnV = 0",
        "  EA = 0, S1PTW = 0",
        "  FSC = 0x0f: level 3 permission fault",
        "Data abort info:",
        "  ISV = 0, ISS = 0x0000004f, ISS2 = 0x00000000",
        "  CM = 0, WnR = 1, TnD = 0, TagAccess = 0",
        "  GCS = 0, Overlay = 0, DirtyBit = 0",
        "Internal error: Oops: 000000009600004f [#1]  SMP",
    ]


def test_store_to_the_read_only_text_alias_block_is_a_level_2_permission_fault() -> None:
    # mark_linear_text_alias_ro(): under noalias the alias of [_text, __init_begin) keeps 2M blocks, read-only
    m = machine("noalias")
    va = m.va(0x40210000)  # _stext, in the 2M block [_text, _text + 2M)
    assert m.lookup(va).level == Level.PMD
    text = m.kernel_store(va, mapping="linear map").fault.text.splitlines()
    assert text[2] == "  ESR = 0x000000009600004e"
    assert text[6] == "  FSC = 0x0e: level 2 permission fault"


def test_load_and_store_through_an_invalid_alias_are_level_3_translation_faults() -> None:
    m = machine("on")
    pfns = pages(m, 1)
    assert m.set_direct_map("set_direct_map_invalid_noflush", pfns[0]) == 0
    alias = m.page_address(pfns[0])
    ret, value = m.kernel_load(alias)
    assert (ret, value) == (-Errno.EFAULT, None)
    load = m.log.events[-1].text.splitlines()
    assert load[0] == f"Unable to handle kernel paging request at virtual address {alias:016x}"
    assert (load[2], load[6], load[9]) == ("  ESR = 0x0000000096000007", "  FSC = 0x07: level 3 translation fault",
                                           "  CM = 0, WnR = 0, TnD = 0, TagAccess = 0")
    store = m.kernel_store(alias).fault.text.splitlines()
    assert (store[0].split(" at ")[0], store[2], store[-1]) == (
        "Unable to handle kernel paging request", "  ESR = 0x0000000096000047",
        "Internal error: Oops: 0000000096000047 [#2]  SMP")
    assert m.kernel_load(alias, probe=True) == (-Errno.EFAULT, None)  # copy_from_kernel_nofault(): no oops
    assert m.counters.oopses == 2


def test_kernel_load_through_a_read_only_mapping_reads_the_byte() -> None:
    m = machine("on")
    pfns = pages(m, 1)
    va = m.vmalloc(pfns)
    assert m.alias_write(va, 0x5A, "vmalloc") == (0, pfns[0])
    m.set_memory("set_memory_ro", va, 1)
    assert m.kernel_load(va) == (0, 0x5A)
    assert m.kernel_load(m.page_address(pfns[0])) == (0, 0x5A)


def test_abort_syndromes() -> None:
    assert data_abort_esr(write=True, permission=True, level=3) == 0x9600004F
    assert data_abort_esr(write=False, permission=False, level=2) == 0x96000006
    assert mem_abort_decode(0x9600004E)[5] == "  FSC = 0x0e: level 2 permission fault"
    assert die_line("Oops", 0x96000047, 3) == "Internal error: Oops: 0000000096000047 [#3]  SMP"


def test_the_kernel_image_comes_from_the_boot_record() -> None:
    m = machine("noalias")
    assert (m.kernel_image.text, m.kernel_image.init_begin, m.kernel_image.data_end) == (
        0x40200000, 0x40560000, 0x406B9000)
    with pytest.raises(ConfigError, match="lacks _end"):
        Machine.boot(MachineSpec.build(arch="arm64", mem="1G", rodata="on"),
                     record=BootRecord(image=IMAGE[:-1], source="test"))


def test_an_unaligned_address_warns_once_and_changes_the_pages_from_its_page_down() -> None:
    # change_memory_common(): WARN_ON_ONCE(!PAGE_ALIGNED(addr)), then start &= PAGE_MASK and end = start + size
    m = machine("on")
    pfns = pages(m, 8)
    va = m.vmalloc(pfns)
    warnings = m.counters.warnings
    assert m.set_memory("set_memory_ro", va + 3 * PAGE_SIZE + 0x123, 3) == 0  # odd, and inside page 3
    assert [i for i in range(8) if m.lookup(va + i * PAGE_SIZE).read_only] == [3, 4, 5]
    assert [i for i in range(8) if m.lookup(m.page_address(pfns[i])).read_only] == [3, 4, 5]
    assert m.kernel_warnings()[-1:] == ["WARNING: CPU: 0 at arch/arm64/mm/pageattr.c change_memory_common"]
    assert m.counters.warnings - warnings == 1
    assert m.set_memory("set_memory_rw", va + 3 * PAGE_SIZE + 0x123, 3) == 0
    assert m.counters.warnings - warnings == 1  # once


def test_the_range_check_uses_the_rounded_end_of_an_unaligned_address() -> None:
    # the last page of a 2-page area's range, 100 bytes in: rounded, it ends at the guard page's end (allowed);
    # unrounded it would reach 100 bytes past area->addr + area->size (-EINVAL)
    m = machine("noalias")
    va = m.vmalloc(pages(m, 2))
    assert m.set_memory("set_memory_ro", va + 2 * PAGE_SIZE + 100, 1) == 0
    guard = m.lookup(va + 2 * PAGE_SIZE)
    assert (guard.level, guard.flags) == (Level.PTE, ARM64.RDONLY)
    assert m.set_memory("set_memory_ro", va + 3 * PAGE_SIZE + 100, 1) == -Errno.EINVAL
    assert m.set_memory("set_memory_ro", va + 2 * PAGE_SIZE + 100, 2) == -Errno.EINVAL  # inside, ends past it


def test_the_guard_pages_none_pte_is_one_write_from_0_to_the_masks_with_pfn_0() -> None:
    # pageattr_pte_entry() runs for the none PTE too: __set_pte(ptep, 0 & ~clear | set), one entry written
    m = machine("noalias")
    va = m.vmalloc(pages(m, 2))
    since, written = len(m.kernel.log.events), m.counters.entries_written
    assert m.set_memory("set_memory_ro", va, 3) == 0
    assert m.counters.entries_written - written == 3
    writes = [e for e in m.kernel.log.events[since:] if isinstance(e, EntryWrite)]
    assert [(e.addr - va, e.level, e.count) for e in writes] == [(0, Level.PTE, 2), (2 * PAGE_SIZE, Level.PTE, 1)]
    assert (writes[1].old, writes[1].new) == (0, ARM64.RDONLY)
    assert m.lookup(va + 2 * PAGE_SIZE).pfn == 0


def test_zero_pages_is_a_successful_no_op() -> None:
    m = machine("on")
    va = m.vmalloc(pages(m, 2))
    written = m.counters.entries_written
    assert m.set_memory("set_memory_ro", va, 0) == 0
    assert m.counters.entries_written == written


def test_set_memory_x_leaves_the_linear_aliases_alone_under_rodata_on() -> None:
    # only a change of PTE_RDONLY is mirrored on the aliases (change_memory_common(): rodata_full && (set_mask ==
    # PTE_RDONLY || clear_mask == PTE_RDONLY)); PXN stays on the linear map
    m = machine("on")
    pfns = pages(m, 2)
    va = m.vmalloc(pfns)
    alias = m.lookup(m.page_address(pfns[0])).flags
    assert m.set_memory("set_memory_x", va, 2) == 0
    assert not m.lookup(va).flags & ARM64.PXN
    assert m.lookup(m.page_address(pfns[0])).flags == alias and alias & ARM64.PXN
