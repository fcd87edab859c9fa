"""The survey catalogue (issue 14, items 1 and 2): it validates, every figure is sourced, every cited
file:function exists in the Linux 7.2 tree, the lifetime classes follow from the facts, and the slab
geometry derivation agrees with mm/slub.c on caches measured on a real machine."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

import pytest
from pydantic import ValidationError

from rofolio.survey.catalogue import (
    Candidate,
    PageAllocator,
    Slab,
    SlabGeometry,
    derive_slab_geometry,
    load_catalogue,
    slab_sharing,
)

CATALOGUE = load_catalogue()
BY_ID = {c.id: c for c in CATALOGUE}
SITES = sorted({s.at for c in CATALOGUE for s in c.sites})


# ------------------------------------------------------------------------------------------ the 7.2 tree
def _is_tree(d: Path) -> bool:
    return (d / "Makefile").is_file() and (d / "mm").is_dir() and (d / "include" / "linux").is_dir()


@cache
def linux_72_tree() -> Path | None:
    """Where `rofolio oracle setup --kernel debian:7.2` prepared linux-source-7.2: debian.linux_cache_dir()
    holds one directory per toolchain key; the tree is that directory (or a linux-source-7.2 inside it)."""
    try:
        from rofolio.oracle.debian import linux_cache_dir
        base = linux_cache_dir("7.2")
    except ImportError:  # pragma: no cover - the oracle package is part of rofolio
        base = Path.home() / ".cache" / "rofolio" / "linux-7.2"
    if not base.is_dir():
        return None
    for d in sorted(base.iterdir()):
        for cand in (d, d / "linux-source-7.2"):
            if cand.is_dir() and _is_tree(cand):
                return cand
    return None


needs_tree = pytest.mark.skipif(
    linux_72_tree() is None,
    reason="no prepared Linux 7.2 tree under debian.linux_cache_dir('7.2') "
           "(run `rofolio oracle setup --kernel debian:7.2`; CI prepares it in the oracle setup)")


def defines(text: str, name: str) -> bool:
    """``name`` is defined in ``text``: a function definition (a line not indented, ``name(`` on it, not a
    prototype ending in ';'), a ``#define name``, or a data definition (``name[`` / ``name =`` / ``name;``
    on an unindented line that is not an extern declaration)."""
    n = re.escape(name)
    func = re.compile(rf"^(?:\S.*)?\b{n}\s*\((?!.*;\s*$)", re.M)
    macro = re.compile(rf"^#\s*define\s+{n}\b", re.M)
    data = re.compile(rf"^(?!extern\b)\S[^(\n]*\b{n}\b\s*(?:\[|=|;|__)", re.M)
    return bool(func.search(text) or macro.search(text) or data.search(text))


@needs_tree
@pytest.mark.parametrize("site", SITES)
def test_every_cited_site_exists_in_the_7_2_tree(site: str) -> None:
    tree = linux_72_tree()
    assert tree is not None
    path, _, name = site.rpartition(":")
    f = tree / path
    assert f.is_file(), f"{path} is not in the 7.2 tree ({tree})"
    assert defines(f.read_text(errors="replace"), name), f"{name} is not defined in {path} (7.2)"


@needs_tree
def test_every_cited_figure_source_that_names_a_function_exists() -> None:
    tree = linux_72_tree()
    assert tree is not None
    pat = re.compile(r"^cited: ([\w./-]+\.[chS]):(\w+)")
    checked = 0
    for c in CATALOGUE:
        sources = [c.count.source, c.size.source]
        if isinstance(c.allocator, Slab):
            sources.append(c.allocator.geometry_source.replace("derived: ", "cited: "))
        for src in sources:
            m = pat.match(src)
            if m:
                text = (tree / m.group(1)).read_text(errors="replace")
                assert defines(text, m.group(2)), f"{c.id}: {src}"
                checked += 1
    assert checked >= 10


def test_defines_accepts_definitions_and_rejects_prototypes() -> None:
    text = ("static void free_module(struct module *mod);\n"
            "const uint8_t empty_zero_page[PAGE_SIZE] __aligned(PAGE_SIZE);\n"
            "extern struct page *__zero_page;\n"
            "static int\n__split_large_page(struct cpa_data *cpa, pte_t *kpte,\n"
            "#define pte_alloc_one_kernel(...)\tx\n"
            "\tfoo(bar);\n")
    assert not defines(text, "free_module")
    assert defines(text, "empty_zero_page")
    assert not defines(text, "__zero_page")
    assert defines(text, "__split_large_page")
    assert defines(text, "pte_alloc_one_kernel")
    assert not defines(text, "foo")


# --------------------------------------------------------------------------------------- the catalogue
def test_catalogue_validates_with_at_least_15_candidates_beside_the_relatives() -> None:
    assert all(isinstance(c, Candidate) for c in CATALOGUE)
    assert len([c for c in CATALOGUE if not c.relative]) >= 15
    assert {"secretmem", "guest_memfd_no_direct_map", "execmem_rox_cache"} <= {c.id for c in CATALOGUE if c.relative}


def test_ids_are_unique() -> None:
    ids = [c.id for c in CATALOGUE]
    assert len(ids) == len(set(ids))


def test_every_figure_has_a_cited_or_measured_source() -> None:
    for c in CATALOGUE:
        for fig in c.figures:
            assert fig.kind in ("cited", "measured"), (c.id, fig)
            assert len(fig.source) > len("measured: ") + 5
        if isinstance(c.allocator, Slab):
            assert c.allocator.geometry_source.split(":")[0] in ("cited", "measured", "derived")


def test_every_candidate_has_an_allocation_site_and_the_api_the_survey_uses() -> None:
    for c in CATALOGUE:
        assert any(s.role == "allocated" for s in c.sites), c.id
        assert c.lifetime_class in ("model2", "model1", "neither")
        assert c.class_reason
        assert c.pages_per_object >= 1
        assert c.typical_count >= 0
        if isinstance(c.allocation, PageAllocator):
            assert c.allocation.gfp and c.allocation.order >= 0


def test_relatives_not_in_7_2_say_so() -> None:
    assert BY_ID["guest_memfd_no_direct_map"].in_tree.startswith("proposed")
    assert all(c.in_tree == "7.2" for c in CATALOGUE if c.id != "guest_memfd_no_direct_map")


# ------------------------------------------------------------------------------------------- the classes
def test_the_persistent_huge_zero_folio_fits_model_2() -> None:
    hzf = BY_ID["huge_zero_folio_persistent"]
    assert hzf.lifetime_class == "model2"
    assert hzf.allocation == PageAllocator(kind="page", order=9,
                                           gfp="(GFP_TRANSHUGE | __GFP_ZERO | __GFP_ZEROTAGS) & ~__GFP_MOVABLE")
    assert hzf.pages_per_object == 512


def test_the_4k_zero_page_fits_model_2_and_is_already_read_only_in_the_image() -> None:
    zp = BY_ID["empty_zero_page"]
    assert zp.lifetime_class == "model2"
    assert zp.allocator.kind == "image" and zp.allocator.section == ".rodata"
    assert zp.protected_now.startswith("yes")


def test_the_lazy_huge_zero_folio_needs_model_1_because_the_shrinker_frees_it() -> None:
    lazy = BY_ID["huge_zero_folio_lazy"]
    assert lazy.lifetime_class == "model1"
    assert "shrink_huge_zero_folio_scan" in lazy.class_reason


def test_the_classes_are_derived_from_the_facts() -> None:
    for c in CATALOGUE:
        lt = c.lifetime
        if lt.written_after_init.value == "possible":
            assert c.lifetime_class == "neither"
        elif "possible" in (lt.migrated.value, lt.freed.value):
            assert c.lifetime_class == "model1"
        else:
            assert c.lifetime_class == "model2"
    assert BY_ID["cred"].lifetime_class == "neither"
    classes = {c.lifetime_class for c in CATALOGUE}
    assert classes == {"model2", "model1", "neither"}


# --------------------------------------------------------------------------------------------- validation
def _raw() -> dict:
    from importlib import resources
    return tomllib.loads(resources.files("rofolio.survey").joinpath("candidates.toml").read_text())


def _validate(data: dict) -> None:
    from rofolio.survey.catalogue import _Catalogue
    _Catalogue.model_validate(data)  # what load_catalogue() does after parsing the TOML


def test_a_bare_number_is_rejected() -> None:
    data = _raw()
    data["candidate"][0]["count"]["source"] = "1"
    with pytest.raises(ValidationError, match="cited"):
        _validate(data)


def test_unknown_keys_and_duplicate_ids_are_rejected() -> None:
    data = _raw()
    data["candidate"][0]["colour"] = "red"
    with pytest.raises(ValidationError):
        _validate(data)
    data = _raw()
    data["candidate"].append(data["candidate"][0])
    with pytest.raises(ValidationError, match="duplicate"):
        _validate(data)


def test_candidates_are_frozen() -> None:
    with pytest.raises(ValidationError):
        BY_ID["cred"].id = "x"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ slab packing
# (stride, order, objects per slab) measured in /proc/slabinfo and /sys/kernel/slab on the machine the
# catalogue was measured on (Linux 6.18 guest, 2 CPUs): calculate_order() must reproduce them.
MEASURED = {
    "kmalloc-8": (8, 0, 512), "kmalloc-64": (64, 0, 64), "kmalloc-96": (96, 0, 42), "kmalloc-192": (192, 0, 21),
    "kmalloc-512": (512, 1, 16), "key_jar": (256, 0, 16), "task_struct": (5888, 3, 5),
    "btrfs_delayed_node": (312, 0, 13),
}


@pytest.mark.parametrize("cache_name", sorted(MEASURED))
def test_derived_geometry_matches_measured_caches(cache_name: str) -> None:
    stride, order, objects = MEASURED[cache_name]
    g = derive_slab_geometry(stride, nr_cpus=2)
    assert (g.order, g.objects) == (order, objects)


def test_sharing_of_an_order_0_slab_is_the_whole_slab() -> None:
    s = slab_sharing(192, SlabGeometry(192, 0, 21, derived=False))
    assert s.pages_touched_max == 1 and s.neighbours_max == 20 and s.whole_slab


def test_objects_straddling_pages_drag_neighbours_from_both_pages() -> None:
    # task_struct: 5 objects of 5888 bytes in an order-3 slab; object 2 spans bytes 11776..17663: pages 2..4
    s = slab_sharing(5888, SlabGeometry(5888, 3, 5, derived=True))
    assert s.pages_touched_max == 3
    assert s.neighbours_max == 2      # objects 1 and 3 share its first and last page
    assert not s.whole_slab
    # kmalloc-512, order 1: 8 objects per page, an object never straddles
    s = slab_sharing(512, SlabGeometry(512, 1, 16, derived=False))
    assert (s.pages_touched_max, s.neighbours_max, s.objects_per_page) == (1, 7, 8.0)


def test_slab_candidates_report_what_one_object_drags_along() -> None:
    cred = BY_ID["cred"].sharing
    assert cred is not None and cred.neighbours_max == 20
    avtab = BY_ID["selinux_te_avtab"]
    assert avtab.allocator.geometry().derived
    assert avtab.sharing is not None and avtab.sharing.neighbours_max == 169
    assert BY_ID["huge_zero_folio_persistent"].sharing is None
