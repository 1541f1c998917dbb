"""The wide tables (paper Tables 1-3 and 6): one line per row of the table, ours beside the
paper's numbers, from the rows' runs (harness/table_sources.py); harness/report.py writes them.

One table row per row config: the mean over its finished seeds, with the sample standard
deviation (ddof=1; NaN for one seed) in `<metric>_std`. The paper's rows come from
`reports/reference/freetickets_tables.csv`, matched on (table, method, M, sparsity); a paper
row with no finished run of ours is kept with status 'missing' and empty numbers, never a
made-up one.

Units are the paper's: accuracies in %, NLL in nats, ECE as a fraction (15 bins, metrics.py).
FLOPs and counts (train_flops, ratios, training_runs) are taken from the first finished seed:
they depend on the configuration only, and a mean could round them.
Corrupted columns come from harness/robustness.py's `corrupted_summary`: cacc/cnll/cece the
mean over the 15 benchmark corruptions x 5 severities of whichever corrupted suite the run
scored (published sets before generated ones), aacc/anll/aece on ImageNet-A's 200 classes;
empty where a run did not score them."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness import render
from harness.data.facts import dataset_family
from harness.durable import atomic_write
from harness.errors import UserError
from harness.record import SUMMARY, read_metrics, read_summary
from harness.table_sources import RowRuns

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "reference" / "freetickets_tables.csv"

CLEAN = {"acc": "test/accuracy", "nll": "test/nll", "ece": "test/ece"}
CORRUPTED = ("cacc", "cnll", "cece", "aacc", "anll", "aece")
METRICS = (*CLEAN, *CORRUPTED)
PERCENT = tuple(name for name in METRICS if name in render.PERCENT)  # fractions in run records
FLOPS = ("train_flops", "train_flops_ratio", "test_flops_ratio", "training_runs")
# Wall-clock ms per image of the whole ensemble, dense form and (sparse runs) sparse inference
# form, from the run's timing rows (harness/timing.py): machine-dependent, never diffed.
TIMING = {"infer_ms": "timing/inference_seconds_per_image",
          "sparse_infer_ms": "timing/sparse_inference_seconds_per_image"}
IDENTITY = ("table", "dataset", "model", "method", "M", "sparsity", "row", "status")
PROVENANCE = ("git_commit", "config_hash")
# reference column -> our column it sits beside
PAPER = {**{name: name for name in METRICS}, "train_flops_abs": "train_flops",
         "train_flops_ratio": "train_flops_ratio", "test_flops_ratio": "test_flops_ratio",
         "training_runs": "training_runs"}
COLUMNS = (*IDENTITY, *METRICS, *(f"{name}_std" for name in METRICS), *FLOPS, *TIMING,
           "seeds", "scale", *PROVENANCE, *(f"paper_{ours}" for ours in PAPER.values()))
DEMO_COLUMNS = ("method", "dataset", "model", "M", "sparsity", "acc", "nll", "ece", "cacc",
                "cnll", "cece", "train_flops", "train_flops_ratio", "test_flops_ratio",
                *TIMING, "training_runs", "seed", "epoch_factor")


def incompatible(path: Path, what) -> UserError:
    return UserError(f"{path} lacks {what}: it was written by an incompatible version of the "
                     f"harness; run it again")


def run_row(run_dir: Path) -> dict:
    """The numbers of one finished run, in table units."""
    try:
        summary = read_summary(run_dir)
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {run_dir / SUMMARY}: {error}") from error
    try:
        row = {"method": summary["method"], "dataset": summary["dataset"],
               "model": summary["model"], "M": summary["num_members"],
               "sparsity": float(summary["sparsity"]), "seed": summary["seed"],
               "epoch_factor": summary["epoch_factor"],
               "git_commit": summary["git_commit"], "config_hash": summary["config_hash"]}
        headline = summary["metrics"]
    except KeyError as key:
        raise incompatible(run_dir / SUMMARY, key) from None
    row.update({name: headline.get(key, np.nan) for name, key in CLEAN.items()})
    row.update({name: 1000 * headline.get(key, np.nan) for name, key in TIMING.items()})
    row.update(corrupted_numbers(run_dir, summary))
    for name in PERCENT:
        row[name] = 100 * row[name]
    row.update(flops_numbers(run_dir))
    return row


def corrupted_numbers(run_dir: Path, summary: dict) -> dict:
    """cacc..aece as the run's summary.json records them (harness/robustness.py
    `corrupted_summary`; from its metrics for a run that predates that record), empty where
    the run did not score those sets."""
    if "corrupted" in summary:
        corrupted = summary["corrupted"]
    else:
        from harness.robustness import corrupted_summary  # torch: only when runs are read
        corrupted = corrupted_summary(read_metrics(run_dir))
    return {name: corrupted.get(name, np.nan) for name in CORRUPTED}


def flops_numbers(run_dir: Path) -> dict:
    """FLOPs figures from the run's flops.json (empty where the run has none)."""
    path = run_dir / "flops.json"
    if not path.is_file():
        return dict.fromkeys(FLOPS, np.nan)
    flops = json.loads(path.read_text())
    missing = [name for name in FLOPS if name not in flops]
    if missing:
        raise incompatible(path, ", ".join(missing))
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


