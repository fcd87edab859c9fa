"""GUP by kernel era: which page a FOLL_WRITE caller gets, and what pins do to a refcount (mm/gup.c history)."""

from __future__ import annotations

import pytest

from rofolio.events import KernelWarning
from rofolio.mm import MMState
from rofolio.mm.fault import mm_alloc, user_read
from rofolio.mm.gup import Foll, GupRules, get_user_page, pin_many
from rofolio.mm.longterm_pin import GUP_PIN_COUNTING_BIAS, try_grab_folio, unpin_folio
from rofolio.mm.process import HugePmd, MmStruct
from rofolio.units import PMD_SIZE
from tests.mm.conftest import boot_mm

WRITE_FORCE = frozenset({Foll.WRITE, Foll.FORCE})


def _mapped(mm: MMState, length: int, writable: bool) -> tuple[MmStruct, int]:
    """A private anonymous mapping whose first page was read (the zero page, or the huge zero PMD at 2M)."""
    mms = mm_alloc(mm)
    addr = mms.mmap_anon(length, write=writable)
    assert user_read(mm, mms, addr) == 0
    return mms, addr


def _got(mm: MMState, rules: GupRules, length: int, writable: bool, flags: frozenset[str]) -> str:
    mms, addr = _mapped(mm, length, writable)
    result = get_user_page(mm, mms, addr, flags, rules, race="madv_dontneed")
    assert result.ret == 0 and result.folio is not None
    if result.folio is mm.zero_page:
        return "zero page"
    if result.folio is mm.huge_zero.folio:
        return "huge zero folio"
    return "private copy"


# (rules, 4K or 2M mapping) -> what a FOLL_FORCE write to a !VM_WRITE mapping gets after the race
RACE = {
    (GupRules.DROP_FOLL_WRITE, 4096): "zero page",  # Dirty COW
    (GupRules.DROP_FOLL_WRITE, PMD_SIZE): "huge zero folio",
    (GupRules.FOLL_COW, 4096): "private copy",  # 19be0eaffa3a: FOLL_COW needs a dirty PTE
    (GupRules.FOLL_COW, PMD_SIZE): "huge zero folio",  # Huge Dirty COW: touch_pmd() dirtied the PMD
    (GupRules.TOUCH_PMD_FIX, 4096): "private copy",
    (GupRules.TOUCH_PMD_FIX, PMD_SIZE): "private copy",  # a8f97366452e
    (GupRules.FOLL_PIN, PMD_SIZE): "private copy",
    (GupRules.CURRENT, 4096): "private copy",
    (GupRules.CURRENT, PMD_SIZE): "private copy",
}


@pytest.mark.parametrize(("rules", "length"), list(RACE))
def test_a_forced_write_to_a_read_only_mapping_after_the_race_gets_what_its_era_gave(rules: GupRules,
                                                                                      length: int) -> None:
    _, mm = boot_mm(mem=2 << 30)
    assert _got(mm, rules, length, writable=False, flags=WRITE_FORCE) == RACE[(rules, length)]


@pytest.mark.parametrize("rules", [GupRules.DROP_FOLL_WRITE, GupRules.FOLL_COW])
@pytest.mark.parametrize("length", [4096, PMD_SIZE])
def test_on_a_writable_mapping_no_era_hands_out_the_shared_page(rules: GupRules, length: int) -> None:
    """faultin_page() dropped FOLL_WRITE only for !VM_WRITE; can_follow_write_pmd() needs FOLL_FORCE there."""
    _, mm = boot_mm(mem=2 << 30)
    assert _got(mm, rules, length, writable=True, flags=frozenset({Foll.WRITE})) == "private copy"


def test_without_foll_force_a_write_to_a_read_only_mapping_is_efault() -> None:
    _, mm = boot_mm(mem=2 << 30)
    mms, addr = _mapped(mm, 4096, writable=False)
    assert get_user_page(mm, mms, addr, frozenset({Foll.WRITE}), GupRules.DROP_FOLL_WRITE).ret == -14


def test_the_race_leaves_the_attackers_table_and_maps_the_shared_page_again() -> None:
    _, mm = boot_mm(mem=2 << 30)
    mms, addr = _mapped(mm, PMD_SIZE, writable=False)
    get_user_page(mm, mms, addr, WRITE_FORCE, GupRules.FOLL_COW, race="madv_dontneed")
    entry = mms.pmds[addr]
    assert isinstance(entry, HugePmd) and entry.special  # the re-read fault mapped the huge zero PMD again


def test_from_6_13_a_forced_write_on_a_huge_zero_pmd_gets_a_page_of_a_new_thp() -> None:
    """Today's FOLL_FORCE COW fault takes do_huge_zero_wp_pmd(): the caller gets its page of the new THP, which
    the read-only VMA maps without write permission."""
    _, mm = boot_mm(mem=2 << 30, spec={"kernel": "7.2"})
    mms, addr = _mapped(mm, PMD_SIZE, writable=False)
    result = get_user_page(mm, mms, addr + 5 * 4096, WRITE_FORCE, GupRules.CURRENT)
    thp = mms.pmds[addr]
    assert isinstance(thp, HugePmd) and not thp.special and not thp.writable
    assert result.folio is not None and result.folio.order == 9 and result.pfn == thp.pfn + 5
    assert result.folio is not mm.huge_zero.folio


