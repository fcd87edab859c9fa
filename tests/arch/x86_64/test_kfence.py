"""x86 KFENCE pool: arch_kfence_init_pool() (arch/x86/include/asm/kfence.h) splits one page per large leaf."""

from __future__ import annotations

from rofolio.arch.x86_64 import boot
from rofolio.arch.x86_64.config import X86Config
from rofolio.events import Call, Split
from rofolio.units import PAGE_SHIFT, GiB, Level, MiB


def _calls(k: object, name: str) -> list[Call]:
    return [e for e in k.log.events if isinstance(e, Call) and e.func == name]  # type: ignore[attr-defined]


def test_a_page_aligned_pool_straddling_two_2m_leaves_splits_both_with_one_call_each() -> None:
    # kfence_alloc_pool() (mm/kfence/core.c): memblock_alloc(KFENCE_POOL_SIZE, PAGE_SIZE), page-aligned only
    pool = 6 * GiB + 1 * MiB
    k = boot.boot(X86Config.qemu(8 * GiB, gbpages=False), options=boot.BootOptions(kfence=True, kfence_pool=pool))
    calls = _calls(k, "set_memory_4k")
    assert [(c.addr, c.numpages) for c in calls] == [(k.va(pool), 1), (k.va(6 * GiB + 2 * MiB), 1)]
    assert [e.level for e in k.log.events if isinstance(e, Split) and k.va(6 * GiB) <= e.addr < k.va(7 * GiB)] == [
        Level.PMD, Level.PMD]
    assert k.lookup_address(k.va(6 * GiB)).level == Level.PTE  # the whole 2M below the pool too
    assert k.lookup_address(k.va(6 * GiB + 4 * MiB)).level == Level.PMD  # past the pool: untouched


def test_a_2m_aligned_pool_in_a_1g_leaf_needs_one_call_and_two_splits() -> None:
    pool = 6 * GiB
    k = boot.boot(X86Config.qemu(8 * GiB), options=boot.BootOptions(kfence=True, kfence_pool=pool))
    assert [(c.addr, c.numpages) for c in _calls(k, "set_memory_4k")] == [(k.va(pool), 1)]
    assert [e.level for e in k.log.events if isinstance(e, Split) and k.va(6 * GiB) <= e.addr < k.va(7 * GiB)] == [
        Level.PUD, Level.PMD]
    assert k.lookup_address(k.va(pool) + (KFENCE_PAGES - 1 << PAGE_SHIFT)).level == Level.PTE


KFENCE_PAGES = boot.KFENCE_POOL_SIZE >> PAGE_SHIFT
