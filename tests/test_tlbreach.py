"""TLB reach of the direct map (rofolio.tlbreach): entry counts per page size and per CPU preset.

The RFC machines are booted twice, without and with the persistent huge zero folio made read-only
(CONFIG_PERSISTENT_HUGE_ZERO_FOLIO, RFC 1/3): on x86 GBPAGES the folio's 1G leaf becomes 512 2M
leaves, on arm64 rodata=full (no BBML2) the linear map is all 4K PTEs without the contiguous bit
(NO_CONT_MAPPINGS) before and after, and on arm64 BBML2 the PUD becomes 512 PMDs of which the
folio's contiguous group of 16 loses PTE_CONT.
"""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from functools import cache
from typing import Any

import pytest

from rofolio.arch.arm64.prot import ARM64
from rofolio.errors import ConfigError
from rofolio.machine import Leaf, Machine, MachineSpec
from rofolio.tlbreach import (
    ARM64_PTE_CONT,
    ArrayReach,
    TlbArray,
    entries_needed,
    load_presets,
    preset_caveat,
    presets,
    reach,
    tlb_reach_report,
    tlb_table,
    translation_counts,
    translation_runs,
)
from rofolio.units import GiB, Level, MiB
from tests.survey.test_catalogue import linux_72_tree

K4, M2, G1 = 4096, 2 * MiB, GiB


@cache
def report(**kw: Any) -> dict[str, Any]:
    return tlb_reach_report(MachineSpec.build(**kw))


def arr(result: dict[str, Any], preset: str, name: str) -> dict[str, Any]:
    p = next(p for p in result["presets"] if p["name"] == preset)
    return next(a for a in p["arrays"] if a["name"] == name)


def nb(result: dict[str, Any], preset: str, name: str, when: str) -> tuple[int, str | None]:
    a = arr(result, preset, name)["neighbourhood"][when]
    return a["needed"], a["share"]


# ------------------------------------------------------------------ presets and their sources


def test_cont_bit_is_arm64_pte_cont() -> None:
    assert ARM64_PTE_CONT == ARM64.CONT


def test_every_preset_figure_names_a_source_that_says_where() -> None:
    table = presets()
    for preset in table.values():
        assert preset.arrays, preset.name
        for array in preset.arrays:
            assert array.sources, (preset.name, array.name)
            assert array.entries is not None and array.entries > 0, (preset.name, array.name)
            assert bool(array.smash) == bool(array.smash_sources)
            for source in (*array.sources, *array.smash_sources):
                assert source.kind in ("manual", "trm", "measurement", "kernel", "secondary")
                assert source.document and source.section


def test_at_least_two_server_cores_per_vendor_each_capacity_resting_on_more_than_a_restatement() -> None:
    """Issue 14: two Intel, two AMD and two Arm server cores; a capacity only a restatement gives is the exception.
    RISC-V has the one core whose data TLB and page sizes a source gives (SiFive's U54)."""
    by_vendor: dict[str, set[str]] = {}
    for p in presets().values():
        by_vendor.setdefault(p.vendor, set()).add(p.core)
    assert all(len(by_vendor[v]) >= 2 for v in ("Intel", "AMD", "Arm")), by_vendor
    assert by_vendor["SiFive"] and {a for p in presets().values() if p.vendor == "SiFive" for a in p.arch} == {
        "riscv64"}
    for vendor in ("Intel", "AMD", "Arm"):
        primary = [p.name for p in presets().values() if p.vendor == vendor
                   and all(any(s.kind != "secondary" for s in a.sources) for a in p.arrays)]
        assert len(primary) >= 2, (vendor, primary)


def test_the_capacities_that_rest_only_on_restatements_are_these() -> None:
    """WikiChip, Stack Overflow and Wikipedia restate vendor documents we could not read: keep the list short."""
    secondary_only = {(p.name, a.name) for p in presets().values() for a in p.arrays
                      if a.entries is not None and all(s.kind == "secondary" for s in a.sources)}
    assert secondary_only == {("arm-cortex-a72", "L1 DTLB")}
    assert {(p.name, a.name) for p in presets().values() for a in p.arrays if a.entries is None} == set()


