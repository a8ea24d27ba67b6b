"""One (strategy, seed) run over a stream: train experience by experience, evaluate, measure.

After each training experience the model is evaluated on every test view of the stream at its
deployed precision (`eval_bits`, the pretraining's: 1-bit weights and activations on binary
backbones), giving row i of the accuracy matrix A[i][j]. With `eval_every` k > 1 (long streams)
only experiences 0, k, 2k, ... and the last are evaluated: the matrix has a row for each of them
and the seed's `evaluated_after` says which experience each row follows (`evaluated_experiences`);
evaluation never moves the training RNG, so those rows are the ones every-experience evaluation
gives. The continual stage trains with float gradients whatever the pretraining schedule used
(only the hybrid head quantizes its update). Final accuracy, forgetting and BWT come from
`results.seed_metrics`. Costs per experience: wall-clock training time, peak memory (RSS on CPU,
the allocator's peak on CUDA), training BitOPs (`TrainingCostMeter`), and the wall-clock time of
the evaluation that followed it. Seeding goes through Avalanche's RNG manager (torch, numpy,
random): the same seed on CPU gives identical metrics.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from avalanche.training.determinism.rng_manager import RNGManager
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cycl_bench.continual.costs import TrainingCostMeter
from cycl_bench.continual.resources import peak_memory_mb, reset_peak_memory
from cycl_bench.data.base import Stream
from cycl_bench.evaluation.results import ExperienceCost, SeedResult, seed_metrics
from cycl_bench.models.checkpoint import load_pretrained
from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.precision import model_size_bytes, precision, set_precision
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy
from cycl_bench.strategies.latent_cache import FeatureCodec, cpu_rng_untouched, encode_dataset

if TYPE_CHECKING:
    from cycl_bench.models.common import Backbone

DEPLOYED_BITS = 1
"""Default deployment precision (weights and activations), as `PretrainConfig.eval_bits`."""
EVAL_BATCH_SIZE = 256
ExperienceCallback = Callable[[int, dict[str, Any]], None]
Device = str | torch.device
EncodedView = tuple[torch.Tensor, torch.Tensor]


def evaluated_experiences(n_experiences: int, eval_every: int = 1) -> list[int]:
    """The experiences after which a run evaluates: 0, k, 2k, ... and always the last."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every={eval_every!r} must be a positive integer")
    last = n_experiences - 1
    return [i for i in range(n_experiences) if i % eval_every == 0 or i == last]


def seed_everything(seed: int) -> None:
    RNGManager.set_random_seeds(seed)
    random.seed(seed)


def build_model(spec: RunSpec, num_classes: int, checkpoint: Path | None = None) -> Backbone:
    """A fresh backbone of `spec` for `num_classes`, pretrained weights loaded, at the deployed
    precision with float gradients. A head the checkpoint does not provide (pretrained on other
    classes, or no checkpoint) starts at zero for every strategy, as CWR* starts its rows: every
    class starts from the same logit, whatever the strategy."""
    model = spec.build(num_classes)
    head_loaded = False
    if checkpoint is not None:
        skipped = load_pretrained(model, Path(checkpoint))
        head_loaded = not any(name.startswith("classifier.") for name in skipped)
    if not head_loaded:
        with torch.no_grad():
            model.classifier.weight.zero_()
    # loading a checkpoint restores the bits it was saved with: deploy again
    set_precision(
        model, weight_bits=spec.eval_bits, act_bits=spec.eval_bits, grad_bits=FLOAT_GRAD_BITS
    )
    return model


@torch.no_grad()
def view_accuracy(
    model: nn.Module, view: Dataset[Any], device: Device = "cpu", batch_size: int = EVAL_BATCH_SIZE
) -> float:
    """Fraction of a test view classified correctly (items are (x, y, ...))."""
    correct = total = 0
    for batch in DataLoader(view, batch_size=batch_size, shuffle=False):
        x, y = batch[0].to(device), torch.as_tensor(batch[1]).to(device)
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total


def accuracy_row(
    model: nn.Module,
    views: Sequence[Dataset[Any]],
    device: Device = "cpu",
    eval_bits: int = DEPLOYED_BITS,
) -> list[float]:
    """Accuracy on every test view at the deployed precision, in eval mode, without moving the
    training RNG."""
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    try:
        with cpu_rng_untouched(), precision(model, weight_bits=eval_bits, act_bits=eval_bits):
            return [view_accuracy(model, view, device) for view in views]
    finally:
        for name, module in model.named_modules():
            module.train(modes[name])


@torch.no_grad()
def head_accuracy_row(model: Backbone, encoded_views: Sequence[EncodedView]) -> list[float]:
    """`accuracy_row` from each view's (features, targets), computed by `encode_views`: the
    head alone, for a backbone that no longer changes."""
    head_mode = model.classifier.training
    model.classifier.eval()
    try:
        return [
            int((model.classifier(features).argmax(dim=1) == targets).sum()) / len(targets)
            for features, targets in encoded_views
        ]
    finally:
        model.classifier.train(head_mode)


def encode_views(
    model: Backbone,
    views: Sequence[Dataset[Any]],
    device: Device = "cpu",
    eval_bits: int = DEPLOYED_BITS,
) -> list[EncodedView]:
    """(features, targets) of every test view at the deployed precision, in eval mode."""
    with precision(model, weight_bits=eval_bits, act_bits=eval_bits):
        return [
            (
                encode_dataset(model, view, FeatureCodec(), device, EVAL_BATCH_SIZE).to(device),
                torch.as_tensor(view_targets(view), device=device),
            )
            for view in views
        ]


