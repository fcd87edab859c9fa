"""How long the command line takes to start: `rofolio --help`, `rofolio run --help` and `rofolio oracle --help`
beside `python -c "import click, rich"` (what any click + rich tool pays), each a fresh process.

The commands run interleaved (one of each per round, in a shuffled order), so a machine that gets busier
slows all of them alike; each figure is the median wall time of its rounds, and each ratio is over the
baseline's median from the same run.  Target (issue 15): every command within 2 times the baseline.
Every process finds its modules compiled, as in an installed rofolio: bytecode goes to a fresh
PYTHONPYCACHEPREFIX (filled by one unmeasured run of each command), whatever PYTHONDONTWRITEBYTECODE says.
Usage: .venv/bin/python benchmarks/startup.py [--rounds 21] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0
ROFOLIO = str(Path(sys.executable).with_name("rofolio"))  # the entry point installed beside this interpreter
BASELINE = "python -c 'import click, rich'"
COMMANDS = {
    BASELINE: [sys.executable, "-c", "import click, rich"],
    "rofolio --help": [ROFOLIO, "--help"],
    "rofolio run --help": [ROFOLIO, "run", "--help"],
    "rofolio oracle --help": [ROFOLIO, "oracle", "--help"],
}


def once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``argv`` to its exit (it must exit 0)."""
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=21, help="runs of each command (default 21)")
    ap.add_argument("--seed", type=int, default=1, help="the seed of the order within each round")
    ap.add_argument("--json", action="store_true", help="print the results and ratios as JSON")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="rofolio-startup-") as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for argv in COMMANDS.values():  # compile, and warm the page cache; not counted
            once(argv, env)
        for _ in range(args.rounds):
            order = list(COMMANDS)
            rng.shuffle(order)
            for name in order:
                times[name].append(once(COMMANDS[name], env))
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"command": name, "median_ms": round(median[name] * 1e3, 1),
             "min_ms": round(min(times[name]) * 1e3, 1),
             "ratio": round(median[name] / median[BASELINE], 2)} for name in COMMANDS]
    met = all(r["ratio"] <= TARGET for r in rows)
    if args.json:
        print(json.dumps({"rounds": args.rounds, "baseline": BASELINE, "target_ratio": TARGET, "met": met,
                          "commands": rows}, indent=2))
        return
    print(f"{args.rounds} interleaved rounds; median (min) wall time of a fresh process, and its ratio to the "
          "baseline's median")
    for r in rows:
        verdict = "" if r["command"] == BASELINE else \
            f"  <= {TARGET:g}x: {'met' if r['ratio'] <= TARGET else 'not met'}"
        print(f"{r['command']:32} {r['median_ms']:7.1f} ms ({r['min_ms']:6.1f})  {r['ratio']:5.2f}x{verdict}")


if __name__ == "__main__":
    main()
