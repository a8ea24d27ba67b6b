"""Continual-learning strategies on binary backbones, registered in `STRATEGIES` by name."""

from cycl_bench.strategies import ar1, catalog  # noqa: F401  (registers the strategies)
from cycl_bench.strategies.base import (
    ContinualStrategy,
    build_strategy,
    strategy_defaults,
    strategy_params,
)

__all__ = ["ContinualStrategy", "build_strategy", "strategy_defaults", "strategy_params"]
