"""The pruning ensembles FreeTickets compares against (paper §4, footnote 2, App. C).

  * LTR Ensemble (Frankle et al. 2020, lottery tickets with rewinding): one dense run pruned
    gradually (`GradualPruning`, Zhu & Gupta 2017) to S; its final mask is retrained M times
    from the weights at `rewind_fraction` of that run, each retraining with its own seed (data
    order). Members share one mask and differ in weights. 1 + M training runs. A retraining
    is a whole run with the schedule from its start (`rewind_schedule = 'restart'`, the
    default), or, as open_lth rewinds, the rest of the run from the rewind point on with the
    schedule continued from there ('continue': the remaining epochs, rounded to whole ones).
  * PF Ensemble (Han et al. 2015, prune and fine-tune): M dense runs, each pruned by global
    magnitude to S and fine-tuned with its own seed, by default at the constant lr of the
    authors' PF command (`finetune_lr_factors`). Masks differ per member. 2 M training runs.

Every member carries its mask (`member.masks`, and in its stage's result) for export and FLOPs.
Under a best-validation selection (gin/protocol/authors.gin) each member stage (`retrain_k`,
`dense_k`, `finetune_k`) keeps its best-validation weights; the authors' `main_LTR.py` and
`main_individual.py` (PF's dense runs) selected on the TEST set instead, which we never do.
Stages: LTR `dense` (the pruned run; the rewind weights are its collector's member 0) then
`retrain_k`; PF `dense_k` then `finetune_k`.
"""
import math

import gin

from harness.engine import scale
from harness.core.errors import UserError
from harness.flops import sparse_forward_flops, training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.engine.schedules import Continued, Piecewise, compose
from harness.engine.train import Trainer
from methods.base import METHODS, FitContext, Method, check_members
from methods.sparse.distributions import masked_shapes, prunable_layers
from methods.sparse.masking import Masking, SparsitySpec, check_sparsity
from methods.sparse.pruning import (GradualPruning, magnitude_masks, planned_pruning_flops,
                                    pruning_steps)


REWIND_SCHEDULES = ("restart", "continue")


def _fixed_mask(model, spec: SparsitySpec, masks: dict, seed: int) -> Masking:
    """A masking hook that keeps `masks` as they are (no exploration)."""
    masking = Masking(model, spec, seed=seed, masks=masks)
    masking.freeze()
    return masking


@METHODS.register("ltr")
@gin.configurable
class LTREnsemble(Method):
    """LTR Ensemble: one dense run pruned gradually, its mask retrained M times from rewinding."""

    name = "ltr"
    display_name = "LTR Ensemble"

    def __init__(self, num_members: int = 3, sparsity: float = 0.8,
                 rewind_fraction: float = 0.05, pruning_start: float = 0.1,
                 pruning_end: float = 0.6, prunings: int = 48, rewind_schedule: str = "restart"):
        check_members("LTREnsemble", num_members)
        check_sparsity("LTREnsemble", sparsity)
        if not 0 <= rewind_fraction <= pruning_start:
            raise UserError(f"LTREnsemble.rewind_fraction ({rewind_fraction}) must be in "
                            f"[0, pruning_start = {pruning_start}]: the weights rewound to "
                            f"must be from before any pruning")
        if not pruning_start < pruning_end <= 1:
            raise UserError(f"LTREnsemble needs pruning_start < pruning_end <= 1 (fractions "
                            f"of the run; the pruning schedule must end within training), got "
                            f"{pruning_start} and {pruning_end}")
        if prunings < 1:
            raise UserError(f"LTREnsemble.prunings must be >= 1, got {prunings}")
        if rewind_schedule not in REWIND_SCHEDULES:
            raise UserError(f"LTREnsemble.rewind_schedule must be one of "
                            f"{', '.join(map(repr, REWIND_SCHEDULES))}, got {rewind_schedule!r}")
        self.rewind_schedule = rewind_schedule
        self.num_members = num_members
        self.sparsity = sparsity
        self.spec = SparsitySpec(sparsity)  # which layers are masked (dense_first_layer)
        self.rewind_fraction = rewind_fraction
        self.pruning_start, self.pruning_end, self.prunings = pruning_start, pruning_end, prunings

    @property
    def training_runs(self) -> float:
        return 1.0 + self.num_members

    def validate(self, context: PlanContext) -> None:
        if not pruning_steps(self.pruning_start, self.pruning_end, self.prunings,
                             context.steps()):
            raise UserError(f"LTREnsemble: {self.prunings} prunings between "
                            f"{self.pruning_start} and {self.pruning_end} of the run do not fit "
                            f"in its {context.steps()} optimizer steps; lower "
                            f"LTREnsemble.prunings or train longer")

    def retrain_epochs(self, epochs: int) -> int:
        """Epochs of a retraining, for a run of `epochs` (both at the configured scale)."""
        if self.rewind_schedule == "restart":
            return epochs
        return max(1, epochs - round(self.rewind_fraction * epochs))

    def retrain_schedule(self, trainer: Trainer):
        """A retraining's own schedule; None (the trainer's, from its start) to restart."""
        if self.rewind_schedule == "restart":
            return None
        return Continued(trainer.lr_schedule, self.rewind_fraction)

    def _pruning(self, layers) -> GradualPruning:
        return GradualPruning(layers, self.sparsity, self.pruning_start, self.pruning_end,
                              self.prunings)

    def fit(self, context: FitContext) -> Predictor:
        seed = context.member_seed(0)
        model = context.build_model(seed)
        pruning = self._pruning(prunable_layers(model, self.spec.dense_first_layer))
        # The collector first, so the rewind weights are saved as the step left them. No
        # checkpoint selection here: no member is made of this run's weights, and its mask
        # is the final one, at sparsity S.
        masks = context.stage("dense", model, seed=seed,
                              hooks=[context.collector([self.rewind_fraction]), pruning],
                              extra=lambda: pruning.state_dict(), select=False)["masks"]
        members = []
        for index in range(self.num_members):
            member = context.build_model(seed)
            context.load_member(0, member)  # the rewind point
            retrain_seed = context.member_seed(1 + index)
            context.stage(f"retrain_{index}", member, seed=retrain_seed,
                          hooks=[_fixed_mask(member, self.spec, masks, retrain_seed)],
                          epochs=self.retrain_epochs(context.trainer.scaled_epochs),
                          schedule=self.retrain_schedule(context.trainer),
                          extra=lambda: {"masks": masks})
            members.append(member)
        return MemberEnsemble(members)

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        steps = context.steps()
        shapes = masked_shapes(context.layer_shapes, self.spec.dense_first_layer)
        dense = planned_pruning_flops(context.layer_flops, shapes, self.sparsity,
                                      self.pruning_start, self.pruning_end, self.prunings,
                                      steps, context.batch_size)
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        sparse = sparse_forward_flops(context.layer_flops, {  # layer-wise GMP's final counts
            name: round((1 - self.sparsity) * size) / size for name, size in sizes.items()})
        retrain = training_flops(sparse, context.dense_forward,
                                 context.steps(self.retrain_epochs(context.epochs)),
                                 context.batch_size)
        return FlopsPlan(dense + self.num_members * retrain, (sparse,) * self.num_members)


