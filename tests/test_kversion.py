"""Kernel versions: one grammar (MAJOR.MINOR[.PATCH]), the stable table, and gates with stable backports."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio import kversion
from rofolio.errors import ConfigError
from rofolio.kversion import (
    HUGE_ZERO_WP_ALLOCATES_THP,
    STABLE,
    X86_CPA_COLLAPSE,
    X86_DIRTY_CLEARED_WITH_RW,
    X86_RO_CLEARS_DIRTY,
    ZERO_PAGE_NOT_PINNED,
    Gate,
    KernelVersion,
)
from rofolio.mm.gup import GupRules, pin_many
from rofolio.oracle.guest import parse_log
from rofolio.oracle.translate import kernel_series
from rofolio.prot import X86
from rofolio.units import GiB
from tests.conftest import boot_running
from tests.mm.conftest import boot_mm

V = KernelVersion.parse
DATA = Path(__file__).parent / "oracle" / "data"


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kversion, "_warned", set())


# the grammar ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "exact"), [
    ("6.1.192", (6, 1, 192)), ("6.12.57", (6, 12, 57)), ("v6.1.129", (6, 1, 129)), (" 7.2.0 ", (7, 2, 0)),
    ("6.15", (6, 15, 0)),  # a line without a stable entry is its mainline release
])
def test_a_version_names_one_release(text: str, exact: tuple[int, int, int]) -> None:
    assert V(text) == KernelVersion(*exact)


@pytest.mark.parametrize("line", sorted(STABLE))
def test_major_minor_is_the_newest_modelled_stable_of_the_line(line: tuple[int, int]) -> None:
    version = V(f"{line[0]}.{line[1]}")
    assert (version.major, version.minor, version.patch) == (*line, STABLE[line])


def test_6_1_is_the_debian_guests_stable() -> None:
    assert V("6.1") == KernelVersion(6, 1, 192)


@pytest.mark.parametrize("version", [KernelVersion(6, 1, 192), KernelVersion(6, 1, 0), KernelVersion(6, 2, 0),
                                     KernelVersion(6, 18, 0), KernelVersion(6, 12, 57), KernelVersion(7, 2, 0)])
def test_the_string_form_parses_back_to_the_same_release(version: KernelVersion) -> None:
    assert V(str(version)) == version


def test_string_forms() -> None:
    assert [str(V(t)) for t in ("6.1", "6.1.0", "6.2", "6.12.57", "7.2")] == ["6.1.192", "6.1.0", "6.2", "6.12.57",
                                                                            "7.2"]
    assert (V("6.15").tag, V("6.1.130").tag) == ("v6.15", "v6.1.130")


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("6", "cannot parse kernel version '6'", "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"),
    ("6.x", "cannot parse kernel version '6.x'", "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"),
    ("6.1.2.3", "cannot parse kernel version '6.1.2.3'", "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"),
    ("", "cannot parse kernel version ''", "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57"),
    ("6.15-rc3", "cannot parse kernel version '6.15-rc3'",
     "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57; release candidates are not modelled"),
    ("6.1.0-57-amd64", "cannot parse kernel version '6.1.0-57-amd64'",
     "write MAJOR.MINOR[.PATCH], e.g. 7.2, 6.1.192 or 6.12.57; "
     "a distribution release such as 6.1.0-57-amd64 hides the patch level"),
    ("5.15.170", "kernel 5.15.170 is older than the oldest modelled kernel line 6.1", "use 6.1 or newer"),
])
def test_a_bad_version_is_a_config_error_with_a_hint(text: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        V(text)
    assert (err.value.message, err.value.hint) == (message, hint)


def test_a_version_newer_than_the_model_is_accepted_and_warned_about_once(capsys: pytest.CaptureFixture[str]) -> None:
    newest = kversion.NEWEST_KERNEL
    later = f"{newest.major}.{newest.minor + 1}"
    assert V(later) == KernelVersion(newest.major, newest.minor + 1, 0)
    V(later)
    assert capsys.readouterr().err == (f"rofolio: warning: kernel {later} is newer than the newest modelled kernel "
                                       f"{newest}; it is modelled with {newest}'s rules\n")


def test_a_patch_level_past_the_lines_entry_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    V("6.1.193")
    V("6.1.193")
    assert capsys.readouterr().err == ("rofolio: warning: kernel 6.1.193 is newer than the newest modelled 6.1 stable "
                                       "(6.1.192); later stable backports are not modelled\n")


def test_a_known_version_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("6.1", "6.1.192", "6.12.57", "6.18", "7.2"):
        V(text)
    assert capsys.readouterr().err == ""


# gates: both sides of each boundary -----------------------------------------------------------
@pytest.mark.parametrize(("gate", "before", "since"), [
    # c1fcf41cf37f: mainline v6.15; stable 6.6.88, 6.12.24, 6.14.3
    (X86_DIRTY_CLEARED_WITH_RW, "6.6.87", "6.6.88"),
    (X86_DIRTY_CLEARED_WITH_RW, "6.12.23", "6.12.24"),
    (X86_DIRTY_CLEARED_WITH_RW, "6.14.2", "6.14.3"),
    (X86_DIRTY_CLEARED_WITH_RW, "6.13.12", "6.15.0"),
    # c8070b787519: mainline v6.5; 6.1.130 (476c1dfefab8)
    (ZERO_PAGE_NOT_PINNED, "6.1.129", "6.1.130"),
    (ZERO_PAGE_NOT_PINNED, "6.4.16", "6.5.0"),
    # f788b71768ff and 41d88484c71c: mainline only
    (X86_RO_CLEARS_DIRTY, "6.1.192", "6.6.0"),
    (X86_CPA_COLLAPSE, "6.14.11", "6.15.0"),
    # 1ced09e0331f: mainline v6.13 only
    (HUGE_ZERO_WP_ALLOCATES_THP, "6.12.57", "6.13.0"),
])
def test_a_gate_is_off_before_its_boundary_and_on_from_it(gate: Gate, before: str, since: str) -> None:
    assert (gate.applies(V(before)), gate.applies(V(since))) == (False, True)


def test_the_dirty_gate_is_not_in_the_6_1_line_at_all() -> None:
    assert not X86_DIRTY_CLEARED_WITH_RW.applies(V("6.1"))


def test_a_backport_must_be_older_than_mainline() -> None:
    with pytest.raises(ValueError, match="not older than mainline"):
        Gate("bad", KernelVersion(6, 5), "0" * 12, "t", {(6, 6): 1})


def test_a_gate_cites_its_commit_and_backports() -> None:
    assert X86_DIRTY_CLEARED_WITH_RW.cite() == ('commit c1fcf41cf37f ("x86/mm: Clear _PAGE_DIRTY for kernel mappings '
                                                'when we clear _PAGE_RW") (v6.15; v6.6.88, v6.12.24, v6.14.3)')


# the gates at work -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kernel", "dirty"), [("6.12.23", True), ("6.12.24", False), ("6.6.87", True),
                                                ("6.6.88", False), ("6.15", False), ("6.1", True)])
def test_set_direct_map_invalid_noflush_clears_dirty_from_c1fcf41cf37f(kernel: str, dirty: bool) -> None:
    # __set_pages_np(): mask_clr is PRESENT|RW, and DIRTY with c1fcf41cf37f; __set_pages_p() sets PRESENT|RW only
    machine = boot_running(kernel=kernel)
    k = machine.kernel
    pfn = (6 * GiB) >> 12
    assert k.lookup_address(k.page_address(pfn)).flags & X86.DIRTY
    assert k.set_direct_map_invalid_noflush(pfn) == 0
    assert bool(k.lookup_address(k.page_address(pfn)).flags & X86.DIRTY) is dirty
    assert k.set_direct_map_default_noflush(pfn) == 0
    assert bool(k.lookup_address(k.page_address(pfn)).flags & X86.DIRTY) is dirty


@pytest.mark.parametrize(("kernel", "refcount"), [("6.1.129", 1 + 3 * 1024), ("6.1.130", 1), ("6.5", 1)])
def test_pin_user_pages_pins_the_zero_page_until_c8070b787519(kernel: str, refcount: int) -> None:
    # GUP_PIN_COUNTING_BIAS is 1024: three pins on ZERO_PAGE before the fix, none after
    _, mm = boot_mm(mem=2 << 30)
    zero = mm.zero_page
    assert zero is not None and zero.refcount == 1
    taken, _ = pin_many(mm, zero, 3, GupRules.for_kernel(V(kernel)))
    assert (taken, zero.refcount) == (3, refcount)


# the oracle's guest version --------------------------------------------------------------------
def test_the_recorded_guest_runs_6_1_192_though_uname_says_6_1_0() -> None:
    log = parse_log((DATA / "experiments-8G.serial.log").read_text())
    assert log.uname == "6.1.0-57-amd64"
    assert kernel_series(log.uname, log.version) == KernelVersion(6, 1, 192)


@pytest.mark.parametrize(("uname", "version", "exact"), [
    ("6.1.0-57-amd64", None, KernelVersion(6, 1, 192)),  # no /proc/version: the line's newest modelled stable
    ("6.1.0-57-amd64", "Linux version 6.1.0-57-amd64 ... Debian 6.1.129-1 (2025-03-01)", KernelVersion(6, 1, 129)),
    ("6.1.0-57-amd64", "Linux version 6.1.0-57-amd64 ... Debian 6.12.9-1 (2025-03-01)", KernelVersion(6, 1, 192)),
    ("6.18.0", None, KernelVersion(6, 18, 0)),
    ("6.12.57-rt", None, KernelVersion(6, 12, 57)),
])
def test_kernel_series_uses_the_exact_version_where_the_guest_gives_it(uname: str, version: str | None,
                                                                       exact: KernelVersion) -> None:
    assert kernel_series(uname, version) == exact
