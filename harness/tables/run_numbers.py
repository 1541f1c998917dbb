"""A finished run's numbers in the paper tables' units, read from its records
(harness/store/record.py): what the wide tables, `python -m harness.compare` and `make demo` show.

Units are the paper's: accuracies in %, NLL in nats, ECE as a fraction (15 bins, metrics.py).
FLOPs and counts (train_flops, ratios, training_runs) are taken from the first finished seed:
they depend on the configuration only, and a mean could round them.
Corrupted columns come from harness/evaluation/suite_summary.py's `corrupted_summary`: cacc/cnll/cece the
mean over the 15 benchmark corruptions x 5 severities of whichever corrupted suite the run
scored (published sets before generated ones), aacc/anll/aece on ImageNet-A's 200 classes;
empty where a run did not score them.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from harness.tables import render
from harness.store import readers

CLEAN = {"acc": "test/accuracy", "nll": "test/nll", "ece": "test/ece"}
CORRUPTED = ("cacc", "cnll", "cece", "aacc", "anll", "aece")
METRICS = (*CLEAN, *CORRUPTED)
PERCENT = tuple(name for name in METRICS if name in render.PERCENT)  # fractions in run records
FLOPS = ("train_flops", "train_flops_ratio", "test_flops_ratio", "training_runs")
# Wall-clock ms per image of the whole ensemble, dense form and (sparse runs) sparse inference
# form, from the run's timing rows (harness/evaluation/inference_timing.py): machine-dependent, never diffed.
TIMING = {"infer_ms": "timing/inference_seconds_per_image",
          "sparse_infer_ms": "timing/sparse_inference_seconds_per_image"}
PROVENANCE = ("git_commit", "config_hash")


def run_row(run_dir: Path) -> dict:
    """The numbers of one finished run, in table units (its records read and checked by
    harness/store/readers.py: a damaged one is a `DamagedRecord`)."""
    summary = readers.summary(run_dir)
    row = {"method": summary["method"], "dataset": summary["dataset"],
           "model": summary["model"], "M": summary["num_members"],
           "sparsity": float(summary["sparsity"]), "seed": summary["seed"],
           "epoch_factor": summary["epoch_factor"],
           "git_commit": summary["git_commit"], "config_hash": summary["config_hash"]}
    headline = summary["metrics"]
    row.update({name: headline.get(key, np.nan) for name, key in CLEAN.items()})
    row.update({name: 1000 * headline.get(key, np.nan) for name, key in TIMING.items()})
    row.update(corrupted_numbers(run_dir, summary))
    for name in PERCENT:
        row[name] = 100 * row[name]
    row.update(flops_numbers(run_dir))
    return row


def corrupted_numbers(run_dir: Path, summary: dict) -> dict:
    """cacc..aece as the run's summary.json records them (harness/evaluation/suite_summary.py
    `corrupted_summary`; from its metrics for a run that predates that record), empty where
    the run did not score those sets."""
    if isinstance(summary.get("corrupted"), dict):
        corrupted = summary["corrupted"]
    else:
        from harness.evaluation.suite_summary import corrupted_summary  # torch: only when runs are read
        corrupted = corrupted_summary(readers.metrics(run_dir))
    return {name: corrupted.get(name, np.nan) for name in CORRUPTED}


def flops_numbers(run_dir: Path) -> dict:
    """FLOPs figures from the run's flops.json (empty where the run has none)."""
    flops = readers.flops(run_dir)
    if flops is None:
        return dict.fromkeys(FLOPS, np.nan)
    return {name: flops[name] for name in FLOPS}


def aggregate(records: list[dict]) -> dict:
    """Mean and sample std over seeds of the metrics; FLOPs, counts and identity from the
    first seed; provenance joined over the distinct values."""
    frame = pd.DataFrame(records)
    first = records[0]
    row = {key: first[key] for key in ("dataset", "model", "M", "sparsity", *FLOPS)}
    for name in METRICS:
        row[name] = frame[name].mean()
        row[f"{name}_std"] = frame[name].std(ddof=1) if len(frame) > 1 else np.nan
    for name in TIMING:
        row[name] = frame[name].mean()
    row["seeds"] = len(frame)
    for key in PROVENANCE:
        row[key] = ",".join(sorted(set(frame[key].astype(str))))
    return row
