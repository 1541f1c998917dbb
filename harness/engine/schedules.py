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


class Warmup:
    """A method's own schedule under the trainer's linear warm-up (`Trainer.lr_schedule`'s
    `warmup`): the method decides the shape, the trainer how training starts."""

    def __init__(self, schedule, warmup: float):
        self.schedule = schedule
        self.warmup = warmup

    def __call__(self, progress: float) -> float:
        return self.schedule(progress) * _warmup_factor(progress, self.warmup)

    @property
    def collection_points(self) -> tuple[float, ...]:
        return self.schedule.collection_points


class Continued:
    """The rest of `schedule` from `start` (a fraction of its run) on, over a run of the
    remaining length: a run rewound to a point of another continues that run's schedule, warm-up
    included (open_lth's lottery-ticket rewinding), instead of starting it again."""

    includes_trainer_warmup = True

    def __init__(self, schedule, start: float):
        if not 0 <= start < 1:
            raise ValueError(f"a schedule continues from a fraction in [0, 1), got {start}")
        self.schedule = schedule
        self.start = start

    def __call__(self, progress: float) -> float:
        return self.schedule(self.start + progress * (1 - self.start))


def compose(method_schedule, trainer_schedule):
    """The schedule of a run whose method brings its own: the method's shape with the trainer's
    warm-up (unless the method's already includes it, `Continued`). A trainer schedule whose
    warm-up is unknown (no `warmup`), or a warm-up on both, cannot be combined and is refused
    rather than silently dropped."""
    if getattr(method_schedule, "includes_trainer_warmup", False):
        return method_schedule
    if not hasattr(trainer_schedule, "warmup"):
        raise ValueError(f"the method brings its own learning-rate schedule and only the "
                         f"warm-up of Trainer.lr_schedule carries over, but "
                         f"{type(trainer_schedule).__name__} has no `warmup`; use "
                         f"MultiStep, Cosine or Constant")
    if trainer_schedule.warmup <= 0:
        return method_schedule
    if getattr(method_schedule, "warmup", 0) > 0:
        raise ValueError("both the method's schedule and Trainer.lr_schedule warm up; keep "
                         "one of the two warm-ups")
    return Warmup(method_schedule, trainer_schedule.warmup)


def collection_steps(points, total_steps: int) -> list[int]:
    """For each point (a fraction of the run), the optimizer steps done before the first step
    whose progress reaches it: the step a cyclic schedule's cycle end (or minimum) falls on,
    decided by the same float comparison as the schedule's own, so the two always agree."""
    steps = []
    for point in points:
        step = min(total_steps, math.ceil(point * total_steps))
        while step > 0 and (step - 1) / total_steps >= point:
            step -= 1
        while step < total_steps and step / total_steps < point:
            step += 1
        steps.append(step)
    return steps


class CosineRestarts:
    """Snapshot Ensembles' cyclic cosine annealing (Huang et al. 2017, Eq. 2): the run splits
    into `cycles` equal cycles, in each the multiplier falls from 1 to 0 as
    (cos(pi * t) + 1) / 2, t the fraction of the cycle done, then restarts. A snapshot is
    taken at each cycle's end (`collection_points`)."""

    def __init__(self, cycles: int):
        if cycles < 1:
            raise ValueError(f"CosineRestarts needs cycles >= 1, got {cycles}")
        self.cycles = cycles
        self.ends = tuple(k / cycles for k in range(1, cycles + 1))

    def __call__(self, progress: float) -> float:
        cycle = bisect.bisect_right(self.ends[:-1], progress)
        start = 0.0 if cycle == 0 else self.ends[cycle - 1]
        done = (progress - start) / (self.ends[cycle] - start)
        return 0.5 * (math.cos(math.pi * min(done, 1.0)) + 1)

    @property
    def collection_points(self) -> tuple[float, ...]:
        return self.ends

    @property
    def phase_starts(self) -> tuple[float, ...]:
        """Where each snapshot's cycle begins (harness/engine/selection.py)."""
        return (0.0, *self.ends[:-1])


class FastGeometric:
    """Fast Geometric Ensembling (Garipov et al. 2018, Sec. 5; dnn-mode-connectivity `train.py`
    and `fge.py`): pre-training for the first `pretrain` fraction of the run with their
    schedule for the whole budget (1 up to half the budget, then linearly down to 0.01 at 90%),
    then `cycles` equal cycles in which the multiplier goes linearly from `high` to `low` at
    mid-cycle and back to `high`. A model is collected at each cycle's lowest learning rate
    (`collection_points`: the middle of each cycle)."""

    def __init__(self, pretrain: float, cycles: int, high: float, low: float):
        if not 0 < pretrain < 1 or cycles < 1 or not 0 < low <= high:
            raise ValueError(f"FastGeometric needs 0 < pretrain < 1, cycles >= 1 and "
                             f"0 < low <= high; got pretrain={pretrain}, cycles={cycles}, "
                             f"high={high}, low={low}")
        self.pretrain = pretrain
        self.cycles = cycles
        self.high = high
        self.low = low
        self.length = (1 - pretrain) / cycles

    @staticmethod
    def pretrain_factor(progress: float) -> float:
        """dnn-mode-connectivity train.py's `learning_rate_schedule` at budget fraction
        `progress`."""
        if progress <= 0.5:
            return 1.0
        if progress <= 0.9:
            return 1.0 - (progress - 0.5) / 0.4 * 0.99
        return 0.01

    def __call__(self, progress: float) -> float:
        if progress < self.pretrain:
            return self.pretrain_factor(progress)
        done = ((progress - self.pretrain) / self.length) % 1.0
        if done < 0.5:
            return self.high * (1 - 2 * done) + self.low * 2 * done
        return self.high * (2 * done - 1) + self.low * (2 - 2 * done)

    @property
    def collection_points(self) -> tuple[float, ...]:
        return tuple(self.pretrain + (k + 0.5) * self.length for k in range(self.cycles))

    @property
    def phase_starts(self) -> tuple[float, ...]:
        """Where each collected model's cycle begins (harness/engine/selection.py)."""
        return tuple(self.pretrain + k * self.length for k in range(self.cycles))