def view_targets(view: Dataset[Any]) -> list[int]:
    """A view's labels in order, from its targets attribute when it has one (no image loaded)."""
    if hasattr(view, "targets"):
        return [int(target) for target in view.targets]
    return [int(item[1]) for item in iter(view)]  # iter: a Dataset iterates by index


class AccuracyRows:
    """The accuracy rows of a run over its test views.

    A strategy whose backbone is frozen once the first experience is trained (the CWR* family)
    has its test views encoded once, right after that experience, and every row from then on is
    a head-only pass over the stored features (`head_accuracy_row`: the same numbers as
    `accuracy_row`, a few milliseconds instead of a pass through the backbone). Other
    strategies get a full pass per row.
    """

    def __init__(
        self, views: Sequence[Dataset[Any]], device: Device = "cpu", eval_bits: int = DEPLOYED_BITS
    ) -> None:
        self.views = views
        self.device = device
        self.eval_bits = eval_bits
        self.encoded: list[EncodedView] | None = None

    def row(self, model: Backbone, *, frozen_backbone: bool) -> list[float]:
        if not frozen_backbone:
            return accuracy_row(model, self.views, self.device, self.eval_bits)
        if self.encoded is None:
            with cpu_rng_untouched():
                self.encoded = encode_views(model, self.views, self.device, self.eval_bits)
        return head_accuracy_row(model, self.encoded)


def run_strategy(
    stream: Stream,
    spec: RunSpec,
    *,
    strategy: str,
    params: dict[str, Any],
    checkpoint: Path | None,
    seed: int,
    eval_every: int = 1,
    on_experience: ExperienceCallback | None = None,
    on_finished: Callable[[Backbone], dict[str, Any]] | None = None,
) -> SeedResult:
    """Train `strategy` on `stream` from a fresh backbone and return the seed's results.

    The test views are evaluated after the experiences `evaluated_experiences(n, eval_every)`
    names (every one by default). `on_experience(index, info)` is called after each experience
    with its accuracy row (None when it was not evaluated), its costs, and (for cached
    strategies) the latent cache's size. `on_finished(model)` gets the
    model as it was evaluated last (for the CWR* family, with the consolidated head) and returns
    fields for the seed's results (where the model was saved). When only the head trains after
    the first experience, the test views are encoded once after it and every row is a head-only
    pass (`AccuracyRows`).
    """
    device, eval_bits = spec.device, spec.eval_bits
    seed_everything(seed)
    model = build_model(spec, stream.num_classes, checkpoint).to(device)
    built = build_strategy(
        strategy,
        model=model,
        params=params,
        device=device,
        deterministic_inputs=stream.train_deterministic,
    )
    meter = TrainingCostMeter(built, stream.image_shape)
    built.template.plugins.append(meter)
    bits = built.precision()

    matrix: list[list[float]] = []
    per_experience: list[ExperienceCost] = []
    rows = AccuracyRows(stream.test_views, device, eval_bits)
    evaluated = evaluated_experiences(stream.n_experiences, eval_every)
    for index, experience in enumerate(stream.train_stream):
        bitops_before = meter.total_bitops
        reset_peak_memory(device)
        started = time.perf_counter()
        built.train(experience)
        train_time = time.perf_counter() - started
        peaks = peak_memory_mb(device)
        if built.precision() != bits:
            raise RuntimeError(f"{strategy} changed the precision {bits} to {built.precision()}")
        row, eval_time = None, None
        if index in evaluated:
            started = time.perf_counter()
            row = rows.row(model, frozen_backbone=built.frozen_backbone)
            eval_time = time.perf_counter() - started
            matrix.append(row)
        cost = ExperienceCost(
            train_time_s=train_time,
            peak_memory_mb=peaks.get("cuda_mb", peaks["rss_mb"]),
            train_bitops=meter.total_bitops - bitops_before,
            eval_time_s=eval_time,
        )
        per_experience.append(cost)
        if on_experience is not None:
            info = {"accuracy_row": row, **cost.model_dump(), **peaks}
            if built.latent_cache is not None:
                info["latent_cache_bytes"] = built.latent_cache.cache_bytes
            if built.latent_replay is not None:
                info["replay_buffer_bytes"] = built.latent_replay.buffer.payload_bytes
            on_experience(index, info)

    # every experience evaluated: row i follows experience i, nothing to record
    after = None if len(evaluated) == stream.n_experiences else evaluated
    return SeedResult(
        seed=seed,
        evaluated_after=after,
        accuracy_matrix=matrix,
        **seed_metrics(matrix, stream.test_sizes, after),
        train_time_s=sum(c.train_time_s for c in per_experience),
        peak_memory_mb=max(c.peak_memory_mb for c in per_experience),
        train_bitops=meter.total_bitops,
        bitops_reduction_vs_fp32=meter.reduction_vs_fp32,
        model_size_bytes=model_size_bytes(model),
        replay_buffer_bytes=(
            built.latent_replay.buffer.payload_bytes if built.latent_replay is not None else None
        ),
        per_experience=per_experience,
        **(on_finished(model) if on_finished is not None else {}),
    )
