"""`rofolio oracle rfc`: what the model predicts the RFC v2 series does, and how a guest's log is read."""

from __future__ import annotations

import pytest

from rofolio.oracle import rfc
from tests.oracle.conftest import recorded

X86_1G, X86_NO1G = rfc.CONFIGS[0], rfc.CONFIGS[1]
ARM64_ON, ARM64_OFF = rfc.CONFIGS[4], rfc.CONFIGS[5]


def _rows(config: rfc.RfcConfig) -> dict[str, tuple[str, str]]:
    return rfc.model_rows(config, rfc.model_facts(config, False), rfc.model_facts(config, True))


def test_x86_the_folio_in_a_1g_leaf_costs_one_1g_split_and_becomes_a_read_only_2m_leaf() -> None:
    """set_memory_ro() of a 2M-aligned folio inside a 1G leaf: the 1G leaf becomes 512 2M leaves (CPA's
    split_large_page()), the folio's own 2M leaf is made read-only, nothing smaller is needed.  The split
    happens in an initcall, before SYSTEM_RUNNING, so split_page_count() leaves /proc/vmstat alone."""
    rows = _rows(X86_1G)
    assert rows["boot: direct map change"][1] == "DirectMap1G -1048576, DirectMap2M +1048576"
    assert rows["huge zero folio: leaf"] == ("pud RW", "pmd RO")


def test_x86_without_1g_pages_the_series_changes_no_leaf_size() -> None:
    rows = _rows(X86_NO1G)
    assert rows["boot: direct map change"][1] == "no change"
    assert rows["huge zero folio: leaf"] == ("pmd RW", "pmd RO")


@pytest.mark.parametrize("config", [X86_1G, ARM64_ON])
def test_a_kernel_store_to_the_read_only_huge_zero_folio_oopses_and_user_space_still_copies_on_write(
        config: rfc.RfcConfig) -> None:
    rows = _rows(config)
    unpatched, patched = rows["kernel write to the huge zero folio"]
    assert unpatched == "the store lands" and patched.startswith("oops: ")
    assert rows["user read"] == ("huge zero folio, PMD-mapped",) * 2
    assert rows["user write"] == ("copied on write",) * 2


def test_model2_refuses_to_free_or_migrate_a_read_only_folio_and_warns() -> None:
    rows = _rows(X86_1G)
    assert rows["patch 5: free a read-only folio"] == ("no folio_make_readonly()", "WARN, refused (leaked)")
    assert rows["patch 5: migrate a read-only folio"][1].startswith("WARN, refused (-EBUSY")


def test_arm64_rodata_off_gets_eopnotsupp_and_the_folio_stays_writable() -> None:
    """arch_make_folio_readonly() on arm64 without can_set_direct_map(): -EOPNOTSUPP, best effort."""
    rows = _rows(ARM64_OFF)
    assert rows["huge zero folio: leaf"][1].endswith("RW")
    assert rows["kernel write to the huge zero folio"][1] == "the store lands"
    assert rows["patch 5: free a read-only folio"][1].startswith("not made read-only (-EOPNOTSUPP")
    assert rows["patch 5: free a read-only folio"][1].endswith("freed")


def test_arm64_rodata_on_maps_the_linear_map_with_pages_so_nothing_splits() -> None:
    rows = _rows(ARM64_ON)
    assert rows["boot: direct map change"][1] == "no change"
    assert rows["huge zero folio: leaf"] == ("pte RW", "pte RO")


# ------------------------------------------------------------------ recorded guests (rofolio oracle rfc --keep-log)
def _guest(name: str) -> rfc.GuestFacts:
    return rfc.parse_guest(recorded(f"rfc/rfc-{name}.serial.log"))


@pytest.mark.parametrize(("config", "name"), [(X86_1G, "x86-64-1G-pages-1-CPU"), (ARM64_ON, "arm64-rodata-on"),
                                              (ARM64_OFF, "arm64-rodata-off")])
def test_the_recorded_kernels_agree_with_the_model_on_every_row(config: rfc.RfcConfig, name: str) -> None:
    rep = rfc.compare_config(config, _guest(f"{name}-base"), _guest(f"{name}-rfc"))
    assert not rep.errors
    assert [r["row"] for r in rep.rows if not r["agree"]] == []
    assert len(rep.rows) == 7


def test_a_patched_x86_guest_shows_the_split_the_refusals_and_the_oops() -> None:
    base, patched = _guest("x86-64-1G-pages-1-CPU-base"), _guest("x86-64-1G-pages-1-CPU-rfc")
    assert base.huge_zero_pfn == patched.huge_zero_pfn and patched.huge_zero_pfn % 512 == 0
    assert patched.boot["DirectMap1G"] == base.boot["DirectMap1G"] - 1048576  # the 1G leaf around the folio
    assert rfc.leaf_of(patched, rfc.direct_map_va("x86_64", patched.huge_zero_pfn)) == "pmd RO"
    assert [w.split()[2] for w in patched.warnings[:2]] == ["free", "migrate"]
    assert patched.migrate["errno"] == "16" and patched.freero["free"] == "0"  # EBUSY; leaked
    assert "error_code(0x0003) - permissions violation" in patched.oops and patched.kwrite_survived is False
    assert base.kwrite_survived is True and base.freero["ret"] == "missing"


def test_a_guest_that_never_finished_is_an_error_not_a_row() -> None:
    text = recorded("rfc/rfc-arm64-rodata-off-rfc.serial.log").replace("=== RFC END", "")
    rep = rfc.compare_config(ARM64_OFF, _guest("arm64-rodata-off-base"), rfc.parse_guest(text))
    assert rep.errors == ["the patched guest did not finish"] and not rep.agree and rep.rows == []


def test_a_guest_that_hangs_before_init_is_booted_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    serial = recorded("rfc/rfc-arm64-rodata-on-rfc.serial.log")
    runs = [rfc.Boot([], -9, True, 300.0, "EFI stub: Booting Linux Kernel...\n", ""),
            rfc.Boot([], 0, False, 9.0, serial, "")]
    monkeypatch.setattr(rfc, "run_qemu", lambda *_a, **_k: runs.pop(0))
    facts, boot = rfc.run_guest(ARM64_ON, "qemu-system-aarch64", "/c/Image", b"", Path("/dev/null"),
                                Path("/dev/null"), 300.0)
    assert not runs and facts == rfc.parse_guest(serial) and facts.complete and boot.wall_s == 9.0
    assert boot.notes == ("the first guest hung (QEMU killed it after 300.0 s), its console saying 'EFI stub: "
                          "Booting Linux Kernel...', before /init; booted again",)
