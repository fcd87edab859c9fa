"""Errors a user can cause, and kernel error numbers.

Two different things live here:

* ``RofolioError`` and its subclasses are *Python* exceptions for mistakes a user
  makes (an unknown architecture, a size that does not parse, a scenario key
  that does not exist).  Each carries a message and a hint that says how to fix
  it; the CLI prints both and exits with status 2, never a traceback.
  ``EnvironmentFailure`` is the other kind: the request was fine but the
  machine rofolio runs on could not do it (a missing tool, an unwritable path,
  a guest that timed out); the CLI exits with status 4.  ``exit_status`` on
  each class says which (see rofolio.exitstatus and docs/errors.md).
* ``Errno`` holds the kernel's error numbers.  A modelled kernel function
  returns them as negative ints, exactly as the kernel does (``-ENOMEM`` from
  ``set_memory_ro`` when a page-table page cannot be allocated): they are
  results to report, not exceptions.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = [
    "AddressError", "ChecksFailed", "ConfigError", "EnvironmentFailure", "Errno", "RofolioError", "ScenarioError",
    "ScenarioErrors"
]


class RofolioError(Exception):
    """A mistake in what the user asked for; ``hint`` says how to fix it."""

    #: the process exit status the CLI ends with (rofolio.exitstatus.ExitStatus.USAGE)
    exit_status: ClassVar[int] = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def problems(self) -> list[tuple[str, str]]:
        """Each problem as (what was wrong, with FILE:LINE first where known; the hint), for the CLI to print."""
        return [(self.message, self.hint)]


class EnvironmentFailure(RofolioError):
    """The request was fine but the environment failed it: a missing tool or package, an unwritable path,
    a guest that timed out, a failed build.  The CLI exits with status 4."""

    exit_status: ClassVar[int] = 4


class ConfigError(RofolioError):
    """An impossible or unsupported machine configuration."""


class AddressError(RofolioError):
    """An address outside what the modelled machine maps, or not aligned as required."""


class ScenarioError(RofolioError):
    """A scenario file that cannot run: where it is wrong (file, line, key) and how to fix it."""

    def __init__(self, message: str, hint: str = "", *, file: str = "", line: int | None = None,
                 key: str = "") -> None:
        super().__init__(message, hint)
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = self.file or "<scenario>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{key} {self.message}{hint}"

    @property
    def location(self) -> str:
        """FILE:LINE, FILE, or "" when neither is known."""
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def problems(self) -> list[tuple[str, str]]:
        parts = [p for p in (self.location, self.key) if p]
        return [(": ".join([*parts, self.message]), self.hint)]


class ScenarioErrors(RofolioError):
    """Every problem found in one scenario, reported together."""

    def __init__(self, errors: list[ScenarioError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def problems(self) -> list[tuple[str, str]]:
        return [p for e in self.errors for p in e.problems()]


class ChecksFailed(Exception):
    """What a command checked did not hold: it exits with status 1 after ``rofolio: <summary>``."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class Errno(IntEnum):
    """Kernel error numbers (include/uapi/asm-generic/errno-base.h, errno.h)."""

    EFAULT = 14
    EBUSY = 16
    EINVAL = 22
    ENOMEM = 12
    ENOSYS = 38
    EOPNOTSUPP = 95

    @classmethod
    def describe(cls, ret: int) -> str:
        """'0' for success, '-ENOMEM' style text for a negative kernel return value."""
        if ret == 0:
            return "0"
        try:
            return f"-{cls(-ret).name}"
        except ValueError:
            return str(ret)
