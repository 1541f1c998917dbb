"""EDST Ensemble (paper §3.2.2, Algorithm 3, App. C): M free tickets from one sparse run.

One exploration phase of t_ex epochs of dynamic sparse training at lr 0.1, then M refinement
phases of t_re epochs, each at lr 0.01 for its first half and 0.001 for its second (the
official code's milestones). When a refinement phase ends, its converged subnetwork is saved
as a ticket together with its mask; the model then escapes its basin by a global exploration:
prune the fraction q = 0.8 of each layer's active weights and regrow as many (by dense
gradient, as in ordinary RigL steps), and the next phase refines from there. Ordinary DST
(p, dT) continues in every phase. Tickets are saved when their phase ends; nothing is
selected on held-out or test data.
"""
import gin
from torch import nn

from harness import scale
from harness.errors import UserError
from harness.flops import sparse_forward_flops, training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.predictors import MemberEnsemble, Predictor
from harness.schedules import Piecewise
from harness.train import Hook, TrainState
from methods.base import METHODS, FitContext, Method
from methods.sparse.ensembles import check_sparsity
from methods.sparse.masking import Masking, mask_configuration


class TicketCollector(Hook):
    """Saves a ticket at the end of each refinement phase, then escapes (all but the last).

    Runs before Masking in the hook list, so a ticket is saved as its phase left it, before
    any regular prune-and-grow that might fall on the same step."""

    def __init__(self, masking: Masking, phase_end_epochs: list[int], escape_fraction: float,
                 save_ticket):
        self.masking = masking
        self.phase_end_epochs = phase_end_epochs
        self.escape_fraction = escape_fraction
        self.save_ticket = save_ticket
        self.phase_end_steps: list[int] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.phase_end_steps = [epoch * state.steps_per_epoch for epoch in self.phase_end_epochs]
        for step in self.phase_end_steps[:-1]:
            self.masking.request_dense_grads(step)  # the escape grows by dense gradient

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.step not in self.phase_end_steps:
            return
        ticket = self.phase_end_steps.index(state.step)
        self.masking.apply_masks()
        self.save_ticket(ticket, state.model, self.masking)
        if ticket < len(self.phase_end_steps) - 1:
            self.masking.prune_and_grow(self.escape_fraction)


@METHODS.register("edst")
@gin.configurable
class EDSTEnsemble(Method):
    name = "edst"

    def __init__(self, num_members: int = 3, sparsity: float = 0.8,
                 exploration_epochs: int = 150, refinement_epochs: int = 100,
                 escape_fraction: float = 0.8, refinement_lr_factors: tuple = (0.1, 0.01)):
        if num_members < 1:
            raise UserError(f"EDSTEnsemble.num_members must be >= 1, got {num_members}")
        check_sparsity("EDSTEnsemble", sparsity)
        if exploration_epochs < 1 or refinement_epochs < 1:
            raise UserError("EDSTEnsemble.exploration_epochs and refinement_epochs must be >= 1")
        if not 0 < escape_fraction <= 1:
            raise UserError(f"EDSTEnsemble.escape_fraction (q) must be in (0, 1], got "
                            f"{escape_fraction}")
        self.num_members = num_members
        self.sparsity = sparsity
        self.exploration_epochs = exploration_epochs
        self.refinement_epochs = refinement_epochs
        self.escape_fraction = escape_fraction
        self.refinement_lr_factors = tuple(refinement_lr_factors)

    @property
    def training_runs(self) -> float:
        return 1.0

    def validate(self, context: PlanContext) -> None:
        total = self.exploration_epochs + self.num_members * self.refinement_epochs
        if total != context.paper_epochs:
            raise UserError(
                f"EDST needs t_ex + M * t_re = epochs: {self.exploration_epochs} + "
                f"{self.num_members} * {self.refinement_epochs} = {total}, but Trainer.epochs "
                f"= {context.paper_epochs}")
        try:
            mask_configuration(context.layer_shapes, self.sparsity)
        except ValueError as error:
            raise UserError(str(error)) from error

    def phase_end_epochs(self) -> list[int]:
        """Epoch (at the configured scale) at which each refinement phase ends."""
        explore, refine = scale.epochs(self.exploration_epochs), scale.epochs(self.refinement_epochs)
        return [explore + (ticket + 1) * refine for ticket in range(self.num_members)]

    def schedule(self) -> Piecewise:
        """lr multipliers: 1 while exploring, then per phase the two refinement factors."""
        ends = self.phase_end_epochs()
        total, refine = ends[-1], ends[0] - scale.epochs(self.exploration_epochs)
        boundaries, values = [], [1.0]
        for end in ends:
            start = end - refine
            boundaries += [start / total, (start + refine / 2) / total]
            values += list(self.refinement_lr_factors)
        return Piecewise(boundaries, values)

    def fit(self, context: FitContext) -> Predictor:
        seed = context.member_seed(0)
        tickets = [context.build_model(seed) for _ in range(self.num_members)]
        if any(context.load_member(index, ticket) is None
               for index, ticket in enumerate(tickets)):
            model = context.build_model(seed)
            masking = Masking(model, self.sparsity, seed=seed)

            def save_ticket(index: int, network: nn.Module, masks: Masking) -> None:
                context.save_member(index, network, {"masks": masks.state_dict()["masks"]})

            collector = TicketCollector(masking, self.phase_end_epochs(), self.escape_fraction,
                                        save_ticket)
            context.train(model, tag="edst", seed=seed, hooks=[collector, masking],
                          epochs=self.phase_end_epochs()[-1], schedule=self.schedule())
            context.discard_resume("edst")
        for index, ticket in enumerate(tickets):
            saved = context.load_member(index, ticket)
            ticket.masks = saved["masks"]
        return MemberEnsemble(tickets)

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        configuration = mask_configuration(context.layer_shapes, self.sparsity)
        sparse = sparse_forward_flops(context.layer_flops, configuration.densities)
        steps = context.steps(self.phase_end_epochs()[-1])
        train = training_flops(sparse, context.dense_forward, steps, context.batch_size,
                               configuration.dense_gradient_interval)
        # Each escape computes one dense weight gradient to grow by (cost f_D - f_S on top).
        escapes = self.num_members - 1
        train += escapes * context.batch_size * (context.dense_forward - sparse)
        return FlopsPlan(train, (sparse,) * self.num_members)