@pytest.mark.skipif(linux_72_tree() is None, reason="no prepared Linux 7.2 tree")
def test_the_kernel_sources_say_what_the_presets_take_from_them() -> None:
    """Descriptor 63H's 2M/4M array is 32 entries in the 7.2 tree, and the AMD TLB sizes come from the leaves cited."""
    tree = linux_72_tree()
    assert tree is not None
    types = (tree / "arch/x86/include/asm/cpuid/types.h").read_text()
    assert re.search(r"#define\s+TLB_0x63_2M_4M_ENTRIES\s+32\b", types)
    table = (tree / "arch/x86/kernel/cpu/cpuid_0x2_table.c").read_text()
    assert re.search(r"TLB_ENTRY\(\s*0x63,\s*TLB_DATA_1G_2M_4M,\s*4\s*\)", table)
    assert re.search(r"TLB_ENTRY\(\s*0x03,\s*TLB_DATA_4K,\s*64\s*\)", table)
    amd = (tree / "arch/x86/kernel/cpu/amd.c").read_text()
    body = amd[amd.index("static void cpu_detect_tlb_amd("):]
    body = body[:body.index("\n}\n")]
    assert "cpuid(0x80000006" in body and "tlb_lld_4k = (ebx >> 16)" in body
    # the U54's data TLB in the device trees of the boards that carry it: 32 entries in one set
    for dts in ("arch/riscv/boot/dts/microchip/mpfs.dtsi", "arch/riscv/boot/dts/microchip/pic64gx.dtsi",
                "arch/riscv/boot/dts/sifive/fu540-c000.dtsi"):
        heads = [n.split("};")[0] for n in (tree / dts).read_text().split("cpu@")[1:]]  # up to its first subnode
        nodes = [h for h in heads if '"sifive,u54-mc"' in h]
        assert nodes, dts
        for node in nodes:
            assert "d-tlb-size = <32>;" in node and "d-tlb-sets = <1>;" in node, dts
            assert 'mmu-type = "riscv,sv39";' in node, dts
    kernel_sources = {s.id for p in presets().values() for a in p.arrays for s in (*a.sources, *a.smash_sources)
                      if s.kind == "kernel"}
    assert kernel_sources == {"linux-cpuid-0x2-table", "linux-amd-detect-tlb", "linux-riscv-dts-u54"}


def test_a_figure_without_a_source_or_with_an_unknown_one_is_refused() -> None:
    base = '[sources.s]\nkind = "trm"\ndocument = "d"\nsection = "s"\n' \
           '[[preset]]\nname = "p"\nvendor = "Arm"\ncore = "c"\narch = ["arm64"]\ncontiguous_bit = true\n' \
           '[[preset.tlb]]\nlevel = "L1D"\nname = "t"\nholds = ["4K"]\n'
    assert load_presets(base + 'entries = 8\nsources = ["s"]\n')["p"].arrays[0].entries == 8
    assert load_presets(base + 'entries = "unsourced"\nsources = ["s"]\n')["p"].arrays[0].entries is None
    for bad in ('entries = 8\nsources = []\n', 'entries = 8\nsources = ["nope"]\n', 'entries = 0\nsources = ["s"]\n',
                'entries = 8\nsources = ["s"]\nsmash = { "1G" = "2M" }\n'):
        with pytest.raises(ConfigError):
            load_presets(base + bad)


def test_smashing_and_breaking_down_choose_the_entry_size() -> None:
    zen2_l2 = next(a for a in presets()["amd-zen2"].arrays if a.level == "L2")
    assert zen2_l2.stored_size(G1) == M2  # smashed, as the source says
    n1_l1 = next(a for a in presets()["arm-neoverse-n1"].arrays if a.level == "L1D")
    assert (n1_l1.stored_size(G1), n1_l1.stored_size(32 * MiB), n1_l1.stored_size(64 * 1024)) == (512 * MiB, M2, 65536)


# ------------------------------------------------------------------ the pure counting


def leaf(start: int, end: int, level: Level, flags: int = 0, present: bool = True) -> Leaf:
    return Leaf(start, end, level, flags, present, True)  # type: ignore[arg-type]


def test_a_pud_of_contiguous_pmds_is_32_entries_with_the_contiguous_bit_and_512_without() -> None:
    leaves = [leaf(0, G1, Level.PMD, ARM64_PTE_CONT)]
    cont = translation_runs(leaves, cont_mask=ARM64_PTE_CONT)
    assert translation_counts(cont) == {32 * MiB: 32}
    l2 = next(a for a in presets()["arm-neoverse-n1"].arrays if a.level == "L2")
    assert entries_needed(cont, l2) == {32 * MiB: 32}
    assert entries_needed(translation_runs(leaves), l2) == {M2: 512}


