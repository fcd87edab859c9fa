"""arch/arm64/mm/mmu.c: building the linear map, and splitting its leaves at runtime.

The builder is ``__create_pgd_mapping()`` with its level helpers
(``alloc_init_pud``, ``alloc_init_cont_pmd``, ``init_pmd``,
``alloc_init_cont_pte``): a block or contiguous range is used only where the
virtual address, the end of the chunk and the physical address are all aligned
to it, and only if the flags allow it.  The model computes the leaves that
algorithm produces as *pieces* and installs them as runs, so a 64 TiB machine
costs a handful of runs, not 2^34 entries.

Splitting follows ``split_kernel_leaf_mapping()`` (BBML2_NOABORT only): split
one size step at a time, only as deep as the boundary needs, PUD -> contiguous
PMDs -> contiguous PTEs, clearing PTE_CONT on the group a boundary cuts; one
page-table page per split and no TLB maintenance.  ``linear_map_split_to_ptes()``
repaints the whole linear map with PTEs when a secondary CPU lacks BBML2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rofolio.arch.arm64.config import KFENCE_POOL_SIZE
from rofolio.arch.arm64.prot import (
    ARM64,
    mk_sect_prot,
    p_leaf,
    page_kernel,
    page_kernel_ro,
    pte_present,
    pte_valid,
)
from rofolio.arch.arm64.tlbflush import flush_tlb_kernel_range
from rofolio.errors import Errno
from rofolio.events import BootMapping, EntryWrite, PgtableAlloc, Split
from rofolio.pagetable import EntryState
from rofolio.units import PAGE_SHIFT, PAGE_SIZE, Level, align_down, align_up

if TYPE_CHECKING:
    from rofolio.arch.arm64.kernel import Arm64Kernel

__all__ = [
    "CONT_PMD_SIZE", "KernelBug", "Piece", "account_boot_tables", "arch_kfence_init_pool", "arm64_kfence_alloc_pool",
    "arm64_kfence_map_pool", "create_pgd_mapping", "leaf_prot", "linear_map_maybe_split_to_ptes",
    "linear_map_split_to_ptes", "map_mem", "map_mem_v72", "map_over", "mapping_pieces", "mark_linear_text_alias_ro",
    "mark_rodata_ro_linear", "pgattr_change_is_safe",
    "range_split_to_ptes", "rewrite_leaves", "split_contpmd", "split_contpte", "split_kernel_leaf_mapping",
    "split_kernel_leaf_mapping_locked", "split_leaves", "split_pmd", "split_pud", "update_mapping_prot",
]

NO_BLOCK_MAPPINGS = 1 << 0
NO_CONT_MAPPINGS = 1 << 1
NO_EXEC_MAPPINGS = 1 << 2  # sets XN in table descriptors (valid only without FEAT_HPDS): not modelled

# pgtable-hwdef.h with CONFIG_ARM64_CONT_PTE_SHIFT = CONFIG_ARM64_CONT_PMD_SHIFT = 4 (4K granule)
CONT_PTES = 16
CONT_PTE_SIZE = CONT_PTES * PAGE_SIZE  # 64K
CONT_PMDS = 16
CONT_PMD_SIZE = CONT_PMDS * Level.PMD.size  # 32M
PGDIR_SIZE = Level.P4D.size  # 4 levels, 48-bit VA: a PGD entry maps 512G (P4D folded)


class KernelBug(RuntimeError):
    """A BUG()/panic() the modelled kernel would hit; the model stops like the kernel would."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Consecutive leaves the builder writes: ``[start, end)`` at ``level``, with PTE_CONT or not."""

    start: int
    end: int
    level: Level
    cont: bool


