"""The quickstart's strategy stage on 2 Ray workers against the local executor, and Ray's start-up.

    python benchmarks/bench_ray.py [--repeats 3] [--workers 2] [--strategy NAME ...]

Target: Ray >= 1.6x faster than local on a 2-core machine. Each repeat is a fresh process running
`python -m cycl_bench run core50_nc --data synthetic --fast` with the pretrained backbone already
in a shared cache (so the time is the strategy stage plus what every run does: checks, stream),
local and Ray interleaved; the ratio is of medians. Start-up: `ray.init` of the embedded
instance, then the first task on each worker importing what a cell imports.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["-m", "cycl_bench", "run", "core50_nc", "--data", "synthetic", "--fast"]


def one_run(extra: list[str], cache: Path, scratch: Path) -> float:
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *COMMAND, "--out", out, *extra],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "CYCL_BENCH_CACHE": str(cache)},
        )
        return time.perf_counter() - started


def _import_cell_modules() -> int:
    import cycl_bench.continual.loop  # noqa: F401  (torch, Avalanche, Brevitas)
    import cycl_bench.logging.wandb_run  # noqa: F401

    return os.getpid()


def startup(workers: int) -> tuple[float, float]:
    """Seconds to start Ray here, and then until every worker has imported a cell's modules."""
    import ray

    from cycl_bench.executors import RayExecutor

    executor = RayExecutor(workers=workers)
    started = time.perf_counter()
    executor.connect()
    connected = time.perf_counter()
    task = ray.remote(_import_cell_modules).options(num_cpus=1)
    pids = set(ray.get([task.remote() for _ in range(workers)]))
    ready = time.perf_counter()
    executor.close()
    assert len(pids) == workers, pids
    return connected - started, ready - connected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategy", nargs="+", help="only these entries (default: all seven)")
    args = parser.parse_args()
    selected = ["--strategy", *args.strategy] if args.strategy else []
    ray_flags = ["--executor", "ray", "--workers", str(args.workers)]
    init_s, imports_s = startup(args.workers)
    print(f"Ray start-up: ray.init {init_s:.1f} s, then {imports_s:.1f} s until {args.workers} "
          "workers have imported a cell's modules", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        scratch, times = Path(scratch), {"local": [], "ray": []}
        cache = scratch / "cache"
        # pretrain once (every entry shares the backbone): the cache the timed runs reuse
        one_run(["--strategy", "naive", "--seeds", "0", "--wandb", "disabled"], cache, scratch)
        for _ in range(args.repeats):
            for name, extra in (("local", selected), ("ray", [*selected, *ray_flags])):
                times[name].append(one_run(extra, cache, scratch))
                print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"python {' '.join(COMMAND)} {' '.join(selected)} (backbone cached)")
    for name, values in times.items():
        listed = ", ".join(f"{t:.1f}" for t in values)
        print(f"{name:5s}: median {medians[name]:.1f} s over {len(values)} run(s): {listed}")
    print(f"speed-up ray/local: {medians['local'] / medians['ray']:.2f}x (target >= 1.6x)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
