"""One experiment assembled: data + model + method + evaluation suites, configured by gin.

`Experiment.prepare()` resolves and checks everything (names, data, model, method settings,
evaluation sets) without touching the output directory, so bad input fails before a run
directory exists, and returns it `Prepared`; harness/experiment/execute.py trains, evaluates and records
it. `Experiment.plan_flops()` gives the planned FLOPs without any data.
"""
import contextlib
import functools
from dataclasses import dataclass

import gin
import torch
from torch import nn

from harness.core import distributed

from harness.engine import scale

from harness.evaluation import inference_timing  # noqa: F401  registers the inference_timing suite
from harness.data import DATASETS, PUBLISHED_GEOMETRY, Geometry, Splits
from harness.data.arrays import ArrayDataset, holdout_count, split_holdout, take
from harness.core.errors import UserError, check_integer, check_number
from harness.evaluation.evaluate import SUITES, EvalSet
from harness.flops import counted_layer_shapes, ensemble_test_flops, layer_forward_flops
from harness.flops.plan import PlanContext, reference_epochs, reference_train_flops
from harness.models import build_model
from harness.evaluation.suites import ScoredSet  # also registers the suites
from harness.engine.selection import require_validation
from harness.engine.train import Trainer, set_deterministic
from methods import METHODS, Method
from methods.base import trajectory_checkpoints


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return distributed.local_device(
            torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"Experiment.device = {name!r} but no CUDA device is available; use "
                        f"'auto' or 'cpu'")
    return distributed.local_device(torch.device(name))


# Parameters and inputs in float32, or in float64 where a run must give the same numbers on
# any CPU: float32 sums follow the CPU's vector width (AVX2 vs AVX-512), and training amplifies
# their last-bit differences into visibly different networks within a few dozen steps, while
# float64's stay far below the golden table's tolerances (reports/golden/golden.gin).
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Models built and inputs normalised within take `dtype` (ArrayDataset.normalize)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@dataclass
class DataContext:
    """What evaluation suites draw their sets from."""

    splits: Splits
    validation: ArrayDataset | None
    eval_batch_size: int
    device: torch.device


