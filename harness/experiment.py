"""One experiment: data + model + method + evaluation suites, configured by gin.

`Experiment.prepare()` resolves and checks everything (names, data, model, method settings,
evaluation sets) without touching the output directory, so bad input fails before a run
directory exists. `Prepared.run(run_dir)` trains, evaluates and writes the run record
(harness/record.py). `Experiment.plan_flops()` gives the planned FLOPs without any data.
"""
import contextlib
import functools
import hashlib
import itertools
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gin
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from harness import distributed, scale
from harness.config import parse
from harness.data import DATASETS, PUBLISHED_GEOMETRY, Geometry, Splits
from harness.data.arrays import ArrayDataset, holdout_count, split_holdout, take
from harness.errors import Interrupted, UserError, check_integer, check_number, first_line
from harness.evaluate import SUITES, EvalSet, evaluate
from harness.flops import (counted_layer_shapes, ensemble_test_flops, layer_forward_flops,
                           sparse_forward_flops, weight_densities)
from harness.flops.plan import PlanContext, reference_epochs, reference_train_flops
from harness.history import RunHistory
from harness.models import build_model
from harness.predictions import TEST_PREDICTIONS, PredictionCollector
from harness.predictors import Predictor
from harness.progress import draws_bars
from harness.record import (command_line, make_run_dir, plan_run_dir, record_command,
                            staging_dir, swap_in, write_json, write_metrics, write_text)
