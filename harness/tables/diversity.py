"""The diversity tables (paper Tables 4, 5, 7, 9 and 10), measured on each run's cached test
predictions (harness/evaluation/cached_predictions.py); harness/tables/catalogue.py names each table's measure.

Diversity is the paper's §5.1 (after Fort et al. 2019), "the pairwise diversity of the
subnetworks ... on the test data", D_d = E[d(P1, P2)] with two metrics d: "Prediction
Disagreement is defined as the fraction of test data the prediction of models disagree on",
d_dis(P1, P2) = 1/N sum_i [argmax P1(y_i) != argmax P2(y_i)], and the KL divergence
d_KL(P1, P2) = E_{P1}[log P1(y) - log P2(y)] between the members' softmax outputs. Each table
prints their mean over the ordered member pairs (both directions of the asymmetric KL, as the
authors' `ensemble_freetickets.py` averages them; harness/evaluation/metrics.py `member_pairs`), computed
once in `harness.evaluation.cached_predictions.member_diversity`. "Acc" is the ensemble's
test accuracy (the mean of member probabilities, harness/evaluation/metrics.py) as the run scored it;
Table 10's "Individual Acc" is the members' mean test accuracy (App. J).
"""
from pathlib import Path

import numpy as np

from harness.evaluation.cached_predictions import load_predictions, member_diversity, subensemble_metrics
from harness.data.facts import class_name
from harness.tables.long import class_setting
from harness.store import readers

FIRST_CLASSES = 10  # Table 7: the first ten classes of CIFAR-100 (App. G)


def ensemble_accuracy(run_dir: Path) -> float:
    """The run's own ensemble test accuracy, in %."""
    return 100 * readers.summary(run_dir)["metrics"]["test/accuracy"]


def individual_accuracy(run_dir: Path) -> float:
    """Mean test accuracy of the members on their own, in % (Table 10, App. J)."""
    log_probs, labels = load_predictions(run_dir)
    return 100 * float(np.mean([subensemble_metrics(log_probs, labels, [m])["accuracy"]
                                for m in range(log_probs.shape[0])]))


def diversity_and_accuracy(run_dir: Path) -> dict[str, float]:
    """d_dis, d_KL (mean over member pairs) and ensemble accuracy (%)."""
    log_probs, _ = load_predictions(run_dir)
    return {**member_diversity(log_probs), "acc": ensemble_accuracy(run_dir)}


def class_disagreement(run_dir: Path) -> dict[tuple[str, str], float]:
    log_probs, labels = load_predictions(run_dir)
    dataset = readers.summary(run_dir)["dataset"]
    classes = min(FIRST_CLASSES, log_probs.shape[2])
    return {(class_setting(k, class_name(dataset, k)), "disagreement"):
            member_diversity(log_probs, labels == k)["disagreement"]
            for k in range(classes) if bool((labels == k).any())}


def regrowth(run_dir: Path) -> dict[str, float]:
    return {**diversity_and_accuracy(run_dir), "individual_acc": individual_accuracy(run_dir)}
