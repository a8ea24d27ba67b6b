"""The training protocol every strategy follows, and the plugin that applies it per experience.

The on-device CL protocol (Vorabbi et al.): the first experience trains with its own optimizer and
epoch count (Adam, 10 epochs), later experiences with another (SGD for head-only updates, 5
epochs). A fresh optimizer per experience resets the learning rate and the optimizer state.
Avalanche strategies hold one optimizer and one epoch count, so a plugin swaps both before each
experience, ahead of Avalanche's own optimizer set-up.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from cycl_bench.errors import UserError

OPTIMIZERS = ("adam", "sgd")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name}={value!r} must be a positive integer")


@dataclass(frozen=True)
class TrainingProtocol:
    """Optimizer, learning rate and epochs of the first and of the later experiences."""

    batch_size: int = 50
    first_optimizer: str = "adam"
    first_lr: float = 0.0025
    first_epochs: int = 10
    optimizer: str = "adam"
    lr: float = 0.0025
    epochs: int = 5

    def __post_init__(self):
        for name in ("first_lr", "lr"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise UserError(f"{name}={rate!r} must be a positive number")
        for name in ("batch_size", "first_epochs", "epochs"):
            _positive_int(name, getattr(self, name))
        for name in ("first_optimizer", "optimizer"):
            kind = getattr(self, name)
            if kind not in OPTIMIZERS:
                raise UserError(f"{name}={kind!r} is not known: use one of {', '.join(OPTIMIZERS)}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.field_names()}


def make_optimizer(kind: str, parameters, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.0)


class ExperienceProtocol(SupervisedPlugin):
    """Before each experience: a fresh optimizer of the protocol's kind and its epoch count.

    Runs at `before_train_dataset_adaptation`, ahead of Avalanche's `check_model_and_optimizer`,
    which then registers the model's parameters in the new optimizer from scratch.
    """

    def __init__(self, protocol: TrainingProtocol):
        super().__init__()
        self.protocol = protocol

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        protocol, first = self.protocol, strategy.clock.train_exp_counter == 0
        kind = protocol.first_optimizer if first else protocol.optimizer
        lr = protocol.first_lr if first else protocol.lr
        strategy.train_epochs = protocol.first_epochs if first else protocol.epochs
        strategy.optimizer = make_optimizer(kind, strategy.model.parameters(), lr)
        strategy.optimized_param_id = None


def quiet_evaluator() -> EvaluationPlugin:
    """No metrics, no loggers: cycl_bench evaluates on its own test views."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])
