"""Where results go besides the results file: Weights & Biases runs and console tables."""

from cycl_bench.logging.wandb_run import (
    WANDB_MODES,
    WandbSession,
    check_wandb_mode,
    experience_accuracies,
    offline_sync_hint,
)

__all__ = [
    "WANDB_MODES",
    "WandbSession",
    "check_wandb_mode",
    "experience_accuracies",
    "offline_sync_hint",
]
