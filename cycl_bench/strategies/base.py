"""What a built strategy is, and how a strategy is built from a name and user parameters.

Every registered strategy declares its user parameters once, as a `Params` model registered with
it (`STRATEGIES.register("ewc", params=EwcParams)`): the training protocol's fields
(`ProtocolParams`) next to the strategy's own, with their defaults, types and ranges. Its factory
has the keyword-only signature `(*, model, params, device, deterministic_inputs)`: `params` is
the validated declaration, the rest come from the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.params import MAX_BATCH, MAX_EPOCHS, MAX_STEPS, Params, check, shown
from cycl_bench.quant.precision import LayerPrecision, get_precision
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.latent_cache import LatentCache
from cycl_bench.strategies.latent_replay import LatentReplay
from cycl_bench.strategies.protocol import Optimizer, TrainingProtocol

HEAD_LAYER = "classifier"
ExtraCost = Literal["teacher_forward", "importance_pass", "calibration_pass"]


@dataclass(frozen=True)
class HeadPrecision:
    """Bits of the hybrid head's fixed-point update (`hq_cwr.hybrid_head_update`).

    Its products: the forward `x_q . W_q^T` (`act_bits` x `weight_bits`) and the weight
    gradient `delta_q^T . x_q` (`error_bits` x `act_bits`); no gradient flows into the frozen
    backbone. `grad_bits` is the grid the stored weights are rounded to (`W <- Q_b(...)`): no
    product runs at it, and it is what the results file reports as the head's gradient bits.
    """

    weight_bits: int
    act_bits: int
    grad_bits: int
    error_bits: int
    """bits of the error signal delta_q, the output gradient the weight gradient multiplies"""

    @classmethod
    def hybrid(cls, head_bits: int, grad_bits: int) -> HeadPrecision:
        """The hybrid update: every product at head_bits x head_bits, the stored weights on the
        grad_bits grid."""
        return cls(
            weight_bits=head_bits, act_bits=head_bits, grad_bits=grad_bits, error_bits=head_bits
        )

    def computed(self) -> LayerPrecision:
        """What the head's products multiply, as the cost accounting reads a layer's bits
        (its gradient bits: those of the output gradient, the error signal)."""
        return LayerPrecision(
            weight_bits=self.weight_bits, act_bits=self.act_bits, grad_bits=self.error_bits
        )


@dataclass
class ContinualStrategy:
    """An Avalanche strategy plus what evaluation and cost accounting need to know of it.

    `extra_cost` names work the strategy does outside its training steps (LwF's teacher
    forward on every step, EWC's importance pass after each experience, the hybrid head's
    calibration pass after the first experience).
    """

    name: str
    template: SupervisedTemplate
    model: nn.Module
    params: dict[str, Any]
    head_name: str | None = None
    head_precision: HeadPrecision | None = None
    latent_cache: LatentCache | None = None
    latent_replay: LatentReplay | None = None
    """AR1*-style latent replay: its memory (`.buffer.payload_bytes`) and the split of the
    backbone it trains (the cost of replayed patterns is the upper part's)."""
    frozen_backbone: bool = False
    """True when only the head trains after the first experience (its features stay fixed)."""
    extra_cost: ExtraCost | None = None

    def precision(self) -> tuple[int, int, int]:
        """(weight, activation, gradient) bits this strategy trains and evaluates with, as the
        model reports them; the gradient bits of a fixed-point head update are its own."""
        weight_bits, act_bits, grad_bits = get_precision(self.model)
        if self.head_precision is not None:
            grad_bits = self.head_precision.grad_bits
        return weight_bits, act_bits, grad_bits

    def train(self, experience: Any) -> None:
        """Train on one experience (no evaluation inside Avalanche: the loop evaluates).

        Avalanche's deprecation notices force themselves past warning filters: they are
        recorded here, not shown."""
        with warnings.catch_warnings(record=True):
            self.template.train(experience, eval_streams=[])


class ProtocolParams(Params):
    """The training protocol every strategy follows (`TrainingProtocol`), as user parameters.

    The defaults are the protocol of the CWR* and AR1* papers (Lomonaco, Maltoni and Pellegrini
    2020; Pellegrini et al. 2020; reference code ar1-pytorch params.cfg), under which the
    published CORe50 numbers of CWR*, AR1*, EWC, LwF and naive were obtained: one SGD for every
    strategy and every experience (momentum 0.9, lr 0.001, weight decay 0.0005, 4 epochs,
    minibatch 128), the first experience trained the same way by all.
    """

    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    """training minibatch"""
    first_optimizer: Optimizer = "sgd"
    """optimizer of the first experience"""
    first_lr: float = Field(0.001, gt=0)
    """learning rate of the first experience"""
    first_epochs: int = Field(4, ge=1, le=MAX_EPOCHS)
    """epochs of the first experience"""
    optimizer: Optimizer = "sgd"
    """optimizer of every later experience (a fresh one each time: momentum reset)"""
    lr: float = Field(0.001, gt=0)
    """learning rate of the later experiences"""
    epochs: int = Field(4, ge=1, le=MAX_EPOCHS)
    """epochs of each later experience"""
    min_steps: int = Field(50, ge=0, le=MAX_STEPS)
    """optimizer steps each experience takes at least (more epochs on a small stream)"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (both phases); Adam ignores it"""
    weight_decay: float = Field(0.0005, ge=0)
    """L2 penalty of the optimizer (both phases)"""

    # -- fidelity: what the registered name means, and how a configuration departs from it ---

    paper: ClassVar[str] = ""
    """The publication (and its reference code) whose algorithm the registered name runs;
    empty for the bounds (naive, cumulative), which no paper defines."""
    published: ClassVar[dict[str, Any]] = {}
    """Algorithm parameters whose value the paper fixes: any other value is a deviation, named
    in the results file and every table. The training protocol (optimizer, learning rates,
    epochs) is the experiment's, the same for every strategy, and cited there."""
    departures: ClassVar[tuple[str, ...]] = ()
    """How the implementation departs from the paper whatever its parameters."""

    def deviations(self) -> list[str]:
        """How this configuration departs from `paper`: the implementation's departures, then
        every published parameter set to another value (`name=value (paper: value)`)."""
        changed = [
            f"{name}={shown(getattr(self, name))} (paper: {shown(value)})"
            for name, value in self.published.items()
            if getattr(self, name) != value
        ]
        return [*self.departures, *changed]

    def protocol(self) -> TrainingProtocol:
        return TrainingProtocol(
            **{name: getattr(self, name) for name in ProtocolParams.model_fields}
        )


def strategy_params(name: str, given: Mapping[str, Any] | None = None) -> ProtocolParams:
    """`given` validated against the strategy's declaration, defaults filled in; a one-line
    UserError for an unknown strategy or parameter or a bad value."""
    declaration = STRATEGIES.detail(name, "params")
    return check(declaration, given or {}, owner=f"strategy '{name}'")


def strategy_defaults(name: str) -> dict[str, Any]:
    """Every user parameter of a strategy with its default, protocol fields first."""
    return strategy_params(name).model_dump()


def build_strategy(
    name: str,
    *,
    model: nn.Module,
    params: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Validate `params` against the strategy's declaration and build it on `model`.

    `model` must be fresh (CWR* stores its state on it). Unknown names or parameters raise a
    UserError listing the valid ones.
    """
    checked = strategy_params(name, params)
    built = STRATEGIES.build(
        name,
        model=model,
        params=checked,
        device=device,
        deterministic_inputs=deterministic_inputs,
    )
    built.params = checked.model_dump()
    return built


def head_layer(model: nn.Module, name: str = HEAD_LAYER) -> nn.Linear:
    """The bias-free linear head that CWR* trains; a UserError when the backbone has none."""
    layer = dict(model.named_modules()).get(name)
    if not isinstance(layer, nn.Linear):
        raise UserError(
            f"the backbone has no linear head layer '{name}' for CWR*; use a cycl_bench backbone "
            f"(its output layer is 'classifier')"
        )
    if layer.bias is not None:
        raise UserError(
            f"head layer '{name}' has a bias, which CWR* never consolidates; "
            f"use a backbone with a bias-free head"
        )
    return layer
