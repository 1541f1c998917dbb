"""harness/tables/significance.py: a bootstrap resample is scored with metrics.py's
conventions, and the interval is the same on every call."""
import numpy as np
import pytest
import torch

from harness.evaluation.metrics import MetricSums, ensemble_log_probs
from harness.tables.significance import (BOOTSTRAPPED, Predictions, bootstrap_differences,
                                         resample_indices)


def member_log_probs(seed: int, examples: int) -> torch.Tensor:
    """[3 members, examples, 5 classes] of confident, often wrong predictions."""
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(3, examples, 5, generator=generator)).log_softmax(-1)


def test_a_resample_scores_as_metric_sums_on_those_examples():
    labels = torch.arange(200) % 5
    log_probs = member_log_probs(0, 200)
    run = Predictions.of(log_probs, labels)
    ensemble = ensemble_log_probs(log_probs)
    indices = resample_indices(200, resamples=4, seed=1)
    scores = run.resampled(indices)
    for resample, chosen in enumerate(torch.from_numpy(indices).long()):
        expected = MetricSums().update(ensemble[chosen], labels[chosen]).result()
        assert {metric: scores[metric][resample] for metric in BOOTSTRAPPED} == {
            metric: pytest.approx(expected[metric], abs=1e-12) for metric in BOOTSTRAPPED}
    # the whole set, resampled as itself, is the run's own numbers
    whole = run.resampled(np.arange(200)[None])
    assert {metric: whole[metric][0] for metric in BOOTSTRAPPED} == {
        metric: pytest.approx(run.whole_set[metric], abs=1e-12) for metric in BOOTSTRAPPED}


def test_the_bootstrap_is_the_same_on_every_call():
    labels = torch.arange(100) % 5
    row = [Predictions.of(member_log_probs(1, 100), labels)]
    baseline = [Predictions.of(member_log_probs(2, 100), labels)]
    assert bootstrap_differences(row, baseline) == bootstrap_differences(row, baseline)


def test_runs_of_different_test_sets_have_no_bootstrap():
    row = [Predictions.of(member_log_probs(1, 100), torch.arange(100) % 5)]
    baseline = [Predictions.of(member_log_probs(2, 100), torch.arange(100) % 4)]
    with pytest.raises(ValueError, match="different test sets"):
        bootstrap_differences(row, baseline)
