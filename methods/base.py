"""What every method shares: the registry, the context `fit` receives, and the template for
ensembles of independently trained members (dense ensemble, static and DST ensembles, ...)."""
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gin
import torch
from torch import nn

from harness.core import distributed, safe_load

from harness.engine import scale
from harness.engine.batching import BatchFormat, PlainBatch
from harness.data.arrays import ArrayDataset
from harness.core.errors import UserError, check_integer, first_line
from harness.flops import layer_forward_flops, ledger_for, training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.evaluation.history import RunHistory, validation_metrics
from harness.evaluation.predictors import MemberEnsemble, Predictor
from harness.core.registry import Registry
from harness.core.safe_load import UnsafeFile
from harness.store import paths
from harness.engine.schedules import collection_steps
from harness.engine.selection import (BEST_VALIDATION, BestValidation, checkpoint_selection,
                                      require_validation)
from harness.engine.train import (Hook, Objective, ParamGroups, Schedule, Trainer, TrainState,
                           classification_loss)


@dataclass
class Accounting:
    """Time, examples and FLOPs of a method's training stages.

    Each finished stage stores its own figures in its result file, written in one atomic step
    with its weights (`FitContext.stage`), and these totals are the sum over the stages a fit
    ran or found finished: a stage is counted once however often the run was interrupted.
    Seconds and examples cover the same span, the training kept in checkpoints: an epoch cut
    short by a crash is redone, and neither its seconds nor its examples count twice."""

    train_seconds: float = 0.0
    examples_seen: int = 0
    train_flops: float = 0.0
    histories: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)  # per stage, what its hooks recorded

    def add(self, stage: str, figures: dict) -> None:
        self.train_seconds += figures["train_seconds"]
        self.examples_seen += figures["examples_seen"]
        self.train_flops += figures["train_flops"]
        self.histories[stage] = figures["history"]
        # A stage result written before hooks recorded anything has no "records".
        self.records[stage] = figures.get("records", {})


class Stopwatch(Hook):
    """Training seconds of a run, carried in its checkpoints like the FLOPs ledger's counters,
    so that a resumed run counts the seconds of the same epochs as its examples."""

    def __init__(self):
        self.before = 0.0  # seconds of the checkpointed epochs of earlier processes
        self.start = time.perf_counter()

    def on_train_begin(self, state: TrainState) -> None:
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def paused(self):
        """Time spent within is not training (per-epoch validation, harness/evaluation/history.py)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - start

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start

    def state_dict(self) -> dict:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state: dict) -> None:
        self.before = state["seconds"]


class MemberCollector(Hook):
    """Saves the model as member k when optimizer step `steps[k]` is done: a cyclic schedule's
    cycle ends (Snapshot) or minima (FGE), EDST's phase ends. The steps are the schedule's
    `collection_points` (fractions of the run) on this run's step count
    (`schedules.collection_steps`). Put it first among the hooks, so that a member is saved as
    its step left it, before any other hook changes the model on that step.

    `phase_starts` (fractions of the run), where given, says where each member's phase
    begins: under a best-validation selection (harness/engine/selection.py) the stage then
    saves each phase's best weights in its place (`FitContext.stage`)."""

    def __init__(self, points: Sequence[float], snapshot: Callable[[nn.Module], dict],
                 write: Callable[[int, dict], None],
                 phase_starts: Sequence[float] | None = None):
        self.points = tuple(points)
        self.snapshot = snapshot
        self.write = write
        self.phase_starts = None if phase_starts is None else tuple(phase_starts)
        self.steps: list[int] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.steps = collection_steps(self.points, state.total_steps)

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.step in self.steps:
            self.write(self.steps.index(state.step), self.snapshot(state.model))


@gin.configurable
def trajectory_checkpoints(every_epochs: int = 0) -> int:
    """Every how many epochs (paper epochs, scaled like every length) each training stage
    saves its model to `checkpoints/trajectory/<stage>/epoch_<e>.pt`, for the training
    trajectories of paper §5.2 (Fig. 3: t-SNE of the test-set softmax outputs of checkpoints
    along each member's training); 0 saves none. Returns the interval in epochs as trained."""
    every = check_integer("trajectory_checkpoints.every_epochs", every_epochs, 0)
    return scale.epochs(every) if every else 0


