"""How long `rofolio survey` takes: the whole catalogue on every machine of the RFC side-by-side.

Prints the wall time of the full survey beside the time of one boot of each RFC machine measured in the same
run (the survey boots one machine per candidate and machine), so the figure reads as "boots plus the work"
on whatever machine runs it.  Usage: .venv/bin/python benchmarks/survey.py [--json]
"""

from __future__ import annotations

import json
import sys
import time

from rofolio.arch import rfc_machines
from rofolio.machine import Machine, MachineSpec
from rofolio.survey.study import run_survey


def main() -> None:
    t0 = time.perf_counter()
    boots = []
    for config in rfc_machines():
        t = time.perf_counter()
        Machine.boot(MachineSpec.build(mem="16G", **config)).finish_boot()
        boots.append(time.perf_counter() - t)
    boot_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = run_survey()
    survey_s = time.perf_counter() - t1
    runs = sum(len(r.costs) for r in result.rows)
    out = {"candidates": len(result.rows), "machines": len(result.machines), "machine_runs": runs,
           "survey_s": round(survey_s, 2), "one_boot_of_each_machine_s": round(boot_s, 3),
           "survey_over_boots_of_its_runs": round(survey_s / (boot_s / len(boots) * runs), 2) if runs else None}
    if "--json" in sys.argv:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
