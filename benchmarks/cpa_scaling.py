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

The dense per-4K reference (tests/reference/dense_x86.py) runs the window
workload on the 16 GiB machine.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"16G": 16 << 30, "1T": 1 << 40, "64T": 64 << 40}
WINDOW = (4 << 30, 17 << 30)


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def make_calls(n: int, seed: int, ranges: list[tuple[int, int]]) -> list[tuple[int, bool]]:
    rng = random.Random(seed)
    weights = [e - s for s, e in ranges]
    out = []
    for _ in range(n):
        s, e = rng.choices(ranges, weights)[0]
        out.append((rng.randrange(s >> 12, e >> 12), rng.random() < 0.5))
    return out


def worker(kind: str, size: str, workload: str, calls: int, seed: int) -> dict:
    from rofolio.machine import Machine, MachineSpec

    baseline = rss_kb()
    machine = Machine.boot(MachineSpec(mem=SIZES[size]), retain_events=False)
    machine.finish_boot()
    k = machine.kernel
    if workload == "window":
        ranges = [WINDOW]
    else:
        ranges = [(max(r.start, 64 << 20), r.end) for r in k.config.memory.ram if r.end > 64 << 20]
    work = make_calls(calls, seed, ranges)
    if kind == "dense":
        import numpy as np
        from tests.reference.dense_x86 import DenseX86

        npages = k.config.memory.max_pfn
        levels = np.zeros(npages, dtype=np.int8)
        flags = np.zeros(npages, dtype=np.uint64)
        for run in k.pt.runs(k.va(0), k.va(npages << 12)):
            s, e = k.layout.pa(run.start) >> 12, min(k.layout.pa(run.end) >> 12, npages)
            levels[s:e] = int(run.level)
            flags[s:e] = np.uint64(run.flags)
        model = DenseX86(0, levels, flags, gbpages=True, collapse=True, ro_clears_dirty=True, kernel_4k_bit=True)
        del machine, k
        start = time.perf_counter()
        for page, ro in work:
            model.request("ro" if ro else "rw", page, 1)
        elapsed = time.perf_counter() - start
        size_note = f"{npages} pages"
    else:
        va = k.va
        start = time.perf_counter()
        for page, ro in work:
            if ro:
                k.set_memory_ro(va(page << 12), 1)
            else:
                k.set_memory_rw(va(page << 12), 1)
        elapsed = time.perf_counter() - start
        size_note = f"{len(k.pt)} runs"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "size": size, "workload": workload, "calls": calls,
            "seconds": elapsed, "calls_per_s": calls / elapsed, "us_per_call": elapsed / calls * 1e6,
            "peak_mem_mb": (peak - baseline) / 1024, "model": size_note}


def run_one(kind: str, size: str, workload: str, calls: int, seed: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, size, workload, str(calls), str(seed)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, size, workload, calls, seed = args.worker
        print(json.dumps(worker(kind, size, workload, int(calls), int(seed))))
        return
    plan = [("sparse", s, "window") for s in SIZES] + [("dense", "16G", "window")] + [
        ("sparse", s, "spread") for s in ("1T", "64T")]
    results = {}
    for kind, size, workload in plan:
        print(f"running {kind:6} {size:>3} {workload:6} ({args.calls} calls) ...", file=sys.stderr, flush=True)
        results[(kind, size, workload)] = r = run_one(kind, size, workload, args.calls, args.seed)
        print(f"  {r['calls_per_s']:9.0f} calls/s  {r['us_per_call']:7.1f} us/call  "
              f"peak +{r['peak_mem_mb']:7.1f} MB  ({r['model']})", file=sys.stderr, flush=True)
    base = results[("sparse", "16G", "window")]
    dense = results[("dense", "16G", "window")]
    big = results[("sparse", "64T", "window")]
    print(f"\nrandom single-page set_memory_ro/rw, {args.calls} calls, seed {args.seed}")
    print(f"{'model':8}{'RAM':>5}{'workload':>9}{'calls/s':>11}{'us/call':>9}{'peak MB':>10}  size")
    for (kind, size, workload), r in results.items():
        print(f"{kind:8}{size:>5}{workload:>9}{r['calls_per_s']:11.0f}{r['us_per_call']:9.1f}"
              f"{r['peak_mem_mb']:10.1f}  {r['model']}")
    ratios = [
        ("64T / 16G memory (window)", big["peak_mem_mb"] / base["peak_mem_mb"], "<= 1.5"),
        ("64T / 16G time per call (window)", big["us_per_call"] / base["us_per_call"], "<= 1.5"),
        ("sparse / dense time per call (16G)", base["us_per_call"] / dense["us_per_call"], "<= 2"),
        ("sparse / dense memory (16G)", base["peak_mem_mb"] / dense["peak_mem_mb"], "< 0.02"),
    ]
    print("\nratios measured in this run:")
    for name, value, target in ratios:
        print(f"  {name:38} {value:8.3f}   target {target}")


if __name__ == "__main__":
    main()