def test_a_gib_of_4k_ptes_is_262144_entries_and_16384_when_contiguous() -> None:
    l1 = next(a for a in presets()["arm-neoverse-n1"].arrays if a.level == "L1D")
    assert entries_needed(translation_runs([leaf(0, G1, Level.PTE)], cont_mask=ARM64_PTE_CONT), l1) == {K4: 262144}
    assert entries_needed(translation_runs([leaf(0, G1, Level.PTE, ARM64_PTE_CONT)], cont_mask=ARM64_PTE_CONT),
                          l1) == {65536: 16384}


def test_zen2_style_smashing_takes_512_l2_entries_for_one_1g_leaf() -> None:
    l2 = TlbArray("L2", "L2 DTLB", 2048, (K4, M2), (), smash=((G1, M2),))
    runs = translation_runs([leaf(0, G1, Level.PUD)])
    assert entries_needed(runs, l2) == {M2: 512}
    assert entries_needed(runs, TlbArray("L1D", "L1", 64, (K4, M2, G1), ())) == {G1: 1}


def test_pte_coalescing_counts_whole_aligned_groups_once() -> None:
    array = TlbArray("L2", "t", 1536, (K4, M2), (), coalesce_4k=4)
    runs = translation_runs([leaf(K4, 11 * K4, Level.PTE)])  # pages 1..10: 1-3 alone, 4-7 one group, 8-10 alone
    assert entries_needed(runs, array) == {K4: 6, 4 * K4: 1}


def test_not_present_leaves_take_no_entry_and_partial_translations_count_once() -> None:
    runs = translation_runs([leaf(0, M2, Level.PTE, present=False), leaf(M2 + K4, M2 + 3 * K4, Level.PMD)])
    assert translation_counts(runs) == {M2: 1}


# ------------------------------------------------------------------ the RFC machines


def test_x86_gbpages_the_folio_neighbourhood_goes_from_one_1g_entry_to_512_2m_entries() -> None:
    r = report(arch="x86_64", mem="16G")
    assert r["machine"]["mm"]["persistent_huge_zero_folio"] and r["machine"]["mm"]["readonly_huge_zero_folio"]
    assert r["folio"]["read_only_after"] and r["folio"]["leaf_after"] == "2M"
    assert r["translations"]["neighbourhood"] == {"before": {"1G": 1}, "after": {"2M": 512}}
    dm = r["translations"]["direct_map"]
    assert dm["after"]["1G"] == dm["before"]["1G"] - 1 and dm["after"]["2M"] == dm["before"]["2M"] + 512
    # Skylake-SP: one 1G STLB entry out of 16 becomes a third of the shared 4K+2M STLB
    assert nb(r, "intel-skylake-sp", "STLB 1G", "before") == (1, "1/16")
    assert nb(r, "intel-skylake-sp", "STLB 1G", "after") == (0, "0/1")
    assert nb(r, "intel-skylake-sp", "STLB 4K+2M", "after") == (512, "1/3")
    assert nb(r, "intel-skylake-sp", "DTLB 2M", "after") == (512, "16/1")  # 32 entries (descriptor 63H)
    # Zen 2: the L1 DTLB goes from 1 entry to 8 times its size; the L2 DTLB held 1G as 512 2M entries anyway
    assert nb(r, "amd-zen2", "L1 DTLB", "before") == (1, "1/64")
    assert nb(r, "amd-zen2", "L1 DTLB", "after") == (512, "8/1")
    assert nb(r, "amd-zen2", "L2 DTLB", "before") == nb(r, "amd-zen2", "L2 DTLB", "after") == (512, "1/4")
    assert nb(r, "amd-zen1", "L2 DTLB", "after") == (512, "1/3")


def test_x86_nogbpages_changes_nothing_the_tlb_sees() -> None:
    r = report(arch="x86_64", mem="16G", gbpages=False)
    assert r["translations"]["neighbourhood"] == {"before": {"2M": 512}, "after": {"2M": 512}}
    assert r["translations"]["direct_map"]["before"] == r["translations"]["direct_map"]["after"]


