"""The training protocol every strategy follows, and the plugin that applies it per experience.

The protocol of the CWR* and AR1* papers (Lomonaco, Maltoni and Pellegrini 2020; Pellegrini et
al. 2020; ar1-pytorch params.cfg): one SGD (momentum 0.9, lr 0.001, weight decay 0.0005) for
every strategy and every experience, 4 epochs of minibatches of 128; the first experience is
trained the same way by every strategy. The first and the later experiences may each have their
own optimizer, learning rate and epochs (a strategy's own phase, e.g. AR1*'s smaller learning
rate). A fresh optimizer per experience resets the optimizer state. `min_steps` makes the budget
hold on small streams: an experience trains for its epochs, or for more epochs until at least
`min_steps` optimizer steps were taken (a real CORe50 NC experience has about 94 minibatches of
128 per epoch, a synthetic one 2). Avalanche strategies hold one optimizer and one epoch count,
so a plugin sets both for each experience, ahead of Avalanche's own optimizer set-up.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from cycl_bench.errors import UserError

if TYPE_CHECKING:
    # Avalanche ships no type information: to mypy the template is `Any`, which lets the
    # template mixins (`OrderedPlugins`, `LatentCacheForward`) use its attributes and methods
    from avalanche.training.templates import SupervisedTemplate
    from avalanche.training.templates import SupervisedTemplate as TemplateMixinBase
else:
    TemplateMixinBase = object

Optimizer = Literal["adam", "sgd"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name}={value!r} must be a positive integer")


@dataclass(frozen=True)
class TrainingProtocol:
    """Optimizer, learning rate and epochs of the first and of the later experiences."""

    batch_size: int = 128
    first_optimizer: str = "sgd"
    first_lr: float = 0.001
    first_epochs: int = 4
    optimizer: str = "sgd"
    lr: float = 0.001
    epochs: int = 4
    min_steps: int = 50
    momentum: float = 0.9
    """SGD momentum (both phases); Adam ignores it."""
    weight_decay: float = 0.0005
    """L2 penalty of both phases' optimizer."""

    def __post_init__(self) -> None:
        for name in ("first_lr", "lr"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise UserError(f"{name}={rate!r} must be a positive number")
        for name in ("batch_size", "first_epochs", "epochs"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int):
            raise UserError(f"min_steps={self.min_steps!r} must be a whole number")
        if self.min_steps < 0:
            raise UserError(f"min_steps={self.min_steps!r} must be 0 or more")
        momentum = self.momentum
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise UserError(f"momentum={momentum!r} must be a number from 0 to 1")
        if not 0 <= momentum < 1:
            raise UserError(f"momentum={momentum!r} must be a number from 0 to 1")
        decay = self.weight_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0:
            raise UserError(f"weight_decay={decay!r} must be a number >= 0")
        for name in ("first_optimizer", "optimizer"):
            kind = getattr(self, name)
            if kind not in OPTIMIZERS:
                raise UserError(f"{name}={kind!r} is not known: use one of {', '.join(OPTIMIZERS)}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.field_names()}

    def epochs_for(self, samples: int, *, first: bool) -> int:
        """Epochs over an experience of `samples` training samples: the protocol's epochs, or
        enough more to take `min_steps` optimizer steps."""
        epochs = self.first_epochs if first else self.epochs
        steps_per_epoch = max(1, math.ceil(samples / self.batch_size))
        return max(epochs, math.ceil(self.min_steps / steps_per_epoch))


def make_optimizer(
    kind: str,
    parameters: Iterable[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)


class ExperienceProtocol(SupervisedPlugin):
    """Before each experience: a fresh optimizer of the protocol's kind and its epoch count.

    The optimizer is made at `before_train_dataset_adaptation`, ahead of Avalanche's
    `check_model_and_optimizer`, which then registers the model's parameters in it from scratch;
    the epochs once the training data is adapted (a cumulative strategy's data grows).
    """

    def __init__(self, protocol: TrainingProtocol) -> None:
        super().__init__()
        self.protocol = protocol

    def before_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        protocol, first = self.protocol, strategy.clock.train_exp_counter == 0
        kind = protocol.first_optimizer if first else protocol.optimizer
        lr = protocol.first_lr if first else protocol.lr
        strategy.optimizer = make_optimizer(
            kind, strategy.model.parameters(), lr, protocol.momentum, protocol.weight_decay
        )
        strategy.optimized_param_id = None

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        first = strategy.clock.train_exp_counter == 0
        samples = len(strategy.adapted_dataset)
        strategy.train_epochs = self.protocol.epochs_for(samples, first=first)


class BatchNormRecalibration(SupervisedPlugin):
    """After each experience, the running statistics of every BatchNorm still training are
    recomputed with one pass over the experience's training batches (no gradient, exact mean).

    A binary network's activations change abruptly when latent weights flip sign, so the
    exponential running averages lag behind the weights that are evaluated: measured on the
    synthetic CORe50 NC stream, cumulative training of tiny_bnn scored 31% with the running
    averages and 62% with recomputed statistics (docs/strategies.md). Frozen BatchNorm (the
    CWR* backbone after the first experience) and latent-cache passes are left alone.
    """

    samples = 0
    """Samples of the last pass (0 when nothing was recalibrated), for the cost accounting."""

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.samples = 0
        cache = getattr(strategy, "latent_cache", None)
        if cache is not None and cache.active:
            return
        layers = [
            module
            for module in strategy.model.modules()
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            and module.training
            and module.track_running_stats
        ]
        if not layers:
            return
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over the pass
        with torch.no_grad():
            for batch in strategy.dataloader:
                strategy.model(batch[0].to(strategy.device))
                self.samples += len(batch[0])
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


class OrderedPlugins(TemplateMixinBase):
    """Template mixin: plugins that act on each other's results run in `plugin_order`, which the
    strategy that builds the template declares; the order is checked before each experience, so
    a reordered plugin list is an error rather than another computation."""

    plugin_order: tuple[type, ...] = ()

    def _before_training_exp(self, **kwargs: Any) -> None:
        ranked = [
            rank
            for plugin in self.plugins
            for rank, kind in enumerate(self.plugin_order)
            if isinstance(plugin, kind)
        ]
        if ranked != sorted(ranked):
            names = ", ".join(kind.__name__ for kind in self.plugin_order)
            raise RuntimeError(f"{type(self).__name__} plugins out of order; they run as {names}")
        super()._before_training_exp(**kwargs)


def quiet_evaluator() -> EvaluationPlugin:
    """No metrics, no loggers: cycl_bench evaluates on its own test views."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])
