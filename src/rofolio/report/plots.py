"""Plots of a scenario run (matplotlib, PNG bytes).

* the direct map as one strip per GiB of physical memory, coloured by leaf size,
  read-only stretches hatched, before and after the steps;
* the DirectMap counters after boot and after every step, each in the unit its size calls for;
* TLB flushes and IPIs per step, or as running totals above PER_STEP_LIMIT steps.
"""

from __future__ import annotations

import io
import logging
from itertools import accumulate
from typing import TYPE_CHECKING

# a first use (a fresh matplotlib cache: CI, a new user) looks for the mathtext fonts it ships without and warns
# about each on stderr; DejaVu Sans, which it falls back to, is what the plots use anyway
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

if TYPE_CHECKING:
    from rofolio.scenario.runner import LayoutRun, ScenarioResult

COLOURS = {"1G": "#2b6cb0", "2M": "#68d391", "4K": "#f6ad55"}
MAX_STRIPS = 40
MIN_MIB = 6  # 4K stretches and read-only or not-present ranges are drawn at least this wide
GIB = 1 << 30


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _interesting_gibs(before: list[LayoutRun], after: list[LayoutRun]) -> tuple[list[int], int]:
    """GiBs to draw: those not mapped by one plain RW 1G leaf in both layouts (capped)."""
    from rofolio.scenario.runner import iter_gib

    def plain(runs: list[LayoutRun]) -> bool:
        return len(runs) == 1 and runs[0].level == "1G" and runs[0].writable and \
            runs[0].end - runs[0].start == GIB

    b = dict(iter_gib(before))
    a = dict(iter_gib(after))
    all_gibs = sorted(set(b) | set(a))
    chosen = [g for g in all_gibs if not (plain(b.get(g, [])) and plain(a.get(g, [])))]
    if len(all_gibs) <= MAX_STRIPS:
        chosen = all_gibs
    return chosen[:MAX_STRIPS], len(all_gibs)


