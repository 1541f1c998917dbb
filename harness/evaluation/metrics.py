"""Predictive metrics, the one place their conventions live (paper App. D).

* Ensemble prediction = mean of the members' softmax probabilities (paper §3.2), computed in
  log space: log p_ens = logsumexp_m(log p_m) - log M.
* NLL = -log p_ens(y), averaged over every example of the set (no dropped remainder).
* ECE (Naeini et al. 2015), the uncertainty-baselines / robustness_metrics convention: 15
  equal-width bins on [0, 1], example i in bin floor(15 * conf_i) (confidence 1 in the last),
  confidence = max of the (ensemble) probabilities, accumulated over the whole set, then
  sum_b |acc_b - conf_b| * n_b / N. (The FreeTickets code used linspace(0, 1, 15) edges, i.e.
  14 bins; we do not.) A reliability diagram plots the same bins (`reliability_bins`).
* Brier score = sum over classes of (p_c - onehot_c)^2, averaged over examples
  (uncertainty-baselines' convention, range [0, 2]).
* Diversity (paper §5.1): prediction disagreement = fraction of examples on which two members'
  top-1 predictions differ; KL = mean over examples of KL(p_i || p_j). A run's diversity is the
  mean over every ordered pair of members (`member_pairs`): KL is asymmetric and the authors'
  `ensemble_freetickets.py` ('KD' mode) averages both directions of each pair, six values for
  M = 3. Every diversity number we print (Tables 4, 5, 7-10, Figures 2 and 4) takes this mean.
* OoD detection (paper App. K): the test set is the positive class and the score is the
  (ensemble's) maximum probability, for `auroc`, `aupr` (AUPR-In) and `fpr_at_95_tpr` alike;
  thresholds never split tied scores. torch-uncertainty and uncertainty-baselines count the
  OoD set as positive: their AUROC is ours, their AUPR and FPR95 are not (see each function).

Metrics stream: `MetricSums` accumulates additive sums batch by batch, so a 50k-image set
never needs its probabilities in memory; the whole-set functions below use the same sums.
"""
import itertools
import math
from dataclasses import dataclass

import torch

ECE_BINS = 15


def ensemble_log_probs(member_logits: torch.Tensor) -> torch.Tensor:
    """[M, B, C] member logits -> [B, C] log of the mean of member probabilities."""
    members = member_logits.shape[0]
    log_probs = at_least_float32(member_logits).log_softmax(-1)
    return torch.logsumexp(log_probs, dim=0) - math.log(members)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (AMP) are scored in float32; float64 stays float64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class MetricSums:
    """Additive sufficient statistics of accuracy, NLL, Brier and ECE over a stream."""

    def __init__(self, n_bins: int = ECE_BINS, device: torch.device | str = "cpu"):
        self.n_bins = n_bins
        self.count = 0
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)
        self.correct, self.nll, self.brier = zeros(()), zeros(()), zeros(())
        self.bins = ReliabilityBins.empty(n_bins, device)

    def update(self, log_probs: torch.Tensor, labels: torch.Tensor) -> "MetricSums":
        """log_probs [B, C] (log-probabilities, rows summing to 1 in prob space), labels [B]."""
        log_probs = log_probs.double()
        probs = log_probs.exp()
        confidence, prediction = probs.max(dim=1)
        correct = (prediction == labels).double()
        self.count += labels.shape[0]
        self.correct += correct.sum()
        self.nll -= log_probs.gather(1, labels.view(-1, 1)).sum()
        onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
        self.brier += (probs - onehot).square().sum()
        self.bins.add(confidence, correct)
        return self

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no examples were evaluated")
        return {"accuracy": float(self.correct / self.count),
                "nll": float(self.nll / self.count),
                "ece": self.bins.ece(),
                "brier": float(self.brier / self.count)}


