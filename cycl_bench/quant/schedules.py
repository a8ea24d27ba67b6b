"""Precision schedules: the bit width to train with at each optimizer step.

Pure functions of the step, so a test checks them without a model or a Trainer. A schedule is
any callable `step -> bits`; the two kinds used in pretraining are below.

The cosine cycle is the one of CPT and CycleBNN, per iteration t:

    bits(t) = rint(min + 0.5 * (max - min) * (1 - cos(pi * (t mod T) / T))),  T = steps / cycles

Each cycle climbs from `min_bits` to `max_bits` and drops back. An optional closing phase trains
the last fraction of the steps at `closing_bits` (the deployment precision); the cycles then fit
in the steps before it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

Schedule = Callable[[int], int]


def cosine_cycle_bits(
    step: int, *, total_steps: int, min_bits: int, max_bits: int, cycles: int
) -> int:
    """Bits at `step` of a run of `total_steps` that cycles `cycles` times from min to max."""
    period = total_steps / cycles
    phase = (step % period) / period
    # round half to even, as numpy's rint in the CPT code
    return int(round(min_bits + 0.5 * (max_bits - min_bits) * (1 - math.cos(math.pi * phase))))


@dataclass(frozen=True)
class ConstantSchedule:
    """The same bit width at every step."""

    bits: int

    def __call__(self, step: int) -> int:
        return self.bits


@dataclass(frozen=True)
class CosineCycleSchedule:
    """CPT/CycleBNN cosine cycle over `total_steps`, with an optional closing phase.

    `closing_fraction` of the steps (rounded up to whole steps) at the end train at
    `closing_bits`; the `cycles` cycles fill the steps before them.
    """

    total_steps: int
    min_bits: int
    max_bits: int
    cycles: int
    closing_fraction: float = 0.0
    closing_bits: int = 1

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {self.total_steps}")
        if self.cycles < 1:
            raise ValueError(f"cycles must be at least 1, got {self.cycles}")
        if self.min_bits > self.max_bits:
            raise ValueError(f"min_bits {self.min_bits} > max_bits {self.max_bits}")
        if not 0.0 <= self.closing_fraction < 1.0:
            raise ValueError(f"closing_fraction must be in [0, 1), got {self.closing_fraction}")

    @property
    def closing_steps(self) -> int:
        return math.ceil(self.closing_fraction * self.total_steps)

    @property
    def cycling_steps(self) -> int:
        return max(self.total_steps - self.closing_steps, 1)

    def __call__(self, step: int) -> int:
        if self.closing_steps and step >= self.total_steps - self.closing_steps:
            return self.closing_bits
        return cosine_cycle_bits(
            step,
            total_steps=self.cycling_steps,
            min_bits=self.min_bits,
            max_bits=self.max_bits,
            cycles=self.cycles,
        )


def time_shares(schedule: Schedule, total_steps: int) -> dict[int, float]:
    """Fraction of the steps spent at each bit width, sorted by bits."""
    counts = Counter(schedule(step) for step in range(total_steps))
    return {bits: counts[bits] / total_steps for bits in sorted(counts)}


def mean_bits(schedule: Schedule, total_steps: int) -> float:
    return sum(schedule(step) for step in range(total_steps)) / total_steps
