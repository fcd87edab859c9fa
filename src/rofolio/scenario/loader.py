"""Reading scenario files: TOML to a validated ``Scenario``, or errors that name file, line and key.

Validation happens in full before anything runs: a scenario with a mistake
never runs half-way.  Built-in scenarios ship inside the package
(``rofolio/scenario/builtin/*.toml``) and are loaded by name.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rofolio.errors import RofolioError, ScenarioError, ScenarioErrors
from rofolio.scenario import schema

__all__ = ["MAX_NESTING", "MAX_SCENARIO_BYTES", "LoadedScenario", "builtin_names", "builtin_text", "load", "parse",
           "problem_errors", "toml_text", "validate"]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\"-]+)\s*=")


STDIN = "<stdin>"  # how a scenario read from standard input (``rofolio run -``) is named in errors


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with rofolio."""
    folder = resources.files("rofolio.scenario") / "builtin"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    return (resources.files("rofolio.scenario") / "builtin" / f"{name}.toml").read_text()


@dataclass(frozen=True)
class LoadedScenario:
    """A scenario read once and validated: the typed scenario, its display name, and its text for line numbers.

    Machine changes (the command line's options, a compare axis) go through
    ``with_machine()``/``with_mm()``, typed, and are validated like the file's
    own keys; errors from them name the command line instead of a file line.
    """

    scenario: schema.Scenario
    name: str  # what reports call it: the built-in name or the path given
    filename: str  # where errors point: "builtin:NAME" or the path
    text: str = ""

    @property
    def locator(self) -> _Locator:
        return _Locator(self.text)

    def with_machine(self, **overrides: Any) -> LoadedScenario:
        """The same scenario on another machine: ``overrides`` are [machine] keys with typed values.

        Changing ``arch`` drops the options of the scenario's own architecture
        that the new one does not take.
        """
        return self._with({"machine": overrides})

    def with_mm(self, **overrides: Any) -> LoadedScenario:
        """The same scenario with other [mm] settings (``lifetime``, ``init_on_free``, ...)."""
        return self._with({"mm": overrides})

    def _with(self, tables: dict[str, dict[str, Any]]) -> LoadedScenario:
        data = self.scenario.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for table, overrides in tables.items():
            if not overrides:
                continue
            merged = {**data.get(table, {}), **overrides}
            if table == "machine":  # RAM given one way replaces the scenario's RAM given the other way
                for given, other in (("memory_map", "mem"), ("mem", "memory_map")):
                    if given in overrides and other not in overrides:
                        merged.pop(other, None)
            if table == "machine" and "arch" in overrides and overrides["arch"] != self.scenario.machine.arch:
                old = {o.key for o in _arch_options(self.scenario.machine.arch)}
                new = {o.key for o in _arch_options(str(overrides["arch"]))}
                merged = {k: v for k, v in merged.items() if k in overrides or k not in old or k in new}
            data[table] = merged
        return LoadedScenario(validate(data, "command line"), self.name, self.filename, self.text)


def _arch_options(arch: str) -> tuple[Any, ...]:
    from rofolio.arch import arch_entry

    try:
        return arch_entry(arch).options
    except RofolioError:
        return ()


MAX_SCENARIO_BYTES = 1 << 20  # a scenario is a short text file; anything larger is a mistake


def load(source: str | Path | LoadedScenario) -> LoadedScenario:
    """Load a scenario from a file path, a built-in name or ``-`` (standard input), reading it once."""
    if isinstance(source, LoadedScenario):
        return source
    if source == "-":
        if sys.stdin is None:  # started with standard input closed (<&-)
            raise ScenarioError("standard input is closed", "pipe the scenario in, or give a file", file=STDIN)
        text = _text(sys.stdin.buffer.read(MAX_SCENARIO_BYTES + 1), STDIN)
        return LoadedScenario(parse(text, STDIN), STDIN, STDIN, text)
    path = Path(source)
    # a built-in's bare name is the built-in, even where a file of that name is in the current directory (the
    # default `rofolio run` must not depend on it); ./NAME is the file
    bare_builtin = isinstance(source, str) and source in builtin_names()
    if path.suffix == ".toml" or (path.exists() and not bare_builtin):
        if not path.exists():
            raise ScenarioError(f"no such file: {source}", "give a path to a .toml scenario or a built-in name",
                                file=str(source))
        if not path.is_file():
            raise ScenarioError("not a regular file", "give a path to a .toml scenario file", file=str(source))
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_SCENARIO_BYTES + 1)
        except OSError as err:
            raise ScenarioError(f"cannot read the file: {err}", "check the path and that it is UTF-8 text",
                                file=str(source)) from err
        text = _text(raw, str(source))
        return LoadedScenario(parse(text, str(source)), str(source), str(source), text)
    name = str(source)
    if name not in builtin_names():
        raise ScenarioError(f"no scenario named {name!r}",
                            f"built-ins: {', '.join(builtin_names())}; or give a path to a .toml file",
                            file=name)
    text = builtin_text(name)
    return LoadedScenario(parse(text, f"builtin:{name}"), name, f"builtin:{name}", text)


