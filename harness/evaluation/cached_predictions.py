"""Cached member predictions, so that an ensemble of any M' < M of a run's members is scored
again without retraining (the ensemble-size study, paper §5.5 and Fig. 5).

A run keeps its members' clean-test predictions in `predictions/test.npz`:

    log_probs  float32 [M, N, C]  each member's log-softmax, in test-set order
    labels     int64   [N]

float32 keeps a re-scored full ensemble within ~1e-6 of the run's own numbers (float16 would
halve the file but move NLL in the 4th digit). Re-scoring goes through harness/evaluation/metrics.py, the
one place the metric conventions live; so does the members' diversity (`member_diversity`,
pairwise disagreement and KL, paper §5.1), for the tables and figures that read it.
"""
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.evaluation.metrics import MetricSums, PairSums, ensemble_log_probs, member_pairs
from harness.store import paths


class PredictionCollector:
    """Called by `evaluate` with each batch's member log-probabilities [M, B, C] and labels."""

    def __init__(self):
        self.log_probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def __call__(self, member_log_probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.log_probs.append(member_log_probs.float().cpu())
        self.labels.append(labels.cpu())

    def write(self, path: Path) -> None:
        """Writes the npz whole or not at all (harness/core/durable.py)."""
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(partial: Path) -> None:
            with partial.open("wb") as file:  # a file object: np.savez would append '.npz'
                np.savez(file, log_probs=torch.cat(self.log_probs, dim=1).numpy(),
                         labels=torch.cat(self.labels).numpy())
        atomic_write(path, write)


def load_predictions(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_probs [M, N, C], labels [N]) of a finished run."""
    path = paths.test_predictions(run_dir)
    if not path.is_file():
        raise UserError(f"{run_dir} has no cached predictions ({paths.TEST_PREDICTIONS}): it ran "
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


def pair_diversity(log_probs: torch.Tensor, examples: torch.Tensor | None = None
                   ) -> dict[tuple[int, int], dict[str, float]]:
    """{(i, j): {'disagreement', 'kl'}} for every ordered pair i != j of members
    (harness/evaluation/metrics.py `member_pairs`; 'kl' is KL(p_i || p_j)), on the test examples selected
    by the boolean mask `examples` (all by default), with harness/evaluation/metrics.py's `PairSums`."""
    if examples is not None:
        log_probs = log_probs[:, examples]
    if log_probs.shape[1] == 0:
        raise ValueError("no test examples selected")
    return {(i, j): PairSums().update(log_probs[i], log_probs[j]).result()
            for i, j in member_pairs(log_probs.shape[0])}


def member_diversity(log_probs: torch.Tensor, examples: torch.Tensor | None = None
                     ) -> dict[str, float]:
    """Disagreement and KL averaged over the M(M-1) ordered member pairs (paper §5.1, Table 4:
    'pairwise diversity ... on the test data'; both directions of the asymmetric KL, as the
    authors' `ensemble_freetickets.py` averages them): the number Tables 4, 5, 7-10 and
    Figures 2 and 4 print. Needs M >= 2."""
    pairs = pair_diversity(log_probs, examples)
    if not pairs:
        raise ValueError("diversity needs at least two members")
    return {metric: float(np.mean([values[metric] for values in pairs.values()]))
            for metric in ("disagreement", "kl")}
