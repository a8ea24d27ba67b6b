"""Where output goes besides the results file: W&B runs, console tables, the library log file."""

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