def _text(raw: bytes, name: str) -> str:
    """A scenario's bytes as text: short, and UTF-8 (a bad byte is named by its line and column)."""
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"larger than {MAX_SCENARIO_BYTES >> 10} KiB: not a scenario",
                            "a scenario file is a short TOML text", file=name)
    try:
        return raw.decode()
    except UnicodeDecodeError as err:  # where the bad byte is: its line, and its column in bytes
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ScenarioError(f"not UTF-8 text: byte {raw[err.start]:#04x} at column {column} ({err.reason})",
                            "a scenario is UTF-8 text; retype that part of the line", file=name,
                            line=line) from err


def parse(text: str, filename: str = "<scenario>") -> schema.Scenario:
    """Parse and validate scenario text; raise ScenarioErrors listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = _toml_line(str(err), text)
        hint = "fix the syntax at that line"
        if text.startswith("\ufeff") and line == 1:  # tomllib takes no byte-order mark
            hint = "the file begins with a byte-order mark (U+FEFF), which TOML does not allow; save it without one"
        raise ScenarioErrors([ScenarioError(f"not valid TOML: {_strip_position(str(err))}", hint, file=filename,
                                            line=line)]) from err
    except RecursionError:  # tomllib descends once per nested array or inline table
        line = _too_deep_line(text)
        key = _KEY.match(text.splitlines()[line - 1]) if line else None
        raise ScenarioErrors([ScenarioError(
            f"arrays or inline tables nested more than {MAX_NESTING} deep", "a scenario needs two or three levels",
            file=filename, line=line, key=key.group(1).strip('"') if key else "")]) from None
    return validate(data, filename, text)


MAX_NESTING = 100  # far below what exhausts Python's stack in tomllib, far above what a scenario uses


def _too_deep_line(text: str) -> int | None:
    """The line where brackets and braces (outside strings and comments) first nest deeper than MAX_NESTING."""
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        quote = ""
        for char in line:
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                if depth > MAX_NESTING:
                    return number
            elif char in "]}":
                depth -= 1
    return None


def validate(data: dict[str, Any], filename: str, text: str = "") -> schema.Scenario:
    """Validate scenario data (parsed TOML, or a scenario changed by overrides); ScenarioErrors if it is wrong."""
    locator = _Locator(text)
    errors: list[ScenarioError] = []
    try:
        scenario = schema.Scenario.model_validate(data)
    except ValidationError as err:
        errors = [_explain(e, locator, filename, data) for e in err.errors()]
    except RofolioError as err:  # raised from inside a validator (size or version parsing)
        errors = [ScenarioError(err.message, err.hint, file=filename)]
    errors += problem_errors(data, filename, locator)  # across steps, whatever else is wrong (in [machine] too)
    if errors:
        raise ScenarioErrors(sorted(errors, key=lambda e: (e.line is None, e.line or 0)))
    return scenario


def problem_errors(data: dict[str, Any], filename: str, locator: _Locator) -> list[ScenarioError]:
    """schema.problems() of scenario data, each with its file, line and key."""
    return [ScenarioError(p.message, p.hint, file=filename, line=locator.find(p.loc), key=_key_text(p.loc))
            for p in schema.problems(data)]


def _toml_line(message: str, text: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    if match:
        return int(match.group(1))
    if "end of document" in message:  # tomllib gives no line for a file that stops short: it is the last one
        return max(len(text.splitlines()), 1)
    return None


def _strip_position(message: str) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", message)


class _Locator:
    """Maps a validation location such as ('steps', 2, 'pages') to a line of the TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.text = text.splitlines()
        table: tuple[Any, ...] = ()
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                name = header.group(2)
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    table = (*name.split("."), index)
                else:
                    table = tuple(name.split("."))
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault((*table, key.group(1).strip('"')), number)

    def find(self, loc: tuple[Any, ...]) -> int | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def written(self, loc: tuple[Any, ...]) -> str | None:
        """The value of the key at ``loc`` as its line spells it (``6.10``, where TOML reads 6.1), if found."""
        line = self.lines.get(loc)
        if line is None or not loc or not isinstance(loc[-1], str):
            return None
        found = re.search(rf"(?:^|[\s{{,]){re.escape(loc[-1])}\s*=\s*([^\s,}}#]+)", self.text[line - 1])
        return found.group(1) if found else None


