"""The scenario loader under fuzzing: valid scenarios from the schema, then mutated, each run by ``rofolio run FILE``.

Valid scenarios (small machines of the registry's x86_64 and arm64 with options drawn from their registry entries,
a few steps: set_memory_* on RAM, folios allocated, made read-only, written and freed by name) never exit 2.
Mutated ones (a value of the wrong type, a key missing or added, an extreme number, unicode, nesting thousands deep,
the text cut short, bytes that are not UTF-8) exit 0, 1 or 2; none exits 3, overruns 10 s or 1 GiB of address
space, or prints a traceback; every exit 2 names the line or the key that is wrong.  Each case is one subprocess
(the exit status is the contract), so the example count is per profile: small in CI.
"""

from __future__ import annotations

import json
import math
import re
import resource
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rofolio.arch import arch_entry
from rofolio.scenario.schema import SET_MEMORY_OPS
from tests.conftest import PROFILE

# examples per profile: each is a process (about 0.4 s to start, 1 s with a machine to run), so CI runs a few
VALID = {"ci": 15, "dev": 10, "soak": 200}.get(PROFILE, 10)
MUTATED = {"ci": 35, "dev": 10, "soak": 400}.get(PROFILE, 10)
TIMEOUT = 10
ADDRESS_SPACE = 1 << 30
ARCHES = ("x86_64", "arm64")
MIB = 1 << 20
PA_LOW, PA_PAGES = 512 * MIB, 65536  # [512M, 768M) above where RAM starts: RAM on every default map of 2G and more

