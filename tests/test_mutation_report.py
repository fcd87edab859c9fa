"""scripts/mutation's counting: what is a survivor, what the message rule may exclude, which function a mutant is in."""

from __future__ import annotations

import subprocess

from tests.mutation import (
    KILLED,
    NOT_RUN,
    ROOT,
    SURVIVED,
    TIMEOUT,
    function_of,
    message_only,
    stats_outdated,
    verdict,
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
    assert not message_only(_diff('    k.warn_once("update_range_prot", "WARNING: x")',
                                  '    k.warn_once("XXupdate_range_protXX", "WARNING: x")'))
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
    # the last commit that changed a test mutmut runs; tests/test_mutation_report.py is not one of them
    last = git("log", "-1", "--format=%H", "--", "tests/test_pagetable.py", "tests/arch/x86_64", "tests/arch/arm64",
               "tests/conftest.py", "tests/reference")
    assert not stats_outdated(last, head)
    assert stats_outdated(f"{last}~1", head)
    assert stats_outdated(None, head)