def _clean_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[Any, ...]:
    """Drop the discriminator tag pydantic inserts after a list index ('steps', 0, 'set_memory_ro', ...)."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(loc[i - 1], int) and isinstance(part, str):
            container = data.get(str(loc[0])) if out else None
            if isinstance(container, list) and isinstance(loc[i - 1], int) and loc[i - 1] < len(container):
                item = container[loc[i - 1]]
                if isinstance(item, dict) and item.get("op") == part:
                    continue
        out.append(part)
    return tuple(out)


def _key_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def _model_at(loc: tuple[Any, ...], data: dict[str, Any]) -> type[BaseModel] | None:
    """The schema model of the table that holds the last key of ``loc``."""
    if not loc:
        return schema.Scenario
    if loc[0] == "machine":
        return schema.Machine
    if loc[0] == "mm":
        return schema.MM
    if loc[0] == "steps" and len(loc) >= 2 and isinstance(loc[1], int):
        steps = data.get("steps")
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            return schema.step_model(steps[loc[1]].get("op"))
    return None


def _explain(error: dict[str, Any], locator: _Locator, filename: str, data: dict[str, Any]) -> ScenarioError:
    loc = _clean_loc(tuple(error["loc"]), data)
    kind = error["type"]
    line = locator.find((*loc, "op") if kind.startswith("union_tag") else loc)
    key = _key_text(loc)
    if kind == "extra_forbidden" and loc[:1] == ("machine",) and len(loc) == 2:
        return _foreign_option(str(loc[1]), data, filename, line, key)
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1], data)
        allowed = ", ".join(_allowed_keys(model)) if model else ""
        return ScenarioError(f"unknown key {loc[-1]!r}", f"remove it or use one of: {allowed}" if allowed
                             else "remove it", file=filename, line=line, key=key)
    if kind == "missing":
        hint = {"name": 'add name = "..."', "steps": "add at least one [[steps]] table",
                "pages": "add pages = N (4K pages)", "op": 'add op = "set_memory_ro" (or another operation)',
                "to": 'add to = "running"', "as": 'add as = "name"'}.get(str(loc[-1]), f"add {loc[-1]} = ...")
        return ScenarioError(f"missing key {loc[-1]!r}", hint, file=filename, line=line, key=key)
    if kind == "union_tag_invalid":
        ops = sorted(error.get("ctx", {}).get("expected_tags", "").replace("'", "").split(", "))
        return ScenarioError(f"unknown op {error.get('ctx', {}).get('tag')!r}",
                             f"use one of: {', '.join(ops)}", file=filename, line=line, key=key)
    if kind == "union_tag_not_found":
        return ScenarioError("step has no op", 'add op = "set_memory_ro" (or another operation)',
                             file=filename, line=line, key=key)
    if kind == "literal_error":
        return ScenarioError(f"{error['msg'].lower()} (got {toml_text(error.get('input'))})",
                             "use one of the listed values",
                             file=filename, line=line, key=key)
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, schema.UnquotedVersion):  # the fix quotes the number as the file spells it
        written = locator.written(loc)
        try:
            written = written if written is not None and float(written.replace("_", "")) == cause.value else None
        except ValueError:
            written = None
        message, hint = cause.explain(written)
        return ScenarioError(message, hint, file=filename, line=line, key=key)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind.endswith("_type") and "input" in error and not isinstance(error["input"], dict | list):
        message += f" (got {toml_text(error['input'])})"  # strict: say what was written instead
        if kind == "int_type" and isinstance(error["input"], str) and error["input"].strip().isdigit():
            return ScenarioError(message, f"write it without quotes: {loc[-1]} = {error['input'].strip()}",
                                 file=filename, line=line, key=key)
    hint = {"int_type": "write a whole number", "int_parsing": "write a whole number",
            "bool_type": "write true or false", "string_type": 'write a quoted string, e.g. "x"',
            "greater_than_equal": "use a larger value", "less_than_equal": "use a smaller value",
            "too_short": "add at least one entry", "list_type": "write a list [ ... ]",
            "model_type": "write a table"}.get(kind, "")
    return ScenarioError(message, hint, file=filename, line=line, key=key)


def toml_text(value: Any) -> str:
    """A value as it reads in TOML: true, "512", 6.1 (error messages, rofolio ops)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _foreign_option(key: str, data: dict[str, Any], filename: str, line: int | None, where: str) -> ScenarioError:
    """An unknown [machine] key: an option of another architecture, or no option at all."""
    from rofolio.arch import all_options

    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    arch = str(machine.get("arch", "x86_64")) if isinstance(machine, dict) else "x86_64"
    own = [o.key for o in _arch_options(arch)]
    common = [k for k in schema.Machine.model_fields]
    takes = ", ".join(common + own)
    others = all_options().get(key)
    if others:
        return ScenarioError(f"{key} is not an option of {arch} machines",
                             f"it is an option of {', '.join(others[1])}; {arch} takes: {takes}",
                             file=filename, line=line, key=where)
    return ScenarioError(f"unknown key {key!r}", f"remove it or use one of: {takes}", file=filename, line=line,
                         key=where)