@gin.configurable
class Experiment:
    def __init__(self, method: str = gin.REQUIRED, dataset: str = "cifar10",
                 model: str = "wide_resnet", seed: int = 0, suites: tuple = ("test",),
                 validation_fraction: float = 0.0, train_subset: int | None = None,
                 eval_batch_size: int = 500, device: str = "auto",
                 deterministic: bool = False, precision: str = "float32",
                 tensorboard: bool = False):
        """`tensorboard`: also write the training curve (harness/evaluation/history.py) as TensorBoard
        scalars under <run>/tensorboard/<stage>."""
        self.method_name = method
        self.dataset_name = dataset
        self.model_name = model
        self.seed = seed
        self.suites = tuple(suites)
        self.validation_fraction = validation_fraction
        self.train_subset = train_subset
        self.eval_batch_size = eval_batch_size
        self.device = device
        self.deterministic = deterministic
        self.precision = precision
        self.tensorboard = tensorboard

    def build(self, progress: bool = True) -> tuple[Method, Trainer]:
        check_integer("Experiment.seed", self.seed)
        if self.train_subset is not None:
            check_integer("Experiment.train_subset", self.train_subset, 1,
                          " (or None for all)")
        check_integer("Experiment.eval_batch_size", self.eval_batch_size, 1)
        if check_number("Experiment.validation_fraction", self.validation_fraction) >= 1:
            raise UserError(f"Experiment.validation_fraction must be < 1, got "
                            f"{self.validation_fraction}")
        if self.precision not in PRECISIONS:
            raise UserError(f"Experiment.precision must be one of {', '.join(PRECISIONS)}, "
                            f"got {self.precision!r}")
        for suite in self.suites:
            SUITES.get(suite)
        trajectory_checkpoints()  # its check, before training
        inference_timing.check_bound_settings()
        if "validation" in self.suites and self.validation_fraction <= 0:
            raise UserError("the 'validation' suite needs Experiment.validation_fraction > 0")
        require_validation(self.validation_fraction > 0)
        return METHODS.get(self.method_name)(), Trainer(progress=progress)

    def model_factory(self, geometry: Geometry) -> "functools.partial[nn.Module]":
        return functools.partial(build_model, self.model_name,
                                 num_classes=geometry.num_classes,
                                 in_channels=geometry.image_shape[0])

    def train_examples(self, available: int) -> int:
        """How many examples training sees: the subset, less the held-out validation."""
        count = min(available, self.train_subset or available)
        return count - holdout_count(count, self.validation_fraction)

    def plan_context(self, geometry: Geometry, trainer: Trainer) -> PlanContext:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = self.model_factory(geometry)()
        examples = self.train_examples(geometry.train_examples)
        try:
            trainer.steps_per_epoch(examples)
        except ValueError as error:
            raise UserError(str(error)) from error
        return PlanContext(layer_flops=layer_forward_flops(model, geometry.image_shape),
                           layer_shapes=counted_layer_shapes(model),
                           train_examples=examples, batch_size=trainer.batch_size,
                           epochs=trainer.scaled_epochs, paper_epochs=trainer.epochs,
                           architecture=getattr(model, "architecture", self.model_name),
                           image_shape=tuple(geometry.image_shape),
                           model_factory=self.model_factory(geometry))

    def flops_report(self, method: Method, context: PlanContext) -> dict:
        """The planned FLOPs figures of paper Tables 1-3 and 6 (App. D)."""
        plan = method.plan_flops(context)
        dense = context.dense_forward
        reference = reference_train_flops(context, self.dataset_name)
        test_flops = ensemble_test_flops(plan.member_forward_flops)
        return {
            "method": method.name, "dataset": self.dataset_name,
            "model": context.architecture, "M": method.num_members,
            "sparsity": method.sparsity, "dense_forward_flops": dense,
            "forward_flops": list(plan.member_forward_flops),
            "forward_ratio": sum(plan.member_forward_flops) / len(plan.member_forward_flops)
            / dense,
            "train_flops": plan.train_flops, "train_flops_ratio": plan.train_flops / reference,
            "test_flops": test_flops, "test_flops_ratio": test_flops / dense,
            "training_runs": method.training_runs,
            "reference_train_flops": reference,
            "reference_epochs": scale.epochs(reference_epochs(self.dataset_name)),
            "train_examples": context.train_examples, "batch_size": context.batch_size,
            "epochs": context.epochs, "epoch_factor": scale.epoch_factor(),
            "unit": "FLOPs per the RigL convention: conv+linear, multiply-add = 2",
        }

    def plan_flops(self) -> dict:
        """Planned FLOPs without training; published datasets need no data on disk."""
        method, trainer = self.build(progress=False)
        geometry = PUBLISHED_GEOMETRY.get(self.dataset_name)
        if geometry is None:
            train = DATASETS.get(self.dataset_name)().train
            geometry = Geometry(len(train), train.image_shape, train.num_classes)
        context = self.plan_context(geometry, trainer)
        method.validate(context)
        return self.flops_report(method, context)

    def prepare(self, progress: bool = True) -> "Prepared":
        method, trainer = self.build(progress)
        device = resolve_device(self.device)
        set_deterministic(self.deterministic)
        splits = DATASETS.get(self.dataset_name)()
        train, validation = split_holdout(take(splits.train, self.train_subset, self.seed),
                                          self.validation_fraction, self.seed)
        geometry = Geometry(len(splits.train), splits.train.image_shape,
                            splits.train.num_classes)
        plan_context = self.plan_context(geometry, trainer)
        method.validate(plan_context)
        data = DataContext(splits=Splits(splits.name, train.to(device),
                                         splits.test.to(device)),
                           validation=None if validation is None else validation.to(device),
                           eval_batch_size=self.eval_batch_size, device=device)
        eval_sets = []
        for suite in self.suites:
            try:
                eval_sets.extend(SUITES.get(suite)(data))
            except ValueError as error:
                raise UserError(str(error)) from error
        return Prepared(self, method, trainer, self.model_factory(geometry), data, eval_sets,
                        self.flops_report(method, plan_context), progress)


@dataclass
class Prepared:
    """An experiment assembled and checked, nothing written yet: harness/experiment/execute.py runs it."""

    experiment: Experiment
    method: Method
    trainer: Trainer
    model_factory: "functools.partial[nn.Module]"
    data: DataContext
    eval_sets: list[EvalSet | ScoredSet]
    planned_flops: dict
    progress: bool
