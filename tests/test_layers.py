"""The layer table in docs/architecture.md is the contract; every import in src/rofolio must keep it.

Checked over every ``import`` and ``from ... import`` (module level or deferred
inside a function; ``if TYPE_CHECKING:`` blocks are exempt because they never
run):

* no module imports a higher layer,
* modules above ``machine`` (layers 6-8) do not reach into ``arch`` or ``mm``
  (layers 3-4): ``machine`` is the one door (the registries declared under
  the table, ``rofolio.arch`` and ``rofolio.mm.policy``, may be read),
* the run-time import graph has no cycle,
* every module under src/rofolio has a layer in the table.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "rofolio"
DOC = ROOT / "docs" / "architecture.md"

MACHINE_LAYER = 5
BEHIND_THE_DOOR = {3, 4}  # arch and mm: reached from above only through machine

# Imports that break the contract today and are someone else's to remove: (importer, imported) -> reason.
# The list may only shrink: an entry that no longer occurs fails test_known_violations_still_occur.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # the x86 and arm64 oracles compare against that architecture's own formats (its ptdump text, kernel image,
    # config)
    ("rofolio.oracle.arm64", "rofolio.arch.arm64.config"): "an oracle reads its architecture's own formats",
    ("rofolio.oracle.arm64", "rofolio.arch.arm64.image"): "an oracle reads its architecture's own formats",
    ("rofolio.oracle.arm64", "rofolio.arch.arm64.ptdump"): "an oracle reads its architecture's own formats",
    ("rofolio.oracle.translate", "rofolio.arch.x86_64.image"): "an oracle reads its architecture's own formats",
    ("rofolio.oracle.riscv64", "rofolio.arch.riscv64.config"): "an oracle reads its architecture's own formats",
    ("rofolio.oracle.riscv64", "rofolio.arch.riscv64.ptdump"): "an oracle reads its architecture's own formats",
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _full(name: str) -> str:
    return "rofolio" if name == "__init__" else f"rofolio.{name}"


def _declared_block() -> str:
    return DOC.read_text().split("<!-- layers:begin", 1)[1].split("<!-- layers:end", 1)[0]


@cache
def layer_table() -> dict[str, int]:
    """``rofolio.<name>`` -> layer, from the declared table in docs/architecture.md."""
    table: dict[str, int] = {}
    for row in _declared_block().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", row)
        if not m:
            continue
        for name in re.findall(r"`([\w.]+)`", m.group(2)):
            assert _full(name) not in table, f"docs/architecture.md: {name} is in two layers"
            table[_full(name)] = int(m.group(1))
    assert table, "docs/architecture.md: no layer table between the layers:begin/end markers"
    return table


@cache
def registries() -> frozenset[str]:
    """The registry modules any higher layer may read (the "Registries, ..." line under the table)."""
    lines = [line for line in _declared_block().splitlines() if line.startswith("Registries")]
    assert len(lines) == 1, "docs/architecture.md: one 'Registries, ...: `x`, `y`.' line under the layer table"
    return frozenset(_full(name) for name in re.findall(r"`([\w.]+)`", lines[0]))


def layer_of(module: str) -> int | None:
    """The layer of the longest table name covering ``module`` (the root ``rofolio`` covers only itself)."""
    table = layer_table()
    if module in table:
        return table[module]
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in table:
            return table[prefix]
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    exempt: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for stmt in node.body:
                exempt.update(id(n) for n in ast.walk(stmt))
    return exempt


def _resolve(base: str, names: list[str]) -> list[str]:
    """``from base import a, b``: each name that is a submodule, else ``base`` itself."""
    known = modules()
    out = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
    if len(out) < len(names):
        out.append(base)
    return out


@cache
def imports() -> list[Import]:
    """Every run-time import of a rofolio module, in every module under src/rofolio."""
    out: list[Import] = []
    for mod, path in modules().items():
        tree = ast.parse(path.read_text(), str(path))
        exempt = _type_checking_nodes(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in exempt:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = _resolve(base, [a.name for a in node.names])
            elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module")
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                targets = [node.args[0].value]
            for target in targets:
                if (target == "rofolio" or target.startswith("rofolio.")) and target != mod:
                    out.append(Import(mod, target, path, node.lineno))
    return out


def _violations() -> list[tuple[Import, str]]:
    found = []
    for imp in imports():
        mine, theirs = layer_of(imp.importer), layer_of(imp.imported)
        if mine is None or theirs is None:
            continue  # reported by test_every_module_has_a_layer
        if theirs > mine:
            found.append((imp, f"layer {mine} imports layer {theirs}"))
        elif mine > MACHINE_LAYER and theirs in BEHIND_THE_DOOR and imp.imported not in registries():
            found.append((imp, f"layer {mine} reaches past machine into layer {theirs}"))
    return found


def test_every_module_has_a_layer() -> None:
    missing = [f"{path.relative_to(ROOT)}: {mod} has no layer" for mod, path in modules().items()
               if layer_of(mod) is None]
    assert not missing, ("add each module (or its package) to the layer table in docs/architecture.md "
                         "(between the layers:begin/end markers):\n" + "\n".join(missing))


def test_every_table_entry_names_a_module() -> None:
    stale = [name for name in [*layer_table(), *registries()] if name not in modules()]
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_no_module_imports_a_higher_layer() -> None:
    bad = [f"{imp.where}: {imp.importer} imports {imp.imported} ({why})" for imp, why in _violations()
           if (imp.importer, imp.imported) not in KNOWN_VIOLATIONS]
    assert not bad, "imports against the layer table in docs/architecture.md:\n" + "\n".join(bad)


def test_known_violations_still_occur() -> None:
    occurring = {(imp.importer, imp.imported) for imp, _ in _violations()}
    stale = [f"{a} -> {b}" for a, b in KNOWN_VIOLATIONS if (a, b) not in occurring]
    assert not stale, "fixed; remove from KNOWN_VIOLATIONS in tests/test_layers.py:\n" + "\n".join(stale)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_strongly_connected_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {mod: set() for mod in modules()}
    for imp in imports():
        graph[imp.importer].add(imp.imported)
    problems = []
    for component in _strongly_connected(graph):
        members = set(component)
        edges = [f"  {imp.where}: {imp.importer} imports {imp.imported}" for imp in imports()
                 if imp.importer in members and imp.imported in members]
        problems.append(" <-> ".join(component) + "\n" + "\n".join(sorted(set(edges))))
    assert not problems, "import cycles (move the shared part down a layer, or pass it in):\n" + "\n".join(problems)


def test_nothing_above_the_machine_reaches_into_its_kernel_or_mm() -> None:
    """The machine is the one door: above it, no ``machine.kernel.X`` / ``machine.mm.X`` attribute chains."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if name in ("rofolio.machine",) or name.startswith(("rofolio.arch", "rofolio.mm")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("kernel", "mm") \
                    and isinstance(node.value, ast.Attribute | ast.Name) \
                    and (getattr(node.value, "attr", None) or getattr(node.value, "id", "")) in ("machine", "m"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not found, "use the machine's verbs instead:\n" + "\n".join(found)