# ------------------------------------------------------------------- builder
def mapping_pieces(phys: int, virt: int, size: int, flags: int) -> list[Piece]:
    """The leaves __create_pgd_mapping_locked() would write for ``[virt, virt + size)``."""
    no_block = bool(flags & NO_BLOCK_MAPPINGS)
    no_cont = bool(flags & NO_CONT_MAPPINGS)
    addr = virt & ~(PAGE_SIZE - 1)
    end = align_up(virt + size, PAGE_SIZE)
    phys &= ~(PAGE_SIZE - 1)
    out: list[Piece] = []
    if no_block and no_cont:  # every chunk below ends in init_pte() without PTE_CONT
        return [Piece(addr, end, Level.PTE, False)] if addr < end else []

    def emit(start: int, stop: int, level: Level, cont: bool) -> None:
        if out and out[-1].end == start and out[-1].level == level and out[-1].cont == cont:
            out[-1] = Piece(out[-1].start, stop, level, cont)
        else:
            out.append(Piece(start, stop, level, cont))

    def aligned(a: int, n: int, p: int, size: int) -> bool:
        return (a | n | p) & (size - 1) == 0

    def cont_pte(a: int, e: int, p: int, inherited: bool) -> None:  # alloc_init_cont_pte()
        while a < e:
            n = min(align_down(a, CONT_PTE_SIZE) + CONT_PTE_SIZE, e)
            # PTE_CONT when the 64K group is aligned in va, pa and length; prot may carry CONT already
            emit(a, n, Level.PTE, inherited or (aligned(a, n, p, CONT_PTE_SIZE) and not no_cont))
            p += n - a
            a = n

    def pmd(a: int, e: int, p: int, cont: bool) -> None:  # init_pmd()
        while a < e:
            n = min(align_down(a, Level.PMD.size) + Level.PMD.size, e)
            if aligned(a, n, p, Level.PMD.size) and not no_block:  # a 2M block before a PTE table
                emit(a, n, Level.PMD, cont)
            else:
                cont_pte(a, n, p, cont)
            p += n - a
            a = n

    def cont_pmd(a: int, e: int, p: int) -> None:  # alloc_init_cont_pmd()
        while a < e:
            n = min(align_down(a, CONT_PMD_SIZE) + CONT_PMD_SIZE, e)
            pmd(a, n, p, aligned(a, n, p, CONT_PMD_SIZE) and not no_cont)
            p += n - a
            a = n

    while addr < end:  # alloc_init_pud(): with a 4K granule a 1G block is tried first
        nxt = min(align_down(addr, Level.PUD.size) + Level.PUD.size, end)
        if aligned(addr, nxt, phys, Level.PUD.size) and not no_block:
            emit(addr, nxt, Level.PUD, False)
        else:
            cont_pmd(addr, nxt, phys)
        phys += nxt - addr
        addr = nxt
    return out


def leaf_prot(prot: int, level: Level, cont: bool) -> int:
    """The descriptor bits of a leaf: a page (PTE) or a block via pmd_set_huge()/pud_set_huge()."""
    val = prot if level == Level.PTE else mk_sect_prot(prot)
    return val | ARM64.CONT if cont else val & ~ARM64.CONT


def create_pgd_mapping(k: Arm64Kernel, phys: int, virt: int, size: int, prot: int, flags: int) -> None:
    """__create_pgd_mapping() over unmapped space, with early_pgtable_alloc (boot)."""
    for piece in mapping_pieces(phys, virt, size, flags):
        pfn = (phys + piece.start - (virt & ~(PAGE_SIZE - 1))) >> PAGE_SHIFT
        k.pt.map(piece.start, piece.end, piece.level, leaf_prot(prot, piece.level, piece.cont), pfn)
        k.log.append(BootMapping(piece.start, piece.end, piece.level, 0))  # arm64 keeps no DirectMap counts


def pgattr_change_is_safe(old: int, new: int, *, cont_allowed: bool = False, same_pfn: bool = True) -> bool:
    """pgattr_change_is_safe() for two leaf descriptors (``same_pfn``: they map the same page frame).

    ``cont_allowed`` is the v7.2 rule (the linear-alias series): a live PTE_CONT entry may change its
    permissions, as long as PTE_CONT itself stays (it is outside the mask); before it, no change of a
    PTE_CONT entry was safe.
    """
    mask = ARM64.PXN | ARM64.RDONLY | ARM64.WRITE | ARM64.NG | ARM64.SWBITS_MASK
    if not pte_valid(old) or not pte_valid(new):  # mapping or unmapping an entry is always allowed
        return True
    if cont_allowed:
        if not same_pfn:  # a live entry's pfn must not change
            return False
    elif (old | new) & ARM64.CONT:  # no change of any kind to a live PTE_CONT entry
        return False
    if old & ~new & ARM64.NG:  # going from nG to global is refused
        return False
    normal = {ARM64.MT_NORMAL << ARM64.ATTRINDX_SHIFT, ARM64.MT_NORMAL_TAGGED << ARM64.ATTRINDX_SHIFT}
    if old & ARM64.ATTRINDX_MASK in normal and new & ARM64.ATTRINDX_MASK in normal:
        mask |= ARM64.ATTRINDX_MASK  # Normal <-> Normal-Tagged is a permission change
    return (old ^ new) & ~mask == 0