def test_arm64_rodata_full_is_all_4k_ptes_without_the_contiguous_bit() -> None:
    r = report(arch="arm64", mem="4G")
    assert r["translations"]["neighbourhood"] == {"before": {"4K": 262144}, "after": {"4K": 262144}}
    assert "64K" not in r["translations"]["direct_map"]["before"]  # NO_CONT_MAPPINGS: nothing to coalesce
    assert nb(r, "arm-neoverse-n1", "L1 DTLB", "after") == (262144, "16384/3")
    assert nb(r, "arm-neoverse-n1", "L2 TLB", "before") == (262144, "1024/5")


def test_arm64_bbml2_the_pud_becomes_31_contiguous_pmd_groups_and_16_plain_pmds() -> None:
    r = report(arch="arm64", mem="4G", bbml2=True)
    assert r["translations"]["neighbourhood"] == {"before": {"1G": 1}, "after": {"2M": 16, "32M": 31}}
    # Neoverse N1: its L1 DTLB breaks 1G into 512M and 32M into 2M; its L2 TLB caches both whole
    assert nb(r, "arm-neoverse-n1", "L1 DTLB", "before") == (2, "1/24")
    assert nb(r, "arm-neoverse-n1", "L1 DTLB", "after") == (512, "32/3")
    assert nb(r, "arm-neoverse-n1", "L2 TLB", "before") == (1, "1/1280")
    assert nb(r, "arm-neoverse-n1", "L2 TLB", "after") == (47, "47/1280")
    # Cortex-A72 does not use the contiguous bit: 512 PMDs instead of 1 PUD, as Yang Shi said
    assert nb(r, "arm-cortex-a72", "L2 TLB", "after") == (512, "1/2")


def test_riscv64_sv39_the_u54_sees_2m_leaves_before_and_after_so_the_rfc_step_costs_it_nothing() -> None:
    """The U54 implements Sv39 only, and under Sv39 best_map_size() (arch/riscv/mm/init.c) takes a PUD leaf only
    with 4-level paging: the linear map is 2M leaves at most, and the folio's GiB is 512 of them either way."""
    r = report(arch="riscv64", mem="4G", sv=39)
    assert {p["name"] for p in r["presets"]} == {"sifive-u54"}  # its own architecture's core, not x86's or Arm's
    assert r["caveats"] == []
    assert r["translations"]["neighbourhood"] == {"before": {"2M": 512}, "after": {"2M": 512}}
    assert nb(r, "sifive-u54", "DTLB", "before") == nb(r, "sifive-u54", "DTLB", "after") == (512, "16/1")


def test_riscv64_sv48_takes_1g_leaves_which_no_u54_can_run_and_the_report_says_so() -> None:
    """Sv48 (QEMU's virt CPU, the model's default) maps the linear map with 1G leaves and the RFC step splits the
    folio's to 2M; the U54's rows count them (one entry, then sixteen times its 32), with the caveat."""
    r = report(arch="riscv64", mem="4G")
    assert r["translations"]["neighbourhood"] == {"before": {"1G": 1}, "after": {"2M": 512}}
    assert nb(r, "sifive-u54", "DTLB", "before") == (1, "1/32")
    assert nb(r, "sifive-u54", "DTLB", "after") == (512, "16/1")
    assert r["caveats"] == ["TLB preset sifive-u54's core runs sv = 39 only, the machine has sv = 48: its rows are "
                            "what that core's TLBs would take for this machine's leaves"]


def test_a_core_of_another_architecture_is_a_caveat_unless_no_core_is_for_the_machines() -> None:
    u54, zen2 = presets()["sifive-u54"], presets()["amd-zen2"]
    x86 = MachineSpec.build(arch="x86_64", mem="4G")
    assert preset_caveat(u54, x86) == ("TLB preset sifive-u54 is for riscv64; the machine is x86_64: its rows are "
                                       "what that core's TLBs would take for this machine's leaves")
    assert preset_caveat(zen2, x86) is None
    assert preset_caveat(zen2, MachineSpec.build(arch="nodirectmap", mem="4G")) is None  # every preset is shown
    assert preset_caveat(u54, MachineSpec.build(arch="riscv64", mem="4G", sv=39)) is None


