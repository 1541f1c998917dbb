"""The sparsity sweep of DST and EDST ensembles (paper §5.4, Figure 4) and the correlation
between their members' and their ensemble's accuracy across it (App. H, Table 8):
Table 8's measure and its cells across rows (harness/tables/catalogue.py).

One sweep point is one run (a row of gin/table8/: M = 3 at one sparsity S; the levels are
ours, the paper does not list them; the point at S = 0.8 is Table 1-2's run, reused). Its
cells, per (dataset, method, M, sparsity), are what Figure 4 draws:

    individual_acc  mean test accuracy of the members on their own (%)
    acc             the ensemble's test accuracy (%)
    kl              the members' KL divergence, mean over member pairs (paper §5.1)

Across the points of one (dataset, method, M), Table 8's `pearson` and `spearman` are the
Pearson and Spearman correlation coefficients (scipy.stats) between individual_acc and acc
(App. H: "between the mean accuracy of individual networks and the accuracy of their
ensemble"), one point per sparsity level; sparsity is empty in those cells, as in the paper.
"""
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.tables.diversity import diversity_and_accuracy, individual_accuracy

# Fewer levels than this make no correlation worth printing (two points always give +-1).
MIN_LEVELS = 3
POINT_METRICS = ("individual_acc", "acc", "kl")


def sweep_correlation(individual, ensemble) -> dict[str, float]:
    """{'pearson', 'spearman'} between the mean member accuracies and the ensemble accuracies
    of the sweep's points (same order); a ValueError when there are fewer than MIN_LEVELS
    points or either side does not vary (the coefficient is undefined)."""
    individual, ensemble = np.asarray(individual, float), np.asarray(ensemble, float)
    if len(individual) != len(ensemble):
        raise ValueError(f"{len(individual)} member accuracies but {len(ensemble)} ensemble "
                         f"accuracies")
    if len(individual) < MIN_LEVELS:
        raise ValueError(f"a correlation across the sweep needs at least {MIN_LEVELS} "
                         f"sparsity levels, found {len(individual)}")
    for name, values in (("mean member", individual), ("ensemble", ensemble)):
        if np.ptp(values) == 0:
            raise ValueError(f"the {name} accuracy is the same ({values[0]:.2f}) at every "
                             f"sparsity level, so no correlation is defined")
    return {"pearson": float(stats.pearsonr(individual, ensemble).statistic),
            "spearman": float(stats.spearmanr(individual, ensemble).statistic)}


def sweep_point(run_dir: Path) -> dict[str, float]:
    """individual_acc, acc and kl of one sweep point."""
    measured = diversity_and_accuracy(run_dir)
    return {"individual_acc": individual_accuracy(run_dir), "acc": measured["acc"],
            "kl": measured["kl"]}


def correlations(cells: pd.DataFrame) -> list[dict]:
    """Table 8's cells from the sweep points: per (dataset, model, method, M), the Pearson and
    Spearman correlation across sparsity levels, or 'missing' with the reason (too few levels,
    a constant accuracy). Rows reusing one run (a CIFAR-100 row at smoke scale is the CIFAR-10
    row's run) count once per level."""
    keys = ["dataset", "model", "method", "M"]
    points = cells[(cells.status == "ok") & cells.metric.isin(["individual_acc", "acc"])]
    row_names = points.groupby(keys).row.agg(lambda names: ",".join(sorted(set(names))))
    points = (points.drop_duplicates([*keys, "sparsity", "metric"])
              .pivot(index=[*keys, "sparsity"], columns="metric", values="value")
              .dropna().reset_index().sort_values([*keys, "sparsity"]))
    out = []
    for identity, group in points.groupby(keys, sort=False):
        base = {**dict(zip(keys, identity)), "sparsity": np.nan, "setting": "",
                "row": row_names[identity],
                "runs": f"{len(group)} levels: "
                        + ", ".join(f"{s:g}" for s in group.sparsity)}
        try:
            values = sweep_correlation(group.individual_acc, group.acc)
        except ValueError as error:
            out += [{**base, "metric": metric, "value": np.nan, "status": "missing",
                     "reason": str(error)} for metric in ("pearson", "spearman")]
            continue
        out += [{**base, "metric": metric, "value": value} for metric, value in values.items()]
    return out
