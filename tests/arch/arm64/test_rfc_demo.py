"""The RFC demo on arm64: make a 2M-aligned order-9 folio read-only in the linear map at initcall time.

"[RFC PATCH 2/3] arm64/mm: make huge zero folio read-only in linear map" must use the
internal path (set_memory_ro() refuses linear-map addresses); the model's
``make_linear_range_readonly()`` is that path.  It runs from thp_shrinker_init(), a
subsys_initcall: after smp_cpus_done(), so CPU features are final.  QEMU virt,
4 GiB, 8 CPUs, kernel 6.18, no FEAT_TLBIRANGE; the folio is PA 2G + 10M.
"""

from __future__ import annotations

from rofolio.arch.arm64 import boot
from rofolio.arch.arm64.kernel import Arm64Kernel
from rofolio.errors import Errno
from rofolio.events import Phase
from rofolio.units import GiB, Level, MiB
from tests.arch.arm64.conftest import B_PA, Step, boot_arm64, step

FOLIO_PA = B_PA + 10 * MiB
FOLIO = 2 * MiB


def _demo(**options: object) -> tuple[Arm64Kernel, Step]:
    k = boot_arm64(running=False, **options)
    assert k.phase == Phase.SCHEDULING and k.capabilities_finalized
    s = step(k, lambda: k.make_linear_range_readonly(FOLIO_PA, FOLIO))
    boot.late_init(k)
    return k, s


def test_rfc_demo_rodata_full_without_bbml2_changes_512_ptes_and_flushes_once() -> None:
    k, s = _demo(rodata="full")  # an invalid string now: the defaults (rodata_full) stay
    assert s.ret == 0
    assert s.delta == {"entries_written": 512, "flushes": 1, "flushes_all": 1}  # no split, no table
    assert k.lookup(k.va(FOLIO_PA)).read_only and k.lookup(k.va(FOLIO_PA + FOLIO - 4096)).read_only


def test_rfc_demo_with_bbml2_costs_one_pud_split_one_table_and_one_flush() -> None:
    k, s = _demo(bbml2=True)
    assert s.ret == 0
    assert s.delta == {"splits_1g": 1, "pgtables_allocated": 1, "entries_written": 17, "flushes": 1,
                       "flushes_all": 1}
    assert s.cont_cleared() == {Level.PMD: 16, Level.PTE: 0}
    folio = k.lookup(k.va(FOLIO_PA))
    assert folio.level == Level.PMD and folio.read_only
    assert sum(1 for r in k.pt.runs(k.va(B_PA), k.va(B_PA + GiB)) if r.level == Level.PUD) == 0


def test_rfc_demo_with_bbml2_and_tlbi_range_flushes_512_pages_by_range() -> None:
    _, s = _demo(bbml2=True, tlb_range=True)
    assert s.delta == {"splits_1g": 1, "pgtables_allocated": 1, "entries_written": 17, "flushes": 1,
                       "flushes_range": 1, "flushed_pages": 512}


def test_rfc_demo_rodata_off_reports_eopnotsupp_and_the_folio_stays_writable() -> None:
    k, s = _demo(rodata="off")
    assert (s.ret, s.delta) == (-Errno.EOPNOTSUPP, {})
    folio = k.lookup(k.va(FOLIO_PA))
    assert folio.level == Level.PUD and folio.writable
