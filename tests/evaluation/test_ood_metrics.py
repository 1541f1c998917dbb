"""OoD AUPR-In and FPR95 against scikit-learn, torchmetrics' BinaryAveragePrecision (what
torch-uncertainty reports as AUPR) and torch-uncertainty's own FPR95 example; the documented
difference of positive class; the ood suite's rows and summary."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_curve
from torchmetrics.functional.classification import binary_average_precision

from harness.evaluation.metrics import aupr, auroc, fpr_at_95_tpr
from harness.evaluation.suite_summary import ood_summary
from harness.evaluation.suites import ood_rows


def score_sets(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scores on [0, 1] (a maximum probability) of 40 positives and 37 negatives: continuous,
    or on 6 levels, so that most scores tie across the two sets."""
    rng = np.random.default_rng(seed)
    if tied:
        return rng.integers(1, 6, 40) / 5, rng.integers(0, 5, 37) / 5
    return rng.beta(4, 2, 40), rng.beta(2, 3, 37)


def labelled(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ones(len(positive)), np.zeros(len(negative))], np.r_[positive, negative]


def sklearn_fpr95(positive: np.ndarray, negative: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(*labelled(positive, negative), drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95)])


CASES = [(seed, tied) for seed in range(3) for tied in (False, True)]


@pytest.mark.parametrize("seed, tied", CASES)
def test_aupr_is_sklearns_average_precision_and_torch_uncertaintys(seed, tied):
    positive, negative = score_sets(seed, tied)
    ours = aupr(torch.tensor(positive), torch.tensor(negative))
    assert ours == pytest.approx(average_precision_score(*labelled(positive, negative)),
                                 abs=1e-12)
    target, scores = labelled(positive, negative)
    their = binary_average_precision(torch.tensor(scores), torch.tensor(target).long())
    assert ours == pytest.approx(float(their), abs=1e-6)  # torchmetrics answers in float32


@pytest.mark.parametrize("seed, tied", CASES)
def test_fpr95_is_sklearns_roc_curve_at_the_first_tpr_of_95_percent(seed, tied):
    positive, negative = score_sets(seed, tied)
    assert fpr_at_95_tpr(torch.tensor(positive), torch.tensor(negative)) == pytest.approx(
        sklearn_fpr95(positive, negative), abs=1e-12)


def test_fpr95_gives_torch_uncertaintys_documented_example():
    # torch-uncertainty's FPRx docstring: confidences [0.9, 0.8, 0.7, 0.6, 0.4, 0.2, 0.1],
    # targets [1, 0, 1, 0, 0, 1, 0] (1 = OoD, the positive class) -> FPR95 0.75
    positive, negative = torch.tensor([0.9, 0.7, 0.2]), torch.tensor([0.8, 0.6, 0.4, 0.1])
    assert fpr_at_95_tpr(positive, negative) == 0.75


def test_thresholds_keep_ties_whole():
    same = torch.full((20,), 0.5)
    assert auroc(same, same) == 0.5
    assert aupr(same, same[:5]) == pytest.approx(20 / 25)
    assert fpr_at_95_tpr(same, same) == 1.0  # no threshold keeps 95% and drops any tie
    # 19 of 20 positives above every negative: TPR 0.95 exactly is reached, with no FP
    positive = torch.cat([torch.full((19,), 0.9), torch.tensor([0.1])])
    assert fpr_at_95_tpr(positive, torch.full((10,), 0.5)) == 0.0


def test_torch_uncertaintys_ood_positive_numbers_are_ours_with_the_sets_swapped_and_negated():
    # torch-uncertainty labels OoD 1 and scores it by -max probability (ood/AUPR, ood/FPR95)
    rng = np.random.default_rng(0)
    inside, outside = rng.beta(5, 1, 90), rng.beta(1, 1, 10)  # mostly in-distribution
    target = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    their_aupr = float(binary_average_precision(torch.tensor(-np.r_[inside, outside]),
                                                torch.tensor(target).long()))
    inside_t, outside_t = torch.tensor(inside), torch.tensor(outside)
    assert aupr(-outside_t, -inside_t) == pytest.approx(their_aupr, abs=1e-6)
    assert aupr(-outside_t, -inside_t) == pytest.approx(
        average_precision_score(*labelled(-outside, -inside)), abs=1e-12)
    assert fpr_at_95_tpr(-outside_t, -inside_t) == pytest.approx(
        sklearn_fpr95(-outside, -inside), abs=1e-12)
    # AUPR's base rate is the positives' share, 0.9 for In and 0.1 for Out; AUROC has none
    assert abs(aupr(inside_t, outside_t) - their_aupr) > 0.01
    assert abs(fpr_at_95_tpr(inside_t, outside_t) - fpr_at_95_tpr(-outside_t, -inside_t)) > 0.01
    assert auroc(inside_t, outside_t) == pytest.approx(auroc(-outside_t, -inside_t), abs=1e-12)


def test_an_empty_set_is_an_error():
    with pytest.raises(ValueError, match="positive and negative"):
        aupr(torch.tensor([0.5]), torch.tensor([]))
    with pytest.raises(ValueError, match="positive and negative"):
        fpr_at_95_tpr(torch.tensor([]), torch.tensor([0.5]))


def test_the_ood_rows_and_summary_carry_the_three_metrics_by_both_scores():
    inside = {"ensemble": torch.tensor([[0.9, 0.8, 0.7], [-0.1, -0.2, -0.3]])}
    outside = {"ensemble": torch.tensor([[0.2, 0.75], [-0.05, -0.25]])}
    rows = pd.DataFrame(ood_rows(inside, outside, "svhn")).assign(suite="ood")
    values = rows.set_index("metric").value
    assert values["auroc_maxprob"] == pytest.approx(5 / 6)
    assert values["aupr_in_maxprob"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert values["fpr95_maxprob"] == 0.5  # all 3 kept at 0.7: 0.75 above it, 0.2 not
    assert values["fpr95_entropy"] == 1.0
    assert set(ood_summary(rows)) == {f"{metric}_{name}svhn" for metric in
                                      ("auroc", "aupr_in", "fpr95")
                                      for name in ("", "entropy_")}
