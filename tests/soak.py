"""Soak the hypothesis state machines: random exploration for as long as asked; every failure becomes a pinned test.

``scripts/soak [--minutes N]`` runs this module.  Under the ``soak`` profile (random, no example database) it takes
every state machine pytest collects from tests/ (a ``TestX = Machine.TestCase`` in a test module) in turn, a batch
of examples at a time, each batch from a fresh random seed, until the time is up.  A failure is shrunk by hypothesis
and written to tests/regressions/ as a plain test that replays the shrunk steps with the invariants after each, as
hypothesis printed them, so every later pytest run (and the next soak, which runs them first) starts from it.  A
failure whose signature (machine, exception type, the line that raised) already has a file is counted, not
written again.  Exit status: 0 nothing new found, 1 a new failure was written (or a pinned one still fails).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib
import os
import random
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "regressions"


@dataclass(frozen=True)
class Failure:
    """One shrunk failure of a state machine: the program hypothesis printed and where it raised."""

    machine: type
    seed: int
    error: str  # "AssertionError: ..." (first line)
    where: str  # "tests/arch/x86_64/test_cpa_stateful.py:85"
    program: tuple[str, ...]  # "state = X()", "state.rule(...)", "state.invariant()", ..., "state.teardown()"

    @property
    def signature(self) -> str:
        key = f"{self.machine.__module__}.{self.machine.__qualname__}|{self.error.split(':')[0]}|{self.where}"
        return hashlib.sha1(key.encode()).hexdigest()[:10]


def state_machines(root: Path = ROOT / "tests") -> list[type]:
    """Every RuleBasedStateMachine a test module exposes to pytest as ``TestX = Machine.TestCase``."""
    found: list[type] = []
    for path in sorted(root.rglob("test_*.py")):
        if "RuleBasedStateMachine" not in path.read_text(errors="replace") or "regressions" in path.parts:
            continue
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for name, value in vars(module).items():
            machine = getattr(getattr(value, "runTest", None), "_hypothesis_state_machine_class", None)
            if name.startswith("Test") and machine is not None and machine not in found:
                found.append(machine)
    return found


def _program(notes: list[str], machine: type) -> tuple[str, ...] | None:
    """The replayable program in hypothesis's notes, or None if it is not plain Python."""
    text = "\n".join(notes)
    start = text.find(f"state = {machine.__name__}()")
    end = text.find("state.teardown()", start)
    if start < 0 or end < 0:
        return None
    lines = tuple(text[start:end + len("state.teardown()")].splitlines())
    try:
        ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    return lines


def _where(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if str(ROOT) in f.filename]
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).resolve().relative_to(ROOT)}:{last.lineno}"


def explore(machine: type, seed: int, examples: int) -> Failure | None:
    """Run ``examples`` random examples of ``machine`` from ``seed``; the shrunk failure, if one was found."""
    from hypothesis import seed as with_seed
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    with_seed(seed)(machine)
    try:
        run_state_machine_as_test(machine, settings=settings(max_examples=examples))
    except Exception as error:  # a failure of the machine: anything the rules or invariants raised
        program = _program(list(getattr(error, "__notes__", [])), machine)
        if program is None:
            raise
        first = (str(error).strip().splitlines() or [""])[0][:200]
        return Failure(machine, seed, f"{type(error).__name__}: {first}".rstrip(": "), _where(error), program)
    finally:
        machine._hypothesis_internal_use_seed = None  # type: ignore[attr-defined]
    return None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def pinned_test(failure: Failure) -> str:
    """The text of a test module that replays ``failure``."""
    import hypothesis

    machine = failure.machine
    day = datetime.date.today().isoformat()
    body = []
    for line in failure.program:
        code = f"    {line}"
        body.append(code if len(code) <= 110 else code + "  # noqa: E501")
    error = failure.error.replace('"""', "'''").replace("\\", "\\\\")
    return (
        f'"""{machine.__name__} failed under scripts/soak on {day} (seed {failure.seed:#x}, hypothesis '
        f'{hypothesis.__version__}).\n\n'
        f"{error[:110]}\n"
        f"raised at {failure.where}.\n"
        f"The steps are hypothesis's shrunk program, with the invariants after every step as the state machine\n"
        f'checks them.  Signature {failure.signature}.\n"""\n\n'
        f"from {machine.__module__} import {machine.__name__}\n\n\n"
        f"def test_{_snake(machine.__name__)}_soak_{failure.signature}() -> None:\n"
        + "\n".join(body) + "\n"
    )


def pinned_path(failure: Failure, directory: Path = REGRESSIONS) -> Path:
    return directory / f"test_soak_{_snake(failure.machine.__name__)}_{failure.signature}.py"


def write_pinned(failure: Failure, directory: Path = REGRESSIONS) -> Path | None:
    """Write the pinned test for ``failure``; None if one with its signature is already there."""
    path = pinned_path(failure, directory)
    if path.exists():
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(pinned_test(failure))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to explore (default 10)")
    parser.add_argument("--examples", type=int, default=10, help="examples per batch, each batch a new seed")
    parser.add_argument("--machine", action="append", default=[], help="only these state machines (class names)")
    parser.add_argument("--out", type=Path, default=REGRESSIONS, help="where pinned tests go")
    args = parser.parse_args(argv)
    os.environ["HYPOTHESIS_PROFILE"] = "soak"
    sys.path.insert(0, str(ROOT))
    import tests.conftest as conftest  # the profiles, and the counters the summary reads

    if conftest.PROFILE != "soak":
        raise SystemExit("tests.conftest was imported before scripts/soak chose the soak profile")
    status = 0
    pinned = sorted(args.out.glob("test_soak_*.py"))
    if pinned:  # start from what earlier soaks found
        print(f"scripts/soak: replaying {len(pinned)} pinned failure(s) in {args.out}")
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, pinned)],
                             cwd=ROOT, capture_output=True, text=True)
        tail = out.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"  {tail[0]}")
        status = 1 if out.returncode else 0
    machines = [m for m in state_machines() if not args.machine or m.__name__ in args.machine]
    if not machines:
        raise SystemExit(f"scripts/soak: no state machine called {', '.join(args.machine)}")
    names = ", ".join(f"{m.__module__.removeprefix('tests.')}.{m.__name__}" for m in machines)
    print(f"scripts/soak: {len(machines)} state machines ({names}), "
          f"{args.minutes:g} min, {args.examples} examples a batch")
    rng = random.SystemRandom()
    deadline = time.monotonic() + args.minutes * 60
    found: dict[str, Path] = {}
    repeats = 0
    while time.monotonic() < deadline:
        for machine in machines:
            if time.monotonic() >= deadline:
                break
            seed = rng.getrandbits(64)
            failure = explore(machine, seed, args.examples)
            if failure is None:
                continue
            path = write_pinned(failure, args.out)
            if path is None:
                repeats += 1
                continue
            found[failure.signature] = path
            status = 1
            print(f"  {machine.__name__}: {failure.error} at {failure.where} (seed {seed:#x}, "
                  f"{sum(line.startswith('state.') for line in failure.program)} lines) -> {path.relative_to(ROOT)}")
    for machine in machines:
        runs = [r for r in conftest.RUNS if (r.module, r.machine) == (machine.__module__, machine.__qualname__)]
        steps = [n for r in runs for n in r.steps]
        print(f"  {machine.__module__}.{machine.__name__}: {len(runs)} batches, {len(steps)} examples, "
              f"{sum(steps)} rules executed")
    print(f"scripts/soak: {len(found)} new failure(s) pinned, {repeats} repeat(s) of pinned ones")
    return status


if __name__ == "__main__":
    sys.exit(main())