def test_a_preset_without_an_architecture_is_refused() -> None:
    text = """
[sources.s]
kind = "manual"
document = "d"
section = "s"

[[preset]]
name = "p"
vendor = "v"
core = "c"
arch = []
contiguous_bit = false

[[preset.tlb]]
level = "L1D"
name = "t"
entries = 8
holds = ["4K"]
sources = ["s"]
"""
    with pytest.raises(ConfigError, match="names no architecture"):
        load_presets(text)
    assert load_presets(text.replace("arch = []", 'arch = ["riscv64"]'))["p"].runs == {}


def test_nodirectmap_makes_nothing_read_only_and_the_reach_stays() -> None:
    r = report(arch="nodirectmap", mem="4G")
    assert r["folio"]["read_only_after"] is False
    assert r["translations"]["neighbourhood"] == {"before": {"1G": 1}, "after": {"1G": 1}}
    assert {p["name"] for p in r["presets"]} == set(presets())  # no preset is for it: all of them


def test_shares_are_exact_fractions() -> None:
    r = report(arch="x86_64", mem="16G")
    share = arr(r, "amd-zen1", "L1 DTLB")["direct_map"]["after"]
    assert Fraction(share["share"]) == Fraction(share["needed"], 64)
    assert share["share_float"] == float(Fraction(share["needed"], 64))


def test_tlb_table_has_a_row_per_array_and_says_unsourced() -> None:
    r = report(arch="x86_64", mem="16G")
    rows = tlb_table(r)
    assert rows[0][0] == "preset" and len(rows) == 1 + sum(len(p["arrays"]) for p in r["presets"])
    skx_2m = next(row for row in rows if row[0] == "intel-skylake-sp" and row[1] == "L1D DTLB 2M")
    assert skx_2m[2] == "32" and skx_2m[6] == "1600.00%"
    gone = replace(presets()["intel-skylake-sp"].arrays[1], entries=None)
    share = ArrayReach(gone, 512, {M2: 512}).to_dict()
    row = {"level": "L1D", "name": "t", "entries": None, "direct_map": {"before": share, "after": share}}
    table = tlb_table({"translations": {"direct_map": {}}, "presets": [{"name": "p", "arrays": [row]}]})
    assert share["share"] is None
    assert table[1][2:] == ["unsourced", "512", "unsourced", "512", "unsourced"]  # the direct map once
    assert table[0][3:] == ["direct map before", "share", "direct map after", "share"]
    beside = tlb_table({"translations": {"touched": {}, "direct_map": {}},
                        "presets": [{"name": "p", "arrays": [{**row, "touched": row["direct_map"]}]}]})
    # beside a smaller region the whole map has only its shares, and its headers say so (the region's hold counts)
    assert beside[0][3:] == ["touched before", "share", "touched after", "share", "direct map before (share)",
                             "direct map after (share)"]
    zen2_l1 = next(row for row in rows if row[0] == "amd-zen2" and row[1] == "L1D L1 DTLB")
    assert zen2_l1[3:7] == ["1", "1.56%", "512", "800.00%"]


def test_reach_of_a_hot_set_merges_ranges_and_counts_a_shared_translation_once() -> None:
    m = Machine.boot(MachineSpec.build(arch="x86_64", mem="16G"))
    m.finish_boot()
    va = m.va(4 * GiB)  # inside a 1G leaf
    hot = [(va, va + K4), (va + 8 * K4, va + 9 * K4), (va + M2, va + 2 * M2)]
    result = reach(m, hot, ["amd-zen2"])
    assert result.translations == {G1: 1}
    zen2 = result.preset("amd-zen2")
    assert zen2.array("L1 DTLB").needed == 1
    assert zen2.array("L2 DTLB").needed == 2  # smashed: the two 2M windows the hot set touches
    with pytest.raises(ConfigError):
        reach(m, hot, ["no-such-cpu"])