@METHODS.register("pf")
@gin.configurable
class PFEnsemble(Method):
    """PF Ensemble: M dense networks, each pruned once by magnitude and fine-tuned."""

    name = "pf"
    display_name = "PF Ensemble"

    def __init__(self, num_members: int = 3, sparsity: float = 0.8,
                 finetune_epochs: int = 250, finetune_lr_factors: tuple = (0.01,)):
        check_members("PFEnsemble", num_members)
        check_sparsity("PFEnsemble", sparsity)
        if finetune_epochs < 1 or not finetune_lr_factors:
            raise UserError(f"PFEnsemble needs finetune_epochs >= 1 and at least one "
                            f"finetune_lr_factor, got {finetune_epochs} and "
                            f"{tuple(finetune_lr_factors)}")
        self.num_members = num_members
        self.sparsity = sparsity
        self.spec = SparsitySpec(sparsity)  # which layers are masked (dense_first_layer)
        self.finetune_epochs = finetune_epochs
        self.finetune_lr_factors = tuple(finetune_lr_factors)

    @property
    def training_runs(self) -> float:
        return 2.0 * self.num_members

    def finetune_schedule(self) -> Piecewise:
        """lr multipliers of a fine-tuning run: each factor for an equal share of it."""
        count = len(self.finetune_lr_factors)
        return Piecewise([k / count for k in range(1, count)], self.finetune_lr_factors)

    def validate(self, context: PlanContext) -> None:
        try:
            compose(self.finetune_schedule(), Trainer().lr_schedule)
        except ValueError as error:
            raise UserError(str(error)) from error

    def fit(self, context: FitContext) -> Predictor:
        members = []
        for index in range(self.num_members):
            seed = context.member_seed(index)
            model = context.build_model(seed)
            context.stage(f"dense_{index}", model, seed=seed)
            masks = magnitude_masks(prunable_layers(model, self.spec.dense_first_layer),
                                    self.sparsity, "global")
            finetune_seed = context.member_seed(self.num_members + index)
            context.stage(f"finetune_{index}", model, seed=finetune_seed,
                          hooks=[_fixed_mask(model, self.spec, masks, finetune_seed)],
                          epochs=scale.epochs(self.finetune_epochs),
                          schedule=self.finetune_schedule(), extra=lambda: {"masks": masks})
            members.append(model)
        return MemberEnsemble(members)

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        """Global pruning's per-layer densities depend on the trained weights, so the plan
        takes every layer at 1 - S; the run's ledger measures the real ones (report notes)."""
        dense = training_flops(context.dense_forward, context.dense_forward, context.steps(),
                               context.batch_size)
        shapes = masked_shapes(context.layer_shapes, self.spec.dense_first_layer)
        sparse = sparse_forward_flops(context.layer_flops, {
            name: 1 - self.sparsity for name in shapes})
        finetune = training_flops(sparse, context.dense_forward,
                                  context.steps(scale.epochs(self.finetune_epochs)),
                                  context.batch_size)
        return FlopsPlan(self.num_members * (dense + finetune), (sparse,) * self.num_members)