# ------------------------------------------------------------------------------------------------ valid scenarios


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` arrays or inline tables deep (written out without recursion)."""

    depth: int
    table: bool


def _option_values(arch: str) -> st.SearchStrategy[dict[str, Any]]:
    """Options of ``arch`` from its registry entry: a choice, a bool, or an integer from its minimum."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for option in arch_entry(arch).options:
        if option.choices:
            fields[option.key] = st.sampled_from([c for c in option.choices if c is not None])
        elif option.kind is bool:
            fields[option.key] = st.booleans()
        elif option.kind is int and option.minimum is not None:
            fields[option.key] = st.integers(option.minimum, option.minimum + 64)
    if not fields:
        return st.just({})
    return st.fixed_dictionaries({}, optional=fields)


@st.composite
def valid_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    arch = draw(st.sampled_from(ARCHES))
    machine = {"arch": arch, "mem": draw(st.sampled_from(["2G", "3G", "4G"])), "cpus": draw(st.integers(1, 4)),
               **draw(_option_values(arch))}
    if machine.get("secondary_without_bbml2"):  # arm64's config: a secondary CPU needs a second CPU
        machine["cpus"] = max(machine["cpus"], 2)
    steps: list[dict[str, Any]] = []
    live: list[str] = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["set_memory", "alloc", "folio", "compact", "snapshot"]))
        if kind == "set_memory":
            pages = draw(st.integers(1, 1024))
            first = draw(st.integers(0, PA_PAGES - pages))
            entry = arch_entry(arch)  # the set_memory_*() it models, in the default kernel
            ops = [op for op in SET_MEMORY_OPS if op in entry.set_memory_ops and not entry.set_memory_absent(op, "7.2")]
            step = {"op": draw(st.sampled_from(ops)), "pa": entry.ram_base + PA_LOW + first * 4096, "pages": pages}
        elif kind == "alloc" or not live:
            name = f"f{i}"
            step = {"op": "alloc", "order": draw(st.integers(0, 4)), "as": name}
            live.append(name)
        elif kind == "folio":
            folio = draw(st.sampled_from(live))
            op = draw(st.sampled_from(["make_readonly", "restore_writable", "write", "free"]))
            step = {"op": op, "folio": folio}
            if op == "write":
                step["probe"] = True
            if op == "free":
                live.remove(folio)
        else:
            step = {"op": kind}
        if draw(st.booleans()):
            step["expect"] = {"ret": draw(st.sampled_from([0, -12, -22]))}
        steps.append(step)
    return {"name": draw(st.text("abcdefghij-", min_size=1, max_size=8)), "machine": machine, "steps": steps}


# ------------------------------------------------------------------------------------------------------- TOML text

def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    return re.sub(r"[\x7f\x80-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", out)


def _value(value: Any) -> str:
    if isinstance(value, Deep):
        return ("{a = " * value.depth + "1" + "}" * value.depth) if value.table else \
            ("[" * value.depth + "1" + "]" * value.depth)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml(data: dict[str, Any]) -> str:
    """TOML for scenario-shaped data: top-level keys, then [tables], then [[arrays of tables]]."""
    def table(key: str) -> bool:
        return isinstance(data[key], dict)

    def tables(key: str) -> bool:
        value = data[key]
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not table(k) and not tables(k)]
    for k in (k for k in data if table(k)):
        lines += ["", f"[{_key(k)}]", *(f"{_key(a)} = {_value(b)}" for a, b in data[k].items())]
    for k in (k for k in data if tables(k)):
        for item in data[k]:
            lines += ["", f"[[{_key(k)}]]", *(f"{_key(a)} = {_value(b)}" for a, b in item.items())]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ mutations

EXTREME = [0, -1, 1 << 31, (1 << 63) - 1, -(1 << 63), 1 << 64, 10**30, -(10**30), 1 << 52, 2**46 + 1,
           math.inf, -math.inf, math.nan, 1e308, -0.0, 0.5]
ANY_VALUE = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(EXTREME),
    st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.sampled_from(["a", "op", "pages"]), st.integers(),
                                                               max_size=2),
)
UNICODE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


def _paths(data: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in the data: ('machine', 'mem'), ('steps', 1, 'pages'), ..."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*at, k))
            out += _paths(v, (*at, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*at, i))
    return out


def _holder(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, scenario: dict[str, Any]) -> tuple[str, bytes]:
    """One to three mutations of ``scenario``; what was done and the file's bytes."""
    data = json.loads(json.dumps(scenario))
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        kind = draw(st.sampled_from(["type", "missing", "extra", "extreme", "unicode", "deep", "truncate", "bytes"]))
        if not paths and kind in ("type", "missing", "extreme", "unicode", "deep"):
            kind = "extra"
        if kind in ("truncate", "bytes"):
            continue  # applied to the text below
        if kind == "extra":
            tables = [()] + [p for p in paths if isinstance(_holder(data, (*p, None)), dict)]
            where = draw(st.sampled_from(tables))
            holder = _holder(data, (*where, None))
            key = draw(st.one_of(st.sampled_from(["nmae", "op", "pages", "mem", "gbpages", "bbml2", "steps"]),
                                 UNICODE))
            holder[key] = draw(ANY_VALUE)
            done.append(f"extra {key!r} at {where}")
            continue
        path = draw(st.sampled_from(paths))
        holder = _holder(data, path)
        if kind == "missing":
            del holder[path[-1]]
        elif kind == "type":
            holder[path[-1]] = draw(ANY_VALUE)
        elif kind == "extreme":
            holder[path[-1]] = draw(st.sampled_from(EXTREME))
        elif kind == "unicode":
            if isinstance(holder, dict) and draw(st.booleans()):
                holder[draw(UNICODE)] = holder.pop(path[-1])  # a key in unicode
            else:
                holder[path[-1]] = draw(UNICODE)
        elif kind == "deep":
            holder[path[-1]] = Deep(draw(st.sampled_from([50, 99, 101, 500, 5000, 100_000])), draw(st.booleans()))
        done.append(f"{kind} {path}")
    raw = toml(data).encode()
    last = draw(st.sampled_from(["", "truncate", "bytes"]))
    if last == "truncate":
        cut = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:cut]
        done.append(f"truncated at byte {cut}")
    elif last == "bytes":
        at = draw(st.integers(0, len(raw)))
        junk = draw(st.binary(min_size=1, max_size=8))
        raw = raw[:at] + junk + raw[at:]
        done.append(f"{junk!r} at byte {at}")
    return "; ".join(done), raw


# ------------------------------------------------------------------------------------------------------ the check

def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_file(raw: bytes) -> tuple[int, str]:
    """``rofolio run FILE`` on these bytes in a subprocess with the time and address-space limits."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_bytes(raw)
        try:
            out = subprocess.run([sys.executable, "-m", "rofolio", "run", str(path)], capture_output=True,
                                 timeout=TIMEOUT, preexec_fn=_limit, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            raise AssertionError(f"rofolio run took more than {TIMEOUT} s") from None
        stderr = out.stderr.replace(str(path), "FILE")
    return out.returncode, stderr


NAMES_A_LINE_OR_KEY = re.compile(r"^rofolio: error: FILE(:\d+: |: [^\s:]+: )", re.MULTILINE)


def check(rc: int, stderr: str, allowed: tuple[int, ...]) -> None:
    assert rc in allowed, f"exit {rc}:\n{stderr}"
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    if rc == 2:
        assert NAMES_A_LINE_OR_KEY.search(stderr), f"exit 2 names neither a line nor a key:\n{stderr}"


QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=VALID, deadline=None, suppress_health_check=QUIET)
@given(scenario=valid_scenarios())
def test_a_valid_scenario_never_exits_2(scenario: dict[str, Any]) -> None:
    text = toml(scenario)
    assert tomllib.loads(text) == scenario  # the file says what was drawn
    rc, stderr = run_file(text.encode())
    expects = any("expect" in step for step in scenario["steps"])
    check(rc, stderr, (0, 1) if expects else (0,))  # 1 only from an expectation that does not hold


@settings(max_examples=MUTATED, deadline=None, suppress_health_check=QUIET)
@given(data=st.data(), scenario=valid_scenarios())
def test_a_mutated_scenario_exits_0_1_or_2_and_says_where(data: st.DataObject, scenario: dict[str, Any]) -> None:
    _, raw = data.draw(mutated(scenario), label="mutation")
    rc, stderr = run_file(raw)
    check(rc, stderr, (0, 1, 2))
