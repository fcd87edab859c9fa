"""Mutation score of the rule modules: mutmut (pinned in pyproject's ``mutation`` extra) on a worktree of HEAD.

``scripts/mutation`` runs this module. It never mutates the tree it is run from: it keeps a git worktree of HEAD
(``--tree``, default /tmp/rofolio-mutation), moves it to the current HEAD on every run, and runs ``nice -n 19
mutmut run --max-children N`` there (``--jobs N``, default 1) with ``HYPOTHESIS_PROFILE=ci``, the mutants and tests
listed in pyproject's [tool.mutmut]. mutmut keeps every verdict in the worktree's mutants/ folder and re-tests only
functions that changed, so a run interrupted or repeated resumes where it stopped; ``--retest-survivors`` runs the
survivors again (after tests were added for them). Then it prints, per module, killed, survived and timed-out
mutants separately with the denominator, and every survivor.

``--sample N`` runs, per module, N of the mutants still without a verdict, drawn uniformly at random (the seed is
printed; ``--seed`` replays a draw), and the report adds, beside the exact figures, an estimate of the whole
module's score: the mutants run before are counted as they are, the rest as the sample says, with a 95%
interval (Wilson's, on the sample).  mutmut runs the mutants whose tests are fastest first, so the ones left
after a partial run are not like the ones run: a sample is how a partial run's score becomes an estimate.

Counting: a mutant with no test that runs it, or one mutmut skipped, counts as survived; the one exclusion is the
message rule below, and every mutant it excludes is listed with the rule.  Functions of x86_64/kernel.py that
print text (the oops and the page-table dump: the oracle compares those) are outside "the rule parts" and are
reported on their own line, not in the score.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = Path("/tmp/rofolio-mutation")
MODULES = {  # what the score covers: path -> how the report names it
    "src/rofolio/pagetable.py": "pagetable.py",
    "src/rofolio/arch/x86_64/cpa.py": "x86_64/cpa.py",
    "src/rofolio/arch/x86_64/kernel.py": "x86_64/kernel.py (rules)",
    "src/rofolio/arch/arm64/pageattr.py": "arm64/pageattr.py",
    "src/rofolio/arch/arm64/mmu.py": "arm64/mmu.py",
    "src/rofolio/arch/riscv64/pageattr.py": "riscv64/pageattr.py",
    "src/rofolio/arch/riscv64/init.py": "riscv64/init.py",
    # the MM the lifetime models live in: their rules, and the paths a read-only folio takes
    "src/rofolio/mm/policy.py": "mm/policy.py",
    "src/rofolio/mm/fault.py": "mm/fault.py",
    "src/rofolio/mm/zero_page.py": "mm/zero_page.py",
    "src/rofolio/mm/migrate.py": "mm/migrate.py",
    "src/rofolio/mm/compaction.py": "mm/compaction.py",
    "src/rofolio/mm/memory_hotplug.py": "mm/memory_hotplug.py",
}
NOT_RULES = {"src/rofolio/arch/x86_64/kernel.py": ("oops_text", "dump_pagetable")}
MESSAGE_RULE = ("a survivor is excluded as a message string only if its diff changes one line and only inside "
                "string literals, and every literal it changes holds a space (a sentence for a person, not a key, "
                "an op name or a version)")
KILLED, SURVIVED, TIMEOUT, NOT_RUN = "killed", "survived", "timeout", "not run"
_STRING = re.compile(r"""[rRbBfFuU]{0,2}("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


INTERRUPTED = (2, -2, -15)  # the run was stopped (Ctrl-C, SIGTERM) while this mutant's tests ran


def verdict(exit_code: int | None) -> str:
    """mutmut's exit code of a mutant's test run, in the report's four words (no tests or skipped: survived)."""
    if exit_code is None or exit_code in INTERRUPTED:
        return NOT_RUN
    if exit_code in (1, 3, -11, -9, 37):  # a test failed, pytest crashed, the process died, or mypy caught it
        return KILLED
    if exit_code in (36, 24, -24, 152, 255):
        return TIMEOUT
    return SURVIVED  # 0 survived, 33/5 no tests, 34 skipped, 35 suspicious


def message_only(diff: str) -> bool:
    """The message rule (MESSAGE_RULE) on a mutant's unified diff."""
    old = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    new = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(old) != 1 or len(new) != 1:
        return False
    if _STRING.sub('""', old[0]) != _STRING.sub('""', new[0]):
        return False  # something outside the string literals changed
    changed = [a for a, b in zip(_STRING.findall(old[0]), _STRING.findall(new[0]), strict=False) if a != b]
    return bool(changed) and all(" " in literal for literal in changed)


def function_of(mutant: str) -> str:
    """'rofolio.arch.x86_64.kernel.xǁX86Kernelǁoops_text__mutmut_3' -> 'oops_text'."""
    head = mutant.rsplit("__mutmut_", 1)[0]
    return head.split("ǁ")[-1] if "ǁ" in head else head.rsplit(".", 1)[-1].removeprefix("x_")


@dataclass
class Module:
    name: str
    verdicts: Counter[str]
    survivors: list[tuple[str, str]]  # (mutant, diff)
    messages: list[str]
    not_rules: int
    seen: dict[str, str] = field(default_factory=dict)  # mutant -> its verdict, or "messages"

    @property
    def denominator(self) -> int:
        return sum(self.verdicts.values()) - self.verdicts[NOT_RUN]


def _run(cmd: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def prepare(tree: Path) -> str:
    """The worktree at HEAD (made once); the commit it is at."""
    head = _run(["git", "rev-parse", "HEAD"], ROOT, capture_output=True).stdout.strip()
    if not (tree / ".git").exists():
        _run(["git", "worktree", "add", "--detach", str(tree), head], ROOT, capture_output=True)
    else:
        _run(["git", "checkout", "-q", "-f", "--detach", head], tree)
    mutated = set(MODULES)
    copies = tree / "mutants"
    for path in MODULES:  # a module left as a plain copy (not mutated): mutmut regenerates it only if it is gone,
        copy = copies / path  # and its functions' tests are known only from stats taken with it mutated
        if copy.exists() and "__mutmut_" not in copy.read_text():
            copy.unlink()
            (copies / "mutmut-stats.json").unlink(missing_ok=True)
    stats = copies / "mutmut-stats.json"
    if stats.exists() and stats_outdated(json.loads(stats.read_text()).get("git_commit"), head):
        # mutmut re-traces only tests it has not seen: a test that now reaches more functions would be left out
        # of their mutants' runs, so every test is traced again
        stats.unlink()
    if not stats.exists():  # "no tests" is only as good as the stats: run them again
        for meta in copies.rglob("*.py.meta"):
            data = json.loads(meta.read_text())
            data["exit_code_by_key"] = {k: None if v in (33, 5) else v for k, v in data["exit_code_by_key"].items()}
            meta.write_text(json.dumps(data))
    for meta in copies.rglob("*.py.meta"):  # a mutant whose run was stopped is run again (mutmut keeps its code)
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        if any(code in INTERRUPTED for code in codes.values()):
            data["exit_code_by_key"] = {k: None if v in INTERRUPTED else v for k, v in codes.items()}
            meta.write_text(json.dumps(data))
    if copies.exists():  # mutmut copies the unmutated sources once: bring them to this commit
        for path in (tree / "src").rglob("*.py"):
            rel = path.relative_to(tree).as_posix()
            target = copies / rel
            if rel not in mutated and (not target.exists() or target.read_bytes() != path.read_bytes()):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return head


def stats_outdated(commit: str | None, head: str) -> bool:
    """True if the tests mutmut runs (pyproject's selection, with conftest.py and the references they import)
    differ between the commit its stats were taken at and ``head``, or that commit is unknown."""
    if not commit:
        return True
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    paths = [*config["pytest_add_cli_args_test_selection"], "tests/conftest.py", "tests/reference"]
    diff = subprocess.run(["git", "diff", "--quiet", commit, head, "--", *paths], cwd=ROOT, check=False)
    return diff.returncode != 0


def module_of(path: str) -> str:
    """'src/rofolio/arch/arm64/mmu.py' -> 'rofolio.arch.arm64.mmu' (how mutmut's mutant names begin)."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def pending(tree: Path, only: list[str]) -> list[str]:
    """What to pass to ``mutmut run`` for the modules ``only`` names: their mutants without a verdict (a glob
    for a module mutmut has not generated yet).  mutmut re-runs every mutant it is given by name, so naming only
    these keeps a run with --only resumable; without --only mutmut itself skips the mutants it has a verdict for."""
    names: list[str] = []
    for path in MODULES:
        if not any(o in path for o in only):
            continue
        meta = tree / "mutants" / f"{path}.meta"
        if not meta.exists():
            names.append(f"{module_of(path)}.x*")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        names += [name for name, code in codes.items() if code is None]
    return names


def generate(tree: Path) -> None:
    """The mutants of this commit, generated and nothing run: the first step of ``mutmut run`` (mutmut 3.8.1's
    own functions, as its _run() calls them), so that a sample is drawn from the mutants this commit has."""
    code = ("import os, mutmut.__main__ as m\n"
            "m.set_mutant_under_test('mutant_generation')\n"
            "os.makedirs('mutants', exist_ok=True)\n"
            "m.copy_src_dir(); m.copy_also_copy_files(); m.setup_source_paths(); m.store_lines_covered_by_tests()\n"
            "m.create_mutants(1)\n")
    _run([sys.executable, "-c", code], tree, capture_output=True)


SAMPLE = "sample.json"  # in the worktree's mutants/: per module, its last draw (seed, frame and names)


def draw(tree: Path, size: int, seed: int, chosen: list[str]) -> dict[str, dict[str, object]]:
    """Per module of ``chosen``: ``size`` of its rule mutants without a verdict, uniformly at random; kept with
    the seed and the frame (all that were without a verdict) in mutants/sample.json for the report, where a
    module's new draw replaces its old one and the other modules' stay.  Mutants run since an earlier draw are
    no longer in the frame: they count as they are."""
    rng = random.Random(seed)
    saved = tree / "mutants" / SAMPLE
    out: dict[str, dict[str, object]] = json.loads(saved.read_text()) if saved.exists() else {}
    for path in chosen:
        meta = tree / "mutants" / f"{path}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        frame = sorted(m for m, code in codes.items()
                       if verdict(code) == NOT_RUN and function_of(m) not in NOT_RULES.get(path, ()))
        out.pop(path, None)
        if frame:
            out[path] = {"seed": seed, "frame": frame, "names": sorted(rng.sample(frame, min(size, len(frame))))}
    saved.write_text(json.dumps(out, indent=1))
    return {path: out[path] for path in chosen if path in out}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion seen as k of n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Estimate:
    """A module's score with the mutants not run estimated from a random sample of them."""

    score: float
    low: float
    high: float
    sampled: int  # sample mutants with a verdict that counts (killed, survived or timed out)
    killed: int  # of them
    unrun: int  # mutants still without a verdict, the sample's share stands for


def estimate(exact_killed: int, exact_counted: int, sample: Counter[str], unrun: int) -> Estimate:
    """The whole module's killed share: every mutant run outside the sample exactly (``exact_killed`` of
    ``exact_counted``), the sample as it is, and the ``unrun`` others of the frame at the sample's share, whose
    interval is the estimate's; a sample mutant the message rule excludes takes its share of them out."""
    counted = sample[KILLED] + sample[SURVIVED] + sample[TIMEOUT]
    drawn = counted + sample["messages"]
    if counted == 0:
        raise ValueError("no sampled mutant has a verdict yet")
    rest = unrun * counted / drawn  # the unrun without their share of message mutants
    low, high = wilson(sample[KILLED], counted)
    total = exact_counted + counted + rest

    def share(p: float) -> float:
        return (exact_killed + sample[KILLED] + p * rest) / total

    return Estimate(share(sample[KILLED] / counted), share(low), share(high), counted, sample[KILLED], unrun)


def mutmut(tree: Path, names: list[str], jobs: int = 1) -> float:
    """Run mutmut in the worktree (resuming); the wall time in seconds."""
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci"}
    exe = str(Path(sys.executable).parent / "mutmut")
    start = time.monotonic()
    subprocess.run(["nice", "-n", "19", exe, "run", "--max-children", str(jobs), *names], cwd=tree, env=env,
                   check=False)
    return time.monotonic() - start


def collect(tree: Path) -> dict[str, Module]:
    """Verdicts per module from mutmut's .meta files, with the diffs of survivors."""
    cwd = os.getcwd()
    os.chdir(tree)  # mutmut reads its config and mutants/ from the working directory
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        out: dict[str, Module] = {}
        for path, name in MODULES.items():
            meta = tree / "mutants" / f"{path}.meta"
            codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
            module = Module(name, Counter(), [], [], 0)
            for mutant, code in sorted(codes.items()):
                if function_of(mutant) in NOT_RULES.get(path, ()):
                    module.not_rules += 1
                    continue
                seen = verdict(code)
                if seen == SURVIVED:
                    try:
                        diff = get_diff_for_mutant(mutant, path=path)
                    except (FileNotFoundError, OSError) as err:  # a module mutmut no longer walks (--only)
                        diff = f"- (no diff: {err})"
                    if message_only(diff):
                        module.messages.append(mutant)
                        module.seen[mutant] = "messages"
                        continue
                    module.survivors.append((mutant, diff))
                module.verdicts[seen] += 1
                module.seen[mutant] = seen
            out[path] = module
        return out
    finally:
        os.chdir(cwd)


def _changed_lines(diff: str) -> str:
    lines = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    return " | ".join(line.strip() for line in lines)[:150]


def sample_lines(modules: dict[str, Module], drawn: dict[str, dict[str, object]]) -> list[str]:
    """The report's estimate lines for the modules drawn from (mutants/sample.json)."""
    lines = ["estimate from a random sample of the mutants not run (`--sample N --seed S --only MODULE` draws "
             "a module's sample again from the same frame):"]
    for path, entry in drawn.items():
        module = modules.get(path)
        if module is None:
            continue
        names = set(entry["names"])  # type: ignore[call-overload]
        sample = Counter(module.seen.get(m, NOT_RUN) for m in names)
        exact = Counter(v for m, v in module.seen.items() if m not in names and v not in (NOT_RUN, "messages"))
        unrun = sum(1 for m in entry["frame"] if m not in names  # type: ignore[attr-defined]
                    and module.seen.get(m, NOT_RUN) == NOT_RUN)
        if sample[NOT_RUN]:
            lines.append(f"  {module.name}: {sample[NOT_RUN]} of its {len(names)} sampled mutants have not run yet")
            continue
        try:
            e = estimate(exact[KILLED], sum(exact.values()), sample, unrun)
        except ValueError:  # every sampled mutant is a message one
            lines.append(f"  {module.name}: its {len(names)} sampled mutants all fall under the message rule")
            continue
        lines.append(f"  {module.name}: {100 * e.score:.1f}% killed (95% interval {100 * e.low:.1f} to "
                     f"{100 * e.high:.1f}): {e.killed} of {e.sampled} sampled killed (seed {entry['seed']}), "
                     f"standing for the {e.unrun} not run; the {sum(exact.values())} others run count as they are")
    return lines


def report(modules: dict[str, Module], commit: str, seconds: float | None, command: str,
           drawn: dict[str, dict[str, object]] | None = None) -> int:
    from importlib.metadata import version

    print(f"\nmutation score: mutmut {version('mutmut')} (default operators), HYPOTHESIS_PROFILE=ci, "
          f"commit {commit[:12]}")
    print(f"command: {command}" + (f"; this run took {seconds / 60:.1f} min" if seconds is not None else ""))
    print(f"{'module':<28}{'mutants':>8}{'killed':>8}{'survived':>9}{'timeout':>8}{'messages':>9}{'not run':>8}"
          f"{'killed %':>9}")
    total = Module("all", Counter(), [], [], 0)
    for module in modules.values():
        total.verdicts.update(module.verdicts)
        total.messages += module.messages
        total.survivors += module.survivors
        total.not_rules += module.not_rules
    for module in [*modules.values(), total]:
        v, d = module.verdicts, module.denominator
        share = f"{100 * v[KILLED] / d:.1f}" if d else "-"
        print(f"{module.name:<28}{d:>8}{v[KILLED]:>8}{v[SURVIVED]:>9}{v[TIMEOUT]:>8}{len(module.messages):>9}"
              f"{v[NOT_RUN]:>8}{share:>9}")
    print("mutants = killed + survived + timeout (the denominator); survived includes mutants no test runs")
    if drawn:
        print("\n".join(sample_lines(modules, drawn)))
    print(f"messages: excluded by the message rule: {MESSAGE_RULE}")
    for mutant in total.messages:
        print(f"  excluded: {mutant}")
    if total.not_rules:
        print(f"not in the score: {total.not_rules} mutants of x86_64/kernel.py's "
              f"{', '.join(NOT_RULES['src/rofolio/arch/x86_64/kernel.py'])}() (oops and dump text, not rules)")
    print(f"survivors ({len(total.survivors)}):")
    for mutant, diff in total.survivors:
        print(f"  {mutant}: {_changed_lines(diff)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=TREE, help=f"the worktree mutmut works in (default {TREE})")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the mutants of the modules whose path contains this (e.g. arm64); repeatable")
    parser.add_argument("--retest-survivors", action="store_true", help="run the survivors' tests again")
    parser.add_argument("--report", action="store_true", help="only print the figures of the last runs")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="mutants tested at once (default 1: the machine stays usable); each takes one CPU, "
                             "and more jobs than idle CPUs slows every test run, so slow mutants may time out")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="run only N mutants per module, drawn at random from those without a verdict, and "
                             "estimate each module's whole score from them (with a 95%% interval)")
    parser.add_argument("--seed", type=int, default=None, help="the draw of --sample (default: a new one, printed)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.sample < 0 or (args.sample and args.retest_survivors):
        parser.error("--sample takes a positive N, and not with --retest-survivors")
    command = "scripts/mutation" + "".join(f" --only {o}" for o in args.only) + \
        (" --retest-survivors" if args.retest_survivors else "") + \
        (f" --sample {args.sample}" if args.sample else "")
    seconds = None
    if args.report:  # read only: a run may be going on in the worktree
        commit = _run(["git", "rev-parse", "HEAD"], args.tree, capture_output=True).stdout.strip()
    else:
        commit = prepare(args.tree)
        chosen = [p for p in MODULES if not args.only or any(o in p for o in args.only)]
        if args.retest_survivors:
            names = [m for path, module in collect(args.tree).items() if path in chosen for m, _ in module.survivors]
        elif args.sample:
            generate(args.tree)
            seed = random.randrange(2**32) if args.seed is None else args.seed
            names = [m for entry in draw(args.tree, args.sample, seed, chosen).values() for m in entry["names"]]
            print(f"scripts/mutation: {len(names)} mutants drawn with seed {seed}")
        else:
            names = pending(args.tree, args.only) if args.only else []
        if names or not (args.only or args.retest_survivors):
            seconds = mutmut(args.tree, names, args.jobs)
        else:
            print("scripts/mutation: nothing to run: every mutant chosen has a verdict")
    sample = args.tree / "mutants" / SAMPLE
    drawn = json.loads(sample.read_text()) if sample.exists() else None
    return report(collect(args.tree), commit, seconds, command, drawn)


if __name__ == "__main__":
    sys.exit(main())
