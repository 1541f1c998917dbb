"""Reliability bins (harness/evaluation/metrics.py `reliability_bins`): the ECE's own bins, so a
reliability diagram and the ECE printed beside it cannot disagree."""
import numpy as np
import pytest
import torch
from netcal.metrics import ECE

from harness.evaluation import metrics


def ensemble_predictions(seed: int, examples: int = 3000, classes: int = 10):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, examples, classes, generator=generator) * 3
    return metrics.ensemble_log_probs(logits), torch.randint(0, classes, (examples,),
                                                             generator=generator)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("num_bins", [15, 7])
def test_the_bins_reproduce_the_ece_exactly(seed, num_bins):
    log_probs, labels = ensemble_predictions(seed)
    bins = metrics.reliability_bins(log_probs.double().exp(), labels, num_bins)  # as scored
    scored = metrics.MetricSums(num_bins).update(log_probs, labels).result()["ece"]
    assert bins.ece() == scored  # not approx: the same sums
    assert bins.count.sum() == len(labels)
    filled = bins.count > 0
    by_hand = (bins.count * (bins.accuracy - bins.confidence).abs())[filled].sum() / len(labels)
    assert float(by_hand) == pytest.approx(scored, rel=1e-12)
    assert bool(bins.accuracy[~filled].isnan().all())  # an empty bin has no accuracy


def test_a_confidence_of_one_is_in_the_last_bin_as_the_ece_puts_it():
    probabilities = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    bins = metrics.reliability_bins(probabilities, torch.tensor([0, 1, 1]), 5)
    assert bins.count.tolist() == [0, 0, 1, 0, 2]  # 0.5 -> floor(2.5) = 2; 0.8 and 1 -> 4
    assert bins.accuracy[4] == 1.0 and bins.confidence[4] == pytest.approx(0.9)


def test_the_bins_match_netcals_reliability_diagram_data():
    # netcal bins with numpy's histogram edges, linspace(0, 1, bins + 1); floor(bins * p)
    # agrees with them except on an edge, which random softmax confidences do not hit.
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(500, 4)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = generator.integers(0, 4, 500)
    reference = ECE(bins=15)  # what netcal's ReliabilityDiagram.plot computes
    confidences, matched, spread, bounds, _ = reference.prepare(probabilities, labels)
    (accuracy, confidence, _), counts, _, _ = reference.binning(
        bounds[0], confidences[0], matched[0], confidences[0][:, 0], spread[0][:, 0])
    ours = metrics.reliability_bins(torch.from_numpy(probabilities), torch.from_numpy(labels))
    assert ours.count.numpy() == pytest.approx(counts)
    filled = counts > 0
    assert ours.accuracy.numpy()[filled] == pytest.approx(accuracy[filled], abs=1e-12)
    assert ours.confidence.numpy()[filled] == pytest.approx(confidence[filled], abs=1e-12)
    assert ours.ece() == pytest.approx(reference.measure(probabilities, labels), abs=1e-12)
