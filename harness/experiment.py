"""One experiment: data + model + method + evaluation suites, configured by gin.

`Experiment.prepare()` resolves and checks everything (names, data, model, method settings)
without touching the output directory, so bad input fails before a run directory exists.
`Prepared.run(run_dir)` trains, evaluates and writes the run record (harness/record.py).
"""
import functools
import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import gin
import torch
from torch import nn

from harness import scale
from harness.data import DATASETS, Splits
from harness.data.arrays import ArrayDataset, split_holdout, take
from harness.config import first_line, parse
from harness.errors import UserError
from harness.evaluate import SUITES, EvalSet, evaluate
from harness.models import build_model
from harness.record import prepare_run_dir, write_json, write_metrics, write_text
from harness.train import Trainer, set_deterministic
from methods import METHODS, FitContext, Method


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"Experiment.device = {name!r} but no CUDA device is available; use "
                        f"'auto' or 'cpu'")
    return torch.device(name)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
                 deterministic: bool = False):
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

    def prepare(self, progress: bool = True) -> "Prepared":
        for suite in self.suites:
            SUITES.get(suite)
        if "validation" in self.suites and self.validation_fraction <= 0:
            raise UserError("the 'validation' suite needs Experiment.validation_fraction > 0")
        method = METHODS.get(self.method_name)()
        model_factory = functools.partial(build_model, self.model_name)
        trainer = Trainer(progress=progress)
        device = resolve_device(self.device)
        set_deterministic(self.deterministic)

        splits = DATASETS.get(self.dataset_name)()
        train, validation = split_holdout(take(splits.train, self.train_subset, self.seed),
                                          self.validation_fraction, self.seed)
        num_classes = splits.train.num_classes
        in_channels = splits.train.image_shape[0]
        factory = functools.partial(model_factory, num_classes=num_classes,
                                    in_channels=in_channels)
        probe = factory()  # a bad model setting fails here, before any output exists
        try:
            trainer.steps_per_epoch(len(train))
        except ValueError as error:
            raise UserError(str(error)) from error
        data = DataContext(splits=Splits(splits.name, train.to(device),
                                         splits.test.to(device)),
                           validation=None if validation is None else validation.to(device),
                           eval_batch_size=self.eval_batch_size, device=device)
        prepared = Prepared(self, method, trainer, factory, data, device, progress,
                            getattr(probe, "architecture", self.model_name))
        method.validate(prepared.fit_context(Path("checkpoints")))
        return prepared


@dataclass
class Prepared:
    experiment: Experiment
    method: Method
    trainer: Trainer
    model_factory: "functools.partial[nn.Module]"
    data: DataContext
    device: torch.device
    progress: bool
    architecture: str

    def fit_context(self, checkpoint_dir: Path) -> FitContext:
        return FitContext(trainer=self.trainer, train_set=self.data.splits.train,
                          model_factory=self.model_factory, seed=self.experiment.seed,
                          checkpoint_dir=checkpoint_dir)

    def eval_sets(self) -> list[EvalSet]:
        sets = []
        for suite in self.experiment.suites:
            try:
                sets.extend(SUITES.get(suite)(self.data))
            except ValueError as error:
                raise UserError(str(error)) from error
        return sets

    def run(self, run_dir: Path) -> dict:
        write_text(run_dir / "config.gin", gin.config_str())
        eval_sets = self.eval_sets()
        context = self.fit_context(run_dir / "checkpoints")
        predictor = self.method.fit(context)

        start = time.perf_counter()
        rows = []
        for eval_set in eval_sets:
            for row in evaluate(predictor, eval_set, progress=self.progress):
                rows.append({"method": self.method.name, "suite": eval_set.suite,
                             "corruption": eval_set.corruption,
                             "severity": eval_set.severity, **row})
        eval_seconds = time.perf_counter() - start

        operative = gin.operative_config_str()
        write_text(run_dir / "operative_config.gin", operative)
        write_metrics(run_dir / "metrics.parquet", rows)
        summary = self.summary(rows, context, eval_seconds, operative)
        write_json(run_dir / "summary.json", summary)
        return summary

    def summary(self, rows: list[dict], context: FitContext, eval_seconds: float,
                operative: str) -> dict:
        headline = {f"{row['suite']}/{row['metric']}": row["value"] for row in rows
                    if row["member"] == "ensemble" and row["corruption"] == "clean"}
        train_seconds = context.train_seconds
        return {
            "method": self.method.name,
            "dataset": self.data.splits.name,
            "model": self.architecture,
            "num_members": self.method.num_members,
            "training_runs": self.method.training_runs,
            "seed": self.experiment.seed,
            "epoch_factor": scale.epoch_factor(),
            "device": str(self.device),
            "train_examples": len(self.data.splits.train),
            "metrics": headline,
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(eval_seconds, 3),
            "train_images_per_second": (round(context.examples_seen / train_seconds, 1)
                                        if train_seconds > 0 else None),
            "git_commit": git_commit(),
            "config_hash": hashlib.sha256(operative.encode()).hexdigest()[:16],
        }


def run_experiment(gin_files, bindings=(), output_dir: str | None = None, *,
                   overwrite: bool = False, resume: bool = False,
                   progress: bool = True) -> tuple[Path, dict]:
    """Parses the configuration, checks it, then trains and evaluates into the run directory.
    A UserError raised before training leaves no directory behind."""
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    parse(gin_files, bindings)
    try:
        experiment = Experiment()
        prepared = experiment.prepare(progress=progress)
    except UserError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise UserError(first_line(error)) from error
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(output_dir or f"runs/{experiment.method_name}-{stamp}")
    created = prepare_run_dir(run_dir, overwrite=overwrite, resume=resume)
    try:
        summary = prepared.run(run_dir)
    except UserError:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir, summary