def load_reference(path: Path = REFERENCE) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"the paper's reference table {path} is missing")
    return pd.read_csv(path)


def paper_numbers(their: pd.Series) -> dict:
    """One reference row's numbers, named `paper_<our column>`."""
    return {f"paper_{ours}": float(their[theirs]) for theirs, ours in PAPER.items()}


def build_table(table: int, scale: str, runs: list[RowRuns],
                reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The table frame: paper order, then our rows the paper lacks."""
    reference = load_reference() if reference is None else reference
    paper = reference[reference.table == table].reset_index(drop=True)
    ours = [{"table": table, "method": row.method, "row": row.name, "status": "ok",
             "scale": scale, **aggregate([run_row(path) for path in row.finished])}
            for row in runs if row.finished]
    rows, matched = [], set()
    several_datasets = paper.dataset.nunique() > 1  # Table 6: CIFAR-10 and CIFAR-100
    for index, their in paper.iterrows():
        matches = [row for row in ours if (row["method"], row["M"]) == (their.method, their.M)
                   and np.isclose(row["sparsity"], their.sparsity)
                   and (not several_datasets
                        or dataset_family(row["dataset"]) == their.dataset)]
        matched.update(row["row"] for row in matches)
        rows += [{**row, "_order": index, **paper_numbers(their)} for row in matches]
        if not matches:
            rows.append({"table": table, "dataset": their.dataset, "model": their.model,
                         "method": their.method, "M": their.M, "sparsity": their.sparsity,
                         "status": "missing", "seeds": 0, "scale": scale, "_order": index,
                         **paper_numbers(their)})
    rows += [{**row, "_order": len(paper)} for row in ours if row["row"] not in matched]
    frame = pd.DataFrame(rows).sort_values(["_order", "row"], kind="stable", na_position="first")
    frame = frame.reindex(columns=list(COLUMNS)).reset_index(drop=True)
    return frame.astype({"table": "int64", "M": "int64", "seeds": "int64",
                         "sparsity": "float64"})


# Per-row notes on the FLOPs of the rows the paper quotes from Havasi et al. 2021 (marked *
# in its Tables 1-3); `havasi_notes` gives the convention they share.
HAVASI_NOTES = {
    "Monte Carlo Dropout": "trained for uncertainty-baselines' 200 epochs, so 0.80x of the "
                           "250-epoch reference (the paper prints 1.00x); test FLOPs are K x "
                           "dense for K passes (the row has K = 1).",
    "BatchEnsemble": "the batch is tiled M = 4 times, so training costs about M x a dense run "
                     "(4.0x on CIFAR, 3.6x on ImageNet at uncertainty-baselines' 135 epochs) "
                     "and a prediction M dense forwards; the paper's 1.10x follows App. D's "
                     "free-large-batch assumption or Havasi et al.'s prediction time.",
    "MIMO": "each step repeats the batch R times (R = 4 on CIFAR, 2 on ImageNet), so training "
            "costs about R x a dense run (4.0x; 2.06x on ImageNet); a prediction is one "
            "forward (1.00x plus the wider first conv and head). The paper prints 1.00x: App. "
            "D counts neither the repetitions nor the extra inputs and outputs.",
    "TreeNet": "trunk once plus M branches per row: 1.54x for WRN-28-10 (M = 3, split 10) and "
               "1.31x for ResNet-50 (M = 2, split 12) in training and at test, beside the "
               "paper's 1.52x / 1.33x; the split is chosen in gin/treenet.gin.",
}


def havasi_notes(methods) -> list[str]:
    """The FLOPs notes of the rows the paper quotes from Havasi et al. 2021 among `methods`."""
    present = [name for name in HAVASI_NOTES if name in set(methods)]
    if not present:
        return []
    return ["", "Rows the paper quotes from Havasi et al. 2021: our FLOPs count every row the "
            "network processes (forward + 2x backward per row), the paper's App. D omits "
            "MIMO's extra inputs and outputs and supposes BatchEnsemble's larger batch is "
            "free; its 'runs' of these rows (BatchEnsemble 4, TreeNet 1.5) are forward passes "
            "per prediction and its 1.10x / 1.52x may be Havasi et al.'s prediction time (not "
            "checked against Havasi et al.'s table). Each of ours is one training run.", "",
            *(f"- {name}: {HAVASI_NOTES[name]}" for name in present)]


# Notes on the FLOPs of the pruning ensembles (paper §4 footnote 2, App. C), whose planned
# ratios at paper scale differ from the paper's on purpose.
PRUNING_NOTES = {
    "LTR Ensemble": "planned 0.98x beside the paper's 1.75x (= 1 + 3 x 0.25): our one "
                    "pruned run is counted step by step as its density falls (dense for 10% "
                    "of the run, gradual magnitude pruning to S = 0.8 by 60%: 0.38x of a dense "
                    "run, the paper counts it as 1), and the shared layer-wise S = 0.8 mask "
                    "costs 0.2 f_D in each of the 3 retrainings (0.60x; the paper's 0.25 "
                    "each).",
    "PF Ensemble": "planned 3.60x beside the paper's 3.75x (= 3 + 3 x 0.25): 3 dense runs "
                   "plus 3 fine-tunings of 250 epochs; the plan takes every layer at density "
                   "0.2, the ledger measures the per-layer densities global magnitude "
                   "pruning really gives (recorded per member in the run's structure "
                   "metrics), so the measured ratio differs from the planned one (smoke "
                   "scale, WRN-10-2: f_S/f_D = 0.32, 3.96x measured).",
}


def pruning_notes(methods) -> list[str]:
    """The FLOPs notes of the pruning-ensemble rows among `methods`."""
    present = [name for name in PRUNING_NOTES if name in set(methods)]
    return ["", "Pruning ensembles:", "",
            *(f"- {name}: {PRUNING_NOTES[name]}" for name in present)] if present else []


def missing_reason(row: dict, frame: pd.DataFrame) -> str:
    """Why a printed row has no number of ours: the runs of its method, M and S that ran on
    another data set (Table 6's CIFAR-100 rows at smoke scale ran on digits), or none at all."""
    elsewhere = frame[(frame.status == "ok") & (frame.method == row["method"])
                      & (frame.M == row["M"]) & np.isclose(frame.sparsity, row["sparsity"])]
    if len(elsewhere):
        datasets = ", ".join(sorted({dataset_family(name) for name in elsewhere.dataset}))
        return (f"no run of ours on {row['dataset']}: {', '.join(elsewhere.row)} ran on "
                f"{datasets}")
    return "no finished run of this row (its method or suite is not built, or it has not run)"


def table_model(frame: pd.DataFrame, table: int, scale: str, layered: list[str]
                ) -> render.Table:
    """The wide table (Tables 1-3, 6) with its notes, for the .md file and the page."""
    return render.wide(frame, f"Table {table}: ours at scale `{scale}` beside the paper", scale,
                       layered, havasi_notes(frame.method) + pruning_notes(frame.method),
                       REFERENCE.relative_to(ROOT).as_posix(),
                       lambda row: missing_reason(row, frame))


def write_report(frame: pd.DataFrame, stem: Path, markdown: str) -> None:
    """`<stem>.parquet` and `<stem>.md`, each replaced durably and only once complete."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".parquet"),
                 lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))


def write_table(rows: list[dict], stem: Path, title: str) -> pd.DataFrame:
    """A plain table of `run_row`s (`make demo`): `<stem>.parquet` and `<stem>.md`."""
    frame = pd.DataFrame(rows, columns=list(DEMO_COLUMNS))
    write_report(frame, stem, render.frame_markdown(frame, title))
    return frame
