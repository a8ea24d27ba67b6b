"""Per-image CPU latency of the exported ONNX model in onnxruntime against the PyTorch model.

For each backbone (deployed at 1 bit, `num_classes` outputs, `image_size` inputs) three forms
of the same network are timed in one process, interleaved repeat by repeat, at each batch size:

- `eager`: the PyTorch model as the suite evaluates it (Brevitas layers; the binary weights are
  scaled and binarized again on every call);
- `eager_deployed`: the PyTorch copy that the ONNX export traces (`OnnxBinaryConv2d`: +-1
  weights stored once), which separates the quantizers' per-call work from the runtime's;
- `onnxruntime`: the exported ONNX file (`--format onnx`) in onnxruntime's CPU provider.

Each timing sample runs `images_per_sample` images (one call of 64, or 64 calls of 1), so the
figure is seconds per image; medians over the repeats; ratios against `eager`. The three forms
are checked to give the same predictions on the timing batch before anything is timed. The
MAC count per image of each backbone, split by the bits that compute it, comes with it.

    python benchmarks/bench_export.py --threads 1 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cycl_bench.export.deployed import OnnxBinaryConv2d, with_deployed_binary_layers
from cycl_bench.export.formats import export_model, onnxruntime_predictor
from cycl_bench.quant.cost import profile_layers
from cycl_bench.quant.precision import layer_precision
from cycl_bench.registry import BACKBONES

FORMS = ("eager", "eager_deployed", "onnxruntime")


def macs_by_bits(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """MACs per image of every Conv2d/Linear, keyed by the bits it computes with (w x a)."""
    layers = dict(model.named_modules())
    totals: dict[str, int] = {}
    for profile in profile_layers(model, input_shape):
        precision = layer_precision(layers[profile.name])
        key = f"{precision.weight_bits}x{precision.act_bits}"
        totals[key] = totals.get(key, 0) + profile.macs_per_sample
    return totals


def forms_of(name: str, args, folder: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    torch.manual_seed(0)
    shape = (3, args.image_size, args.image_size)
    model = BACKBONES.build(name, num_classes=args.num_classes, image_size=args.image_size).eval()
    deployed = with_deployed_binary_layers(model, OnnxBinaryConv2d)
    path = export_model(model, folder / f"{name}.onnx", shape, "onnx")

    def eager(module):
        def run(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(images)).numpy()

        return run

    return {
        "eager": eager(model),
        "eager_deployed": eager(deployed),
        "onnxruntime": onnxruntime_predictor(path, threads=args.threads),
    }


def check_same_predictions(forms, images: np.ndarray) -> None:
    predictions = {form: run(images).argmax(1) for form, run in forms.items()}
    for form, predicted in predictions.items():
        agreement = float((predicted == predictions["eager"]).mean())
        if agreement < 1.0:
            print(f"  note: {form} agrees with eager on {agreement:.1%} of the timing batch")


def per_image_medians(forms, images: np.ndarray, args) -> dict[str, float]:
    calls = max(1, args.images_per_sample // len(images))
    times: dict[str, list[float]] = {form: [] for form in forms}
    order = list(forms.items())
    for repeat in range(args.warmup + args.repeats):
        for form, run in order if repeat % 2 == 0 else reversed(order):
            started = time.perf_counter()
            for _ in range(calls):
                run(images)
            elapsed = time.perf_counter() - started
            if repeat >= args.warmup:
                times[form].append(elapsed / (calls * len(images)))
    return {form: statistics.median(values) for form, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny_bnn", "resnet18_bnn"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--image-size", type=int, default=128, help="CORe50's 128x128")
    parser.add_argument("--num-classes", type=int, default=50)
    parser.add_argument("--images-per-sample", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.backbones:
            forms = forms_of(name, args, Path(folder))
            shape = (3, args.image_size, args.image_size)
            macs = macs_by_bits(
                BACKBONES.build(name, num_classes=args.num_classes, image_size=args.image_size),
                shape,
            )
            print(f"{name}: MACs per image by bits (weights x activations): {macs}")
            for batch_size in args.batch_sizes:
                generator = np.random.default_rng(batch_size)
                images = generator.standard_normal((batch_size, *shape), dtype=np.float32)
                check_same_predictions(forms, images)
                medians = per_image_medians(forms, images, args)
                rows.append((name, batch_size, medians))
                print(
                    f"  batch {batch_size}: "
                    + ", ".join(f"{form} {1e3 * medians[form]:.2f} ms/image" for form in FORMS)
                )

    print(
        f"\n{args.threads} thread(s), {args.image_size}x{args.image_size} images, "
        f"{args.num_classes} classes, medians of {args.repeats} interleaved repeats "
        f"({args.images_per_sample} images each)\n"
    )
    print(
        "| backbone | batch | eager ms/image | eager, deployed copy | onnxruntime | "
        "eager / onnxruntime | eager / deployed copy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, batch_size, medians in rows:
        eager, deployed, runtime = (1e3 * medians[form] for form in FORMS)
        print(
            f"| {name} | {batch_size} | {eager:.2f} | {deployed:.2f} | {runtime:.2f} | "
            f"{eager / runtime:.2f} | {eager / deployed:.2f} |"
        )


if __name__ == "__main__":
    main()
