"""Benchmark: random single-page set_memory_ro/rw calls on 16 GiB, 1 TiB and 64 TiB machines.

Every configuration runs in its own process, one after the other, so that the
peak-memory figures do not mix; all ratios are taken from the same run of this
script, because this machine is noisy.

Two workloads:

* ``window``: the same pages in every machine, drawn from [4 GiB, 17 GiB)
  (ZONE_NORMAL of the 16 GiB machine, present in all three).  The direct map
  changes identically, so this measures how the model's cost grows with RAM
  size alone.  The targets apply here.
* ``spread``: pages drawn from all RAM of each machine.  On a bigger machine
  almost every call lands in a 1G leaf nobody split before, so each call does
  more kernel work (two splits, two more global flushes); reported for
  information.

The sparse model runs every configuration with its events retained, the setting a user gets from
``Machine.boot()`` and the one the targets are about; the 16 GiB window runs a second time keeping only the
counters (``retain_events=False``), for its time and for the memory of the page table alone (bytes per run).

The dense per-4K reference (tests/reference/dense_x86.py) runs the window
workload on the 16 GiB and the 1 TiB machine.  It never boots a machine itself:
this script boots the sparse model once per size, hands the dense worker the
boot-time leaves, and the worker fills its arrays from them, so its peak memory
is the reference's own.

Memory is the growth of the worker's peak RSS over a baseline taken after its
imports and after the calls are generated (kept in compact arrays, 9 bytes a
call), so it is the model's memory: for the sparse model its booted page table
plus whatever the calls add, for the dense one its two per-page arrays.  Bytes per run are the growth of the
resident set of the worker that keeps no events, from after boot to after the calls, over the runs the calls
added: the page table's own cost (with the counters, a few fixed bytes).

    .venv/bin/python benchmarks/cpa_scaling.py              # 1,000,000 calls (several minutes)
    .venv/bin/python benchmarks/cpa_scaling.py --calls 100000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"16G": 16 << 30, "1T": 1 << 40, "64T": 64 << 40}
WINDOW = (4 << 30, 17 << 30)


def peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int:
    """The resident set now (a boot's transient peak does not hide what comes after it)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024


def make_calls(n: int, seed: int, ranges: list[tuple[int, int]]) -> tuple[array, bytearray]:
    """``n`` (page, ro?) calls, drawn the same way for every model: pfns in an int64 array, ro flags in bytes."""
    rng = random.Random(seed)
    weights = [e - s for s, e in ranges]
    pages, ro = array("q"), bytearray(n)
    for i in range(n):
        s, e = rng.choices(ranges, weights)[0]
        pages.append(rng.randrange(s >> 12, e >> 12))
        ro[i] = rng.random() < 0.5
    return pages, ro


def boot(size: str, retain: bool = False):  # type: ignore[no-untyped-def]
    from rofolio.machine import Machine, MachineSpec

    machine = Machine.boot(MachineSpec(mem=SIZES[size]), retain_events=retain)
    machine.finish_boot()
    return machine.kernel


def ram_ranges(k, workload: str) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    if workload == "window":
        return [WINDOW]
    return [(max(r.start, 64 << 20), r.end) for r in k.config.memory.ram if r.end > 64 << 20]


def boot_leaves(size: str) -> dict:
    """The direct map of a freshly booted machine, as (first pfn, end pfn, level, flags) stretches."""
    k = boot(size)
    npages = k.config.memory.max_pfn
    leaves = []
    for run in k.pt.runs(k.va(0), k.va(npages << 12)):
        s, e = k.layout.pa(run.start) >> 12, min(k.layout.pa(run.end) >> 12, npages)
        leaves.append((s, e, int(run.level), run.flags))
    return {"npages": npages, "leaves": leaves}


def table_bytes(pt) -> int:  # type: ignore[no-untyped-def]
    """What the page table's own containers hold: its chunks' arrays, the chunk lists and the kinds."""
    chunks = pt._chunks
    return (sum(sys.getsizeof(c) + sys.getsizeof(c.starts) + sys.getsizeof(c.kinds) for c in chunks)
            + sys.getsizeof(chunks) + sys.getsizeof(pt._firsts) + sum(map(sys.getsizeof, pt._firsts))
            + sys.getsizeof(pt._kinds) + sys.getsizeof(pt._kind_of) + sum(map(sys.getsizeof, pt._kinds)))


def sparse_worker(size: str, workload: str, calls: int, seed: int, retain: bool) -> dict:
    from rofolio.machine import Machine  # noqa: F401  (imported before the baseline)

    base = peak_kb()
    k = boot(size, retain)
    booted_kb, booted_runs, booted_rss = peak_kb() - base, len(k.pt), rss_kb()
    pages, ro = make_calls(calls, seed, ram_ranges(k, workload))
    calls_kb = (pages.itemsize * len(pages) + len(ro)) // 1024  # the harness's, not the model's
    va, set_ro, set_rw = k.va, k.set_memory_ro, k.set_memory_rw
    start = time.perf_counter()
    for page, r in zip(pages, ro, strict=True):
        if r:
            set_ro(va(page << 12), 1)
        else:
            set_rw(va(page << 12), 1)
    elapsed = time.perf_counter() - start
    kind = "sparse" if retain else "counters"
    return _result(kind, size, workload, calls, elapsed, peak_kb() - base - calls_kb,
                   f"{len(k.pt)} runs, {k.log.appended} events", runs=len(k.pt), booted_kb=booted_kb,
                   booted_runs=booted_runs, table_bytes=table_bytes(k.pt), grown_kb=rss_kb() - booted_rss)


def dense_worker(size: str, calls: int, seed: int, layout: dict) -> dict:
    import numpy as np
    from tests.reference.dense_x86 import DenseX86

    pages, ro = make_calls(calls, seed, [WINDOW])
    base = peak_kb()
    npages = layout["npages"]
    model = DenseX86(0, np.zeros(npages, dtype=np.int8), np.zeros(npages, dtype=np.uint64), gbpages=True,
                     collapse=True, ro_clears_dirty=True, kernel_4k_bit=True)
    for s, e, level, flags in layout["leaves"]:
        model.level[s:e] = level
        model.flags[s:e] = np.uint64(flags)
    request = model.request
    start = time.perf_counter()
    for page, r in zip(pages, ro, strict=True):
        request("ro" if r else "rw", page, 1)
    elapsed = time.perf_counter() - start
    return _result("dense", size, "window", calls, elapsed, peak_kb() - base, f"{npages} pages",
                   pages=npages, array_bytes=int(model.level.nbytes + model.flags.nbytes))


def events_worker(calls: int) -> dict:
    """What the event log alone costs one 4K set_memory_ro call: its five events appended as the model appends
    them (``EventLog.add``, retained) and their counters folded, best of three passes.

    docs/architecture.md ("Data flows one way") asks every operation to append typed, immutable events
    and every counter to be derived from them; this is that floor, measured on its own.
    """
    from rofolio.events import Call, EntryWrite, EventLog, Flush, FlushKind, PteCheck, Return
    from rofolio.units import Level

    best = float("inf")
    for _ in range(3):
        log = EventLog()
        add = log.add
        start = time.perf_counter()
        for i in range(calls):
            addr = 0xFFFF888100000000 + (i << 12)
            add(Call, "set_memory_ro", addr, 1)
            add(PteCheck, addr, 1)
            add(EntryWrite, addr, Level.PTE, 1, 0x8000000000000163, 0x8000000000000121)
            add(Flush, FlushKind.PAGES, 1, 8, 7, "cpa_flush")
            add(Return, "set_memory_ro", 0)
        assert log.counters.entries_written == calls
        best = min(best, time.perf_counter() - start)
    return {"kind": "events", "calls": calls, "us_per_call": best / calls * 1e6}


def _result(kind: str, size: str, workload: str, calls: int, elapsed: float, mem_kb: int, note: str,
            **extra: int) -> dict:
    return {"kind": kind, "size": size, "workload": workload, "calls": calls, "seconds": elapsed,
            "calls_per_s": calls / elapsed, "us_per_call": elapsed / calls * 1e6, "peak_mem_mb": mem_kb / 1024,
            "model": note, **extra}


def run_worker(args: list[str], stdin: str = "") -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], input=stdin,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the results and ratios as JSON")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.calls < 1:
        ap.error("--calls must be at least 1")
    if args.worker:
        kind, *rest = args.worker
        if kind == "sparse":
            size, workload, calls, seed, retain = rest
            out = sparse_worker(size, workload, int(calls), int(seed), retain == "retain")
        elif kind == "layout":
            out = boot_leaves(rest[0])
        elif kind == "events":
            out = events_worker(int(rest[0]))
        else:
            size, calls, seed = rest
            out = dense_worker(size, int(calls), int(seed), json.loads(sys.stdin.read()))
        print(json.dumps(out))
        return

    plan = [("sparse", s, "window") for s in SIZES] + [("counters", "16G", "window")] + [
        ("dense", s, "window") for s in ("16G", "1T")] + [("counters", s, "spread") for s in ("1T", "64T")]
    results = {}
    for kind, size, workload in plan:
        print(f"running {kind:8} {size:>3} {workload:6} ({args.calls} calls) ...", file=sys.stderr, flush=True)
        if kind != "dense":
            retain = "retain" if kind == "sparse" else "counters"
            r = run_worker(["sparse", size, workload, str(args.calls), str(args.seed), retain])
        else:
            layout = run_worker(["layout", size])
            r = run_worker(["dense", size, str(args.calls), str(args.seed)], json.dumps(layout))
        results[(kind, size, workload)] = r
        print(f"  {r['calls_per_s']:9.0f} calls/s  {r['us_per_call']:7.2f} us/call  "
              f"peak +{r['peak_mem_mb']:8.1f} MB  ({r['model']})", file=sys.stderr, flush=True)

    events = run_worker(["events", str(min(args.calls, 300_000))])
    base = results[("sparse", "16G", "window")]
    counters = results[("counters", "16G", "window")]
    dense = results[("dense", "16G", "window")]
    big = results[("sparse", "64T", "window")]
    # the page table's memory: what the calls added to the worker that keeps no events, per run they added
    added_runs = max(counters["runs"] - counters["booted_runs"], 1)
    per_run = counters["grown_kb"] * 1024 / added_runs
    ratios = [
        ("sparse / dense time per call (16G)", base["us_per_call"] / dense["us_per_call"], "<= 3",
         f"{base['us_per_call']:.2f} vs {dense['us_per_call']:.2f} us"),
        ("  the same, keeping no events", counters["us_per_call"] / dense["us_per_call"], "(information)",
         f"{counters['us_per_call']:.2f} vs {dense['us_per_call']:.2f} us"),
        ("bytes per run the calls added (RSS)", per_run, "<= 64",
         f"{added_runs:,} runs, {counters['runs']:,} in all"),
        ("  page-table containers per run", counters["table_bytes"] / counters["runs"], "(information)",
         f"{counters['table_bytes'] / 2**20:.1f} MB"),
        ("64T / 16G time per call (window)", big["us_per_call"] / base["us_per_call"], "<= 1.5",
         f"{big['us_per_call']:.2f} vs {base['us_per_call']:.2f} us"),
        ("64T / 16G memory (window)", big["peak_mem_mb"] / base["peak_mem_mb"], "<= 1.5",
         f"{big['peak_mem_mb']:.1f} vs {base['peak_mem_mb']:.1f} MB"),
        ("sparse / dense memory (16G)", base["peak_mem_mb"] / dense["peak_mem_mb"], "(information)",
         "events included"),
        ("sparse / dense memory (1T)",
         results[("sparse", "1T", "window")]["peak_mem_mb"] / results[("dense", "1T", "window")]["peak_mem_mb"],
         "(information)", "events included"),
        ("one call's events / dense call (16G)", events["us_per_call"] / dense["us_per_call"], "(information)",
         f"{events['us_per_call']:.2f} us"),
    ]
    if args.json:
        print(json.dumps({
            "schema": "rofolio.bench.cpa_scaling/2", "calls": args.calls, "seed": args.seed,
            "results": list(results.values()), "events_us_per_call": events["us_per_call"],
            "ratios": [{"name": n.strip(), "value": v, "target": t, "figures": f} for n, v, t, f in ratios],
            "bytes_per_added_run": per_run,
        }, indent=2))
        return

    print(f"\nrandom single-page set_memory_ro/rw, {args.calls} calls, seed {args.seed}")
    print(f"{'model':9}{'RAM':>5}{'workload':>9}{'calls/s':>11}{'us/call':>9}{'peak MB':>10}  size")
    for (kind, size, workload), r in results.items():
        print(f"{kind:9}{size:>5}{workload:>9}{r['calls_per_s']:11.0f}{r['us_per_call']:9.2f}"
              f"{r['peak_mem_mb']:10.1f}  {r['model']}")
    print("\n(sparse: events retained, as Machine.boot() gives them; counters: retain_events=False)")
    print("\nmeasured in this run:")
    for name, value, target, figures in ratios:
        print(f"  {name:38} {value:8.2f}   target {target:14} {figures}")
    print(f"\nthe five events of one 4K set_memory_ro call, appended and folded, cost {events['us_per_call']:.2f} us"
          f" on their own (the dense reference's whole call: {dense['us_per_call']:.2f} us).")


if __name__ == "__main__":
    main()
