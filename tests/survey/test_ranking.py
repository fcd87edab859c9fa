"""The five candidates the survey shortlists (lifetime model 2 fits first, then model 1), and their built-ins.

The ranking is computed from the survey's figures (rank_for_model2()): the catalogue's lifetime class first,
then what making the typical count read-only costs on the worst RFC machine. The built-ins named survey-*
must be exactly its first five, so a change in the catalogue or the model that reorders the candidates
shows here instead of leaving a stale scenario behind.
"""

from __future__ import annotations

from functools import cache

import pytest

from rofolio.scenario.loader import builtin_names
from rofolio.scenario.runner import run_scenario
from rofolio.survey.study import BEST, CLASS_ORDER, SCENARIO_PREFIX, SurveyResult, rank_for_model2, run_survey


@cache
def survey() -> SurveyResult:
    return run_survey()


def test_the_survey_built_ins_are_the_five_it_shortlists() -> None:
    best = survey().to_dict()["shortlist"]
    assert len(best) == BEST and [b["rank"] for b in best] == [1, 2, 3, 4, 5]
    assert {b["scenario"] for b in best} == {n for n in builtin_names() if n.startswith(SCENARIO_PREFIX)}
    assert best[0] == {"rank": 1, "id": "huge_zero_folio_persistent", "class": "model2",
                       "scenario": "survey-huge-zero-folio-persistent"}
    lines = survey().shortlist_lines()
    assert lines[0] == ("1. huge_zero_folio_persistent: fits lifetime model 2; "
                        "rofolio run survey-huge-zero-folio-persistent")
    assert all(": needs lifetime model 1; rofolio run survey-" in line for line in lines[1:])


@pytest.mark.parametrize("name", sorted(n for n in builtin_names() if n.startswith(SCENARIO_PREFIX)))
def test_each_survey_built_ins_description_says_which_model_it_needs(name: str) -> None:
    from rofolio.scenario.loader import load

    entry = next(b for b in survey().shortlist() if b["scenario"] == name)
    wanted = "this one fits model 2." if entry["class"] == "model2" else "this one needs model 1."
    assert wanted in load(name).scenario.description


def test_the_ranking_puts_the_class_first_then_the_worst_machine_cost() -> None:
    ranked = rank_for_model2(survey())
    assert all(r.costs and not r.candidate.relative for r in ranked)  # something to make read-only at run time
    keys = [(CLASS_ORDER[r.candidate.lifetime_class], max(k.total["splits"] for k in r.costs),
             max(k.total["ipis"] for k in r.costs)) for r in ranked]
    assert keys == sorted(keys)
    assert [CLASS_ORDER[r.candidate.lifetime_class] for r in ranked[:BEST]] == [0, 1, 1, 1, 1]


@pytest.mark.parametrize("name", sorted(n for n in builtin_names() if n.startswith(SCENARIO_PREFIX)))
def test_each_survey_built_in_runs_and_its_object_ends_read_only_then_is_handled_by_its_model(name: str) -> None:
    result = run_scenario(name)
    assert result.failures == []
    assert result.totals()["folios_made_readonly"] == 1
    assert result.tlb_reach["touched"], "the object's neighbourhood is in the run's TLB reach"
