"""EDST Ensemble (paper §3.2.2, Algorithm 3, App. C): M free tickets from one sparse run.

One exploration phase of t_ex epochs of dynamic sparse training at lr 0.1, then M refinement
phases of t_re epochs at lower learning rates (`refinement_lr_factors` for
`refinement_lr_epochs` each: on CIFAR 0.01 then 0.001 for half a phase each, the official
code's milestones). When a refinement phase ends, its converged subnetwork is saved as a ticket
together with its mask (a `MemberCollector` at the phase ends); the model then escapes its
basin by a global exploration (`Escape`): prune the fraction q = 0.8 of each layer's active
weights and regrow as many (by dense gradient, as in ordinary RigL steps), and the next phase
refines from there. Ordinary DST (p, dT) continues in every phase; a cosine-annealed p restarts
in each phase (the official ImageNet code), so the last tickets still explore. A ticket is
saved when its phase ends: the phase's last weights, or under the authors' protocol
(`checkpoint_selection.rule = 'best_validation'`, gin/protocol/authors.gin) its weights and
mask of best validation accuracy within the phase (`main_EDST.py` keeps `model_k.pth` at
`val_acc > best_acc` and resets `best_acc` at each phase start); never anything on test data.

The escape regrows as the spec's `growth` says (random regrowth, App. J / Table 10, needs no
dense gradient). `SparsitySpec.exploration = False` (the ablation of §5.3, Table 5: "without
any parameter exploration") turns off both the regular prune-and-grow and the escapes: the
tickets share the initial mask and differ only by their place on the one trajectory.
"""
import gin

from harness.engine import scale
from harness.core.errors import UserError
from harness.flops import sparse_forward_flops, training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.engine.schedules import Piecewise, collection_steps, compose
from harness.engine.train import Hook, Trainer, TrainState
from methods.base import METHODS, FitContext, Method, check_members
from methods.sparse.masking import Masking, SparsitySpec, check_sparsity


class Escape(Hook):
    """EDST's global exploration (Algorithm 3): at each of `points` (fractions of the run; the
    ends of all refinement phases but the last) prune and regrow the fraction `fraction` of
    every layer's active weights by dense gradient. Also restarts the masking's prune-rate
    schedule at `phase_starts` (fractions of the run; `EDSTEnsemble.prune_rate_restarts`)."""

    def __init__(self, masking: Masking, points, phase_starts, fraction: float):
        self.masking = masking
        self.points = tuple(points)
        self.phase_starts = tuple(phase_starts)
        self.fraction = fraction
        self.steps: list[int] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.steps = collection_steps(self.points, state.total_steps)
        if self.masking.growth == "gradient":  # the escape grows by dense gradient
            for step in self.steps:
                self.masking.request_dense_grads(step)
        self.masking.restart_prune_rate_at(collection_steps(self.phase_starts,
                                                            state.total_steps))

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.step in self.steps:
            self.masking.apply_masks()
            self.masking.prune_and_grow(self.fraction)


PRUNE_RATE_RESTARTS = ("escapes", "phases")


