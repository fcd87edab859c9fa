"""The scenario file format (TOML), validated with pydantic.

A scenario describes a machine, a configuration and a timeline of steps::

    name = "rfc-demo"
    description = "..."
    seed = 1
    start = "initcalls"          # steps start at initcall time; "running" boots fully first

    [machine]
    arch = "x86_64"
    mem = "16G"
    gbpages = true

    [[steps]]
    op = "set_memory_ro"
    pa = "4G"
    pages = 512
    expect = { ret = 0, splits_1g = 1 }

Every table forbids unknown keys, so a typo is an error, not a silent default.
The steps a scenario can use are the operations the model implements; each
step may carry ``expect``, the return value and counter changes it must
produce, which makes a scenario a check as well as a measurement.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rofolio.errors import RofolioError
from rofolio.units import parse_size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 8G or a number of bytes, not true/false")
    if isinstance(value, int | str):
        try:
            return parse_size(value)
        except RofolioError as err:
            raise ValueError(str(err)) from None
    raise ValueError("expected a size such as 8G or a number of bytes")


class Machine(_Strict):
    """[machine]: what is booted."""

    arch: Literal["x86_64"] = "x86_64"
    mem: int = Field(16 << 30, description="RAM size; the memory map is QEMU's for that size")
    memory_map: list[tuple[int, int]] | None = Field(None, description="explicit RAM ranges [start, end)")
    kernel: str = "6.18"
    cpus: int = Field(8, ge=1, le=8192)
    boot_profile: Literal["qemu-debian-6.1"] | None = Field(
        None, description="measured boot-time allocations of a real kernel (the QEMU oracle's)")
    debug_pagealloc: bool = False
    kfence: bool = False
    # x86-64
    gbpages: bool = True
    paging: Literal[4, 5] = 4
    tlb_single_page_flush_ceiling: int = Field(33, ge=0)
    zero_page: Literal["bss", "rodata"] = "bss"

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, value: Any) -> int:
        return _size(value)

    @field_validator("memory_map", mode="before")
    @classmethod
    def _map(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(r, list) and len(r) == 2 for r in value):
            raise ValueError("memory_map is a list of [start, end] pairs, e.g. [[0, \"2G\"], [\"4G\", \"8G\"]]")
        return [(_size(s), _size(e)) for s, e in value]

    @field_validator("kernel", mode="before")
    @classmethod
    def _kernel(cls, value: Any) -> str:
        from rofolio.kversion import KernelVersion

        try:
            return str(KernelVersion.parse(str(value)))
        except RofolioError as err:
            raise ValueError(str(err)) from None


class _Step(_Strict):
    name: str | None = None
    expect: dict[str, int | str | bool] | None = None


class _Target(_Step):
    """Where a step acts: a physical address, a kernel virtual address, or a named mapping."""

    pa: int | None = None
    va: int | None = None
    mapping: str | None = Field(None, description="a name given by an earlier vmap step")
    offset: int = Field(0, ge=0, description="pages from the start of the target")

    @field_validator("pa", "va", mode="before")
    @classmethod
    def _addr(cls, value: Any) -> Any:
        return None if value is None else _size(value)

    @model_validator(mode="after")
    def _one_target(self) -> _Target:
        given = [k for k in ("pa", "va", "mapping") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of pa, va or mapping"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


SET_MEMORY_OPS = ("set_memory_ro", "set_memory_rw", "set_memory_np", "set_memory_p", "set_memory_nx",
                  "set_memory_x", "set_memory_4k", "set_memory_rox", "set_memory_uc", "set_memory_wb")


class SetMemory(_Target):
    op: Literal[SET_MEMORY_OPS]  # type: ignore[valid-type]
    pages: int = Field(..., ge=1, description="number of 4K pages")


class SetDirectMap(_Target):
    op: Literal["set_direct_map_invalid_noflush", "set_direct_map_default_noflush"]


class Vmap(_Target):
    """Map pages at a new vmalloc address: an alias of their direct-map pages."""

    op: Literal["vmap"]
    pages: int = Field(..., ge=1)
    as_: str = Field(..., alias="as", description="name of the new mapping")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Write(_Target):
    """A kernel store of one byte through the target address; ``probe`` uses copy_to_kernel_nofault()."""

    op: Literal["write"]
    probe: bool = False


class Phase(_Step):
    """Move the kernel on: 'running' runs free_initmem(), mark_rodata_ro() and sets SYSTEM_RUNNING."""

    op: Literal["phase"]
    to: Literal["running"]


class PgtableAllocFail(_Step):
    """From here on, page-table allocations fail (or succeed again)."""

    op: Literal["pgtable_alloc_fail"]
    fail: bool = True


class Snapshot(_Step):
    """Record the direct-map layout here, for the report's before/after strips."""

    op: Literal["snapshot"]


Step = Annotated[SetMemory | SetDirectMap | Vmap | Write | Phase | PgtableAllocFail | Snapshot,
                 Field(discriminator="op")]


class Scenario(_Strict):
    name: str = Field(..., min_length=1)
    description: str = ""
    seed: int = 0
    start: Literal["initcalls", "running"] = "running"
    machine: Machine = Field(default_factory=Machine)
    steps: list[Step] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _phases(self) -> Scenario:
        phases = [i for i, s in enumerate(self.steps) if isinstance(s, Phase)]
        if self.start == "running" and phases:
            raise ValueError("start = \"running\" already boots fully; remove the phase step "
                             "or set start = \"initcalls\"")
        if len(phases) > 1:
            raise ValueError("the kernel reaches SYSTEM_RUNNING once; keep one phase step")
        names = [s.as_ for s in self.steps if isinstance(s, Vmap)]
        for i, step in enumerate(self.steps):
            mapping = getattr(step, "mapping", None)
            if mapping is not None and mapping not in names[: sum(isinstance(s, Vmap) for s in self.steps[:i])]:
                raise ValueError(f"step {i + 1} uses mapping {mapping!r} before a vmap step names it")
        return self