from harness.robustness import ScoredSet, corrupted_summary  # also registers the suites
from harness.structure import structure_rows
from harness.timing import SUITE as TIMING_SUITE, inference_timing
from harness.train import Trainer, set_deterministic
from methods import METHODS, FitContext, Method
from methods.base import trajectory_checkpoints


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return distributed.local_device(
            torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"Experiment.device = {name!r} but no CUDA device is available; use "
                        f"'auto' or 'cpu'")
    return distributed.local_device(torch.device(name))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
        """`tensorboard`: also write the training curve (harness/history.py) as TensorBoard
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
        if "validation" in self.suites and self.validation_fraction <= 0:
            raise UserError("the 'validation' suite needs Experiment.validation_fraction > 0")
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
    experiment: Experiment
    method: Method
    trainer: Trainer
    model_factory: "functools.partial[nn.Module]"
    data: DataContext
    eval_sets: list[EvalSet | ScoredSet]
    planned_flops: dict
    progress: bool

    def run(self, run_dir: Path) -> dict | None:
        """Under torchrun every process trains; rank 0 alone evaluates and writes, and the
        others return None."""
        if distributed.is_main():
            write_text(run_dir / "config.gin", gin.config_str())
        history = RunHistory(run_dir, validation=self.data.validation,
                             eval_batch_size=self.experiment.eval_batch_size,
                             log=not draws_bars(self.progress),
                             tensorboard=self.experiment.tensorboard)
        context = FitContext(trainer=self.trainer, train_set=self.data.splits.train,
                             model_factory=self.model_factory, seed=self.experiment.seed,
                             checkpoint_dir=run_dir / "checkpoints", history=history)
        with default_dtype(PRECISIONS[self.experiment.precision]):
            predictor = self.method.fit(context)
            if not distributed.is_main():
                return None
            start = time.perf_counter()
            rows = []
            test_predictions = PredictionCollector()
            for suite, eval_sets in itertools.groupby(self.eval_sets, lambda s: s.suite):
                eval_sets = list(eval_sets)  # one bar per suite, not per corrupted set
                for eval_set in tqdm(eval_sets, desc=f"eval {suite}", unit="set", leave=False,
                                     disable=not draws_bars(self.progress)):
                    clean_test = (eval_set.suite, eval_set.corruption) == ("test", "clean")
                    scored = (evaluate(predictor, eval_set, progress=False,
                                       collect=test_predictions) if clean_test else
                              eval_set.score(predictor, False))
                    for row in scored:  # a scored set's rows may name their own corruption
                        rows.append({"method": self.method.name, "suite": eval_set.suite,
                                     "corruption": eval_set.corruption,
                                     "severity": eval_set.severity, **row})
                if not draws_bars(self.progress):
                    print(f"eval {suite}: {len(eval_sets)} set(s) scored", file=sys.stderr,
                          flush=True)
            eval_seconds = time.perf_counter() - start
            timing_rows, timing = inference_timing(predictor, self.data.splits.test.image_shape,
                                                   self.data.device, self.method.sparsity > 0)
        rows += [{"method": self.method.name, "suite": TIMING_SUITE, "corruption": "clean",
                  "severity": 0, **row} for row in timing_rows]
        if test_predictions.labels:  # for sub-ensembles without retraining (Fig. 5)
            test_predictions.write(run_dir / TEST_PREDICTIONS)

        rows += [{"method": self.method.name, "suite": "structure", "corruption": "clean",
                  "severity": 0, **row} for row in structure_rows(predictor.members())]
        flops = self.measured_flops(predictor, context)
        rows += [{"method": self.method.name, "member": "ensemble", "suite": "flops",
                  "corruption": "clean", "severity": 0, "metric": name, "value": flops[name]}
                 for name in ("train_flops", "train_flops_ratio", "test_flops",
                              "test_flops_ratio", "planned_train_flops",
                              "planned_train_flops_ratio")]
        operative = gin.operative_config_str()
        write_text(run_dir / "operative_config.gin", operative)
        write_json(run_dir / "flops.json", flops)
        write_metrics(run_dir / "metrics.parquet", rows)
        summary = {**self.summary(rows, context, eval_seconds, operative),
                   "inference_timing": timing}
        write_json(run_dir / "summary.json", summary)
        return summary

    def measured_flops(self, predictor: Predictor, context: FitContext) -> dict:
        """The run's own figures: training FLOPs from the ledgers of its training runs, test
        FLOPs from one prediction of the predictor on one example (every member's forward,
        every tiled row, every MC pass), scaled by the nonzero weights of its layers; planned
        ones beside. `forward_flops` is that test figure spread evenly over the M members."""
        planned = self.planned_flops
        image_shape = self.data.splits.train.image_shape
        test_flops = sparse_forward_flops(layer_forward_flops(predictor, image_shape),
                                          weight_densities(predictor))
        members = predictor.num_members
        train_flops = context.accounting.train_flops
        dense = planned["dense_forward_flops"]
        return {**planned, "forward_flops": [test_flops / members] * members,
                "forward_ratio": test_flops / members / dense,
                "train_flops": train_flops,
                "train_flops_ratio": train_flops / planned["reference_train_flops"],
                "test_flops": test_flops, "test_flops_ratio": test_flops / dense,
                "planned_train_flops": planned["train_flops"],
                "planned_train_flops_ratio": planned["train_flops_ratio"],
                "planned_test_flops_ratio": planned["test_flops_ratio"]}

    def summary(self, rows: list[dict], context: FitContext, eval_seconds: float,
                operative: str) -> dict:
        headline = {f"{row['suite']}/{row['metric']}": row["value"] for row in rows
                    if row["member"] == "ensemble" and row["corruption"] == "clean"}
        accounting = context.accounting
        return {
            "method": self.method.name,
            "display_name": self.method.display_name or self.method.name,
            "dataset": self.data.splits.name,
            "model": self.planned_flops["model"],
            "num_members": self.method.num_members,
            "sparsity": self.method.sparsity,
            "training_runs": self.method.training_runs,
            "seed": self.experiment.seed,
            "epoch_factor": scale.epoch_factor(),
            "device": str(self.data.device),
            "train_examples": len(self.data.splits.train),
            "metrics": headline,
            # cacc/cnll/cece (+ the extra corruptions), aacc/anll/aece where the run scored
            # those sets: what the tables and `python -m harness.compare` print
            "corrupted": corrupted_summary(pd.DataFrame(rows)),
            "train_seconds": round(accounting.train_seconds, 3),
            "eval_seconds": round(eval_seconds, 3),
            "train_images_per_second": (
                round(accounting.examples_seen / accounting.train_seconds, 1)
                if accounting.train_seconds > 0 else None),
            "git_commit": git_commit(),
            "config_hash": hashlib.sha256(operative.encode()).hexdigest()[:16],
        }


def plan_experiment(gin_files, bindings=(), output_dir: str | None = None, *,
                    overwrite: bool = False, resume: bool = False, progress: bool = True
                    ) -> tuple[Path, str, Prepared]:
    """Everything `run_experiment` does before it writes: the configuration parsed and
    checked, the run directory and what will become of it ("create", "resume", "replace",
    harness/record.py), the experiment prepared. Raises UserError, having written nothing."""
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    if resume and not output_dir:
        raise UserError("--resume needs --output_dir, the run directory to continue")
    parse(gin_files, bindings)
    try:
        experiment = Experiment()
        run_dir = Path(output_dir or f"runs/{experiment.method_name}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
        # Under torchrun rank 0 alone decides and makes the run directory.
        mode = distributed.from_main(lambda: plan_run_dir(
            run_dir, overwrite=overwrite, resume=resume, config=gin.config_str()))
        prepared = experiment.prepare(progress=progress and distributed.is_main())
    except UserError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise UserError(first_line(error)) from error
    return run_dir, mode, prepared


def run_experiment(gin_files, bindings=(), output_dir: str | None = None, *,
                   overwrite: bool = False, resume: bool = False,
                   progress: bool = True) -> tuple[Path, dict]:
    """Parses the configuration, checks it, then trains and evaluates into the run directory.

    A mistake found before training leaves no directory behind; one found during training
    (a diverging loss) removes the directory it created. `resume` continues an unfinished run
    only if its recorded configuration equals this one (a missing or empty directory starts a
    fresh run); `overwrite` replaces only a run directory (harness/record.py), and only once
    the new run has finished: it is built beside it in a staging directory. Ctrl-C raises
    `Interrupted`, whose message says what became of the run."""
    run_dir, mode, prepared = plan_experiment(gin_files, bindings, output_dir,
                                              overwrite=overwrite, resume=resume,
                                              progress=progress)
    target = staging_dir(run_dir) if mode == "replace" else run_dir
    created = distributed.from_main(lambda: make_run_dir(target))
    if mode != "resume" and distributed.is_main():
        record_command(target, gin_files, bindings)
    try:
        summary = prepared.run(target)
    except KeyboardInterrupt:
        if mode == "replace":
            shutil.rmtree(target, ignore_errors=True)
            raise Interrupted(f"interrupted: the new run was discarded; {run_dir} still "
                              f"holds the previous one") from None
        raise Interrupted("interrupted: continue this run with: " + command_line(
            [sys.argv[0], "--resume", f"--output_dir={run_dir}"])) from None
    except (UserError, FloatingPointError) as error:
        if created and distributed.is_main():
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(error, FloatingPointError):
            kept = {"replace": f"; {run_dir} still holds the previous run",
                    "resume": f"; {run_dir} keeps its checkpoints for inspection"}.get(mode, "")
            raise UserError(f"training diverged: {error}{kept}") from error
        raise
    if mode == "replace" and distributed.is_main():
        swap_in(target, run_dir)
    return run_dir, summary
