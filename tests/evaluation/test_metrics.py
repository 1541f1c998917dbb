import math

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from harness.evaluation import metrics


def random_predictions(n=2000, classes=10, members=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(members, n, classes, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, classes, (n,), generator=generator)
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_agrees_with_torchmetrics(seed):
    logits, labels = random_predictions(seed=seed, members=1)
    probs = logits[0].float().softmax(-1)
    reference = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(probs, labels)
    assert metrics.ece(probs.log(), labels) == pytest.approx(float(reference), abs=1e-6)


def test_ensemble_nll_is_minus_log_of_mean_probability():
    logits, labels = random_predictions()
    mean_probs = logits.softmax(-1).mean(0)
    direct = -mean_probs[torch.arange(len(labels)), labels].log().mean()
    ensemble = metrics.ensemble_log_probs(logits)
    assert metrics.nll(ensemble, labels) == pytest.approx(float(direct), rel=1e-9, abs=1e-9)
    assert torch.allclose(ensemble.exp().sum(-1), torch.ones(len(labels), dtype=torch.float64))


def test_ensemble_nll_is_stable_for_confident_members():
    logits = torch.tensor([[[200.0, -200.0]], [[-200.0, 200.0]]])  # members disagree fully
    nll = metrics.nll(metrics.ensemble_log_probs(logits), torch.tensor([0]))
    assert nll == pytest.approx(math.log(2), abs=1e-6)


def test_perfectly_calibrated_predictions_have_zero_ece():
    # In each confidence group the accuracy equals the confidence exactly.
    rows, labels = [], []
    for confidence, count in ((0.5, 10), (0.7, 10), (0.9, 20), (1.0, 5)):
        correct = round(confidence * count)
        for index in range(count):
            rows.append([confidence, 1 - confidence])
            labels.append(0 if index < correct else 1)
    probs = torch.tensor(rows, dtype=torch.float64)
    assert metrics.ece(probs.log(), torch.tensor(labels)) == pytest.approx(0.0, abs=1e-12)


def test_overconfident_predictions_have_the_gap_as_ece():
    probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 5 + [1] * 5)
    assert metrics.ece(probs.log(), labels) == pytest.approx(0.4)


def test_streamed_sums_equal_the_whole_set():
    logits, labels = random_predictions(members=1)
    log_probs = logits[0].log_softmax(-1)
    streamed = metrics.MetricSums()
    for chunk in range(0, len(labels), 300):  # uneven last chunk
        streamed.update(log_probs[chunk:chunk + 300], labels[chunk:chunk + 300])
    whole = metrics.MetricSums().update(log_probs, labels).result()
    for name, value in streamed.result().items():
        assert value == pytest.approx(whole[name], rel=1e-12)


def test_accuracy_and_brier_by_hand():
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    # argmax of the tie [0.5, 0.5] is class 0, so 1 of 3 is correct.
    assert metrics.accuracy(probs.log(), labels) == pytest.approx(1 / 3)
    brier = ((0.2**2 + 0.2**2) + (0.6**2 + 0.6**2) + (0.5**2 + 0.5**2)) / 3
    assert metrics.brier(probs.log(), labels) == pytest.approx(brier)


def test_pair_disagreement_and_kl():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    q = torch.tensor([[0.6, 0.4], [0.7, 0.3]], dtype=torch.float64)
    result = metrics.PairSums().update(p.log(), q.log()).result()
    assert result["disagreement"] == pytest.approx(0.5)
    kl = (p * (p / q).log()).sum(1).mean()
    assert result["kl"] == pytest.approx(float(kl))


def test_non_finite_logits_are_an_error_naming_the_set_and_member():
    """A NaN row used to count as a prediction of class 0 in accuracy."""
    from harness.evaluation.evaluate import EvalSet, evaluate
    from harness.evaluation.predictors import Predictor

    class Members(Predictor):
        num_members = 3

        def forward(self, x):
            logits = torch.zeros(3, x.shape[0], 4)
            logits[2, 1, 0] = math.nan
            return logits

    labels = torch.zeros(5, dtype=torch.long)
    eval_set = EvalSet("test", "clean", 0, lambda: [(torch.zeros(5, 1), labels)], 1)
    with pytest.raises(FloatingPointError, match=r"member 2 of 3 .* on test/clean"):
        evaluate(Members(), eval_set, progress=False)