def layout_strips(before: list[LayoutRun], after: list[LayoutRun], title: str = "") -> bytes:
    """Before/after strips, one row per GiB of physical address space."""
    from rofolio.scenario.runner import iter_gib

    gibs, total = _interesting_gibs(before, after)
    rows = max(len(gibs), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.28 * rows), sharey=True)
    for ax, (name, layout) in zip(axes, (("before", before), ("after", after)), strict=True):
        by_gib = dict(iter_gib(layout))
        for row, g in enumerate(gibs):
            # large plain stretches first, then the small or special ones on top, at least MIN_MIB wide
            runs = by_gib.get(g, [])
            for emphasis in (False, True):
                for run in runs:
                    special = run.level == "4K" or not run.writable or not run.present
                    if special is not emphasis:
                        continue
                    x0 = (run.start - g * GIB) / (1 << 20)
                    width = max((run.end - run.start) / (1 << 20), MIN_MIB if special else 0)
                    colour = COLOURS.get(run.level, "#a0aec0") if run.present else "#1a202c"
                    ax.add_patch(Rectangle((x0, row - 0.4), width, 0.8, facecolor=colour,
                                           edgecolor="#c53030" if not run.writable else "none",
                                           hatch="////" if not run.writable else None, linewidth=0.8))
        ax.set_xlim(0, 1024)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_xlabel("MiB within the GiB")
        ax.set_title(name)
        ax.set_yticks(range(len(gibs)))
        ax.set_yticklabels([f"{g} GiB" for g in gibs], fontsize=7)
    handles = [Patch(facecolor=c, label=f"{k} leaves") for k, c in COLOURS.items()]
    handles.append(Patch(facecolor="white", edgecolor="#c53030", hatch="////", label="read-only"))
    handles.append(Patch(facecolor="#1a202c", label="not present"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    shown = f"{len(gibs)} of {total} GiB shown" if len(gibs) < total else f"{total} GiB"
    shown += f"; 4K, read-only and not-present stretches drawn at least {MIN_MIB} MiB wide"
    fig.suptitle(f"{title} direct map by leaf size ({shown})".strip(), fontsize=10)
    fig.subplots_adjust(bottom=0.12 + 0.2 / rows)
    return _png(fig)


PER_STEP_LIMIT = 200  # up to this many steps a plot shows each step; above, the running totals


def size_unit(values: list[int]) -> tuple[int, str]:
    """The binary unit the largest of ``values`` (bytes) calls for: (its size in bytes, its name)."""
    top = max((abs(v) for v in values), default=0)
    for shift, name in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if top >= 1 << shift:
            return 1 << shift, name
    return 1, "bytes"


def directmap_over_steps(result: ScenarioResult) -> bytes:
    """The three DirectMap lines after boot and after every step, each on its own axis in the unit its size
    calls for (on one GiB axis the 4k line lies flat on 0)."""
    return _png(directmap_figure(result))


def directmap_figure(result: ScenarioResult) -> plt.Figure:
    """The figure of directmap_over_steps()."""
    from matplotlib.ticker import MaxNLocator

    x = list(range(len(result.steps) + 1))  # 0 is boot
    marker = "o" if len(result.steps) <= PER_STEP_LIMIT else None
    keys = ("DirectMap4k", "DirectMap2M", "DirectMap1G")
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 5.4), sharex=True)
    for ax, key, colour in zip(axes, keys, ("#f6ad55", "#68d391", "#2b6cb0"), strict=True):
        values = [result.boot[key] << 10] + [s.after[key] << 10 for s in result.steps]  # kB -> bytes
        size, unit = size_unit(values)
        ax.plot(x, [v / size for v in values], marker=marker, markersize=3, color=colour)
        ax.set_ylabel(f"{key}\n{unit}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("after step (0: boot)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    axes[0].set_title("DirectMap lines of /proc/meminfo over the steps")
    return fig


def flush_series(result: ScenarioResult) -> tuple[bool, dict[str, list[int]]]:
    """What the flushes plot draws: (per step?, the global flushes, ranged/per-page flushes and IPIs) --
    per step up to PER_STEP_LIMIT steps, running totals above (a bar per step of thousands of steps is
    neither readable nor quick to draw)."""
    steps = result.steps
    series = {"global flushes": [s.delta.get("flushes_all", 0) for s in steps],
              "ranged / per-page flushes": [s.delta.get("flushes_pages", 0) + s.delta.get("flushes_range", 0)
                                            for s in steps],
              "IPIs": [s.delta.get("ipis", 0) for s in steps]}
    if len(steps) <= PER_STEP_LIMIT:
        return True, series
    return False, {name: list(accumulate(values)) for name, values in series.items()}


def flushes_per_step(result: ScenarioResult) -> bytes:
    """TLB flushes and IPIs per step, or as running totals (flush_series())."""
    return _png(flushes_figure(result))


def flushes_figure(result: ScenarioResult) -> plt.Figure:
    """The figure of flushes_per_step()."""
    from matplotlib.ticker import MaxNLocator

    per_step, series = flush_series(result)
    full, pages, ipis = series.values()
    x = list(range(1, len(result.steps) + 1))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax2 = ax.twinx()
    if per_step:
        ax.bar([i - 0.2 for i in x], full, width=0.4, label="global flushes")
        ax.bar([i + 0.2 for i in x], pages, width=0.4, label="ranged / per-page flushes")
        ax2.plot(x, ipis, color="#c53030", marker="o", markersize=3, label="IPIs")
        ax.set_title("TLB flushes and IPIs per step")
        ax.set_ylabel("flushes")
        ax2.set_ylabel("IPIs")
    else:
        ax.plot(x, full, label="global flushes")
        ax.plot(x, pages, label="ranged / per-page flushes")
        ax2.plot(x, ipis, color="#c53030", label="IPIs")
        ax.set_title(f"TLB flushes and IPIs, running totals over {len(result.steps)} steps")
        ax.set_ylabel("flushes so far")
        ax2.set_ylabel("IPIs so far")
    ax.set_xlabel("step")
    for axis in (ax.xaxis, ax.yaxis, ax2.yaxis):  # counts: whole-number ticks
        axis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    return fig


def grouped_bars(rows: list[tuple[str, list[tuple[str, int]]]], what: str) -> bytes:
    """One horizontal bar group per row (a survey candidate, a compare configuration): ``what`` per series
    (a machine, a counter), on a log scale when the figures spread."""
    machines = sorted({m for _, costs in rows for m, _ in costs})
    if not rows or not machines:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0, 0.5, "nothing to draw")
        return _png(fig)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) * max(1, len(machines) / 3) + 1))
    height = 0.8 / len(machines)
    for j, machine in enumerate(machines):
        values = [dict(costs).get(machine, 0) for _, costs in rows]
        ax.barh([i + j * height for i in range(len(rows))], values, height=height, label=machine)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(what)
    top = max((v for _, costs in rows for _, v in costs), default=0)
    if top > 100:
        ax.set_xscale("symlog")
    ax.xaxis.get_major_locator().set_params(integer=True) if top <= 100 else None
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)