def update_mapping_prot(k: Arm64Kernel, phys: int, virt: int, size: int, prot: int, reason: str) -> None:
    """update_mapping_prot(): __create_pgd_mapping(..., NULL, NO_CONT_MAPPINGS) over live entries, then flush.

    Only permission bits may change.  Where the builder would put a block but a
    table is there (the block was split), pmd_set_huge()/pud_set_huge() refuse
    the unsafe change and return 0, so that range is left as it is.
    """
    if virt < k.layout.page_offset:
        k.warn(f"BUG: not updating mapping for {phys:#x} at 0x{virt:016x} - outside kernel range")
        return
    if k.config.linear_alias_series:
        # v7.2: early_create_pgd_mapping(init_mm.pgd, phys, virt, size, prot, NULL, 0), the builder over
        # what is there, PTE_CONT allowed where a group has no valid non-contiguous entry
        map_over(k, phys, virt, size, prot, 0)
        flush_tlb_kernel_range(k, virt, virt + size, reason)
        return
    for piece in mapping_pieces(phys, virt, size, NO_CONT_MAPPINGS):
        new = leaf_prot(prot, piece.level, False)
        for run in list(k.pt.runs(piece.start, piece.end)):
            lo, hi = max(run.start, piece.start), min(run.end, piece.end)
            if run.level < piece.level:
                continue  # p?d_set_huge() refuses a block over an existing table (returns 0)
            if run.level > piece.level:
                raise KernelBug(f"kernel BUG: BUG_ON(pmd_sect(pmd)) at {lo:#x} (mmu.c alloc_init_cont_pte)")
            old = k.pt.run_at(lo).flags  # type: ignore[union-attr]
            if not pgattr_change_is_safe(old, new):
                if piece.level == Level.PTE:  # init_pte(): BUG_ON(!pgattr_change_is_safe(...))
                    raise KernelBug(f"kernel BUG in init_pte at {lo:#x}: unsafe change {old:#x} -> {new:#x}")
                continue  # pmd_set_huge()/pud_set_huge() refuse
            k.pt.set_flags(lo, hi, new)
            k.log.append(EntryWrite(lo, piece.level, (hi - lo) // piece.level.size, old, new))
        covered = sum(min(r.end, piece.end) - max(r.start, piece.start) for r in k.pt.runs(piece.start, piece.end))
        if covered != piece.end - piece.start:
            raise KernelBug(f"kernel BUG: update_mapping_prot() of unmapped space near {piece.start:#x}")
    flush_tlb_kernel_range(k, virt, virt + size, reason)  # live kernel entries changed: flush them


def account_boot_tables(k: Arm64Kernel, before: dict[Level, int]) -> None:
    """early_pgtable_alloc(): one event per level for the tables boot mapping created."""
    after = k.pt.table_pages()
    for level in (Level.PUD, Level.PMD, Level.PTE):
        if after[level] > before[level]:
            k.log.append(PgtableAlloc(level, after[level] - before[level]))


# -------------------------------------------------------------------- map_mem
def map_mem(k: Arm64Kernel) -> None:
    """map_mem(): RAM (minus the NOMAP kernel alias and early KFENCE pool), then the alias, then the pool."""
    if k.config.linear_alias_series:
        map_mem_v72(k)
        return
    before = k.pt.table_pages()
    early_kfence_pool = arm64_kfence_alloc_pool(k)
    k.linear_map_requires_bbml2 = not k.force_pte_mapping() and k.can_set_direct_map()
    flags = NO_EXEC_MAPPINGS
    if k.force_pte_mapping():
        flags |= NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS
    kernel_start, kernel_end = k.image.alias
    nomap = [(kernel_start, kernel_end)]  # map_mem() hides the kernel alias with MEMBLOCK_NOMAP for the RAM loop
    if early_kfence_pool is not None:
        nomap.append((early_kfence_pool, early_kfence_pool + KFENCE_POOL_SIZE))
    # RAM is mapped with pgprot_tagged() so MTE tags stay accessible through the linear map; the call is
    # unconditional; without MTE, MAIR maps the Normal-Tagged index to plain Normal (the QEMU oracle's
    # Debian kernel shows MEM/NORMAL-TAGGED on every RAM line).
    tagged = page_kernel(k.config.ng_mappings, tagged=True)  # pgprot_tagged(PAGE_KERNEL)
    for start, end in _without(k.config.usable.ram, nomap):  # for_each_mem_range()
        create_pgd_mapping(k, start, k.va(start), end - start, tagged, flags)
    # the kernel alias [_text, __init_begin) is mapped non-executable now and without PTE_CONT,
    # because mark_linear_text_alias_ro() remaps it later and live contiguous entries cannot change
    create_pgd_mapping(k, kernel_start, k.va(kernel_start), kernel_end - kernel_start,
                       page_kernel(k.config.ng_mappings), NO_CONT_MAPPINGS)
    arm64_kfence_map_pool(k, early_kfence_pool)
    account_boot_tables(k, before)


def map_mem_v72(k: Arm64Kernel) -> None:
    """map_mem() since the v7.2 linear-alias series: the early KFENCE pool (4K pages), then the alias of
    [_text, __init_begin) and of [__init_end, __bss_stop) with the linear map's own flags, then every RAM
    range over what is mapped (no NOMAP): existing tables stay tables, and a PTE_CONT group that holds a
    valid non-contiguous entry gets no PTE_CONT (alloc_init_cont_pte(), init_pmd(), alloc_init_pud())."""
    before = k.pt.table_pages()
    arm64_kfence_map_pool(k, arm64_kfence_alloc_pool(k))
    k.linear_map_requires_bbml2 = not k.force_pte_mapping() and k.can_set_direct_map()
    flags = NO_EXEC_MAPPINGS
    if k.force_pte_mapping():
        flags |= NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS
    tagged = page_kernel(k.config.ng_mappings, tagged=True)  # pgprot_tagged(PAGE_KERNEL)
    image = k.image
    # the alias first, so that its write permission can go later without splitting a block of the RAM loop
    map_over(k, image.text, k.va(image.text), image.init_begin - image.text, tagged, flags)
    map_over(k, image.init_end, k.va(image.init_end), image.data_end - image.init_end, tagged, flags)
    for r in k.config.usable.ram:  # for_each_mem_range()
        map_over(k, r.start, k.va(r.start), r.end - r.start, tagged, flags)
    account_boot_tables(k, before)


def _group_has_valid_noncont(k: Arm64Kernel, start: int, level: Level, count: int) -> bool:
    """pte_range_has_valid_noncont() / pmd_range_has_valid_noncont(): a valid entry without PTE_CONT among the
    ``count`` entries of ``level`` from ``start`` (a table descriptor is valid and has no PTE_CONT)."""
    end = start + count * level.size
    if level == Level.PMD:
        for region in range(start, end, level.size):
            if k.pt.entry_state(region, Level.PMD) == EntryState.TABLE:
                return True
    return any(run.level == level and pte_valid(run.flags) and not run.flags & ARM64.CONT
               for run in k.pt.runs(start, end))


def _write_leaves(k: Arm64Kernel, lo: int, hi: int, level: Level, new: int, pfn: int) -> None:
    """Set the ``level`` leaves of [lo, hi) to ``new`` mapping from ``pfn``: holes are mapped, entries rewritten.

    init_pte(), init_pmd() and alloc_init_pud() check every rewrite with pgattr_change_is_safe() (BUG_ON).
    """
    addr = lo
    for run in list(k.pt.runs(lo, hi)):
        a, b = max(run.start, lo), min(run.end, hi)
        if a > addr:
            k.pt.map(addr, a, level, new, pfn + ((addr - lo) >> PAGE_SHIFT))
            k.log.append(BootMapping(addr, a, level, 0))
        if run.level != level:
            raise KernelBug(f"kernel BUG: a {run.level.leaf_name} leaf at {a:#x} where the builder writes "
                            f"{level.leaf_name} entries (mmu.c alloc_init_cont_pte(): BUG_ON(pmd_leaf(pmd)))")
        same_pfn = run.pfn_at(a) == pfn + ((a - lo) >> PAGE_SHIFT)
        if not pgattr_change_is_safe(run.flags, new, cont_allowed=True, same_pfn=same_pfn):
            raise KernelBug(f"kernel BUG at {a:#x}: unsafe change {run.flags:#x} -> {new:#x} "
                            f"(mmu.c pgattr_change_is_safe())")
        if run.flags != new:
            old = run.flags
            k.pt.set_flags(a, b, new)
            k.log.append(EntryWrite(a, level, (b - a) // level.size, old, new))
        addr = b
    if addr < hi:
        k.pt.map(addr, hi, level, new, pfn + ((addr - lo) >> PAGE_SHIFT))
        k.log.append(BootMapping(addr, hi, level, 0))


def map_over(k: Arm64Kernel, phys: int, virt: int, size: int, prot: int, flags: int) -> None:
    """__create_pgd_mapping() of the v7.2 linear-alias series, over whatever is mapped already.

    Per level, as alloc_init_pud() / alloc_init_cont_pmd() / init_pmd() / alloc_init_cont_pte() / init_pte()
    do: a block where ``addr | next | phys`` is aligned, blocks are allowed and the old entry is not a table;
    PTE_CONT on a group where it is aligned, allowed and no entry of the group is valid without PTE_CONT.
    A stretch of a 1G region that nothing maps yet takes the builder's pieces directly (the same result).
    """
    addr = virt & ~(PAGE_SIZE - 1)
    end = align_up(virt + size, PAGE_SIZE)
    phys &= ~(PAGE_SIZE - 1)
    no_block = bool(flags & NO_BLOCK_MAPPINGS)
    no_cont = bool(flags & NO_CONT_MAPPINGS)

    def aligned(a: int, n: int, p: int, size: int) -> bool:
        return (a | n | p) & (size - 1) == 0

    def ptes(a: int, e: int, p: int, cont_pmd: bool) -> None:  # alloc_init_cont_pte()
        while a < e:
            n = min(align_down(a, CONT_PTE_SIZE) + CONT_PTE_SIZE, e)
            cont = (aligned(a, n, p, CONT_PTE_SIZE) and not no_cont
                    and not _group_has_valid_noncont(k, align_down(a, CONT_PTE_SIZE), Level.PTE, CONT_PTES))
            # the PMD group's PTE_CONT is passed down in prot (init_pmd() -> alloc_init_cont_pte())
            _write_leaves(k, a, n, Level.PTE, leaf_prot(prot, Level.PTE, cont or cont_pmd), p >> PAGE_SHIFT)
            p += n - a
            a = n

    def pmds(a: int, e: int, p: int) -> None:  # alloc_init_cont_pmd() and init_pmd()
        while a < e:
            n = min(align_down(a, CONT_PMD_SIZE) + CONT_PMD_SIZE, e)
            cont = (aligned(a, n, p, CONT_PMD_SIZE) and not no_cont
                    and not _group_has_valid_noncont(k, align_down(a, CONT_PMD_SIZE), Level.PMD, CONT_PMDS))
            x, q = a, p
            while x < n:
                y = min(align_down(x, Level.PMD.size) + Level.PMD.size, n)
                table = k.pt.entry_state(x, Level.PMD) == EntryState.TABLE
                if aligned(x, y, q, Level.PMD.size) and not no_block and not table:
                    _write_leaves(k, x, y, Level.PMD, leaf_prot(prot, Level.PMD, cont), q >> PAGE_SHIFT)
                else:
                    ptes(x, y, q, cont)
                q += y - x
                x = y
            p += n - a
            a = n

    while addr < end:  # alloc_init_pud(): with a 4K granule a 1G block is tried first
        region = align_down(addr, Level.PUD.size)
        nxt = min(region + Level.PUD.size, end)
        if not k.pt.occupied(region, region + Level.PUD.size):
            create_pgd_mapping(k, phys, addr, nxt - addr, prot, flags)
        elif (aligned(addr, nxt, phys, Level.PUD.size) and not no_block
              and k.pt.entry_state(addr, Level.PUD) != EntryState.TABLE):
            _write_leaves(k, addr, nxt, Level.PUD, leaf_prot(prot, Level.PUD, False), phys >> PAGE_SHIFT)
        else:
            pmds(addr, nxt, phys)
        phys += nxt - addr
        addr = nxt


def mark_rodata_ro_linear(k: Arm64Kernel) -> None:
    """mark_rodata_ro() since the v7.2 series, its linear-map part: the alias of [__init_end, __bss_stop)
    becomes read-only (the kernel-image VA updates of .rodata and [_text, _stext) are outside the linear map)."""
    start, end = k.image.init_end, k.image.data_end
    if end > start:
        update_mapping_prot(k, start, k.va(start), end - start, page_kernel_ro(k.config.ng_mappings),
                            "mark_rodata_ro")


def _without(ram: tuple, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for r in ram:
        pieces = [(r.start, r.end)]
        for hs, he in holes:
            nxt = []
            for s, e in pieces:
                if he <= s or hs >= e:
                    nxt.append((s, e))
                    continue
                if s < hs:
                    nxt.append((s, hs))
                if he < e:
                    nxt.append((he, e))
            pieces = nxt
        out.extend(pieces)
    return sorted(out)


def mark_linear_text_alias_ro(k: Arm64Kernel) -> None:
    """mark_linear_text_alias_ro(): the linear alias of .text and .rodata loses write permission."""
    start, end = k.image.text, k.image.init_begin
    update_mapping_prot(k, start, k.va(start), end - start, page_kernel_ro(k.config.ng_mappings),
                        "mark_linear_text_alias_ro")


# --------------------------------------------------------------------- KFENCE
def arm64_kfence_alloc_pool(k: Arm64Kernel) -> int | None:
    """arm64_kfence_alloc_pool(): memblock_phys_alloc(KFENCE_POOL_SIZE, PAGE_SIZE), marked NOMAP.

    memblock allocates top-down; the model assumes nothing is reserved at the top of RAM yet.
    """
    if not k.config.kfence_early_init:
        return None
    size = KFENCE_POOL_SIZE
    top = k.config.usable.ram[-1]
    pool = align_down(top.end - size, PAGE_SIZE)
    if pool < top.start or (pool < k.image.end and k.image.text < pool + size):
        k.warn("failed to allocate kfence pool")  # pr_err(); kfence_early_init = false
        return None
    return pool


def arm64_kfence_map_pool(k: Arm64Kernel, pool: int | None) -> None:
    """arm64_kfence_map_pool(): the early KFENCE pool is mapped with 4K pages only."""
    if pool is None:
        return
    size = KFENCE_POOL_SIZE
    create_pgd_mapping(k, pool, k.va(pool), size, page_kernel(k.config.ng_mappings, tagged=True),
                       NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS)
    k.kfence_pool = pool


def arch_kfence_init_pool(k: Arm64Kernel) -> bool:
    """arch_kfence_init_pool(): split a late pool to PTEs under BBML2; no TLB invalidation."""
    if not k.split_leaf_mapping_possible():  # nothing to do: the linear map is PTE-mapped already
        return True
    if k.config.kfence_early_init:  # an early pool was mapped with PTEs at boot
        return True
    assert k.kfence_pool is not None
    start = k.va(k.kfence_pool)
    return range_split_to_ptes(k, start, start + KFENCE_POOL_SIZE) == 0


# ------------------------------------------------------------------ splitting
def rewrite_leaves(k: Arm64Kernel, start: int, end: int, level: Level, change: Callable[[int], int]) -> None:
    """Rewrite every ``level`` leaf in ``[start, end)``, one EntryWrite per run of alike entries."""
    for run in list(k.pt.runs(start, end)):
        if run.level != level:
            continue
        lo, hi = max(run.start, start), min(run.end, end)
        old = k.pt.run_at(lo).flags  # type: ignore[union-attr]
        new = change(old)
        k.pt.set_flags(lo, hi, new)
        count = (hi - lo) // level.size
        k.log.append(EntryWrite(lo, level, count, old, new))


def split_contpte(k: Arm64Kernel, addr: int) -> None:
    """split_contpte(): clear PTE_CONT on the CONT_PTES entries of the group holding ``addr``."""
    group = align_down(addr, CONT_PTE_SIZE)
    rewrite_leaves(k, group, group + CONT_PTE_SIZE, Level.PTE, lambda v: v & ~ARM64.CONT)  # pte_mknoncont()


def split_contpmd(k: Arm64Kernel, addr: int) -> None:
    """split_contpmd(): clear PTE_CONT on the CONT_PMDS entries of the group holding ``addr``."""
    group = align_down(addr, CONT_PMD_SIZE)
    rewrite_leaves(k, group, group + CONT_PMD_SIZE, Level.PMD, lambda v: v & ~ARM64.CONT)  # pmd_mknoncont()


def _child_prot(level: Level, val: int, to_cont: bool, keep_invalid: bool) -> int:
    """split_pud()/split_pmd(): the children's descriptor, PTE_CONT cleared then set iff ``to_cont``.

    The type bits make every child valid; since 15bfba1ad77f (``keep_invalid``) the children of an invalid
    block are made present-invalid again (pmd_mkinvalid()/pte_mkinvalid()), so a split maps nothing anew."""
    if level == Level.PUD:
        prot = (val & ~ARM64.TYPE_MASK) | ARM64.TYPE_SECT  # children are PMD blocks (PMD_TYPE_SECT)
    else:
        prot = (val & ~ARM64.TYPE_MASK) | ARM64.TYPE_PAGE  # children are pages (PTE_TYPE_PAGE)
    if keep_invalid and not pte_valid(val):
        prot = (prot & ~ARM64.VALID) | ARM64.PRESENT_INVALID
    return (prot | ARM64.CONT) if to_cont else (prot & ~ARM64.CONT)


def split_leaves(k: Arm64Kernel, start: int, end: int, level: Level, to_cont: bool) -> int:
    """split_pud()/split_pmd() on every ``level`` leaf in ``[start, end)``: one table page each.

    Each new table is filled, then ``dsb(ishst)``, then published with
    __pud_populate()/__pmd_populate(): no TLB maintenance.  Leaves split alike
    are recorded as one Split event with a count, so a whole-map split stays cheap.
    """
    child = Level(level - 1)
    for run in list(k.pt.runs(start, end)):
        if run.level != level:
            continue
        lo, hi = max(run.start, start), min(run.end, end)
        count = (hi - lo) // level.size
        if k.pgtable_alloc_fail:  # no table page (INVALID_PHYS_ADDR): -ENOMEM
            k.alloc_pgtable_page(child)
            return -Errno.ENOMEM
        k.log.append(PgtableAlloc(child, count))
        prot = _child_prot(level, run.flags, to_cont, k.config.present_invalid_encoding)
        pfn = run.pfn_at(lo)
        k.pt.unmap(lo, hi)
        k.pt.map(lo, hi, child, prot, pfn)
        k.log.append(Split(lo, level, False, False, count))
    return 0


def split_pmd(k: Arm64Kernel, addr: int, to_cont: bool) -> int:
    """split_pmd(): a PMD block -> one PTE table of 512 pages (all PTE_CONT if ``to_cont``)."""
    lo = addr & Level.PMD.mask
    return split_leaves(k, lo, lo + Level.PMD.size, Level.PMD, to_cont)


def split_pud(k: Arm64Kernel, addr: int, to_cont: bool) -> int:
    """split_pud(): a PUD block -> one PMD table of 512 blocks (all PTE_CONT if ``to_cont``)."""
    lo = addr & Level.PUD.mask
    return split_leaves(k, lo, lo + Level.PUD.size, Level.PUD, to_cont)


def _entry(k: Arm64Kernel, addr: int, level: Level) -> tuple[str, int]:
    """What the walk finds at ``level`` for ``addr``, and the leaf's bits if it is a leaf."""
    state = k.pt.entry_state(addr, level)
    run = k.pt.run_at(addr) if state == EntryState.LEAF else None
    return state, run.flags if run is not None else 0


def split_kernel_leaf_mapping_locked(k: Arm64Kernel, addr: int) -> int:
    """split_kernel_leaf_mapping_locked(): make ``addr`` a leaf boundary, one size step at a time."""
    # each level: an address aligned to that level's size is already a boundary; otherwise a leaf
    # there is split one step down.  PGD first (P4D is folded)
    if addr % PGDIR_SIZE == 0:
        return 0
    if not k.pt.occupied(align_down(addr, PGDIR_SIZE), align_down(addr, PGDIR_SIZE) + PGDIR_SIZE):
        return 0  # !pgd_present()
    # PUD: a 1G leaf becomes contiguous PMDs
    if addr % Level.PUD.size == 0:
        return 0
    state, val = _entry(k, addr, Level.PUD)
    if state == EntryState.NONE or (state == EntryState.LEAF and not pte_present(val)):
        return 0
    if state == EntryState.LEAF:
        ret = split_pud(k, addr, True)
        if ret:
            return ret
    # CONTPMD: a contiguous PMD group loses PTE_CONT
    if addr % CONT_PMD_SIZE == 0:
        return 0
    state, val = _entry(k, addr, Level.PMD)
    if state == EntryState.NONE or (state == EntryState.LEAF and not pte_present(val)):
        return 0
    if state == EntryState.LEAF:
        if val & ARM64.CONT:
            split_contpmd(k, addr)
        # PMD: a 2M leaf becomes contiguous PTEs
        if addr % Level.PMD.size == 0:
            return 0
        ret = split_pmd(k, addr, True)
        if ret:
            return ret
    # CONTPTE: a contiguous PTE group loses PTE_CONT
    if addr % CONT_PTE_SIZE == 0:
        return 0
    run = k.pt.run_at(addr)
    if run is None or not pte_present(run.flags):
        return 0
    if run.flags & ARM64.CONT:
        split_contpte(k, addr)
    return 0


def split_kernel_leaf_mapping(k: Arm64Kernel, start: int, end: int) -> int:
    """split_kernel_leaf_mapping(): split at ``start`` and ``end`` (one end for a single page)."""
    # nothing to split when the map is PTE-only, splitting is impossible, or the range is in KFENCE
    if not k.split_leaf_mapping_possible() or k.is_kfence_address(start):
        return 0
    if start % PAGE_SIZE or end % PAGE_SIZE:  # both ends must be page-aligned
        return -Errno.EINVAL
    # pgtable_split_lock and lazy MMU mode: the model is single-threaded
    if end - start == PAGE_SIZE:
        # one page: splitting at whichever of start and end is less aligned is enough; the kernel compares
        # __ffs() of each, the model their lowest set bits, which order the same
        return split_kernel_leaf_mapping_locked(k, start if start & -start < end & -end else end)
    ret = split_kernel_leaf_mapping_locked(k, start)
    if not ret:
        ret = split_kernel_leaf_mapping_locked(k, end)
    return ret


def range_split_to_ptes(k: Arm64Kernel, start: int, end: int) -> int:
    """range_split_to_ptes(): walk with split_to_ptes_ops so every leaf touching the range is a plain PTE.

    The walk visits every entry that overlaps the range; the model handles the
    entries of one run together, which gives the same entries, tables and counts.
    """
    addr = start
    while addr < end:
        run = k.pt.first_run_from(addr)
        if run is None or run.start >= end:
            return 0
        addr = max(addr, run.start)
        level = run.level
        if level == Level.PTE:
            seg_end = min(run.end, end)
            if run.flags & ARM64.CONT:  # split_to_ptes_pte_entry(): a PTE_CONT group goes through split_contpte()
                rewrite_leaves(k, align_down(addr, CONT_PTE_SIZE), align_up(seg_end, CONT_PTE_SIZE), Level.PTE,
                               lambda v: v & ~ARM64.CONT)
            addr = seg_end
            continue
        first = align_down(addr, level.size)
        last = min(run.end, align_up(min(run.end, end), level.size))  # entries of this run in range
        if not p_leaf(run.flags):
            addr = last  # the walker skips a non-present leaf: nothing to do
            continue
        if level == Level.PUD:
            ret = split_leaves(k, first, last, Level.PUD, False)  # split_to_ptes_pud_entry(); then descend
            if ret:
                return ret
            continue
        if run.flags & ARM64.CONT:  # split_to_ptes_pmd_entry(): a PTE_CONT group goes through split_contpmd()
            rewrite_leaves(k, align_down(first, CONT_PMD_SIZE), align_up(last, CONT_PMD_SIZE), Level.PMD,
                           lambda v: v & ~ARM64.CONT)
        ret = split_leaves(k, first, last, Level.PMD, False)
        if ret:
            return ret
        addr = last  # ACTION_CONTINUE: the fresh PTEs are plain, no need to walk them
    return 0


def linear_map_split_to_ptes(k: Arm64Kernel) -> None:
    """linear_map_split_to_ptes() on CPU0: all of the linear map but [lm_alias(_stext), lm_alias(__init_begin))."""
    lstart, lend = k.layout.page_offset, k.layout.page_end
    kstart, kend = k.va(k.image.stext), k.va(k.image.init_begin)
    ret = range_split_to_ptes(k, lstart, kstart)
    if not ret:
        ret = range_split_to_ptes(k, kend, lend)
    if ret:
        raise KernelBug("Kernel panic - not syncing: Failed to split linear map")
    flush_tlb_kernel_range(k, lstart, lend, "linear_map_split_to_ptes")


def linear_map_maybe_split_to_ptes(k: Arm64Kernel) -> None:
    """linear_map_maybe_split_to_ptes(): the boot CPU had BBML2 (blocks were used) but a secondary has not."""
    if k.linear_map_requires_bbml2 and not k.system_supports_bbml2_noabort():
        linear_map_split_to_ptes(k)  # stop_machine(); secondaries wait in the idmap
