"""The arm64 run-time experiments: TOML files in ``rofolio/oracle/suite_arm64/``, one experiment each.

An experiment names what it shows and the kernel source that decides it, the ``rodata=`` values it runs
under (each one boot of the guest, shared by every experiment of that value), and its steps.  A step is
one verb with its arguments; the guest's module and the model run the same verbs (``verbs`` below):

    vmalloc / vmalloc_huge  slot, pages   a zeroed VM_ALLOC area (vmalloc_huge() adds VM_ALLOW_HUGE_VMAP)
    vmap                    slot, pages   alloc_page() each, then vmap(VM_MAP)
    page                    slot          alloc_page(): the slot's address is a linear-map address
    image                   slot, symbol  the linear alias of a kernel image page (lm_alias(symbol))
    set_memory_ro / _rw     slot, off, pages[, delta]   at the slot's page ``off`` (+ ``delta`` bytes)
    set_direct_map_invalid / _default   slot, off       on the page behind page ``off``, then a flush
    store                   slot, off, via, value       a plain store (oopses on a read-only/invalid leaf)
    load                    slot, off, via              a plain load (oopses on an invalid leaf)
    probe                   slot, off, via              copy_from/to_kernel_nofault() of one byte
    peek                    slot, off, via              copy_from_kernel_nofault(): the byte's value

``via`` is ``vm`` (the slot's own address) or ``lm`` (the linear alias of the page behind it).  Every step
that can change a leaf is followed by the state of every page of its slot, through both mappings.

An experiment with ``model_only`` is not run on the guest (BBML2_NOABORT, which QEMU's CPUs cannot have):
it runs on the model with its ``machine`` options and prints the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rofolio.errors import ScenarioError

__all__ = ["ALLOC_VERBS", "IMAGE_SYMBOLS", "RODATA", "STATE_VERBS", "VERBS", "Experiment", "Step", "load", "load_suite",
           "suite_files"]

RODATA = ("on", "noalias", "off")
VIAS = ("vm", "lm")

# verb -> (required keys, optional keys with defaults)
VERBS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "vmalloc": (("slot", "pages"), {}),
    "vmalloc_huge": (("slot", "pages"), {}),
    "vmap": (("slot", "pages"), {}),
    "page": (("slot",), {}),
    "image": (("slot", "symbol"), {}),
    "set_memory_ro": (("slot", "pages"), {"off": 0, "delta": 0}),
    "set_memory_rw": (("slot", "pages"), {"off": 0, "delta": 0}),
    "set_direct_map_invalid": (("slot",), {"off": 0}),
    "set_direct_map_default": (("slot",), {"off": 0}),
    "store": (("slot", "via", "value"), {"off": 0}),
    "load": (("slot", "via"), {"off": 0}),
    "probe": (("slot", "via"), {"off": 0}),
    "peek": (("slot", "via"), {"off": 0}),
}
# the verbs after which the slot's leaves are read back
STATE_VERBS = frozenset({"vmalloc", "vmalloc_huge", "vmap", "page", "image", "set_memory_ro", "set_memory_rw",
                         "set_direct_map_invalid", "set_direct_map_default"})
MAX_SLOTS = 4  # per experiment; the module has 32 for a whole boot
MAX_PAGES = 64  # the module's MAXPAGES
ALLOC_VERBS = ("vmalloc", "vmalloc_huge", "vmap", "page", "image")  # the verbs that make a slot
# the image section symbols the module resolves (image_syms[] of dmoracle_arm64.c)
IMAGE_SYMBOLS = ("_text", "_stext", "_etext", "__start_rodata", "__init_begin", "__init_end", "__bss_stop", "_end")


@dataclass(frozen=True)
class Step:
    """One verb and its arguments (``args`` holds every key, defaults filled in)."""

    verb: str
    args: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def label(self) -> str:
        shown = " ".join(f"{k}={v:#x}" if k == "value" else f"{k}={v}" for k, v in self.args.items()
                         if not (k in ("off", "delta") and v == 0))
        return f"{self.verb} {shown}"


@dataclass(frozen=True)
class Experiment:
    name: str
    shows: str
    source: tuple[str, ...]
    rodata: tuple[str, ...]
    steps: tuple[Step, ...]
    file: str = ""
    model_only: str = ""  # why the guest cannot run it
    machine: dict[str, Any] = field(default_factory=dict)  # model machine options (model-only experiments)

    @property
    def slots(self) -> int:
        return 1 + max((s["slot"] for s in self.steps), default=0)


def _fail(file: str, message: str, key: str = "", hint: str = "") -> ScenarioError:
    return ScenarioError(message, hint or "see rofolio/oracle/arm64run/suite.py for the step vocabulary",
                         file=file, key=key)


def _step(file: str, i: int, raw: Any) -> Step:
    key = f"steps[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("do"), str):
        raise _fail(file, "a step is a table with a 'do' verb", key)
    verb = raw["do"]
    if verb not in VERBS:
        raise _fail(file, f"unknown verb {verb!r}", f"{key}.do", f"choose one of: {', '.join(VERBS)}")
    required, optional = VERBS[verb]
    given = {k: v for k, v in raw.items() if k != "do"}
    unknown = sorted(set(given) - set(required) - set(optional))
    if unknown:
        raise _fail(file, f"{verb} takes no {', '.join(unknown)}", key,
                    f"{verb} takes: {', '.join((*required, *optional))}")
    missing = [k for k in required if k not in given]
    if missing:
        raise _fail(file, f"{verb} needs {', '.join(missing)}", key)
    args = {**optional, **given}
    for k, v in args.items():
        if k == "via":
            if v not in VIAS:
                raise _fail(file, f"via must be one of {', '.join(VIAS)}, not {v!r}", f"{key}.via")
        elif k == "symbol":
            if v not in IMAGE_SYMBOLS:
                raise _fail(file, f"symbol must be one of {', '.join(IMAGE_SYMBOLS)}, not {v!r}", f"{key}.symbol")
        elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _fail(file, f"{k} must be a non-negative integer, not {v!r}", f"{key}.{k}")
    if args["slot"] >= MAX_SLOTS:
        raise _fail(file, f"slot {args['slot']} is beyond the {MAX_SLOTS} slots of an experiment", f"{key}.slot")
    if verb in ("vmalloc", "vmalloc_huge", "vmap") and not 1 <= args["pages"] <= MAX_PAGES:
        raise _fail(file, f"an area of 1 to {MAX_PAGES} pages, not {args['pages']}", f"{key}.pages")
    if verb == "store" and args["value"] > 0xFF:
        raise _fail(file, "a store writes one byte (0 to 0xff)", f"{key}.value")
    return Step(verb, args)


def load(path: str | Path, text: str | None = None) -> Experiment:
    """One experiment file, validated whole (ScenarioError names the file and key of the first problem)."""
    file = str(path)
    try:
        data = tomllib.loads(text if text is not None else Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise _fail(file, f"cannot read the experiment: {err}") from None
    for key in ("name", "shows"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(file, f"'{key}' must be a non-empty string", key)
    source = data.get("source", [])
    if not isinstance(source, list) or not source or not all(isinstance(s, str) for s in source):
        raise _fail(file, "'source' lists the kernel files and functions that decide the result", "source")
    rodata = data.get("rodata", list(RODATA))
    if not isinstance(rodata, list) or not rodata or any(r not in RODATA for r in rodata):
        raise _fail(file, f"'rodata' is a list of {', '.join(RODATA)}", "rodata")
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(file, "an experiment has [[steps]]", "steps")
    steps = tuple(_step(file, i, raw) for i, raw in enumerate(raw_steps))
    model_only = data.get("model_only", "")
    machine = data.get("machine", {})
    if not isinstance(model_only, str) or not isinstance(machine, dict):
        raise _fail(file, "'model_only' is a reason (a string) and 'machine' a table of model options")
    if machine and not model_only:
        raise _fail(file, "only a model-only experiment sets machine options (the guest's are its boot's)",
                    "machine")
    unknown = sorted(set(data) - {"name", "shows", "source", "rodata", "steps", "model_only", "machine"})
    if unknown:
        raise _fail(file, f"unknown key(s): {', '.join(unknown)}", unknown[0])
    seen: set[int] = set()
    for i, s in enumerate(steps):  # a slot is made once, before it is used
        made = s.verb in ALLOC_VERBS
        if made == (s["slot"] in seen):
            raise _fail(file, f"slot {s['slot']} is {'made twice' if made else 'used before it is made'}",
                        f"steps[{i}]")
        seen.add(s["slot"])
    return Experiment(data["name"], " ".join(data["shows"].split()), tuple(source), tuple(rodata), steps, file,
                      model_only, machine)


def suite_files() -> list[str]:
    """The experiments shipped with rofolio: rofolio/oracle/suite_arm64/*.toml, in name order."""
    folder = resources.files("rofolio.oracle") / "suite_arm64"
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".toml"))  # type: ignore[attr-defined]


def load_suite(files: list[str] | None = None) -> list[Experiment]:
    """Every experiment of the suite (or of ``files``); two with one name are refused."""
    out = [load(f) for f in (files if files is not None else suite_files())]
    names: dict[str, str] = {}
    for e in out:
        if e.name in names:
            raise _fail(e.file, f"experiment {e.name!r} is also in {names[e.name]}", "name")
        names[e.name] = e.file
    return out
