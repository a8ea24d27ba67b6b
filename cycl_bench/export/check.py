"""Does the exported graph compute what the PyTorch model computes? Predictions compared on test
images: the share of images whose predicted class agrees, and the largest logit difference.

Agreement rather than equal logits: the exported graph adds the same numbers in another order,
so a value right at a sign threshold can fall on the other side and change a few logits
downstream; a wrong export changes most predictions. The bar is 99.5% agreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from cycl_bench.export.formats import Predictor

AGREEMENT_THRESHOLD = 0.995
BATCH_SIZE = 64


@dataclass(frozen=True)
class Agreement:
    images: int
    agreeing: int
    max_logit_difference: float
    reference_correct: int
    exported_correct: int

    @property
    def agreement(self) -> float:
        return self.agreeing / self.images

    @property
    def passed(self) -> bool:
        return self.agreement >= AGREEMENT_THRESHOLD


def spread_subset(views: list[Dataset], limit: int | None) -> Dataset:
    """The test views as one set, or `limit` images spread evenly over it (every view and
    class represented, not only the first experience's)."""
    whole: ConcatDataset[Any] = ConcatDataset(views)
    if limit is None or limit >= len(whole):
        return whole
    indices = np.linspace(0, len(whole) - 1, num=limit).round().astype(int)
    return Subset(whole, sorted(set(indices.tolist())))


def batches(dataset: Dataset, batch_size: int = BATCH_SIZE) -> Iterator[tuple[torch.Tensor, ...]]:
    """(images, labels) of a test set whose items are (x, y, ...)."""
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        yield batch[0], torch.as_tensor(batch[1])


@torch.no_grad()
def compare_predictions(
    model: nn.Module, predict: Predictor, test_batches: Iterable[tuple[torch.Tensor, ...]]
) -> Agreement:
    """Run `model` (eval mode, as it is) and the exported graph on the same batches."""
    model.eval()
    images = agreeing = reference_correct = exported_correct = 0
    max_difference = 0.0
    for x, y in test_batches:
        reference = model(x).numpy()
        exported = np.asarray(predict(x.numpy().astype(np.float32)))
        if exported.shape != reference.shape:
            raise RuntimeError(f"exported logits {exported.shape}, PyTorch {reference.shape}")
        labels = y.numpy()
        reference_class, exported_class = reference.argmax(1), exported.argmax(1)
        images += len(labels)
        agreeing += int((reference_class == exported_class).sum())
        reference_correct += int((reference_class == labels).sum())
        exported_correct += int((exported_class == labels).sum())
        difference = float(np.abs(reference - exported).max())
        max_difference = max(max_difference, float("inf") if np.isnan(difference) else difference)
    if images == 0:
        raise ValueError("no test images to compare on")
    return Agreement(images, agreeing, max_difference, reference_correct, exported_correct)
