"""Errors of the oracle: what went wrong, and what to do about it."""

from __future__ import annotations

from rofolio.errors import RofolioError


class OracleError(RofolioError):
    """The oracle cannot run: a missing tool, a failed install, a guest that did not boot."""


class Refusal(OracleError):
    """A scenario asks for something a real kernel cannot be made to do from a module."""

    def __init__(self, message: str, hint: str = "", *, scenario: str = "", step: int | None = None) -> None:
        where = scenario + (f", step {step}" if step is not None else "")
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.scenario = scenario
        self.step = step
