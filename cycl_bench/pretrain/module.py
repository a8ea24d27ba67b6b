"""The LightningModule: a backbone trained as a classifier with AdamW and a per-step cosine LR.

Precision is not its business: the `CyclicPrecision` callback sets it around every step.
Under DDP the epoch metrics are global: the accuracy metrics gather every process's counts
(torchmetrics), and the validation and test losses are averaged over processes (`sync_dist`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from cycl_bench.registry import BACKBONES


class BackboneClassifier(pl.LightningModule):
    """Cross-entropy training of `backbone` (any module mapping images to class logits).

    `registered`: the backbone's registry name and constructor kwargs, to send it to ddp_spawn's
    worker processes (see `__getstate__`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        lr: float,
        weight_decay: float,
        registered: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.registered = registered
        self.lr = lr
        self.weight_decay = weight_decay
        self.train_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def __getstate__(self) -> dict[str, Any]:
        """Brevitas layers hold quantizer classes made at run time, which do not pickle: a
        registered backbone travels as its name, kwargs and state dict and is rebuilt."""
        state = super().__getstate__()
        if self.registered is not None:
            state["_modules"] = {**state["_modules"], "backbone": None}
            state["_backbone_state"] = self.backbone.state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        backbone_state = state.pop("_backbone_state", None)
        super().__setstate__(state)
        if backbone_state is not None:
            assert self.registered is not None  # `__getstate__` sends a registered backbone only
            name, kwargs = self.registered
            backbone = BACKBONES.build(name, **kwargs)
            backbone.load_state_dict(backbone_state)
            self._modules["backbone"] = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def _loss(
        self, batch: Sequence[torch.Tensor], accuracy: MulticlassAccuracy, stage: str
    ) -> torch.Tensor:
        # Avalanche items are (x, y, task); plain datasets (x, y)
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        accuracy(logits, y)
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            batch_size=len(y),
            sync_dist=not on_step,  # a training step's loss stays the process's own (no sync)
        )
        self.log(
            f"{stage}/accuracy",
            accuracy,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "train",
            batch_size=len(y),
        )
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._loss(batch, self.train_accuracy, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._loss(batch, self.val_accuracy, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._loss(batch, self.test_accuracy, "test")

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