def test_the_race_on_a_new_thp_splits_its_pmd_and_zaps_only_the_copied_page() -> None:
    """MADV_DONTNEED of one page of a PMD-mapped THP: __split_huge_pmd() gives each PTE a reference and a
    mapping, zap_pte_range() drops the one page's; the retry's write fault gets a fresh 4K page."""
    _, mm = boot_mm(mem=2 << 30, spec={"kernel": "7.2"})
    mms, addr = _mapped(mm, PMD_SIZE, writable=False)
    result = get_user_page(mm, mms, addr, WRITE_FORCE, GupRules.CURRENT, race="madv_dontneed")
    table = mms.pmds[addr]
    assert not isinstance(table, HugePmd) and not mms.deposited
    thp = mm.folio_of(table.get(1).pfn)
    assert thp is not None and thp.order == 9
    assert (thp.mapcount, thp.refcount, len(thp.rmap)) == (511, 511, 511)
    assert result.folio is not None and result.folio.order == 0 and table.get(0).pfn == result.pfn


def test_the_zapped_copy_is_unmapped_and_freed() -> None:
    _, mm = boot_mm(mem=2 << 30)
    mms, addr = _mapped(mm, 4096, writable=False)
    before = dict(mm.folios)
    result = get_user_page(mm, mms, addr, WRITE_FORCE, GupRules.CURRENT, race="madv_dontneed")
    new = [f for pfn, f in mm.folios.items() if pfn not in before and f.label.startswith("anon page")]
    assert [f.pfn for f in new] == [result.pfn]  # only the retry's copy is left; the zapped one went back
    assert result.folio is not None and result.folio.mapcount == 1 and result.folio.refcount == 2


def test_a_foll_pin_on_a_small_folio_adds_the_bias_and_unpin_takes_it_back() -> None:
    _, mm = boot_mm(mem=2 << 30)
    mms, addr = _mapped(mm, 4096, writable=True)
    result = get_user_page(mm, mms, addr, frozenset({Foll.WRITE, Foll.PIN}), GupRules.CURRENT)
    folio = result.folio
    assert folio is not None and result.pinned
    assert (folio.refcount, folio.pincount) == (1 + GUP_PIN_COUNTING_BIAS, 1)
    unpin_folio(mm, folio)
    assert (folio.refcount, folio.pincount) == (1, 0)


def test_before_5_7_a_pin_is_a_plain_reference() -> None:
    _, mm = boot_mm(mem=2 << 30)
    assert mm.zero_page is not None
    taken, what = pin_many(mm, mm.zero_page, 10, GupRules.TOUCH_PMD_FIX)
    assert taken == 10 and what == "refcount 1 -> 11"


def test_the_zero_page_pin_that_crosses_2_31_is_taken_and_the_next_ones_are_refused() -> None:
    machine, mm = boot_mm(mem=2 << 30)
    zero = mm.zero_page
    assert zero is not None and zero.refcount == 1
    taken, what = pin_many(mm, zero, 2_097_151, GupRules.FOLL_PIN)
    assert taken == 2_097_151 and zero.refcount == 1 + 2_097_151 * 1024 < 1 << 31  # still positive
    assert machine.log.counters.extra.get("refcount_overflows", 0) == 0
    taken, what = pin_many(mm, zero, 3, GupRules.FOLL_PIN)
    assert taken == 1 and zero.refcount == (1 << 31) + 1
    assert what == ("refcount 2147482625 -> 2147483649 (past 2^31: negative as an atomic_t), "
                    "then 2 more pins refused with a WARN (try_grab_folio)")
    assert machine.log.counters.extra["refcount_overflows"] == 1
    assert machine.log.counters.extra["pins"] == 2_097_152


def test_today_the_zero_page_is_left_unpinned() -> None:
    _, mm = boot_mm(mem=2 << 30)
    assert mm.zero_page is not None
    taken, _ = pin_many(mm, mm.zero_page, 5_000_000, GupRules.CURRENT)
    assert taken == 5_000_000 and mm.zero_page.refcount == 1


def test_without_the_refcount_check_the_count_just_wraps() -> None:
    _, mm = boot_mm(mem=2 << 30)
    assert mm.zero_page is not None
    assert try_grab_folio(mm, mm.zero_page, 3, pin=False, refcount_check=False) == 3
    mm.zero_page.refcount = (1 << 31) - 1
    assert try_grab_folio(mm, mm.zero_page, 2, pin=False, refcount_check=False) == 2
    assert mm.zero_page.refcount == (1 << 31) + 1


def test_today_foll_longterm_without_foll_pin_is_einval_with_a_warning() -> None:
    """is_valid_gup_args(): FOLL_LONGTERM can only be given when pinning."""
    machine, mm = boot_mm(mem=2 << 30)
    mms, addr = _mapped(mm, 4096, writable=True)
    result = get_user_page(mm, mms, addr, frozenset({Foll.LONGTERM}), GupRules.CURRENT)
    assert (result.ret, result.folio) == (-22, None)
    assert [w.text.splitlines()[1] for w in machine.log.events if isinstance(w, KernelWarning)] == [
        "WARNING: CPU: 0 PID: 1 at mm/gup.c is_valid_gup_args()"]
    assert get_user_page(mm, mms, addr, frozenset({Foll.LONGTERM, Foll.PIN}), GupRules.CURRENT).ret == 0
