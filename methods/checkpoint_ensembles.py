"""Ensembles collected along one dense training run (paper App. E, Table 6): Snapshot
Ensembles (Huang et al. 2017) and Fast Geometric Ensembling (Garipov et al. 2018).

Both are one run of a dense network with a cyclic learning-rate schedule that knows where its
members are (`collection_points`): a `MemberCollector` saves the model there. Members are
dense, so test FLOPs are M x the dense model's; training FLOPs are the one run's, from its
ledger (Table 6: 200 epochs, 0.80x the 250-epoch reference).
"""
import gin
import torch
from torch import nn

from harness.data.arrays import ArrayDataset
from harness.core.errors import UserError
from harness.flops import training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.engine.schedules import CosineRestarts, FastGeometric, collection_steps, compose
from harness.engine.train import Trainer
from methods.base import METHODS, FitContext, Method, check_members


class TrajectoryEnsemble(Method):
    """M dense members saved at the collection points of one run's cyclic schedule."""

    def __init__(self, num_members: int):
        check_members(type(self).__name__, num_members)
        self.num_members = num_members

    @property
    def training_runs(self) -> float:
        return 1.0

    def schedule(self):
        raise NotImplementedError

    def validate(self, context: PlanContext) -> None:
        too_few = UserError(f"{type(self).__name__}: {context.steps()} optimizer steps are too "
                            f"few for {self.num_members} members at distinct steps; train "
                            f"longer (Trainer.epochs, epoch_factor) or lower num_members")
        # before the schedule, which lists every member's collection point
        if self.num_members > context.steps():
            raise too_few
        try:
            schedule = compose(self.schedule(), Trainer().lr_schedule)
        except ValueError as error:
            raise UserError(str(error)) from error
        steps = collection_steps(schedule.collection_points, context.steps())
        if steps[0] < 1 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise too_few

    def prepare_member(self, context: FitContext, member: nn.Module, index: int) -> None:
        """Anything a collected member needs before it predicts; nothing here."""

    def fit(self, context: FitContext) -> Predictor:
        seed = context.member_seed(0)
        model = context.build_model(seed)
        schedule = self.schedule()
        context.stage(self.name, model, seed=seed,
                      hooks=[context.collector(schedule.collection_points,
                                               phase_starts=schedule.phase_starts)],
                      schedule=schedule)
        members = []
        for index in range(self.num_members):
            member = context.build_model(seed)
            context.load_member(index, member)
            self.prepare_member(context, member, index)
            members.append(member)
        return MemberEnsemble(members)

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        dense = context.dense_forward
        return FlopsPlan(training_flops(dense, dense, context.steps(), context.batch_size),
                         (dense,) * self.num_members)


@METHODS.register("snapshot")
@gin.configurable
class SnapshotEnsemble(TrajectoryEnsemble):
    """Snapshot Ensembles (Huang et al. 2017): cosine annealing restarted M times within the
    run (`CosineRestarts`), one snapshot at the end of each cycle."""

    name = "snapshot"
    display_name = "Snapshot"

    def __init__(self, num_members: int = 12):
        super().__init__(num_members)

    def schedule(self) -> CosineRestarts:
        return CosineRestarts(self.num_members)


@METHODS.register("fge")
@gin.configurable
class FastGeometricEnsemble(TrajectoryEnsemble):
    """Fast Geometric Ensembling (Garipov et al. 2018): pre-training, then M short cycles of a
    linear lr1 -> lr2 -> lr1 schedule (`FastGeometric`); a model is collected at each cycle's
    lowest learning rate and predicts with the BatchNorm running statistics its training left,
    as dnn-mode-connectivity's `fge.py` collects its predictions. `recompute_bn_statistics`
    recomputes them on the train set first (`recompute_batchnorm`, as that repository's
    `utils.bn_update` does for points on its curves and SWA does for averaged weights; not
    what `fge.py` does)."""

    name = "fge"
    display_name = "FGE"

    def __init__(self, num_members: int = 5, pretrain_fraction: float = 0.8,
                 high_factor: float = 0.5, low_factor: float = 0.1,
                 recompute_bn_statistics: bool = False):
        super().__init__(num_members)
        if not 0 < pretrain_fraction < 1 or not 0 < low_factor <= high_factor:
            raise UserError(f"FastGeometricEnsemble needs 0 < pretrain_fraction < 1 and "
                            f"0 < low_factor <= high_factor; got {pretrain_fraction}, "
                            f"{low_factor}, {high_factor}")
        self.pretrain_fraction = pretrain_fraction
        self.high_factor = high_factor
        self.low_factor = low_factor
        self.recompute_bn_statistics = recompute_bn_statistics

    def schedule(self) -> FastGeometric:
        return FastGeometric(self.pretrain_fraction, self.num_members, self.high_factor,
                             self.low_factor)

    def prepare_member(self, context: FitContext, member: nn.Module, index: int) -> None:
        if self.recompute_bn_statistics:
            recompute_batchnorm(member, context.train_set, context.trainer,
                                seed=context.member_seed(index))


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, train_set: ArrayDataset, trainer: Trainer,
                        seed: int) -> None:
    """BatchNorm running statistics as the exact average over one pass of the train set, in
    training batches with the training augmentation (dnn-mode-connectivity `utils.bn_update`:
    reset, momentum None = cumulative average, model in train mode). The forward passes are not
    training FLOPs (Table 6 counts none for them)."""
    norms = [module for module in model.modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    generator = torch.Generator(device=train_set.device).manual_seed(seed)
    torch.manual_seed(seed)  # dropout, if the model has any
    for images, _ in train_set.epoch_batches(trainer.batch_size, trainer.augment, generator):
        model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