@dataclass
class FitContext:
    """Everything a method needs to train: the configured trainer, the train set on its
    device, a model factory, the run's seed, and where checkpoints go.

    A method made of several trainings (M members; pre-training then cycles; prune then
    fine-tune) runs each as a named `stage`: a finished stage is loaded instead of trained, an
    interrupted one resumes from its last epoch, and its cost counts once in `accounting`."""

    trainer: Trainer
    train_set: ArrayDataset
    model_factory: Callable[..., nn.Module]  # options: harness.models.build_model
    seed: int
    checkpoint_dir: Path
    # Only load finished stages (a finished run scored again, harness/experiment/rescore.py): a stage
    # that has no result is an error, never a training.
    load_only: bool = False
    # The run's training curve (harness/evaluation/history.py); none where a caller keeps no run directory.
    history: RunHistory | None = None
    accounting: Accounting = field(init=False, default_factory=Accounting)

    def member_seed(self, index: int) -> int:
        return self.seed * 1000 + index

    def build_model(self, seed: int, **options) -> nn.Module:
        """A freshly initialised model (a variant with `options`, harness.models.build_model);
        the same seed gives the same initial weights."""
        torch.manual_seed(seed)
        return self.model_factory(**options).to(self.train_set.device)

    def stage(self, name: str, model: nn.Module, *, seed: int, hooks: Sequence[Hook] = (),
              epochs: int | None = None, schedule: Schedule | None = None,
              objective: Objective = classification_loss,
              batch_format: BatchFormat = PlainBatch(),
              param_groups: ParamGroups | None = None,
              extra: Callable[[], dict] | None = None, select: bool = True) -> dict:
        """Trains `model` in the stage `name` through the shared loop, or loads the stage's
        result if it finished before; returns the stage's extras (`extra()` at its end, e.g.
        masks that a later stage starts from). Either way `model` ends with the stage's final
        weights, and with its `masks` when the extras hold them.

        The result file `<name>.pt` holds the weights, the extras and the stage's own
        accounting (seconds, examples, FLOPs from a ledger that follows the run's densities
        step by step, what its hooks record for summary.json: `Hook.record`), written in one
        atomic step: there is no moment at which the cost is saved and the result is not, or
        the reverse. While the stage trains it checkpoints itself to `<name>.resume.pt` after
        every epoch and resumes from there. The ledger counts the rows `batch_format` feeds
        the network, probed with the real input shape.

        Which weights it keeps follows `checkpoint_selection()` (harness/engine/selection.py):
        under 'best_validation' the stage ends with those (and the extras) of its epoch of best
        validation accuracy, or each of its phased collectors saves its phase's best; `select
        = False` keeps the last weights of a stage whose weights no member is made of (LTR's
        pruning run, whose final mask its retrainings take)."""
        path = paths.stage_checkpoint(self.checkpoint_dir, name)
        resume = paths.resume_checkpoint(self.checkpoint_dir, name)
        if path.is_file():
            saved = self._load(path)
            model.load_state_dict(saved["model"])
        elif self.load_only:
            raise UserError(f"{path} is missing: stage {name!r} of this run never finished, "
                            f"so it has nothing to score")
        else:
            layer_flops = layer_forward_flops(model, batch_format.input_shape(
                self.train_set.image_shape), rows=batch_format.probe_rows)
            ledger = ledger_for(layer_flops, hooks)
            stopwatch = Stopwatch()
            recorder = ([] if self.history is None else [self.history.hook(
                name, batch_format, dict(self.accounting.histories), stopwatch.paused)])
            # The trajectory's collector first, so it saves the model as each step left it.
            chosen = {}  # the selected weights and extras of a stage without phases
            hooks, selection = (self.selection(hooks, batch_format, stopwatch.paused, extra,
                                               chosen) if select else (list(hooks), []))
            # The selection first, so it scores each candidate as its step left it.
            state = self.trainer.fit(model, self.train_set, seed=seed,
                                     hooks=[*selection, *self.trajectory_collector(name, epochs),
                                            *hooks, ledger, stopwatch, *recorder],
                                     epochs=epochs, schedule=schedule, objective=objective,
                                     batch_format=batch_format, param_groups=param_groups,
                                     checkpoint=resume, desc=name)
            if chosen:
                model.load_state_dict(chosen["model"])
            saved = {"model": model.state_dict(),
                     **({key: value for key, value in chosen.items() if key != "model"}
                        if chosen else extra() if extra else {}),
                     "accounting": {"train_seconds": stopwatch.seconds(),
                                    "examples_seen": ledger.examples,
                                    "train_flops": ledger.total_flops,
                                    "history": state.history,
                                    "records": {key: value for hook in hooks
                                                for key, value in hook.record().items()}}}
            self._save(path, saved)
        resume.unlink(missing_ok=True)  # also one a stop right after the result left behind
        self.accounting.add(name, saved["accounting"])
        if self.history is not None:
            self.history.write(self.accounting.histories)
        extras = {key: value for key, value in saved.items() if key not in ("model", "accounting")}
        if "masks" in extras:  # a sparse model carries its mask, for export and FLOPs
            model.masks = extras["masks"]
        return extras

    def collector(self, points: Sequence[float], extra: Callable[[], dict] | None = None,
                  phase_starts: Sequence[float] | None = None) -> MemberCollector:
        """A hook that saves member k (`paths.member_checkpoint`, with `extra()` beside its
        weights) when the run reaches `points[k]` (fractions of the run); with `phase_starts`,
        member k is the best-validation weights of its phase under that selection."""
        return MemberCollector(
            points, lambda model: {"model": model.state_dict(), **(extra() if extra else {})},
            lambda index, content: self._save(
                paths.member_checkpoint(self.checkpoint_dir, index), content), phase_starts)

    def trajectory_collector(self, name: str, epochs: int | None) -> list[MemberCollector]:
        """A collector of stage `name`'s model every `trajectory_checkpoints()` epochs (none
        when that is 0), on the collection seam of `MemberCollector`: epoch e of E ends at
        the fraction e / E of the run."""
        every = trajectory_checkpoints()
        if not every:
            return []
        epochs = self.trainer.scaled_epochs if epochs is None else epochs
        ends = list(range(every, epochs + 1, every))
        return [MemberCollector(
            [end / epochs for end in ends], lambda model: {"model": model.state_dict()},
            lambda index, content: self._save(
                paths.trajectory_checkpoint(self.checkpoint_dir, name, ends[index]),
                {**content, "epoch": ends[index]}))]

    def selection(self, hooks: Sequence[Hook], batch_format: BatchFormat, pause: Callable,
                  extra: Callable[[], dict] | None, chosen: dict) -> tuple[list[Hook], list[Hook]]:
        """The stage's hooks under `checkpoint_selection()` (harness/engine/selection.py), and
        the selection hook to put first (none under 'last'). Member collectors with phases
        give way to one selection of each phase's best, saved as they would save the member;
        a stage without them keeps its best weights and extras in `chosen`."""
        if checkpoint_selection() != BEST_VALIDATION:
            return list(hooks), []
        validation = None if self.history is None else self.history.validation
        require_validation(validation is not None)

        def score(model: nn.Module) -> float:
            with pause():
                return validation_metrics(model, batch_format, validation,
                                          self.history.eval_batch_size)["val_accuracy"]

        phased = [hook for hook in hooks
                  if isinstance(hook, MemberCollector) and hook.phase_starts is not None]
        if not phased:
            return list(hooks), [BestValidation(
                score, lambda model: {"model": model.state_dict(),
                                      **(extra() if extra else {})},
                [0.0], [1.0], lambda index, snapshot: chosen.update(snapshot))]
        selections = [BestValidation(score, hook.snapshot, hook.phase_starts, hook.points,
                                     hook.write) for hook in phased]
        return [hook for hook in hooks if hook not in phased], selections

    def load_member(self, index: int, model: nn.Module) -> dict:
        """Loads collected member `index` into `model`; returns what was saved with it."""
        saved = self._load(paths.member_checkpoint(self.checkpoint_dir, index))
        model.load_state_dict(saved["model"])
        return saved

    def _save(self, path: Path, content: dict) -> None:
        """Durable: a reader finds the previous file or the complete new one. Under torchrun
        rank 0 writes it, and no process goes on before it is there."""
        if distributed.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            safe_load.save(path, content)
        distributed.barrier()

    def _load(self, path: Path) -> dict:
        try:
            return safe_load.load(path, self.train_set.device)
        except UnsafeFile:
            raise
        except Exception as error:  # noqa: BLE001  damaged bytes: whatever unpickling meets
            raise UserError(f"{path} is damaged ({first_line(error)}); delete it to train "
                            f"that stage again") from error


