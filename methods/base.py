"""What every method shares: the registry, the context `fit` receives, and the template for
ensembles of independently trained members (dense ensemble, static and DST ensembles, ...)."""
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from harness.data.arrays import ArrayDataset
from harness.errors import UserError
from harness.predictors import MemberEnsemble, Predictor
from harness.registry import Registry
from harness.train import Hook, Schedule, Trainer, TrainState, classification_loss, Objective


@dataclass
class FitContext:
    """Everything a method needs to train: the configured trainer, the train set on its
    device, a model factory, the run's seed, and where checkpoints go."""

    trainer: Trainer
    train_set: ArrayDataset
    model_factory: Callable[[], nn.Module]
    seed: int
    checkpoint_dir: Path
    train_seconds: float = 0.0
    examples_seen: int = 0
    histories: dict = field(default_factory=dict)

    def member_seed(self, index: int) -> int:
        return self.seed * 1000 + index

    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model; the same seed gives the same initial weights."""
        torch.manual_seed(seed)
        return self.model_factory().to(self.train_set.device)

    def train(self, model: nn.Module, *, tag: str, seed: int, hooks: Sequence[Hook] = (),
              epochs: int | None = None, schedule: Schedule | None = None,
              objective: Objective = classification_loss) -> TrainState:
        """One training run through the shared loop, resumable from `<tag>.resume.pt`."""
        start = time.perf_counter()
        resume = self.checkpoint_dir / f"{tag}.resume.pt"
        state = self.trainer.fit(model, self.train_set, seed=seed, hooks=hooks, epochs=epochs,
                                 schedule=schedule, objective=objective, checkpoint=resume,
                                 desc=tag)
        self.train_seconds += time.perf_counter() - start
        self.examples_seen += state.step * state.batch_size
        self.histories[tag] = state.history
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

    @property
    def training_runs(self) -> float:
        """Complete training runs needed (paper Tables 1-3, '# Training runs')."""
        raise NotImplementedError

    def validate(self, context: FitContext) -> None:
        """Raise UserError for settings that cannot work, before any training starts."""

    def fit(self, context: FitContext) -> Predictor:
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
