"""Errors of the oracle: what went wrong, and what to do about it.

``OracleError`` is an environment failure (exit status 4: a missing tool, a
failed install or build, a guest that did not boot); ``Refusal`` is bad input
(exit status 2: the scenario asks for what a real kernel cannot do).
"""

from __future__ import annotations

from typing import ClassVar

from rofolio.errors import EnvironmentFailure

__all__ = ["OracleError", "Refusal"]


class OracleError(EnvironmentFailure):
    """The oracle cannot run: a missing tool, a failed install, a guest that did not boot."""


class Refusal(OracleError):
    """A scenario asks for something a real kernel cannot be made to do from a module."""

    exit_status: ClassVar[int] = 2  # the scenario is wrong for the oracle, not the environment

    def __init__(self, message: str, hint: str = "", *, scenario: str = "", step: int | None = None) -> None:
        where = scenario + (f", step {step}" if step is not None else "")
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.scenario = scenario
        self.step = step
