"""`RunSpec`: what the pretraining and the continual stage must agree on, derived once.

From the resolved config and the stream's image shape: the backbone and its constructor
arguments, the deployed precision (weight, activation, gradient bits), the checkpoint cache and
the device. `pretrain` (command and stage), `run` and `export` take a spec rather than building
these themselves, so the backbone the `pretrain` command caches is the one `run` looks up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cycl_bench.quant.bits import FLOAT_GRAD_BITS, check_bits
from cycl_bench.registry import BACKBONES

if TYPE_CHECKING:
    from cycl_bench.config import ExperimentConfig
    from cycl_bench.models.common import Backbone

CACHE_ENV = "CYCL_BENCH_CACHE"
SIZED_BY_THE_DATA = ("num_classes", "in_channels", "image_size")


def default_cache_dir() -> Path:
    """The one checkpoint cache of `pretrain` and `run`: $CYCL_BENCH_CACHE, else the user cache."""
    from platformdirs import user_cache_dir

    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(user_cache_dir("cycl_bench")) / "checkpoints"


def backbone_defaults(backbone: str) -> dict[str, Any]:
    """The defaults the backbone declares (its `params` model; an unknown name is a UserError),
    so that options left out and options given at their default make one spec and one cache
    entry."""
    fields = BACKBONES.detail(backbone, "params").model_fields
    return {
        name: declared.default
        for name, declared in fields.items()
        if not declared.is_required() and name not in SIZED_BY_THE_DATA
    }


@dataclass(frozen=True)
class RunSpec:
    backbone: str
    backbone_kwargs: dict[str, Any]
    """Constructor arguments for the stream's images, all but `num_classes` (which differs
    between the pretraining corpus and the stream)."""
    eval_bits: int = 1
    """Weight and activation bits the backbone is deployed (evaluated, saved) at."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str = "cpu"

    @classmethod
    def of(
        cls,
        backbone: str,
        image_shape: tuple[int, int, int],
        *,
        mode: str = "cyclebnn",
        options: dict[str, Any] | None = None,
        eval_bits: int = 1,
        cache_dir: Path | str | None = None,
        device: str = "cpu",
    ) -> RunSpec:
        channels, height, _ = image_shape
        kwargs = {
            **backbone_defaults(backbone),
            **(options or {}),
            "in_channels": channels,
            "image_size": height,
            "precision_mode": mode,
        }
        return cls(
            backbone=backbone,
            backbone_kwargs=kwargs,
            eval_bits=check_bits("eval_bits", eval_bits),
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
            device=device,
        )

    @classmethod
    def from_config(
        cls,
        config: ExperimentConfig,
        image_shape: tuple[int, int, int],
        *,
        cache_dir: Path | str | None = None,
    ) -> RunSpec:
        return cls.of(
            config.backbone.name,
            image_shape,
            mode=config.pretrain.mode,
            options=config.backbone.options,
            eval_bits=config.pretrain.eval_bits,
            cache_dir=cache_dir,
            device=config.device,
        )

    @property
    def precision_mode(self) -> str:
        return self.backbone_kwargs["precision_mode"]

    def kwargs_for(self, num_classes: int) -> dict[str, Any]:
        return {**self.backbone_kwargs, "num_classes": num_classes}

    def build(self, num_classes: int) -> Backbone:
        """A fresh backbone at the deployed precision with float gradients."""
        from cycl_bench.quant.precision import set_precision

        model = BACKBONES.build(self.backbone, **self.kwargs_for(num_classes))
        set_precision(
            model, weight_bits=self.eval_bits, act_bits=self.eval_bits, grad_bits=FLOAT_GRAD_BITS
        )
        return model

    @cached_property
    def bits(self) -> tuple[int, int, int]:
        """(weight, activation, gradient) bits of the deployed backbone: (32, 32, 32) for a float
        one, (eval_bits, eval_bits, 32) for a binary one."""
        from cycl_bench.quant.precision import get_precision

        return get_precision(self.build(num_classes=2))
