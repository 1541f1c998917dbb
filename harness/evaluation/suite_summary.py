"""What the tables read from a run's robustness rows (metrics.parquet, long format,
harness/evaluation/suites.py's suites): the corrupted summary cAcc/cNLL/cECE of paper Tables 1-3
(the mean over Hendrycks & Dietterich's 15 benchmark corruptions x 5 severities, as
uncertainty-baselines computes it) and aAcc/aNLL/aECE on ImageNet-A (App. D); the OoD AUROCs
(App. K) with their AUPR-In and FPR95 (harness/evaluation/metrics.py) and FGSM's robust
accuracy min/mean/max over the attacks crafted on each member (App. L). Computed at read time
from the rows; nothing here scores a network."""
from typing import Sequence

import numpy as np
import pandas as pd

from harness.data import corrupt, corruptions
from harness.data.facts import FAMILIES

BENCHMARK_CORRUPTIONS = tuple(corruptions.BENCHMARK)  # the 15 of cAcc/cNLL/cECE
EXTRA_CORRUPTIONS = tuple(corruptions.EXTRA)  # speckle noise, Gaussian blur, spatter, saturate
ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = corrupt.SEVERITIES
# Where cAcc comes from when a run has several corrupted suites: published sets first.
CORRUPTED_SUITES = (*(family.corrupted_suite for family in FAMILIES.values()
                      if family.corrupted_suite), "generated_c")

SUMMARY_METRICS = (("acc", "accuracy"), ("nll", "nll"), ("ece", "ece"))


def _ensemble(frame: pd.DataFrame, suite: str, member: str) -> pd.DataFrame:
    return frame[(frame["suite"] == suite) & (frame["member"] == member)]


def _mean_over(rows: pd.DataFrame, names: Sequence[str]) -> dict[str, float] | None:
    """Mean accuracy/NLL/ECE over every (corruption, severity) of `names`; None unless all
    5 x len(names) sets are present (a partial mean is not the benchmark's number)."""
    rows = rows[rows["corruption"].isin(names)]
    sets = set(zip(rows["corruption"], rows["severity"]))
    if sets != {(name, severity) for name in names for severity in SEVERITIES}:
        return None
    means = rows.groupby("metric")["value"].mean()
    return {key: float(means[metric]) for key, metric in SUMMARY_METRICS if metric in means}


def corrupted_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict:
    """From a run's metrics frame: cacc/cnll/cece = the mean of the per-set metrics over the
    15 benchmark corruptions x 5 severities (uncertainty-baselines), the `_extra` variants
    over the 4 extra corruptions, `c_suite` naming the suite they come from (published before
    generated); aacc/anll/aece on ImageNet-A restricted to its 200 classes and `_1000` on the
    1000-way prediction. Keys are absent where the run lacks the sets."""
    out: dict = {}
    for suite in CORRUPTED_SUITES:
        rows = _ensemble(frame, suite, member)
        benchmark = _mean_over(rows, BENCHMARK_CORRUPTIONS)
        if benchmark is None:
            continue
        out["c_suite"] = suite
        out.update({f"c{key}": value for key, value in benchmark.items()})
        extra = _mean_over(rows, EXTRA_CORRUPTIONS)
        out.update({f"c{key}_extra": value for key, value in (extra or {}).items()})
        break
    rows = _ensemble(frame, "imagenet_a", member)
    for view, suffix in (("restricted_200", ""), ("full_1000", "_1000")):
        values = rows[rows["corruption"] == view].set_index("metric")["value"]
        out.update({f"a{key}{suffix}": float(values[metric]) for key, metric in SUMMARY_METRICS
                    if metric in values})
    return out


def ood_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict[str, float]:
    """{'<metric>_<set>': by maximum probability, '<metric>_entropy_<set>': by entropy}, for
    metric auroc, aupr_in and fpr95 (those the run scored: runs before AUPR and FPR95 have
    AUROC alone)."""
    rows = _ensemble(frame, "ood", member)
    return {f"{metric.replace('_maxprob', '')}_{name}": float(value) for name, metric, value
            in zip(rows["corruption"], rows["metric"], rows["value"])}


def fgsm_summary(frame: pd.DataFrame, member: str = "ensemble") -> dict[str, float]:
    """App. L's robust accuracy: {min, mean, max} over the attacks crafted on each member."""
    rows = _ensemble(frame, "fgsm", member)
    accuracy = rows.loc[rows["metric"] == "accuracy", "value"].to_numpy()
    if accuracy.size == 0:
        return {}
    return {"fgsm_acc_min": float(np.min(accuracy)), "fgsm_acc_mean": float(np.mean(accuracy)),
            "fgsm_acc_max": float(np.max(accuracy))}
