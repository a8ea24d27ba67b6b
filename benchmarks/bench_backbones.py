"""Step time of each binary backbone versus its float reference; the cost of switching bits.

One training step = forward + backward + SGD step on the same random batch. Binary and float
models run in the same process, interleaved repeat by repeat, and the medians are compared as a
ratio (binary / float). The same binary network at 4/4 bits with 8-bit gradients (what a cycled
pretraining step computes) is timed alongside. The switching figure compares steps that call
`set_precision` with a new bit width every step against steps at a fixed precision, on the same
model in alternating blocks.

`--paths` picks how the binary layers compute, each timed against the same float model in the
same interleaved repeats: `fused` (the default path, `cycl_bench/quant/fused.py`), `brevitas`
(the Brevitas quantizers, the reference) and `compiled` (the model under `torch.compile`, whose
binary layers then hand the compiler the Brevitas graph, against the float model under
`torch.compile`; compilation happens in the warm-up), and `float-conv` (the fused path with
the float convolution where the integer one runs, `fused.float_convolution`: what the integer
convolution saves). Like the suite's commands, it first asks malloc to keep freed memory
(`resources.keep_freed_memory`); `--system-malloc` leaves glibc's default.

    python benchmarks/bench_backbones.py --batch-size 128 --repeats 7
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch import nn

from cycl_bench.continual.resources import keep_freed_memory
from cycl_bench.quant.fused import float_convolution
from cycl_bench.quant.layers import use_fused
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
PATHS = ("fused", "brevitas", "compiled", "float-conv")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # --clock: cpu counts only this process's time on a shared machine
Key = TypeVar("Key", bound=Hashable)


def make_step(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    cuda = batch.is_cuda

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = clock()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(batch), labels).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return clock() - start

    return step


def in_float(step: Callable[[], float]) -> Callable[[], float]:
    def floating_step() -> float:
        with float_convolution():
            return step()

    return floating_step


def interleaved_medians(
    steps: dict[Key, Callable[[], float]], repeats: int, warmup: int
) -> dict[Key, float]:
    """Median step time of each callable, run in turn so drifts in machine load hit all alike.

    The order is reversed every other repeat, so no callable always runs right after another.
    """
    times: dict[Key, list[float]] = {name: [] for name in steps}
    for repeat in range(warmup + repeats):
        order = list(steps.items())
        for name, step in order if repeat % 2 == 0 else reversed(order):
            elapsed = step()
            if repeat >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_pair(binary: str, floating: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per path: median step times of the binary model at 1 bit and cycled, of the float model
    it is compared with (compiled for the `compiled` path), and the ratios."""
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=args.device)

    def build(name: str, path: str, cycled: bool = False) -> nn.Module:
        model = BACKBONES.build(name, num_classes=NUM_CLASSES, image_size=args.image_size)
        model.to(args.device)
        use_fused(model, path != "brevitas")
        if cycled:
            set_precision(model, weight_bits=4, act_bits=4, grad_bits=8)
        # static shapes: with dynamic ones inductor fails on the binary backbones (README)
        if path == "compiled":
            return torch.compile(model, dynamic=False)  # type: ignore[return-value]
        return model

    models = {("float", "eager"): build(floating, "fused")}
    for path in args.paths:
        models[("binary", path)] = build(binary, path)
        models[(CYCLING, path)] = build(binary, path, cycled=True)
        if path == "compiled":
            models[("float", path)] = build(floating, path)
    steps = {key: make_step(model, batch, labels) for key, model in models.items()}
    for key, step in steps.items():
        if key[1] == "float-conv":
            steps[key] = in_float(step)
    medians = interleaved_medians(steps, args.repeats, args.warmup)
    results = {}
    for path in args.paths:
        floating_time = medians[("float", path if path == "compiled" else "eager")]
        results[path] = {
            "binary": medians[("binary", path)],
            "float": floating_time,
            "cycling": medians[(CYCLING, path)],
            "ratio": medians[("binary", path)] / floating_time,
            "cycling_ratio": medians[(CYCLING, path)] / floating_time,
        }
    return results


def bench_switching(name: str, args: argparse.Namespace) -> dict[str, float]:
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
            start = clock()
            bits = next(widths)
            set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
            times.append(clock() - start + step())
        return times

    for _ in range(args.warmup):
        step()
    times: dict[str, list[float]] = {"fixed": [], "switching": []}
    blocks = {"fixed": fixed_block, "switching": switching_block}
    for repeat in range(args.repeats):
        order = ("fixed", "switching") if repeat % 2 == 0 else ("switching", "fixed")
        for mode in order:
            times[mode].extend(blocks[mode]())
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    calls = 1000
    start = clock()
    for bits in itertools.islice(itertools.cycle((3, 5)), calls):
        set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
    set_precision_s = (clock() - start) / calls
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
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=["fused", "brevitas"],
        help="how the binary layers compute: fused (default), brevitas (reference), compiled, "
        "float-conv (fused with float convolutions)",
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier where other jobs run)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (backbone step times only)")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it starts (default: keep freed memory, as the commands do)",
    )
    args = parser.parse_args()
    kept = False if args.system_malloc else keep_freed_memory()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    print(
        f"{args.device}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.threads} threads, {args.repeats} repeats (+{args.warmup} warm-up), medians of "
        f"{args.clock} time; freed memory {'kept' if kept else 'as malloc starts'}"
    )
    print("binary = 1-bit weights/activations; cycling = the same network at 4/4 bits, 8-bit grads")
    header = ("binary", "float", "path", "binary s", "float s", "ratio", "cycling s", "ratio")
    print(
        f"{header[0]:<16}{header[1]:<16}{header[2]:<10}" + "".join(f"{h:>11}" for h in header[3:])
    )
    for binary, floating in PAIRS:
        if binary not in args.backbones:
            continue
        results = bench_pair(binary, floating, args)
        figures = ("binary", "float", "ratio", "cycling", "cycling_ratio")
        for path, result in results.items():
            print(
                f"{binary:<16}{floating:<16}{path:<10}"
                + "".join(f"{result[f]:>11.3f}" for f in figures)
            )
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
