"""scripts/mutation's counting: what is a survivor, what the message rule may exclude, which function a mutant is in."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from tests.mutation import (
    KILLED,
    NOT_RUN,
    ROOT,
    SURVIVED,
    TIMEOUT,
    Module,
    draw,
    estimate,
    function_of,
    message_only,
    sample_lines,
    stats_outdated,
    verdict,
    wilson,
)


def _diff(old: str, new: str) -> str:
    return f"--- src/x.py\n+++ src/x.py\n@@ -1 +1 @@\n-{old}\n+{new}\n"


def test_no_tests_skipped_and_suspicious_count_as_survived() -> None:
    assert [verdict(c) for c in (0, 33, 5, 34, 35)] == [SURVIVED] * 5
    assert [verdict(c) for c in (1, 3, -11)] == [KILLED] * 3
    assert [verdict(c) for c in (36, -24, 24, 152, 255)] == [TIMEOUT] * 5
    assert [verdict(c) for c in (None, 2, -15)] == [NOT_RUN] * 3  # not run yet, or stopped while it ran


def test_the_message_rule_takes_sentences_only() -> None:
    assert message_only(_diff('    raise KernelBug(f"reads past the end of {n} pages")',
                              '    raise KernelBug(f"XXreads past the end of {n} pagesXX")'))
    # a key, an op name or a version is behaviour, not a message
    assert not message_only(_diff('    k.warn_once("WARNING: x", "update_range_prot")',
                                  '    k.warn_once("WARNING: x", "XXupdate_range_protXX")'))
    assert not message_only(_diff('    if op == "set_memory_ro":', '    if op == "XXset_memory_roXX":'))
    # a change outside the literals, or on two lines, is not a message change
    assert not message_only(_diff('    warn("a b", level=1)', '    warn("XXa bXX", level=2)'))
    assert not message_only("-    warn('a b')\n-    x = 1\n+    warn('XXa bXX')\n+    x = 1\n")


def test_a_mutant_names_its_function_or_method() -> None:
    assert function_of("rofolio.arch.x86_64.kernel.xǁX86Kernelǁoops_text__mutmut_3") == "oops_text"
    assert function_of("rofolio.arch.arm64.pageattr.x__none_ptes__mutmut_10") == "_none_ptes"
    assert function_of("rofolio.pagetable.x_align__mutmut_1") == "align"


def test_stats_taken_before_the_tests_changed_are_taken_again() -> None:
    """mutmut traces only tests it has not seen; scripts/mutation drops its stats when tests/ changed since."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD")
    # the last commit that changed a test mutmut runs (pyproject's selection); tests/test_mutation_report.py is not one
    mutmut = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    selection = mutmut["pytest_add_cli_args_test_selection"]
    last = git("log", "-1", "--format=%H", "--", *selection, "tests/conftest.py", "tests/reference")
    assert not stats_outdated(last, head)
    assert stats_outdated(f"{last}~1", head)
    assert stats_outdated(None, head)


def test_wilsons_interval_holds_the_share_and_narrows_with_the_sample() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(50, 100)
    assert (round(low, 3), round(high, 3)) == (0.404, 0.596)
    assert wilson(500, 1000)[1] - wilson(500, 1000)[0] < high - low
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0


def test_the_estimate_counts_what_ran_and_scales_the_sample_to_the_rest() -> None:
    # 100 run before (90 killed); 50 sampled (45 killed) stand for the other 450 not run
    e = estimate(90, 100, Counter({KILLED: 45, SURVIVED: 5}), 450)
    assert e.score == pytest.approx((90 + 45 + 0.9 * 450) / 600)
    low, high = wilson(45, 50)
    assert (e.low, e.high) == (pytest.approx((135 + low * 450) / 600), pytest.approx((135 + high * 450) / 600))
    # a sampled message mutant takes its share of the rest out of the denominator
    e = estimate(90, 100, Counter({KILLED: 40, SURVIVED: 5, "messages": 5}), 450)
    assert e.score == pytest.approx((90 + 40 + 40 / 45 * 405) / (100 + 45 + 405))
    with pytest.raises(ValueError):
        estimate(0, 0, Counter({"messages": 3}), 10)


def test_a_draw_is_uniform_over_the_mutants_without_a_verdict_and_replays_from_its_seed(tmp_path: Path) -> None:
    path = "src/rofolio/pagetable.py"
    meta = tmp_path / "mutants" / f"{path}.meta"
    meta.parent.mkdir(parents=True)
    codes = {f"rofolio.pagetable.x_f__mutmut_{i}": (1 if i < 10 else None) for i in range(40)}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    first = draw(tmp_path, 5, 7, [path])
    assert first[path]["frame"] == sorted(m for m, c in codes.items() if c is None)
    assert len(first[path]["names"]) == 5 and set(first[path]["names"]) <= set(first[path]["frame"])
    assert draw(tmp_path, 5, 7, [path]) == first and draw(tmp_path, 5, 8, [path]) != first
    saved = json.loads((tmp_path / "mutants" / "sample.json").read_text())
    assert saved[path]["seed"] == 8
    other = "src/rofolio/arch/arm64/mmu.py"  # another module's draw stays when one module is drawn again
    saved[other] = {"seed": 1, "frame": [], "names": []}
    (tmp_path / "mutants" / "sample.json").write_text(json.dumps(saved))
    draw(tmp_path, 5, 7, [path])
    assert set(json.loads((tmp_path / "mutants" / "sample.json").read_text())) == {path, other}
    # the report: a sample not yet run says so; once run, the estimate line
    names = first[path]["names"]
    module = Module("pagetable.py", Counter(), [], [], 0, {m: KILLED for m, c in codes.items() if c})
    drawn = {path: first[path]}
    assert sample_lines({path: module}, drawn)[1] == "  pagetable.py: 5 of its 5 sampled mutants have not run yet"
    module.seen.update({m: KILLED for m in names[:4]} | {names[4]: SURVIVED})
    line = sample_lines({path: module}, drawn)[1]
    assert line.startswith("  pagetable.py: 85.0% killed (95% interval ")  # (10 + 4 + 0.8 * 25) / 40
    assert ("4 of 5 sampled killed (seed 7), standing for the 25 not run; the 10 others run count as they are"
            in line)

