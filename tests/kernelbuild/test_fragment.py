"""Kconfig fragments: what merge_config.sh is given, and the check that every asked value is in the built .config."""

from __future__ import annotations

from pathlib import Path

import pytest

from rofolio.errors import RofolioError
from rofolio.kernelbuild import kbuild
from rofolio.kernelbuild.fragment import Option, merge, parse, read, read_config, render, unmet

# The options issue 13 lists for every built kernel, and the x86 and arm64 serial consoles (scripts/kconfig
# symbol names, without CONFIG_)
ISSUE_OPTIONS = (
    "64BIT", "SMP", "PRINTK", "BUG", "BINFMT_ELF", "BINFMT_SCRIPT", "TTY", "BLK_DEV_INITRD", "RD_GZIP", "PROC_FS",
    "SYSFS", "DEVTMPFS", "DEBUG_FS", "PTDUMP_DEBUGFS", "PROC_KCORE", "KALLSYMS", "IKCONFIG", "IKCONFIG_PROC",
    "MODULES", "MODULE_UNLOAD", "VM_EVENT_COUNTERS", "TRANSPARENT_HUGEPAGE", "PERSISTENT_HUGE_ZERO_FOLIO",
    "DEBUG_VM", "KPROBES", "MEMORY_FAILURE", "MIGRATION", "COMPACTION", "DEBUG_KERNEL",
)
CONSOLE = {"x86_64": ("SERIAL_8250", "SERIAL_8250_CONSOLE"),
           "arm64": ("SERIAL_AMBA_PL011", "SERIAL_AMBA_PL011_CONSOLE")}


def test_a_fragment_reads_as_kconfig_writes_a_config() -> None:
    text = ('# a comment\n\nCONFIG_SMP=y\n# CONFIG_SWAP is not set\nCONFIG_NR_CPUS=8\nCONFIG_BASE=0x1000\n'
            'CONFIG_LOCALVERSION="-x y"\nCONFIG_EXT4_FS=m\n')
    got = parse(text, "f.config")
    assert [(o.name, o.value, o.line) for o in got] == [
        ("SMP", "y", 3), ("SWAP", "n", 4), ("NR_CPUS", "8", 5), ("BASE", "0x1000", 6),
        ("LOCALVERSION", '"-x y"', 7), ("EXT4_FS", "m", 8)]
    assert got[1].config_line() == "# CONFIG_SWAP is not set" and got[1].where == "f.config:4"


@pytest.mark.parametrize(("line", "says"), [
    ("SMP=y", "not a Kconfig line"),
    ("CONFIG_SMP=yes", "'yes' is not a Kconfig value"),
    ("CONFIG_LOCALVERSION=-x", "'-x' is not a Kconfig value"),
    ("config SMP", "not a Kconfig line"),
])
def test_a_line_kconfig_would_not_read_is_bad_input_at_its_line(line: str, says: str) -> None:
    with pytest.raises(RofolioError) as err:
        parse(f"CONFIG_BUG=y\n{line}\n", "mine.config")
    assert err.value.exit_status == 2
    assert err.value.message.startswith("mine.config:2: ") and says in err.value.message


def test_a_symbol_set_twice_in_one_fragment_is_refused() -> None:
    with pytest.raises(RofolioError, match=r"f:3: CONFIG_SMP is set twice \(first on line 1\)"):
        parse("CONFIG_SMP=y\nCONFIG_BUG=y\n# CONFIG_SMP is not set\n", "f")


def test_an_unreadable_fragment_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RofolioError) as err:
        read(tmp_path / "missing.config")
    assert err.value.exit_status == 2 and "cannot read the fragment" in err.value.message


def test_a_later_fragment_replaces_an_earlier_value_as_merge_config_sh_does() -> None:
    base = parse("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n", "base")
    mine = parse("# CONFIG_A is not set\nCONFIG_D=m\n", "mine")
    merged = merge(base, mine)
    assert [(o.name, o.value, o.source) for o in merged.values()] == [
        ("B", "y", "base"), ("C", "y", "base"), ("A", "n", "mine"), ("D", "m", "mine")]
    text = render(merged)
    assert "# mine:1\n# CONFIG_A is not set\n" in text
    assert {o.name: o.value for o in parse(text, "merged")} == {"A": "n", "B": "y", "C": "y", "D": "m"}


def test_an_option_whose_dependencies_are_unmet_is_found() -> None:
    wanted = merge(parse('CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_S="x"\nCONFIG_N=4\n', "f"))
    config = read_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S="x"\nCONFIG_N=8\n')
    # B is "not set", C is absent (Kconfig did not write it: n, as asked), N has another value
    assert [o.name for o in unmet(wanted, config)] == ["B", "N"]
    assert unmet(wanted, {**config, "B": "y", "N": "4"}) == []


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_package_fragments_ask_for_every_option_the_issue_lists(arch: str) -> None:
    options = kbuild.options(arch)
    missing = [name for name in (*ISSUE_OPTIONS, *CONSOLE[arch])
               if options.get(name, Option(name, "n", "", 0)).value != "y"]
    assert missing == []
    other = next(a for a in CONSOLE if a != arch)
    assert not set(CONSOLE[other]) & set(options), "the other architecture's console leaked into the fragment"
    assert options["SMP"].source == "fragments/common.config"
    assert {options[name].source for name in CONSOLE[arch]} == {f"fragments/{arch}.config"}


def test_a_user_fragment_is_merged_last_and_named_by_its_path(tmp_path: Path) -> None:
    mine = tmp_path / "mine.config"
    mine.write_text("# CONFIG_DEBUG_VM is not set\nCONFIG_KFENCE=y\n")
    options = kbuild.options("x86_64", mine)
    assert options["DEBUG_VM"] == Option("DEBUG_VM", "n", str(mine), 1)
    assert list(options)[-2:] == ["DEBUG_VM", "KFENCE"]


def test_the_cache_key_follows_what_the_options_say_not_how_they_are_written(tmp_path: Path) -> None:
    a = merge(parse("CONFIG_A=y\nCONFIG_B=y\n", "one"))
    b = merge(parse("# a comment\nCONFIG_B=y\n\nCONFIG_A=y\n", "two"))
    c = merge(parse("CONFIG_A=y\n# CONFIG_B is not set\n", "one"))
    assert kbuild._fragment_sha256(a) == kbuild._fragment_sha256(b) != kbuild._fragment_sha256(c)
    parts = {"recipe": 1, "arch": "x86_64", "source": "linux-source-7.2 7.2.13-1", "gcc": "12.2.0", "ld": "2.40",
             "pahole": "1.24", "fragment_sha256": kbuild._fragment_sha256(a), "patches_sha256": None}
    key = kbuild.cache_key(parts)
    assert len(key) == 16 and key == kbuild.cache_key(dict(reversed(parts.items())))
    for name, other in [("arch", "arm64"), ("source", "linux-source-7.2 7.2.14-1"), ("gcc", "12.3.0"),
                        ("patches_sha256", "ab" * 32), ("fragment_sha256", kbuild._fragment_sha256(c))]:
        assert kbuild.cache_key({**parts, name: other}) != key, name