def confidence_bins(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The ECE bin of each confidence (the convention above): floor(n_bins * confidence),
    confidence 1 in the last bin."""
    return (confidence * n_bins).floor().long().clamp_(0, n_bins - 1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per equal-width confidence bin (`confidence_bins`): the examples in it, the sum of
    their confidences and of their correctness; what both the ECE and a reliability diagram
    (accuracy against confidence per bin, Guo et al. 2017 Fig. 1) are made of."""
    count: torch.Tensor  # [n_bins] float64
    confidence_sum: torch.Tensor
    correct_sum: torch.Tensor

    @classmethod
    def empty(cls, n_bins: int, device: torch.device | str = "cpu") -> "ReliabilityBins":
        return cls(*(torch.zeros(n_bins, dtype=torch.float64, device=device) for _ in range(3)))

    def add(self, confidence: torch.Tensor, correct: torch.Tensor) -> "ReliabilityBins":
        """Adds examples: their confidences and 1.0 where the prediction was right, float64."""
        bins = confidence_bins(confidence, len(self.count))
        self.count.index_add_(0, bins, torch.ones_like(confidence))
        self.confidence_sum.index_add_(0, bins, confidence)
        self.correct_sum.index_add_(0, bins, correct)
        return self

    def ece(self) -> float:
        """sum_b |acc_b - conf_b| * n_b / N, from the sums as they are (no division per bin)."""
        return float((self.correct_sum - self.confidence_sum).abs().sum() / self.count.sum())

    @property
    def accuracy(self) -> torch.Tensor:
        """Accuracy per bin, NaN where the bin is empty."""
        return self.correct_sum / self.count

    @property
    def confidence(self) -> torch.Tensor:
        """Mean confidence per bin, NaN where the bin is empty."""
        return self.confidence_sum / self.count


def reliability_bins(probabilities: torch.Tensor, labels: torch.Tensor,
                     num_bins: int = ECE_BINS) -> ReliabilityBins:
    """The reliability bins of predictions `probabilities` [N, C] (an ensemble's: the mean of
    its members' probabilities) for `labels` [N]. Given `log_probs.double().exp()`, as
    `MetricSums` exponentiates, their `ece()` is the ECE it scores from `log_probs`."""
    confidence, prediction = probabilities.double().max(dim=1)
    return ReliabilityBins.empty(num_bins, probabilities.device).add(
        confidence, (prediction == labels).double())


def member_pairs(members: int) -> list[tuple[int, int]]:
    """The ordered pairs (i, j), i != j, that a mean pairwise diversity averages over (the
    convention above): both directions of the asymmetric KL."""
    return list(itertools.permutations(range(members), 2))


def kl_divergence(log_probs_i: torch.Tensor, log_probs_j: torch.Tensor) -> torch.Tensor:
    """KL(p_i || p_j) summed over every axis but the first (classes; for feature maps also the
    spatial positions) and over the rows of the first: the caller divides by the rows."""
    log_probs_i, log_probs_j = log_probs_i.double(), log_probs_j.double()
    return (log_probs_i.exp() * (log_probs_i - log_probs_j)).sum()


class PairSums:
    """Disagreement and KL divergence between two members, streamed (paper §5.1)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.count = 0
        self.disagree = torch.zeros((), dtype=torch.float64, device=device)
        self.kl = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, log_probs_i: torch.Tensor, log_probs_j: torch.Tensor) -> "PairSums":
        log_probs_i, log_probs_j = log_probs_i.double(), log_probs_j.double()
        self.count += log_probs_i.shape[0]
        self.disagree += (log_probs_i.argmax(1) != log_probs_j.argmax(1)).sum()
        self.kl += kl_divergence(log_probs_i, log_probs_j)
        return self

    def result(self) -> dict[str, float]:
        return {"disagreement": float(self.disagree / self.count),
                "kl": float(self.kl / self.count)}


def _whole_set(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return MetricSums(device=log_probs.device).update(log_probs, labels).result()


def accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["accuracy"]


def nll(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["nll"]


def ece(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["ece"]


def brier(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return _whole_set(log_probs, labels)["brier"]


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy -sum_c p_c log p_c of each row of log-probabilities [B, C] -> [B]."""
    return torch.special.entr(at_least_float32(log_probs).exp()).sum(-1)  # 0 log 0 = 0


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of scores meant to rank `positive` above `negative` (OoD
    detection, paper App. K: in-distribution examples are the positives): the Mann-Whitney U
    statistic over n_pos * n_neg, ties counting one half (as sklearn's roc_auc_score)."""
    scores = torch.cat([positive.flatten(), negative.flatten()]).double()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]  # average 1-based rank among ties
    n_pos, n_neg = positive.numel(), negative.numel()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs positive and negative examples")
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _operating_points(positive: torch.Tensor, negative: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """True and false positives (float64) at each threshold t = a distinct score, highest
    first, an example counting as positive where its score >= t: tied scores are never split
    (no threshold separates them), as sklearn's curves and torch-uncertainty's FPRx."""
    n_pos, n_neg = positive.numel(), negative.numel()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("OoD detection metrics need positive and negative examples")
    scores = torch.cat([positive.flatten(), negative.flatten()]).double()
    is_positive = torch.cat([torch.ones(n_pos, dtype=torch.float64, device=scores.device),
                             torch.zeros(n_neg, dtype=torch.float64, device=scores.device)])
    scores, order = scores.sort(descending=True)
    last_of_tie = torch.cat([(scores[1:] != scores[:-1]).nonzero().flatten(),
                             torch.tensor([scores.numel() - 1], device=scores.device)])
    true_positives = is_positive[order].cumsum(0)[last_of_tie]
    false_positives = (last_of_tie + 1).double() - true_positives
    return true_positives, false_positives, n_pos, n_neg


def aupr(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the precision-recall curve of scores meant to rank `positive` above
    `negative`, as average precision: sum over the thresholds of `_operating_points` of
    (R_k - R_{k-1}) * P_k, R_0 = 0, no interpolation; sklearn's average_precision_score and
    torchmetrics' BinaryAveragePrecision (torch-uncertainty's `AUPR`).

    Which class is positive matters here, unlike for `auroc`. The ood suite passes the test
    set as positive, score = maximum probability, as its AUROC: Hendrycks & Gimpel's (2017)
    AUPR-In. torch-uncertainty (ood/AUPR: OoD labelled 1, score -maximum probability) and
    uncertainty-baselines (auprc) report AUPR-Out, which is aupr(-outside, -inside)."""
    true_positives, false_positives, n_pos, _ = _operating_points(positive, negative)
    precision = true_positives / (true_positives + false_positives)
    recall_gain = torch.diff(true_positives, prepend=true_positives.new_zeros(1)) / n_pos
    return float((recall_gain * precision).sum())


def fpr_at_95_tpr(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """FPR95: the fraction of `negative` scores >= t at the highest threshold t of
    `_operating_points` that keeps at least 95% of `positive` (TPR >= 0.95, tested exactly
    as 20 TP >= 19 P), without interpolating between thresholds; sklearn's
    roc_curve(drop_intermediate=False) fpr at its first tpr >= 0.95 and torch-uncertainty's
    tie-aware FPRx (its FPR95 with pos_label = the positive set).

    The ood suite passes the test set as positive (score: maximum probability), as its AUROC
    and as ODIN (Liang et al. 2018) and energy-based OoD detection (Liu et al. 2020): the
    fraction of OoD images taken for in-distribution ones when 95% of the test set is.
    torch-uncertainty's FPR95 counts OoD as positive (Hendrycks et al. 2019, score -maximum
    probability): the fraction of test images flagged when 95% of the OoD set is, which is
    fpr_at_95_tpr(-outside, -inside), a different number."""
    true_positives, false_positives, n_pos, n_neg = _operating_points(positive, negative)
    reached = (20 * true_positives >= 19 * n_pos).nonzero()[0, 0]
    return float(false_positives[reached] / n_neg)
