"""Latent cache speed: hq_cwr_star (grad_bits=32, latent cache on) against Avalanche's CWRStar.

Both train the same synthetic CORe50 NC stream from the same seed and backbone with the same
protocol (the CWR* family's: one plain SGD, first experience whole network 10 epochs, later
experiences head only 5 epochs, at least `min_steps` steps, BatchNorm statistics recomputed after
the first experience) and the same consolidation (Avalanche's, `equal_row_norms=false`), and
both are evaluated after every experience on every test view (one row of the accuracy matrix).
Avalanche's `CWRStar` is used unmodified and evaluated by full passes (`accuracy_row`, cheaper
than Avalanche's own evaluation loop); `hq_cwr_star` is evaluated as `run_strategy` does
(`AccuracyRows`: test features encoded once after the first experience, head-only rows).
Timed: the experiences after the first (training and evaluation), where the backbone is frozen
and the caches apply; the first experience is reported too. Reported: median wall-clock over
repeats (the two variants alternate in one process), the speed-up ratio, the peak resident
memory of the timed part, the cache size, and the accuracy matrix of each (they must be equal).

    python benchmarks/bench_latent_cache.py --backbone resnet18_bnn --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch
from avalanche.training import CWRStar
from torch import nn

from cycl_bench.continual.loop import AccuracyRows, build_model, seed_everything
from cycl_bench.continual.resources import peak_rss_mb, reset_peak_memory
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy
from cycl_bench.strategies.protocol import (
    BatchNormRecalibration,
    ExperienceProtocol,
    TrainingProtocol,
    quiet_evaluator,
)


def avalanche_cwr_star(model, protocol: TrainingProtocol, device: str):
    """Avalanche's strategy as shipped, with the protocol's optimizer and epochs per experience."""
    return CWRStar(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=protocol.first_lr),
        criterion=nn.CrossEntropyLoss(),
        cwr_layer_name="classifier",
        train_mb_size=protocol.batch_size,
        train_epochs=protocol.first_epochs,
        plugins=[ExperienceProtocol(protocol), BatchNormRecalibration()],
        evaluator=quiet_evaluator(),
        device=device,
    )


def cached_hybrid(model, protocol: TrainingProtocol, device: str):
    params = {
        "grad_bits": 32,
        "latent_cache": True,
        "equal_row_norms": False,
        **protocol.as_dict(),
    }
    return build_strategy("hq_cwr_star", model=model, params=params, device=device).template


VARIANTS = {"avalanche_cwr_star": avalanche_cwr_star, "hq_cwr_star_cached": cached_hybrid}
HEAD_ONLY_ROWS = {"avalanche_cwr_star": False, "hq_cwr_star_cached": True}


def stream_accuracy(row: list[float], sizes: list[int]) -> float:
    """Accuracy over the whole test set (the final accuracy when `row` is the last row)."""
    return sum(a * n for a, n in zip(row, sizes, strict=True)) / sum(sizes)


def run_variant(name, stream, backbone, protocol, seed, device="cpu") -> dict:
    seed_everything(seed)
    model = build_model(RunSpec.of(backbone, stream.image_shape), stream.num_classes).to(device)
    strategy = VARIANTS[name](model, protocol, device)
    rows = AccuracyRows(stream.test_views, device)
    matrix = []

    def train_and_evaluate(experience):
        strategy.train(experience, eval_streams=[])
        matrix.append(rows.row(model, frozen_backbone=HEAD_ONLY_ROWS[name]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        train_and_evaluate(stream.train_stream[0])
        first_s = time.perf_counter() - started
        reset_peak_memory()
        started = time.perf_counter()
        for experience in stream.train_stream[1:]:
            train_and_evaluate(experience)
        later_s = time.perf_counter() - started
    cache = getattr(strategy, "latent_cache", None)
    return {
        "first_experience_s": first_s,
        "later_experiences_s": later_s,
        "peak_rss_mb": peak_rss_mb(),
        "cache_bytes_per_experience": cache.cache_bytes if cache is not None else 0,
        "accuracy_matrix": matrix,
        "final_accuracy": stream_accuracy(matrix[-1], stream.test_sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18_bnn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images-per-object", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--first-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--min-steps", type=int, default=TrainingProtocol.min_steps, help="0: epochs only"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    stream = BENCHMARKS.build(
        "core50_nc",
        data="synthetic",
        seed=args.seed,
        images_per_object=args.images_per_object,
        image_size=args.image_size,
    )
    protocol = TrainingProtocol(
        first_optimizer="sgd",
        optimizer="sgd",
        first_epochs=args.first_epochs,
        epochs=args.epochs,
        min_steps=args.min_steps,
    )
    runs = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name in VARIANTS:  # alternate, so both see the same machine load
            runs[name].append(
                run_variant(name, stream, args.backbone, protocol, args.seed, args.device)
            )

    summary = {
        name: {
            "median_first_experience_s": statistics.median(r["first_experience_s"] for r in rs),
            "median_later_experiences_s": statistics.median(r["later_experiences_s"] for r in rs),
            "later_experiences_s": [r["later_experiences_s"] for r in rs],
            "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
            "cache_bytes_per_experience": rs[0]["cache_bytes_per_experience"],
            "final_accuracy": [r["final_accuracy"] for r in rs],
            "accuracy_matrices": [r["accuracy_matrix"] for r in rs],
        }
        for name, rs in runs.items()
    }
    baseline, cached = summary["avalanche_cwr_star"], summary["hq_cwr_star_cached"]
    speedup = baseline["median_later_experiences_s"] / cached["median_later_experiences_s"]
    same_matrix = baseline["accuracy_matrices"] == cached["accuracy_matrices"]
    whole_stream = {
        name: row["median_first_experience_s"] + row["median_later_experiences_s"]
        for name, row in summary.items()
    }
    report = {
        "stream": stream.summary(),
        "backbone": args.backbone,
        "protocol": protocol.as_dict(),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "variants": summary,
        "speedup": speedup,
        "whole_stream_speedup": whole_stream["avalanche_cwr_star"]
        / whole_stream["hq_cwr_star_cached"],
        "same_accuracy_matrix": same_matrix,
    }
    for name, row in summary.items():
        print(
            f"{name:20s} first experience {row['median_first_experience_s']:8.2f} s  "
            f"later experiences {row['median_later_experiences_s']:8.2f} s  "
            f"peak RSS {row['median_peak_rss_mb']:7.0f} MiB  "
            f"cache {row['cache_bytes_per_experience'] / 1024:6.1f} KiB  "
            f"final accuracy {row['final_accuracy'][0]:.4f}"
        )
    print(
        f"later experiences speed-up {speedup:.2f}x, whole stream "
        f"{report['whole_stream_speedup']:.2f}x, same accuracy matrix: {same_matrix}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
