"""The lifetime-model registry: a model registered from outside src/ works everywhere names are read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from rofolio.errors import ConfigError, RofolioError
from rofolio.mm import MMConfig
from rofolio.mm.config import LIFETIME_MODELS
from rofolio.mm.folio import Folio
from rofolio.mm.gfp import GFP_KERNEL
from rofolio.mm.invariants import check_all
from rofolio.mm.page_alloc import alloc_pages
from rofolio.mm.policy import (
    Broken,
    LifetimePolicy,
    Model1,
    Model2,
    lifetime_model,
    lifetime_model_inputs,
    lifetime_model_names,
    make_policy,
    register_lifetime_model,
    unregister_lifetime_model,
)
from rofolio.mm.readonly import arch_make_folio_readonly
from rofolio.scenario.loader import parse
from rofolio.scenario.runner import run_scenario
from tests.mm.conftest import boot_mm

if TYPE_CHECKING:
    from rofolio.mm.state import MMState

BUILTIN = ("model1", "model2", "broken", "none")


class Throwaway(Model1):
    """Model 1 that records which of its hooks ran; its invariant flags folios labelled "bad"."""

    name: ClassVar[str] = "throwaway-test"
    aliases: ClassVar[tuple[str, ...]] = ("tt", "9")
    summary: ClassVar[str] = "a model registered by a test only"
    calls: ClassVar[list[str]] = []

    def before_make_readonly(self, mm: MMState, folio: Folio, why: str) -> bool:
        self.calls.append("before_make_readonly")
        return super().before_make_readonly(mm, folio, why)

    def invariants(self, mm: MMState) -> list[str]:
        self.calls.append("invariants")
        return [f"{f.describe()} is labelled bad" for f in mm.folios.values() if f.label == "bad"]


@pytest.fixture
def throwaway() -> Iterator[type[Throwaway]]:
    Throwaway.calls.clear()
    register_lifetime_model(Throwaway)
    try:
        yield Throwaway
    finally:
        unregister_lifetime_model(Throwaway.name)
        assert lifetime_model_names() == BUILTIN  # the registry is as the other tests expect it


SCENARIO = """
name = "registry"
start = "running"

[machine]
mem = "8G"

[mm]
lifetime = {lifetime}

[[steps]]
op = "process"
as = "p1"

[[steps]]
op = "mmap"
process = "p1"
length = "64K"
hugepage = false
as = "r1"

[[steps]]
op = "touch"
region = "r1"
write = true
as = "user"

[[steps]]
op = "make_readonly"
folio = "user"
expect = {{ ret = 0, leaf = "4K RO", folios_made_readonly = 1 }}
"""


def test_builtin_models_are_registered_in_order_with_their_aliases() -> None:
    assert lifetime_model_names() == BUILTIN == LIFETIME_MODELS
    assert lifetime_model("model1") is lifetime_model("1") is lifetime_model(1) is Model1
    assert lifetime_model("model2") is lifetime_model("2") is lifetime_model(2) is Model2
    assert lifetime_model("broken") is Broken
    assert lifetime_model("none") is lifetime_model("unaware") is LifetimePolicy
    assert all(m.summary for m in map(lifetime_model, BUILTIN))
    assert MMConfig(lifetime="1").lifetime == "model1" and MMConfig(lifetime=2).lifetime == "model2"
    assert type(make_policy("2")) is Model2


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        lifetime_model("model3")
    assert "unknown lifetime model 'model3'" in str(err.value)
    for name in BUILTIN:
        assert name in err.value.hint
    with pytest.raises(ConfigError, match="choose one of: model1 \\(1\\), model2 \\(2\\), broken, none"):
        MMConfig(lifetime="model3")
    with pytest.raises(RofolioError) as err:
        parse(SCENARIO.format(lifetime='"model3"'))
    assert "unknown lifetime model 'model3'" in str(err.value) and "model1 (1)" in str(err.value)


def test_a_name_or_alias_cannot_be_taken_twice() -> None:
    class Clash(LifetimePolicy):
        name: ClassVar[str] = "clash-test"
        aliases: ClassVar[tuple[str, ...]] = ("1",)

    with pytest.raises(ConfigError, match="already taken by Model1"):
        register_lifetime_model(Clash)
    assert "clash-test" not in lifetime_model_names()


def test_a_registered_model_is_accepted_everywhere(throwaway: type[Throwaway]) -> None:
    assert lifetime_model_names() == (*BUILTIN, "throwaway-test")
    assert LIFETIME_MODELS == BUILTIN  # the name imported before registration is a snapshot...
    from rofolio.mm import config

    assert lifetime_model_names() == config.LIFETIME_MODELS  # ...the module attribute reads the registry
    assert {"throwaway-test", "tt", "9"} <= set(lifetime_model_inputs())
    for spelling in ("throwaway-test", "tt", "9", 9):
        assert lifetime_model(spelling) is throwaway
        assert MMConfig(lifetime=spelling).lifetime == "throwaway-test"
    for spelling in ('"throwaway-test"', '"tt"', "9"):
        assert parse(SCENARIO.format(lifetime=spelling)).mm.lifetime == "throwaway-test"


def test_a_registered_model_runs_and_its_invariants_are_checked(throwaway: type[Throwaway]) -> None:
    _, mm = boot_mm(lifetime="tt")
    assert type(mm.policy) is throwaway
    folio = alloc_pages(mm, GFP_KERNEL, 0, label="bad")
    assert folio is not None
    assert arch_make_folio_readonly(mm, folio, "test") == 0
    assert throwaway.calls == ["before_make_readonly"]
    problems = check_all(mm)
    assert throwaway.calls[-1] == "invariants"
    assert problems == [f"{folio.describe()} is labelled bad"]


def test_a_scenario_runs_under_a_registered_model(throwaway: type[Throwaway]) -> None:
    scenario = parse(SCENARIO.format(lifetime='"throwaway-test"'))

    def inspect(ctx: Any) -> dict[str, Any]:
        return {"policy": ctx.machine.mm.policy.name, "problems": check_all(ctx.machine.mm)}

    result = run_scenario(scenario, inspect=inspect)
    assert result.failures == []
    assert result.inspection == {"policy": "throwaway-test", "problems": []}
    assert "before_make_readonly" in throwaway.calls and throwaway.calls[-1] == "invariants"


def test_model2_contract_is_model2s_invariant() -> None:
    _, mm = boot_mm(lifetime="model2")
    folio = alloc_pages(mm, GFP_KERNEL, 0)
    assert folio is not None
    assert arch_make_folio_readonly(mm, folio, "test") == 0
    assert mm.policy.invariants(mm) == [] and check_all(mm) == []
    folio.readonly = False  # state lost behind the policy's back: the contract no longer holds
    assert any("no longer belongs to a read-only folio" in p for p in mm.policy.invariants(mm))
    assert Model1().invariants(mm) == []
