"""How long `rofolio run --report` takes to render the HTML page for long scenarios (not the run itself).

A scenario of N steps (single-page set_memory_ro/set_memory_rw pairs across 8 GiB) is run once per N, then
its report is rendered and timed part by part: the step table, the direct-map strips, the DirectMap plot and
the flushes plot.  Up to 200 steps the plots show every step; above, running totals.  The target: a
10,000-step report renders in under 10 s.  Prints each N's render time and time per step, measured in the
same run.  Usage: .venv/bin/python benchmarks/report_scaling.py [--steps 100,1000,10000] [--json]
"""

from __future__ import annotations

import json
import sys
import time
from itertools import pairwise

from rofolio.report import (
    html_report,
    plots,  # noqa: F401  (matplotlib's import is not part of any render)
)
from rofolio.scenario.loader import parse
from rofolio.scenario.runner import run_scenario

TARGET_S = 10.0  # a 10,000-step report
GIB = 1 << 30


def scenario_text(steps: int) -> str:
    """``steps`` single-page protection changes, alternately read-only and back, 7 pages apart over 8 GiB."""
    lines = [f'name = "report-scaling-{steps}"', "[machine]", 'mem = "16G"']
    for i in range(steps):
        pa = 4 * GIB + ((i // 2) * 7 * 4096) % (8 * GIB)
        lines += ["[[steps]]", f'op = "{"set_memory_ro" if i % 2 == 0 else "set_memory_rw"}"', f"pa = {pa:#x}",
                  "pages = 1"]
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = [100, 1000, 10000]
    if "--steps" in sys.argv:
        sizes = [int(n) for n in sys.argv[sys.argv.index("--steps") + 1].split(",")]
    rows = []
    for steps in sizes:
        t0 = time.perf_counter()
        result = run_scenario(parse(scenario_text(steps), f"report-scaling-{steps}"))
        run_s = time.perf_counter() - t0
        marks = [time.perf_counter()]

        def mark(done: int, total: int, marks: list[float] = marks) -> None:
            marks.append(time.perf_counter())

        page = html_report(result, progress=mark)
        render_s = marks[-1] - marks[0]
        parts = dict(zip(("step_table_s", "strips_s", "directmap_plot_s", "flushes_plot_s"),
                         (round(b - a, 2) for a, b in pairwise(marks)), strict=True))
        rows.append({"steps": steps, "run_s": round(run_s, 2), "render_s": round(render_s, 2), **parts,
                     "render_ms_per_step": round(1000 * render_s / steps, 3), "page_kib": len(page) >> 10})
    largest = max(rows, key=lambda r: r["steps"])
    verdict = {"steps": largest["steps"], "render_s": largest["render_s"], "target_s": TARGET_S,
               "meets_target": largest["render_s"] < TARGET_S if largest["steps"] >= 10000 else None}
    if "--json" in sys.argv:
        print(json.dumps({"runs": rows, "largest": verdict}, indent=2))
        return
    for row in rows:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    print(f"{verdict['steps']} steps rendered in {verdict['render_s']} s (target: under {TARGET_S:.0f} s for 10,000)")


if __name__ == "__main__":
    main()