# Far above any ensemble of the paper (M <= 16); a larger M is a typo, and planning it (one
# FLOPs entry per member, one collection point per cycle) would exhaust memory first.
MAX_MEMBERS = 1024


def check_members(owner: str, num_members: int, setting: str = "num_members") -> None:
    """The one check of an ensemble size M (or a number of MC samples K)."""
    check_integer(f"{owner}.{setting}", num_members, 1)
    if num_members > MAX_MEMBERS:
        raise UserError(f"{owner}.{setting} must be <= {MAX_MEMBERS}, got {num_members}")


class Method:
    """A method trains members and returns a predictor. Subclasses register by name
    (`@METHODS.register('name')`) and are gin-configurable by class name."""

    name: str = ""
    # The method as the paper's tables name it ('EDST Ensemble'), the key of every table and
    # of `python -m harness.compare`; a method the paper lacks is named by `name`.
    display_name: str = ""
    num_members: int = 1
    sparsity: float = 0.0

    @property
    def training_runs(self) -> float:
        """Complete training runs needed (paper Tables 1-3, '# Training runs')."""
        raise NotImplementedError

    def validate(self, context: PlanContext) -> None:
        """Raise UserError for settings that cannot work, before any training starts."""

    def fit(self, context: FitContext) -> Predictor:
        raise NotImplementedError

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        """Training FLOPs of the whole method and each test member's forward FLOPs, from
        the configuration alone (harness/flops: conventions)."""
        raise NotImplementedError

    def trajectory_spans(self) -> list[tuple[str, int, int | None]]:
        """Per member, where its training trajectory lies (paper §5.2, Fig. 3): (stage,
        first epoch, last epoch or None for the stage's end), epochs as trained, the first
        excluded. By default member k's own training stage `member_<k>`, whole."""
        return [(f"member_{index}", 0, None) for index in range(self.num_members)]