@METHODS.register("edst")
@gin.configurable
class EDSTEnsemble(Method):
    """EDST Ensemble (Algorithm 3): M sparse tickets from one run, exploration then refinements.

    `prune_rate_restarts`: where a cosine prune rate (ImageNet, App. C) restarts its annealing.
    The paper is silent; the official code (`ImageNet/main.py` main: CosineDecay over the first
    100 epochs; train_loop: a new CosineDecay over 70 epochs at epochs 100/170/240) anneals once
    over the exploration and the first refinement and restarts at every escape: 'escapes'
    (default). 'phases' restarts at every phase start, the end of exploration included."""

    name = "edst"
    display_name = "EDST Ensemble"

    def __init__(self, num_members: int = 3, sparsity: float = 0.8,
                 exploration_epochs: int = 150, refinement_epochs: int = 100,
                 escape_fraction: float = 0.8, refinement_lr_factors: tuple = (0.1, 0.01),
                 refinement_lr_epochs: tuple = (50, 50), prune_rate_restarts: str = "escapes"):
        check_members("EDSTEnsemble", num_members)
        check_sparsity("EDSTEnsemble", sparsity)
        if exploration_epochs < 1 or refinement_epochs < 1:
            raise UserError("EDSTEnsemble.exploration_epochs and refinement_epochs must be >= 1")
        if not 0 < escape_fraction <= 1:
            raise UserError(f"EDSTEnsemble.escape_fraction (q) must be in (0, 1], got "
                            f"{escape_fraction}")
        if (len(refinement_lr_factors) != len(refinement_lr_epochs)
                or sum(refinement_lr_epochs) != refinement_epochs
                or any(epochs <= 0 for epochs in refinement_lr_epochs)):
            raise UserError(f"EDSTEnsemble.refinement_lr_epochs must give each of "
                            f"refinement_lr_factors {tuple(refinement_lr_factors)} a positive "
                            f"number of epochs summing to refinement_epochs = "
                            f"{refinement_epochs}; got {tuple(refinement_lr_epochs)}")
        self.num_members = num_members
        self.sparsity = sparsity
        self.spec = SparsitySpec(sparsity)
        self.exploration_epochs = exploration_epochs
        self.refinement_epochs = refinement_epochs
        self.escape_fraction = escape_fraction
        self.refinement_lr_factors = tuple(refinement_lr_factors)
        self.refinement_lr_epochs = tuple(refinement_lr_epochs)
        if prune_rate_restarts not in PRUNE_RATE_RESTARTS:
            raise UserError(f"EDSTEnsemble.prune_rate_restarts must be one of "
                            f"{', '.join(PRUNE_RATE_RESTARTS)}, got {prune_rate_restarts!r}")
        self.prune_rate_restarts = prune_rate_restarts

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
            self.spec.configuration(context.layer_shapes)
            compose(self.schedule(), Trainer().lr_schedule)
        except ValueError as error:
            raise UserError(str(error)) from error

    def phase_end_epochs(self) -> list[int]:
        """Epoch (at the configured scale) at which each refinement phase ends."""
        explore, refine = scale.epochs(self.exploration_epochs), scale.epochs(self.refinement_epochs)
        return [explore + (ticket + 1) * refine for ticket in range(self.num_members)]

    def refinement_starts(self) -> list[float]:
        """Fraction of the run at which each refinement phase starts (the first one: where the
        exploration ends)."""
        total = self.phase_end_epochs()[-1]
        refine = scale.epochs(self.refinement_epochs)
        return [(end - refine) / total for end in self.phase_end_epochs()]

    def trajectory_spans(self) -> list[tuple[str, int, int | None]]:
        """Ticket k's trajectory: its refinement phase of the one run (after the exploration
        and the earlier phases, up to the ticket)."""
        refine = scale.epochs(self.refinement_epochs)
        return [(self.name, end - refine, end) for end in self.phase_end_epochs()]

    def schedule(self) -> Piecewise:
        """lr multipliers: 1 while exploring, then in each refinement phase the refinement
        factors for their share of the phase."""
        ends = self.phase_end_epochs()
        total, refine = ends[-1], ends[0] - scale.epochs(self.exploration_epochs)
        boundaries, values = [], [1.0]
        for end in ends:
            start = end - refine
            for factor, epochs in zip(self.refinement_lr_factors, self.refinement_lr_epochs):
                boundaries.append(start / total)
                values.append(factor)
                start += refine * epochs / self.refinement_epochs
        return Piecewise(boundaries, values)

    def fit(self, context: FitContext) -> Predictor:
        seed = context.member_seed(0)
        model = context.build_model(seed)
        masking = Masking(model, self.spec, seed=seed)
        total = self.phase_end_epochs()[-1]
        ends = [end / total for end in self.phase_end_epochs()]

        def ticket() -> dict:
            masking.apply_masks()
            return {"masks": masking.state_dict()["masks"]}

        refinements = self.refinement_starts()
        restarts = ends[:-1] if self.prune_rate_restarts == "escapes" else refinements
        escape = ([Escape(masking, ends[:-1], restarts, self.escape_fraction)]
                  if self.spec.exploration else [])
        # The collector first: a ticket is saved as its phase left it, before the escape or a
        # regular prune-and-grow on the same step. Under a best-validation selection each
        # ticket is its refinement phase's best (`main_EDST.py` resets best_acc at every phase
        # start), scored before the escape.
        hooks = [context.collector(ends, ticket, phase_starts=refinements), *escape, masking]
        context.stage("edst", model, seed=seed, hooks=hooks, epochs=total,
                      schedule=self.schedule())
        tickets = []
        for index in range(self.num_members):
            member = context.build_model(seed)
            member.masks = context.load_member(index, member)["masks"]
            tickets.append(member)
        return MemberEnsemble(tickets)

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        configuration = self.spec.configuration(context.layer_shapes)
        sparse = sparse_forward_flops(context.layer_flops, configuration.densities)
        steps = context.steps(self.phase_end_epochs()[-1])
        train = training_flops(sparse, context.dense_forward, steps, context.batch_size,
                               configuration.dense_gradient_interval)
        # Each escape by gradient computes one dense weight gradient to grow by (cost f_D - f_S
        # on top); random regrowth needs none, and without exploration there is no escape.
        if self.spec.exploration and self.spec.growth == "gradient":
            escapes = self.num_members - 1
            train += escapes * context.batch_size * (context.dense_forward - sparse)
        return FlopsPlan(train, (sparse,) * self.num_members)
