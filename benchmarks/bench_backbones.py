"""Step time of each binary backbone versus its float reference; the cost of switching bits.

One training step = forward + backward + SGD step on the same random batch. Binary and float
models run in the same process, interleaved repeat by repeat, and the medians are compared as a
ratio (binary / float). The same binary network at 4/4 bits with 8-bit gradients (what a cycled
pretraining step computes) is timed alongside. The switching figure compares steps that call
`set_precision` with a new bit width every step against steps at a fixed precision, on the same
model in alternating blocks.

    python benchmarks/bench_backbones.py --batch-size 128 --repeats 7
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from cycl_bench.quant.precision import set_precision
from cycl_bench.registry import BACKBONES

PAIRS = (
    ("tiny_bnn", "tiny_fp"),
    ("resnet18_bnn", "resnet18_fp"),
    ("vgg_small_bnn", "vgg_small_fp"),
    ("reactnet_bnn", "reactnet_fp"),
)
NUM_CLASSES = 10
SWITCHING_BLOCK = 3  # steps per block in the switching benchmark
CYCLING = "cycling"  # the binary backbone at 4-bit weights/activations, 8-bit gradients


def make_step(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(batch), labels).backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def interleaved_medians(
    steps: dict[str, Callable[[], float]], repeats: int, warmup: int
) -> dict[str, float]:
    """Median step time of each callable, run in turn so drifts in machine load hit all alike.

    The order is reversed every other repeat, so no callable always runs right after another.
    """
    times = {name: [] for name in steps}
    for repeat in range(warmup + repeats):
        order = list(steps.items())
        for name, step in order if repeat % 2 == 0 else reversed(order):
            elapsed = step()
            if repeat >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_pair(binary: str, floating: str, args) -> dict[str, float]:
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,))
    models = {
        name: BACKBONES.build(name, num_classes=NUM_CLASSES, image_size=args.image_size)
        for name in (binary, floating)
    }
    models[CYCLING] = BACKBONES.build(binary, num_classes=NUM_CLASSES, image_size=args.image_size)
    set_precision(models[CYCLING], weight_bits=4, act_bits=4, grad_bits=8)
    steps = {name: make_step(model, batch, labels) for name, model in models.items()}
    medians = interleaved_medians(steps, args.repeats, args.warmup)
    return {
        "binary": medians[binary],
        "float": medians[floating],
        "cycling": medians[CYCLING],
        "ratio": medians[binary] / medians[floating],
        "cycling_ratio": medians[CYCLING] / medians[floating],
    }


def bench_switching(name: str, args) -> dict[str, float]:
    """Steps that switch bits every step (3 <-> 5) versus steps at a fixed 4 bits.

    Both run on the same model instance, in alternating blocks of steps, so that differences
    between instances (memory placement) do not pass for a switching cost.
    """
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,))
    model = BACKBONES.build(name, num_classes=NUM_CLASSES, image_size=args.image_size)
    set_precision(model, weight_bits=4, act_bits=4, grad_bits=8)
    step = make_step(model, batch, labels)
    widths = itertools.cycle((3, 5))

    def fixed_block() -> list[float]:
        set_precision(model, weight_bits=4, act_bits=4)
        return [step() for _ in range(SWITCHING_BLOCK)]

    def switching_block() -> list[float]:
        times = []
        for _ in range(SWITCHING_BLOCK):
            start = time.perf_counter()
            bits = next(widths)
            set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
            times.append(time.perf_counter() - start + step())
        return times

    for _ in range(args.warmup):
        step()
    times = {"fixed": [], "switching": []}
    blocks = {"fixed": fixed_block, "switching": switching_block}
    for repeat in range(args.repeats):
        order = ("fixed", "switching") if repeat % 2 == 0 else ("switching", "fixed")
        for mode in order:
            times[mode].extend(blocks[mode]())
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    calls = 1000
    start = time.perf_counter()
    for bits in itertools.islice(itertools.cycle((3, 5)), calls):
        set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
    set_precision_s = (time.perf_counter() - start) / calls
    return {
        **medians,
        "overhead": medians["switching"] / medians["fixed"] - 1.0,
        "set_precision_s": set_precision_s,
        "set_precision_share": set_precision_s / medians["fixed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--backbones",
        nargs="*",
        default=[binary for binary, _ in PAIRS],
        help="binary backbones to compare with their float reference (none: only switching)",
    )
    parser.add_argument("--switching-backbone", default="resnet18_bnn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.threads} threads, {args.repeats} repeats (+{args.warmup} warm-up), medians"
    )
    print("binary = 1-bit weights/activations; cycling = the same network at 4/4 bits, 8-bit grads")
    header = ("binary", "float", "binary s", "float s", "ratio", "cycling s", "ratio")
    print(f"{header[0]:<16}{header[1]:<16}" + "".join(f"{h:>11}" for h in header[2:]))
    for binary, floating in PAIRS:
        if binary not in args.backbones:
            continue
        result = bench_pair(binary, floating, args)
        figures = ("binary", "float", "ratio", "cycling", "cycling_ratio")
        print(f"{binary:<16}{floating:<16}" + "".join(f"{result[f]:>11.3f}" for f in figures))
    if args.switching_backbone:
        result = bench_switching(args.switching_backbone, args)
        print(
            f"switching precision every step ({args.switching_backbone}): "
            f"fixed {result['fixed']:.3f} s, switching {result['switching']:.3f} s, "
            f"overhead {100 * result['overhead']:+.1f}% of step time; "
            f"set_precision alone {1e6 * result['set_precision_s']:.0f} us "
            f"({100 * result['set_precision_share']:.3f}% of a step)"
        )


if __name__ == "__main__":
    main()
