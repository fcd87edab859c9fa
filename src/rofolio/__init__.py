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

The names below are imported on first use (PEP 562), so ``import rofolio.units`` or ``rofolio --help`` does
not load the model, the scenario schema or pydantic.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rofolio.bugs import BugMatrix, bug_matrix
    from rofolio.compare import CompareResult, compare
    from rofolio.lifetime import run_lifetime_workload
    from rofolio.machine import Machine, MachineSpec
    from rofolio.scenario.runner import ScenarioResult, run_scenario

__all__ = ["BugMatrix", "CompareResult", "Machine", "MachineSpec", "ScenarioResult", "bug_matrix", "compare",
           "run_lifetime_workload", "run_scenario"]

_HOME = {  # exported name -> the module that defines it
    "BugMatrix": "rofolio.bugs", "bug_matrix": "rofolio.bugs",
    "CompareResult": "rofolio.compare", "compare": "rofolio.compare",
    "run_lifetime_workload": "rofolio.lifetime",
    "Machine": "rofolio.machine", "MachineSpec": "rofolio.machine",
    "ScenarioResult": "rofolio.scenario.runner", "run_scenario": "rofolio.scenario.runner",
}


class _Package(ModuleType):
    """The ``rofolio`` module.  Importing the submodule ``rofolio.compare`` sets the package's attribute
    ``compare`` to that module; ``rofolio.compare`` stays the function ``compare()``, as when this package
    imported it at start-up."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _HOME.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'rofolio' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
