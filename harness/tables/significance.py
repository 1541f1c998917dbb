"""How sure a difference between two rows of `python -m harness.compare` is: a 95% interval
for (row − baseline) of a metric, by one of two methods.

* Welch's t interval over seeds (`welch_interval`), where both rows have at least two seeds:
  the difference of the mean over seeds, with unequal variances. It assumes the seeds are
  independent runs and a row's metric is roughly normal over seeds; with 2-3 seeds the
  interval is wide, as it should be.
* A paired bootstrap over test examples (`bootstrap_differences`), where a row has a single
  seed: from each run's saved predictions (`predictions/test.npz`,
  harness/evaluation/cached_predictions.py), `RESAMPLES` resamples of the test set drawn with
  replacement from a fixed seed, the same examples for every run (that is the pairing: both
  rows are scored on each resample), and the 2.5th and 97.5th percentiles of the difference.
  A row of several seeds counts as the mean over its seeds' runs on each resample. It covers
  the test set's sampling alone, not how another training seed would differ.

The bootstrap scores a resample with the conventions of harness/evaluation/metrics.py (the
ensemble's prediction is the mean of member probabilities; NLL in nats; ECE over `ECE_BINS`
equal-width confidence bins), from each example's terms of `MetricSums`' sums; it needs the
runs to share one test set in one order.
"""
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import stats

from harness.evaluation.cached_predictions import subensemble_metrics
from harness.evaluation.metrics import ECE_BINS, confidence_bins, ensemble_log_probs

CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# metrics.py's names of the metrics the bootstrap scores
BOOTSTRAPPED = ("accuracy", "nll", "ece")
# resamples scored at a time: [chunk, examples] index arrays stay a few MB for a 10k test set
CHUNK = 100


@dataclass(frozen=True)
class Interval:
    difference: float
    low: float
    high: float

    def scaled(self, factor: float) -> "Interval":
        """The same interval in other units (a fraction in %)."""
        return Interval(factor * self.difference, factor * self.low, factor * self.high)

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def welch_interval(values: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Welch's t interval (`CONFIDENCE`) for mean(values) − mean(baseline), each a metric
    over seeds (at least two each)."""
    if min(len(values), len(baseline)) < 2:
        raise ValueError("Welch's interval needs at least two seeds on each side")
    # Seeds that all score alike (fake or fully deterministic runs) give a zero-width
    # interval; scipy's warning of precision loss there adds nothing to the table.
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):
        test = stats.ttest_ind(values, baseline, equal_var=False)
        interval = test.confidence_interval(confidence_level=CONFIDENCE)
    return Interval(float(np.mean(values) - np.mean(baseline)), float(interval.low),
                    float(interval.high))


@dataclass(frozen=True)
class Predictions:
    """One run's ensemble on the test set: its metrics on the whole set (metrics.py) and each
    example's terms of `MetricSums`' sums, so that a resample is scored without the classes."""
    whole_set: dict[str, float]
    labels: np.ndarray
    correct: np.ndarray  # 1.0 where the ensemble's top class is the label
    nll: np.ndarray  # -log p_ens(label)
    confidence: np.ndarray  # max of the ensemble's probabilities
    confidence_bin: np.ndarray  # its ECE bin

    @classmethod
    def of(cls, log_probs: torch.Tensor, labels: torch.Tensor) -> "Predictions":
        """From a run's member log-probabilities [M, N, C] and labels [N]."""
        ensemble = ensemble_log_probs(log_probs).double()
        confidence, prediction = ensemble.exp().max(dim=1)
        bins = confidence_bins(confidence, ECE_BINS)
        return cls(whole_set=subensemble_metrics(log_probs, labels, range(log_probs.shape[0])),
                   labels=labels.numpy(),
                   correct=(prediction == labels).double().numpy(),
                   nll=-ensemble.gather(1, labels.view(-1, 1)).squeeze(1).numpy(),
                   confidence=confidence.numpy(), confidence_bin=bins.numpy())

    def resampled(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{metric: [R]} on each resample, a row of example indices [R, N]."""
        resamples, examples = indices.shape
        accuracy, nll = self.correct[indices].mean(1), self.nll[indices].mean(1)
        # ECE = sum over bins of |sum of (correct - confidence) in the bin| / N, per resample:
        # one bincount over (resample, bin) pairs
        keys = self.confidence_bin[indices] + ECE_BINS * np.arange(resamples)[:, None]
        gaps = np.bincount(keys.ravel(), weights=(self.correct - self.confidence)[indices].ravel(),
                           minlength=resamples * ECE_BINS).reshape(resamples, ECE_BINS)
        return {"accuracy": accuracy, "nll": nll,
                "ece": np.abs(gaps).sum(1) / examples}


def resample_indices(examples: int, resamples: int = RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, examples] test indices drawn with replacement; the fixed seed makes the
    interval the same on every call."""
    return np.random.default_rng(seed).integers(0, examples, size=(resamples, examples),
                                                dtype=np.int32)  # half the memory of int64


def row_resampled(runs: Sequence[Predictions], indices: np.ndarray) -> dict[str, np.ndarray]:
    """{metric: [R]}: the mean over a row's runs of each run's metric on each resample."""
    chunks = [[run.resampled(indices[start:start + CHUNK]) for run in runs]
              for start in range(0, len(indices), CHUNK)]
    return {metric: np.concatenate([np.mean([scores[metric] for scores in chunk], axis=0)
                                    for chunk in chunks])
            for metric in BOOTSTRAPPED}


def bootstrap_differences(row: Sequence[Predictions], baseline: Sequence[Predictions],
                          resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
                          ) -> dict[str, Interval]:
    """{metric: Interval} of (row − baseline) for `BOOTSTRAPPED`, each side the mean over its
    runs, by the paired percentile bootstrap over test examples. Every run must hold the same
    labels (one test set, one order): a ValueError otherwise."""
    labels = baseline[0].labels
    if any(not np.array_equal(run.labels, labels) for run in (*row, *baseline)):
        raise ValueError("the runs' predictions are of different test sets")
    indices = resample_indices(len(labels), resamples, seed)
    row_scores, baseline_scores = row_resampled(row, indices), row_resampled(baseline, indices)
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals = {}
    for metric in BOOTSTRAPPED:
        difference = (np.mean([run.whole_set[metric] for run in row])
                      - np.mean([run.whole_set[metric] for run in baseline]))
        low, high = np.percentile(row_scores[metric] - baseline_scores[metric],
                                  [tail, 100 - tail])
        intervals[metric] = Interval(float(difference), float(low), float(high))
    return intervals
