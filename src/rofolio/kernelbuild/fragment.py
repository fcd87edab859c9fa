"""Kconfig fragments: parse them, merge them, and check that what they asked for is in the built ``.config``.

A fragment is a ``.config`` excerpt: ``CONFIG_FOO=y`` (or ``=m``, a number, a quoted string) and
``# CONFIG_FOO is not set`` lines, blank lines and ``#`` comments.  rofolio merges its checked
fragments (``fragments/common.config``, then the architecture's) and a user's ``--config`` fragment
onto ``make tinyconfig`` with the kernel's own ``scripts/kconfig/merge_config.sh -m`` and
``make olddefconfig``.  merge_config.sh lets a later fragment's value of a symbol replace an earlier
one's (its "Value of CONFIG_X is redefined by fragment" warning), and so does ``merge()`` here, so
the single fragment written for merge_config.sh says exactly what was asked and who asked for it.

Kconfig keeps a value only when the symbol's dependencies are met (``olddefconfig`` silently drops
the rest: merge_config.sh's "Actual value" warnings, which it prints only when it runs make itself);
``unmet()`` finds every option whose value did not stick, so a build never quietly lacks an option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rofolio.errors import RofolioError

__all__ = ["Option", "merge", "parse", "read", "read_config", "render", "unmet"]

# scripts/kconfig/confdata.c conf_read_simple(): "CONFIG_<sym>=<value>" and "# CONFIG_<sym> is not set"
_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
_VALUE = re.compile(r'^(y|m|n|-?\d+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')


@dataclass(frozen=True)
class Option:
    """One symbol's wanted value, and where it was asked for (``FILE:LINE``)."""

    name: str     # without the CONFIG_ prefix, as Kconfig names it
    value: str    # y, m, n (for "is not set"), a number, or a quoted string as .config writes it
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def config_line(self) -> str:
        """The line as .config writes it (``# CONFIG_X is not set`` for n)."""
        return f"# CONFIG_{self.name} is not set" if self.value == "n" else f"CONFIG_{self.name}={self.value}"


def parse(text: str, source: str) -> list[Option]:
    """The options of a fragment; a RofolioError naming ``source:LINE`` for a line Kconfig would not read."""
    options: list[Option] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _NOT_SET.match(line):
            name, value = m.group(1), "n"
        elif m := _SET.match(line):
            name, value = m.group(1), m.group(2).strip()
            if not _VALUE.match(value):
                raise RofolioError(f"{source}:{number}: CONFIG_{name}: {value!r} is not a Kconfig value",
                                   'write y, m, n, a number or a "quoted string"')
        elif line.startswith("#"):
            continue
        else:
            raise RofolioError(f"{source}:{number}: not a Kconfig line: {line[:60]!r}",
                               "write CONFIG_NAME=VALUE or `# CONFIG_NAME is not set`")
        if name in seen:
            raise RofolioError(f"{source}:{number}: CONFIG_{name} is set twice (first on line {seen[name]})",
                               "keep one of the lines")
        seen[name] = number
        options.append(Option(name, value, source, number))
    return options


def read(path: Path, source: str | None = None) -> list[Option]:
    """``parse()`` of a fragment file; an unreadable file is bad input (the user named it)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RofolioError(f"{path}: cannot read the fragment: {getattr(err, 'strerror', None) or err}",
                           "give a readable Kconfig fragment (CONFIG_NAME=VALUE lines)") from err
    return parse(text, source or str(path))


def merge(*fragments: list[Option]) -> dict[str, Option]:
    """The fragments merged in order, a later fragment's value replacing an earlier one's (merge_config.sh)."""
    merged: dict[str, Option] = {}
    for fragment in fragments:
        for option in fragment:
            merged.pop(option.name, None)  # keep the order of the last word on each symbol
            merged[option.name] = option
    return merged


def render(options: dict[str, Option]) -> str:
    """The merged fragment as one file for merge_config.sh, each line commented with where it came from."""
    lines = ["# written by rofolio.kernelbuild: the merged fragments, each option with the FILE:LINE that asked"]
    for option in options.values():
        lines += [f"# {option.where}", option.config_line()]
    return "\n".join(lines) + "\n"


def read_config(text: str) -> dict[str, str]:
    """A ``.config`` as {symbol: value}; "is not set" reads as n, as Kconfig reads it."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _NOT_SET.match(line):
            out[m.group(1)] = "n"
    return out


def unmet(options: dict[str, Option], config: dict[str, str]) -> list[Option]:
    """The options whose value is not the built config's (a symbol absent from .config is n: its dependencies
    were not met, so Kconfig did not write it)."""
    return [o for o in options.values() if config.get(o.name, "n") != o.value]
