"""Cached member predictions, so that an ensemble of any M' < M of a run's members is scored
again without retraining (the ensemble-size study, paper §5.5 and Fig. 5).

A run keeps its members' clean-test predictions in `predictions/test.npz`:

    log_probs  float32 [M, N, C]  each member's log-softmax, in test-set order
    labels     int64   [N]

float32 keeps a re-scored full ensemble within ~1e-6 of the run's own numbers (float16 would
halve the file but move NLL in the 4th digit). Re-scoring goes through harness/metrics.py, the
one place the metric conventions live.
"""
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness.durable import atomic_write
from harness.errors import UserError
from harness.metrics import MetricSums, PairSums, ensemble_log_probs

TEST_PREDICTIONS = Path("predictions") / "test.npz"


class PredictionCollector:
    """Called by `evaluate` with each batch's member log-probabilities [M, B, C] and labels."""

    def __init__(self):
        self.log_probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def __call__(self, member_log_probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.log_probs.append(member_log_probs.float().cpu())
        self.labels.append(labels.cpu())

    def write(self, path: Path) -> None:
        """Writes the npz whole or not at all (harness/durable.py)."""
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(partial: Path) -> None:
            with partial.open("wb") as file:  # a file object: np.savez would append '.npz'
                np.savez(file, log_probs=torch.cat(self.log_probs, dim=1).numpy(),
                         labels=torch.cat(self.labels).numpy())
        atomic_write(path, write)


def load_predictions(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_probs [M, N, C], labels [N]) of a finished run."""
    path = run_dir / TEST_PREDICTIONS
    if not path.is_file():
        raise UserError(f"{run_dir} has no cached predictions ({TEST_PREDICTIONS}): it ran "
                        f"without the 'test' suite or before predictions were cached")
    with np.load(path, allow_pickle=False) as arrays:
        return torch.from_numpy(arrays["log_probs"]), torch.from_numpy(arrays["labels"])


def subensemble_metrics(log_probs: torch.Tensor, labels: torch.Tensor,
                        members: Sequence[int]) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier of the ensemble of `members`, scored as `evaluate` does
    (log-probabilities are valid logits: log-softmax leaves them unchanged)."""
    ensemble = ensemble_log_probs(log_probs[list(members)])
    return MetricSums().update(ensemble, labels).result()


def ensemble_size_curve(log_probs: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """For m = 1..M: the metrics of the ensemble of the first m members, and the mean accuracy
    of those m members on their own ('individual' in paper Fig. 5)."""
    individual = [subensemble_metrics(log_probs, labels, [m])["accuracy"]
                  for m in range(log_probs.shape[0])]
    return [{"size": size, **subensemble_metrics(log_probs, labels, range(size)),
             "individual_accuracy": float(np.mean(individual[:size]))}
            for size in range(1, log_probs.shape[0] + 1)]


def pair_matrices(log_probs: torch.Tensor) -> dict[str, np.ndarray]:
    """{metric: [M, M]} of the pairwise diversity metrics of harness/metrics.py's `PairSums`
    (disagreement; KL(p_row || p_column)) between every two members, zero on the diagonal:
    the heatmaps of paper Figs. 6-7, for any ensemble whose predictions were cached."""
    members = log_probs.shape[0]
    matrices: dict[str, np.ndarray] = {}
    for i, j in itertools.permutations(range(members), 2):
        for metric, value in PairSums().update(log_probs[i], log_probs[j]).result().items():
            matrices.setdefault(metric, np.zeros((members, members)))[i, j] = value
    return matrices
