"""What a built strategy is, and how a strategy is built from a name and user parameters.

Every registered strategy factory has the keyword-only signature
`(*, model, device, deterministic_inputs, protocol=<its TrainingProtocol defaults>, **own)`:
`model`, `device` and `deterministic_inputs` come from the run, the rest are user parameters
(the protocol's fields flattened next to the strategy's own, validated here).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from avalanche.training.templates import SupervisedTemplate
from torch import nn

from cycl_bench.errors import UserError, suggest
from cycl_bench.quant.precision import get_precision
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.latent_cache import LatentCache
from cycl_bench.strategies.protocol import TrainingProtocol

RUN_ARGUMENTS = ("model", "device", "deterministic_inputs")
HEAD_LAYER = "classifier"
ExtraCost = Literal["teacher_forward", "importance_pass", "calibration_pass"]


@dataclass(frozen=True)
class HeadPrecision:
    """Bits of the head's fixed-point update, for the training-cost accounting."""

    weight_bits: int
    act_bits: int
    grad_bits: int


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
    gradient_bits: int = 32
    head_name: str | None = None
    head_precision: HeadPrecision | None = None
    latent_cache: LatentCache | None = None
    frozen_backbone: bool = False
    """True when only the head trains after the first experience (its features stay fixed)."""
    extra_cost: ExtraCost | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def precision(self) -> tuple[int, int, int]:
        """(weight, activation, gradient) bits this strategy trains and evaluates with, as the
        model reports them; the gradient bits of a fixed-point head update are its own."""
        weight_bits, act_bits, grad_bits = get_precision(self.model)
        if self.head_precision is not None:
            grad_bits = self.head_precision.grad_bits
        return weight_bits, act_bits, grad_bits

    def train(self, experience) -> None:
        """Train on one experience (no evaluation inside Avalanche: the loop evaluates).

        Avalanche's deprecation notices force themselves past warning filters: they are
        recorded here, not shown."""
        with warnings.catch_warnings(record=True):
            self.template.train(experience, eval_streams=[])


def _own_defaults(name: str) -> tuple[TrainingProtocol, dict[str, Any]]:
    signature = inspect.signature(STRATEGIES.get(name))
    protocol = signature.parameters["protocol"].default
    own = {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if key not in RUN_ARGUMENTS and key != "protocol"
    }
    return protocol, own


def strategy_defaults(name: str) -> dict[str, Any]:
    """Every user parameter of a strategy with its default, protocol fields first."""
    protocol, own = _own_defaults(name)
    return {**protocol.as_dict(), **own}


def build_strategy(
    name: str,
    *,
    model: nn.Module,
    params: dict[str, Any] | None = None,
    device="cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Validate `params` against the strategy's parameters and build it on `model`.

    `model` must be fresh (CWR* stores its state on it). Unknown names or parameters raise a
    UserError listing the valid ones.
    """
    protocol, own = _own_defaults(name)
    params = dict(params or {})
    valid = [*protocol.field_names(), *own]
    unknown = [key for key in params if key not in valid]
    if unknown:
        key = unknown[0]
        raise UserError(
            f"strategy '{name}' has no parameter '{key}'{suggest(key, valid)}; "
            f"valid: {', '.join(valid)}"
        )
    protocol_params = {k: v for k, v in params.items() if k in protocol.field_names()}
    own_params = {k: v for k, v in params.items() if k in own}
    built = STRATEGIES.build(
        name,
        model=model,
        device=device,
        deterministic_inputs=deterministic_inputs,
        protocol=replace(protocol, **protocol_params),
        **own_params,
    )
    built.params = {**strategy_defaults(name), **params}
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