METHODS: Registry[type[Method]] = Registry("method")


class IndependentEnsemble(Method):
    """M members, each trained from its own random initialisation in a run of its own
    (Lakshminarayanan et al. 2017); subclasses add per-member hooks (e.g. sparse masks)."""

    def __init__(self, num_members: int):
        check_members(type(self).__name__, num_members)
        self.num_members = num_members

    @property
    def training_runs(self) -> float:
        return float(self.num_members)

    def member_hooks(self, context: FitContext, model: nn.Module, seed: int) -> list[Hook]:
        """Hooks for one member's run; none for a dense member."""
        return []

    def member_forward_flops(self, context: PlanContext) -> float:
        """Planned forward FLOPs of one member; dense here."""
        return context.dense_forward

    def member_dense_gradient_interval(self) -> int | None:
        """Steps between dense-gradient computations of a member's run (RigL's dT), if any."""
        return None

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        forward = self.member_forward_flops(context)
        per_member = training_flops(forward, context.dense_forward, context.steps(),
                                    context.batch_size, self.member_dense_gradient_interval())
        return FlopsPlan(self.num_members * per_member, (forward,) * self.num_members)

    def member_extra(self, hooks: Sequence[Hook]) -> dict:
        """What to store beside a finished member's weights (e.g. its mask)."""
        return {}

    def fit(self, context: FitContext) -> Predictor:
        networks = []
        for index in range(self.num_members):
            seed = context.member_seed(index)
            model = context.build_model(seed)
            hooks = self.member_hooks(context, model, seed)
            context.stage(f"member_{index}", model, seed=seed, hooks=hooks,
                          extra=lambda hooks=hooks: self.member_extra(hooks))
            networks.append(model)
        return MemberEnsemble(networks)
