"""Learning-rate schedules as functions of training progress.

A schedule maps progress in [0, 1] (optimizer steps done / total steps of the run) to a
multiplier of the base learning rate. Milestones are fractions of the run rather than epoch
numbers, so a scale that shortens training (gin/scale/*.gin) keeps the shape of the schedule.
"""
import bisect
import math
from typing import Sequence

import gin


def _warmup_factor(progress: float, warmup: float) -> float:
    """Linear warm-up from ~0 to 1 over the first `warmup` fraction (Goyal et al. 2017)."""
    if warmup <= 0 or progress >= warmup:
        return 1.0
    return max(progress / warmup, 1e-3)


@gin.configurable
class Constant:
    def __init__(self, warmup: float = 0.0):
        self.warmup = warmup

    def __call__(self, progress: float) -> float:
        return _warmup_factor(progress, self.warmup)


@gin.configurable
class MultiStep:
    """Decays by `gamma` at each milestone (fractions of the run).

    The paper's CIFAR recipe (App. C): lr 0.1 decayed by 10 at 50% and 75% of training; its
    ImageNet recipe: 5-epoch warm-up, decay at epochs 60/120/180 of 200.
    """

    def __init__(self, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
                 warmup: float = 0.0):
        if list(milestones) != sorted(milestones) or any(not 0 < m < 1 for m in milestones):
            raise ValueError(f"MultiStep.milestones must be increasing fractions in (0, 1), "
                             f"got {tuple(milestones)}")
        self.milestones = tuple(milestones)
        self.gamma = gamma
        self.warmup = warmup

    def __call__(self, progress: float) -> float:
        decays = bisect.bisect_right(self.milestones, progress)
        return self.gamma ** decays * _warmup_factor(progress, self.warmup)


@gin.configurable
class Cosine:
    """Cosine decay from 1 to `final` over the run."""

    def __init__(self, final: float = 0.0, warmup: float = 0.0):
        self.final = final
        self.warmup = warmup

    def __call__(self, progress: float) -> float:
        cosine = self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))
        return cosine * _warmup_factor(progress, self.warmup)


class Piecewise:
    """Constant multipliers on consecutive spans of the run: `boundaries` are the fractions at
    which the next value starts (used by methods with phases, e.g. EDST)."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float]):
        if len(values) != len(boundaries) + 1:
            raise ValueError("Piecewise needs one more value than boundaries")
        self.boundaries = tuple(boundaries)
        self.values = tuple(values)

    def __call__(self, progress: float) -> float:
        return self.values[bisect.bisect_right(self.boundaries, progress)]
