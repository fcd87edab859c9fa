"""rofolio: an executable model of the Linux direct map and of read-only folios in it.

The library API mirrors the command line::

    import rofolio
    result = rofolio.run_scenario("rfc-demo")          # a built-in name or a .toml path
    result.steps[0].delta                               # what the first step changed
    table = rofolio.compare("x86-split-costs", {"gbpages": ["true", "false"]})
    matrix = rofolio.bug_matrix()                       # every bug under every protection
    rofolio.run_lifetime_workload(MachineSpec(), "model1")  # the lifetime workload under one model

Results render as tables in notebooks.  Lower layers (``rofolio.machine``,
``rofolio.arch.x86_64``) can be driven directly for anything scenarios do not cover.
"""

from rofolio.bugs import BugMatrix, bug_matrix
from rofolio.compare import CompareResult, compare
from rofolio.lifetime import run_lifetime_workload
from rofolio.machine import Machine, MachineSpec
from rofolio.scenario.runner import ScenarioResult, run_scenario

__all__ = ["BugMatrix", "CompareResult", "Machine", "MachineSpec", "ScenarioResult", "bug_matrix", "compare",
           "run_lifetime_workload", "run_scenario"]