def test_the_tlb_command_prints_json_for_the_rfc_step() -> None:
    import json

    from click.testing import CliRunner

    from rofolio.cli import main

    out = CliRunner().invoke(main, ["tlb", "--mem", "16G", "--preset", "amd-zen2", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["label"] == "x86_64 GBPAGES"
    bad = CliRunner().invoke(main, ["tlb", "--preset", "pentium"])
    assert bad.exit_code == 2 and "command line: --preset: no TLB preset named 'pentium'" in bad.output


def test_a_preset_of_another_architecture_is_shown_when_named_but_with_a_warning() -> None:
    import json

    from click.testing import CliRunner

    from rofolio.cli import main

    out = CliRunner().invoke(main, ["tlb", "--mem", "4G", "--preset", "sifive-u54", "--preset", "amd-zen2",
                                    "--preset", "sifive-u54", "--json"])
    assert out.exit_code == 0, out.output
    assert [p["name"] for p in json.loads(out.stdout)["presets"]] == ["sifive-u54", "amd-zen2"]  # named twice: once
    assert out.stderr.count("warning") == 1 and "sifive-u54 is for riscv64; the machine is x86_64" in out.stderr
    quiet = CliRunner().invoke(main, ["tlb", "--arch", "riscv64", "--sv", "39", "--mem", "4G"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output


# ------------------------------------------------------------------ rofolio run and the survey


@cache
def persistent_run() -> Any:
    from rofolio.scenario.runner import run_scenario

    return run_scenario("huge-zero-folio-persistent")


def test_a_run_reports_the_reach_of_its_touched_folios_before_and_after_its_steps() -> None:
    """x86 GBPAGES: hugepage_init() makes the persistent huge zero folio read-only, so its GiB goes from one
    1G translation to 512 2M ones; Zen 2 stored that GiB as 512 2M entries in its L2 DTLB before as after."""
    section = persistent_run().to_dict()["tlb_reach"]
    assert len(section["touched"]) == 1
    assert section["translations"]["touched"] == {"before": {"1G": 1}, "after": {"2M": 512}}
    assert nb_run(section, "intel-skylake-sp", "STLB 1G") == (1, 0)
    assert nb_run(section, "intel-skylake-sp", "STLB 4K+2M") == (0, 512)
    assert nb_run(section, "amd-zen2", "L2 DTLB") == (512, 512)
    assert {p["name"] for p in section["presets"]} == {p.name for p in presets().values() if "x86_64" in p.arch}


def nb_run(section: dict[str, Any], preset: str, name: str) -> tuple[int, int]:
    a = arr(section, preset, name)["touched"]
    return a["before"]["needed"], a["after"]["needed"]


def test_the_run_text_shows_the_reach_table() -> None:
    from io import StringIO

    from rich.console import Console

    from rofolio.report import print_result

    buf = StringIO()
    print_result(persistent_run(), Console(file=buf, width=200, soft_wrap=True))
    text = buf.getvalue()
    assert "TLB reach of the touched folios' 1 GiB neighbourhoods" in text
    assert any(line.lstrip("│ ").startswith("intel-skylake-sp") and "STLB 1G" in line for line in text.splitlines())


def test_with_nothing_touched_the_run_text_shows_the_direct_map_once() -> None:
    from io import StringIO

    from rich.console import Console

    from rofolio.report import print_result
    from rofolio.scenario.runner import run_scenario

    buf = StringIO()
    print_result(run_scenario("x86-split-costs"), Console(file=buf, width=200, soft_wrap=True))
    text = buf.getvalue()
    assert "TLB reach of the whole direct map, before and after the steps" in text
    [row] = [line for line in text.splitlines() if "intel-skylake-sp" in line and "L1D DTLB 1G" in line]
    assert row.count("%") == 2  # the share before and after, not the same two again


def test_the_survey_costs_carry_the_reach_of_the_objects_neighbourhoods() -> None:
    from rofolio.survey.study import run_survey

    row = run_survey(ids=["huge_zero_folio_persistent"], machines=[{"arch": "x86_64"}]).rows[0]
    tlb = row.costs[0].tlb
    assert tlb["intel-skylake-sp"]["L2 STLB 4K+2M"]["touched"] == [0, 512]
    assert tlb["intel-skylake-sp"]["L2 STLB 1G"]["touched"] == [1, 0]
    assert "needs 512 second-level TLB entries instead of 1 on intel-skylake-sp" in row.verdict
    assert row.to_dict()["costs"][0]["tlb"] == tlb


def test_the_report_carries_what_the_kernel_warned_while_booting() -> None:
    """100T on 4-level x86: the RAM above MAXMEM is not used, and the kernel says so; tlb says it too."""
    assert any("above MAXMEM" in w for w in report(arch="x86_64", mem="100T")["warnings"])
    assert report(arch="x86_64", mem="16G")["warnings"] == []
