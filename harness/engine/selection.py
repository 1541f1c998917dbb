"""Which weights a training stage keeps: those of its last step, or those of the epoch with the
best validation accuracy (the FreeTickets authors' protocol, paper §4 / App. C).

The authors' `main_DST.py`, `main_EDST.py` and `main_PF.py` (VITA-Group/FreeTickets) default
to `--valid_split 0.1`: they train on 45k CIFAR images and after every epoch keep the model if
its validation accuracy beats the best so far (`if val_acc > best_acc`), and `main_EDST.py`
resets `best_acc` at every refinement phase's start, so each ticket is its phase's best. The
rows the paper quotes from uncertainty-baselines (Havasi et al. 2021) train on the full train
set and report the last checkpoint. `checkpoint_selection` names the rule of a run; a
protocol file (gin/protocol/) sets it together with `Experiment.validation_fraction`.

Selection only ever reads the validation split held out of the training set: asking for it
without one is an error (`require_validation`), never a fallback to the test set.
"""
from typing import Callable, Sequence

import gin
import torch
from torch import nn

from harness.core.errors import UserError
from harness.engine.schedules import collection_steps
from harness.engine.train import Hook, TrainState

LAST = "last"
BEST_VALIDATION = "best_validation"
RULES = (LAST, BEST_VALIDATION)


@gin.configurable
def checkpoint_selection(rule: str = LAST) -> str:
    """The run's rule: 'last' keeps each stage's (each phase's) final weights;
    'best_validation' keeps those of its epoch of best validation accuracy."""
    if rule not in RULES:
        raise UserError(f"checkpoint_selection.rule must be one of "
                        f"{', '.join(map(repr, RULES))}, got {rule!r}")
    return rule


def require_validation(has_validation: bool) -> None:
    """The one check that a best-validation selection has its held-out split."""
    if checkpoint_selection() == BEST_VALIDATION and not has_validation:
        raise UserError("checkpoint_selection.rule = 'best_validation' needs a validation "
                        "split: set Experiment.validation_fraction > 0 (the test set is never "
                        "used to select)")


Snapshot = dict  # a candidate's weights ('model') and the stage's extras at that step


class BestValidation(Hook):
    """Keeps, per phase, the snapshot of the best-scoring candidate and hands it to `keep` at
    the phase's end. A phase runs from `starts[k]` to `ends[k]` (fractions of the run); its
    candidates are the epoch ends within it and its last step, scored as each step left the
    model: put this hook first, before any hook that changes the model on the same step
    (EDST's escape, a prune-and-grow). A tie keeps the earlier candidate, as the authors'
    strict `val_acc > best_acc`.

    `score` runs under a forked RNG, so that selecting never changes the trajectory (MC
    dropout draws at test). The best snapshots so far are part of the hook's state, saved in
    every training checkpoint: a resumed run keeps the same ones."""

    def __init__(self, score: Callable[[nn.Module], float],
                 snapshot: Callable[[nn.Module], Snapshot], starts: Sequence[float],
                 ends: Sequence[float], keep: Callable[[int, Snapshot], None]):
        self.score = score
        self.snapshot = snapshot
        self.starts, self.ends = tuple(starts), tuple(ends)
        self.keep = keep
        self.best: dict[int, tuple[float, Snapshot]] = {}
        self.bounds: list[tuple[int, int]] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.bounds = list(zip(collection_steps(self.starts, state.total_steps),
                               collection_steps(self.ends, state.total_steps)))

    def after_optimizer_step(self, state: TrainState) -> None:
        for phase, (start, end) in enumerate(self.bounds):
            if start < state.step <= end and (state.step % state.steps_per_epoch == 0
                                              or state.step == end):
                self._consider(phase, state)
                if state.step == end:
                    self.keep(phase, self.best.pop(phase)[1])

    def _consider(self, phase: int, state: TrainState) -> None:
        device = next(state.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            value = self.score(state.model)
        if phase not in self.best or value > self.best[phase][0]:
            self.best[phase] = (value, _detached(self.snapshot(state.model)))

    def state_dict(self) -> dict:
        return {"best": {phase: {"score": value, "snapshot": snapshot}
                         for phase, (value, snapshot) in self.best.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.best = {int(phase): (kept["score"], kept["snapshot"])
                     for phase, kept in state["best"].items()}


def _detached(content):
    """A copy of a snapshot that later steps cannot change."""
    if torch.is_tensor(content):
        return content.detach().clone()
    if isinstance(content, dict):
        return {key: _detached(value) for key, value in content.items()}
    return content
