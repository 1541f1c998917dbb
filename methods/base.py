"""What every method shares: the registry, the context `fit` receives, and the template for
ensembles of independently trained members (dense ensemble, static and DST ensembles, ...)."""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from harness.batching import BatchFormat, PlainBatch
from harness.data.arrays import ArrayDataset
from harness.errors import UserError
from harness.flops import layer_forward_flops, ledger_for, training_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.predictors import MemberEnsemble, Predictor
from harness.registry import Registry
from harness.train import (Hook, Objective, ParamGroups, Schedule, Trainer, TrainState,
                           classification_loss)


@dataclass
class Accounting:
    """Time, examples and FLOPs of a method's training runs, kept beside the checkpoints so
    that a resumed run still reports everything it trained."""

    train_seconds: float = 0.0
    examples_seen: int = 0
    train_flops: float = 0.0
    histories: dict = field(default_factory=dict)

    FILE = "accounting.json"

    @classmethod
    def load(cls, checkpoint_dir: Path) -> "Accounting":
        path = checkpoint_dir / cls.FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, checkpoint_dir: Path) -> None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        partial = checkpoint_dir / (self.FILE + ".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(checkpoint_dir / self.FILE)

    def add(self, tag: str, seconds: float, state: TrainState, flops: float) -> None:
        self.train_seconds += seconds
        self.examples_seen += state.step * state.batch_size
        self.train_flops += flops
        self.histories[tag] = state.history


@dataclass
class FitContext:
    """Everything a method needs to train: the configured trainer, the train set on its
    device, a model factory, the run's seed, and where checkpoints go."""

    trainer: Trainer
    train_set: ArrayDataset
    model_factory: Callable[..., nn.Module]  # options: harness.models.build_model
    seed: int
    checkpoint_dir: Path
    accounting: "Accounting" = field(init=False)

    def __post_init__(self):
        self.accounting = Accounting.load(self.checkpoint_dir)

    def member_seed(self, index: int) -> int:
        return self.seed * 1000 + index

    def build_model(self, seed: int, **options) -> nn.Module:
        """A freshly initialised model (a variant with `options`, harness.models.build_model);
        the same seed gives the same initial weights."""
        torch.manual_seed(seed)
        return self.model_factory(**options).to(self.train_set.device)

    def train(self, model: nn.Module, *, tag: str, seed: int, hooks: Sequence[Hook] = (),
              epochs: int | None = None, schedule: Schedule | None = None,
              objective: Objective = classification_loss,
              batch_format: BatchFormat = PlainBatch(),
              param_groups: ParamGroups | None = None) -> TrainState:
        """One training run through the shared loop, resumable from `<tag>.resume.pt`, with a
        FLOPs ledger that follows the run's densities step by step and counts the rows the
        batch format feeds the network."""
        start = time.perf_counter()
        resume = self.checkpoint_dir / f"{tag}.resume.pt"
        layer_flops = layer_forward_flops(model, batch_format.input_shape(
            self.train_set.image_shape), rows=batch_format.probe_rows)
        ledger = ledger_for(layer_flops, hooks)
        state = self.trainer.fit(model, self.train_set, seed=seed, hooks=[*hooks, ledger],
                                 epochs=epochs, schedule=schedule, objective=objective,
                                 batch_format=batch_format, param_groups=param_groups,
                                 checkpoint=resume, desc=tag)
        self.accounting.add(tag, time.perf_counter() - start, state, ledger.total_flops)
        self.accounting.save(self.checkpoint_dir)
        return state

    def member_path(self, index: int) -> Path:
        return self.checkpoint_dir / f"member_{index}.pt"

    def save_member(self, index: int, model: nn.Module, extra: dict | None = None) -> None:
        """Final weights of member `index` (plus e.g. its mask); removes resume files."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        partial = self.member_path(index).with_suffix(".partial")
        torch.save({"model": model.state_dict(), **(extra or {})}, partial)
        partial.replace(self.member_path(index))

    def load_member(self, index: int, model: nn.Module) -> dict | None:
        """Loads a finished member into `model` (a resumed run); None if not saved yet."""
        path = self.member_path(index)
        if not path.exists():
            return None
        saved = torch.load(path, map_location=self.train_set.device, weights_only=False)
        model.load_state_dict(saved["model"])
        return saved

    def discard_resume(self, tag: str) -> None:
        (self.checkpoint_dir / f"{tag}.resume.pt").unlink(missing_ok=True)


class Method:
    """A method trains members and returns a predictor. Subclasses register by name
    (`@METHODS.register('name')`) and are gin-configurable by class name."""

    name: str = ""
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


METHODS: Registry[type[Method]] = Registry("method")


class IndependentEnsemble(Method):
    """M members, each trained from its own random initialisation in a run of its own
    (Lakshminarayanan et al. 2017); subclasses add per-member hooks (e.g. sparse masks)."""

    def __init__(self, num_members: int):
        if num_members < 1:
            raise UserError(f"{type(self).__name__}.num_members must be >= 1, got "
                            f"{num_members}")
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
            if context.load_member(index, model) is None:
                tag = f"member_{index}"
                hooks = self.member_hooks(context, model, seed)
                context.train(model, tag=tag, seed=seed, hooks=hooks)
                context.save_member(index, model, self.member_extra(hooks))
                context.discard_resume(tag)
            networks.append(model)
        return MemberEnsemble(networks)
