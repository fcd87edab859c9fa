"""The machines ``rofolio oracle boot`` checks, and how their boots share the host.

A fixed set covers 1 GiB to 22 GiB with sizes that are not whole GiB, 1G pages on and off, one and two CPUs;
on top, ``drawn`` machines are drawn afresh from a seed the run prints (``--seed`` replays it).  The host has
two CPUs: two guests of less than 16 GiB boot side by side, a larger one boots alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from rofolio.units import GiB, MiB, parse_size

__all__ = ["ALONE_FROM", "FIXED", "BootMachine", "draw", "run_all"]

CPU = "max,-la57"  # 4-level paging: the kc walker reads 4 levels
ALONE_FROM = 16 * GiB  # a guest this large boots with nothing beside it
DRAW_STEP = 128 * MiB  # drawn sizes are multiples of a memory section
DRAW_MIN, DRAW_MAX = 1 * GiB, 22 * GiB


@dataclass(frozen=True)
class BootMachine:
    """One guest: QEMU -m, -cpu and -smp; ``drawn`` when it came from the seed."""

    mem: str
    cpu: str = CPU
    smp: int = 1
    drawn: bool = False

    @property
    def size(self) -> int:
        return parse_size(self.mem)

    @property
    def gbpages(self) -> bool:
        return "-pdpe1gb" not in self.cpu.split(",")

    def label(self) -> str:
        return f"-m {self.mem} -cpu {self.cpu} -smp {self.smp}"


NO1G = CPU + ",-pdpe1gb"
FIXED = (
    BootMachine("1G"), BootMachine("1536M", NO1G, 2), BootMachine("3G", CPU, 2), BootMachine("5G"),
    BootMachine("7G", NO1G), BootMachine("9728M", CPU, 2), BootMachine("13G"), BootMachine("22G", NO1G, 2),
)


def _mem(size: int) -> str:
    return f"{size // GiB}G" if size % GiB == 0 else f"{size // MiB}M"


def draw(seed: int, count: int) -> list[BootMachine]:
    """``count`` machines from ``seed``: a size in [1G, 22G] in 128M steps, 1G pages on or off, one or two CPUs.

    At most one of them is ALONE_FROM or larger (it boots alone, so it costs the most time)."""
    rng = random.Random(seed)
    out: list[BootMachine] = []
    steps = (DRAW_MAX - DRAW_MIN) // DRAW_STEP
    while len(out) < count:
        size = DRAW_MIN + rng.randint(0, steps) * DRAW_STEP
        cpu = rng.choice((CPU, NO1G))
        smp = rng.choice((1, 2))
        if size >= ALONE_FROM and any(m.size >= ALONE_FROM for m in out):
            continue
        out.append(BootMachine(_mem(size), cpu, smp, drawn=True))
    return out


T = TypeVar("T")


def run_all(machines: list[BootMachine], boot: Callable[[BootMachine], T], jobs: int = 2) -> list[T]:
    """``boot`` every machine: those of ALONE_FROM or more first, one after the other, then the others ``jobs``
    at a time; the results in the machines' order."""
    results: dict[int, T] = {}
    large = [i for i, m in enumerate(machines) if m.size >= ALONE_FROM]
    for i in large:
        results[i] = boot(machines[i])
    small = [i for i in range(len(machines)) if i not in results]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for i, result in zip(small, pool.map(lambda i: boot(machines[i]), small), strict=True):
            results[i] = result
    return [results[i] for i in range(len(machines))]
