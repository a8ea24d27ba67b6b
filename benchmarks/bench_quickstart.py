"""Wall-clock time of the README's main job, as a user runs it (fresh process, W&B offline).

    python benchmarks/bench_quickstart.py [--repeats 1]

Target: at most 180 s on a 2-core CPU machine. The pretrained checkpoint is cached after the
first run, so each repeat uses its own empty cache (the time a new user sees).
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


def one_run() -> float:
    with tempfile.TemporaryDirectory() as scratch:
        env_cache = {"CYCL_BENCH_CACHE": str(Path(scratch) / "cache")}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *COMMAND, "--out", str(Path(scratch) / "runs")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env_cache},
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    times = [one_run() for _ in range(args.repeats)]
    print(f"python {' '.join(COMMAND)}")
    print(
        f"wall time: median {statistics.median(times):.1f} s over {len(times)} run(s): "
        + ", ".join(f"{t:.1f}" for t in times)
    )


if __name__ == "__main__":
    main()
