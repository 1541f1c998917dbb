"""A finished run's members again, from the stage results it saved, without training: for the
figures that need the networks themselves rather than their cached predictions (feature maps,
paper Fig. 2 left; checkpoints along the trajectories, Fig. 3) and for scoring a run on suites
it did not run (harness/experiment/rescore.py).

The run's recorded `config.gin` rebuilds its method, and the method's own `fit` runs over the
run's `checkpoints/`: every stage it declares is finished there, so each is loaded instead of
trained (`FitContext.stage`) and the method assembles its predictor as it did at the end of the
run (EDST's tickets, LTR's retrained members, FGE's recomputed batch norm, ...). A stage result
that is missing is an error naming it (`FitContext.load_only`); nothing is ever trained into a
finished run.
"""
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.experiment.config import parse
from harness.data import DATASETS, Geometry, Splits
from harness.data.arrays import ArrayDataset, split_holdout, take
from harness.core.errors import UserError
from harness.experiment.assemble import PRECISIONS, Experiment, default_dtype
from harness.evaluation.predictors import Predictor
from harness.store import paths
from harness.store.record import is_finished
from methods.base import FitContext, Method


# The examples the network-level figures (Figs. 2 left, 3) are computed on: one test batch of
# 128 images, as in the authors' code (FreeTickets `ensemble_freetickets.py`, the first batch of
# torchvision's CIFAR test set, whose classes are mixed); the paper does not say. Ours are drawn
# at random (seed 0) and kept in test-set order, since a test split stored class by class (a
# CIFAR-10 decoded folder by folder) would give one class as its first batch.
TEST_BATCH = 128


@dataclass
class Replayed:
    method: Method
    predictor: Predictor
    context: FitContext
    test: ArrayDataset
    precision: str  # the run's Experiment.precision

    def test_inputs(self, count: int = TEST_BATCH) -> torch.Tensor:
        """`count` test images drawn at random (seed 0, in test-set order), as the run's
        members take them."""
        chosen = torch.randperm(len(self.test), generator=torch.Generator().manual_seed(0))
        with default_dtype(PRECISIONS[self.precision]):
            return self.test.normalize(self.test.images[chosen[:count].sort().values])

    def build_model(self) -> nn.Module:
        """A fresh network of the run's architecture and precision, to load checkpoints into."""
        with default_dtype(PRECISIONS[self.precision]):
            return self.context.build_model(0).eval()


def finished_run(run_dir: Path) -> tuple[Experiment, Splits]:
    """The experiment of a finished run, from its recorded configuration, and its data."""
    if not is_finished(run_dir):
        raise UserError(f"{run_dir} is not a finished run (no {paths.SUMMARY})")
    parse([str(paths.config(run_dir))])
    experiment = Experiment()
    return experiment, DATASETS.get(experiment.dataset_name)()


def refit(run_dir: Path, experiment: Experiment, splits: Splits
          ) -> tuple[Method, Predictor, FitContext]:
    """The run's method, predictor and fit context: the method's own `fit` over the run's
    training split (its subset and holdout, which FGE's batch-norm pass needs), loading every
    stage result (`FitContext.load_only`)."""
    method, trainer = experiment.build(progress=False)
    train, _ = split_holdout(take(splits.train, experiment.train_subset, experiment.seed),
                             experiment.validation_fraction, experiment.seed)
    geometry = Geometry(len(splits.train), splits.train.image_shape, splits.train.num_classes)
    context = FitContext(trainer=trainer, train_set=train,
                         model_factory=experiment.model_factory(geometry),
                         seed=experiment.seed, checkpoint_dir=paths.checkpoints(run_dir),
                         load_only=True)
    with default_dtype(PRECISIONS[experiment.precision]):
        return method, method.fit(context), context


def replay(run_dir: Path) -> Replayed:
    """The finished run's method, predictor and test set, on the CPU."""
    experiment, splits = finished_run(run_dir)
    method, predictor, context = refit(run_dir, experiment, splits)
    return Replayed(method, predictor.eval(), context, splits.test, experiment.precision)
