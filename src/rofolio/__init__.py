"""rofolio: an executable model of the Linux direct map and of read-only folios in it.

The library API mirrors the command line::

    import rofolio
    result = rofolio.run_scenario("rfc-demo")          # a built-in name or a .toml path
    result.steps[0].delta                               # what the first step changed
    table = rofolio.compare("x86-split-costs", {"gbpages": ["true", "false"]})

Results render as tables in notebooks.  Lower layers (``rofolio.machine``,
``rofolio.arch.x86_64``) can be driven directly for anything scenarios do not cover.
"""

from rofolio.compare import CompareResult, compare
from rofolio.machine import Machine, MachineSpec
from rofolio.scenario.runner import ScenarioResult, run_scenario

__all__ = ["CompareResult", "Machine", "MachineSpec", "ScenarioResult", "compare", "run_scenario"]
