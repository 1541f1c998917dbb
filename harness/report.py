"""Run records -> the paper's tables, ours beside the paper's numbers:

    python -m harness.report [--table=1 ...] [--scale=paper] [--seeds=N] [--runs_dir=runs]
        [--output_dir=reports]

writes `<output_dir>/table<N>.parquet` (for machines and `python -m harness.diff`) and
`table<N>.md` (for people) from the runs that `python -m harness.tables` leaves under
`<runs_dir>/table<N>/<scale>/<row>/seed<k>/`. One table row per row config: the mean over its
finished seeds, with the sample standard deviation (ddof=1; NaN for one seed) in `<metric>_std`.
The paper's rows come from `reports/reference/freetickets_tables.csv`, matched on (table,
method, M, sparsity); a paper row with no finished run of ours is kept with status 'missing'
and empty numbers, never a made-up one.

Units are the paper's: accuracies in %, NLL in nats, ECE as a fraction (15 bins, metrics.py).
FLOPs and counts (train_flops, ratios, training_runs) are taken from the first finished seed:
they depend on the configuration only, and a mean could round them.
Corrupted columns come from harness/robustness_summary.py's `corrupted_summary`: cacc/cnll/cece the
mean over the 15 benchmark corruptions x 5 severities of whichever corrupted suite the run
scored (published sets before generated ones), aacc/anll/aece on ImageNet-A's 200 classes;
empty where a run did not score them.
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness import cli
from harness.durable import atomic_write
from harness.errors import UserError
from harness.record import SUMMARY, is_finished, read_metrics, read_summary

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "reference" / "freetickets_tables.csv"
ROW_FILE = "row.json"  # written by harness/tables.py beside a row's seed folders

CLEAN = {"acc": "test/accuracy", "nll": "test/nll", "ece": "test/ece"}
CORRUPTED = ("cacc", "cnll", "cece", "aacc", "anll", "aece")
METRICS = (*CLEAN, *CORRUPTED)
PERCENT = ("acc", "cacc", "aacc")  # fractions in run records, % in the paper's tables
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
    """cacc..aece as the run's summary.json records them (harness/robustness_summary.py
    `corrupted_summary`; from its metrics for a run that predates that record), empty where
    the run did not score those sets."""
    if "corrupted" in summary:
        corrupted = summary["corrupted"]
    else:
        from harness.robustness_summary import corrupted_summary  # torch: only when runs are read
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


def seed_dirs(row_dir: Path, seeds: int | None, reused: dict[str, str] | None = None
              ) -> list[Path]:
    """seed0..seed<seeds-1>, or every seed present when `seeds` is None; a seed the row reuses
    from another row's run (`reused` in its row.json: {seed: path under the runs folder},
    harness/tables.py) is that run's folder."""
    reused = reused or {}
    runs_dir = row_dir.parents[2]
    if seeds is None:
        found = {int(path.name[4:]) for path in row_dir.glob("seed*") if path.name[4:].isdigit()}
        numbers = sorted(found | {int(seed) for seed in reused})
    else:
        numbers = list(range(seeds))
    return [runs_dir / reused[str(k)] if str(k) in reused else row_dir / f"seed{k}"
            for k in numbers]


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


def dataset_family(dataset: str) -> str:
    """The paper's dataset a run of ours stands in for: the cpu scale's arrays by their file
    name ('cifar10.npz', gin/scale/cpu.gin). Digits (smoke scale) stand in for none: in a
    table of several datasets its rows are listed after the paper's."""
    return dataset.removesuffix(".npz")


def load_reference(path: Path = REFERENCE) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"the paper's reference table {path} is missing")
    return pd.read_csv(path)


def paper_numbers(their: pd.Series) -> dict:
    """One reference row's numbers, named `paper_<our column>`."""
    return {f"paper_{ours}": float(their[theirs]) for theirs, ours in PAPER.items()}


@dataclass
class RowRuns:
    name: str  # the row's config (gin file stem)
    method: str  # the paper's name for it
    finished: list[Path]  # its finished seed folders (its own, or the runs it reuses)
    unfinished: list[Path]  # seed folders without summary.json (half-written or running)
    setting: str | None = None  # its `# setting:` (ablation rows of Tables 4 and up)
    error: str = ""  # why it could not run (Tables 4 and up run on past a failing row)


def table_runs(runs_dir: Path, table: int, scale: str, seeds: int | None = None,
               require_finished: bool = True) -> list[RowRuns]:
    """The rows of a table that have run (or failed: `error`); a UserError when none has a
    finished seed (unless not `require_finished`) or none has run."""
    root = runs_dir / f"table{table}" / scale
    rows = []
    for row_file in sorted(root.glob(f"*/{ROW_FILE}")):
        identity = json.loads(row_file.read_text())
        paths = seed_dirs(row_file.parent, seeds, identity.get("reused"))
        rows.append(RowRuns(identity["row"], identity["method"],
                            [path for path in paths if is_finished(path)],
                            [path for path in paths if path.is_dir() and not is_finished(path)],
                            identity.get("setting"), identity.get("error", "")))
    if not rows or (require_finished and not any(row.finished for row in rows)):
        raise UserError(f"no finished runs for table {table} at scale {scale!r} under {root}: "
                        f"run `make table{table} SCALE={scale}` first")
    return rows


def build_table(table: int, scale: str, runs_dir: Path, seeds: int | None = None,
                reference: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """The table frame (paper order, then our rows the paper lacks) and the unfinished seed
    folders that were skipped."""
    reference = load_reference() if reference is None else reference
    paper = reference[reference.table == table].reset_index(drop=True)
    runs = table_runs(runs_dir, table, scale, seeds)
    ours = [{"table": table, "method": row.method, "row": row.name, "status": "ok",
             "scale": scale, **aggregate([run_row(path) for path in row.finished])}
            for row in runs if row.finished]
    skipped = [path for row in runs for path in row.unfinished]
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
                         "sparsity": "float64"}), skipped


def layered_files(runs_dir: Path, table: int, scale: str) -> list[str]:
    """The gin files every row of the table was layered with besides its own (scale, extras)."""
    root = runs_dir / f"table{table}" / scale
    files = [json.loads(path.read_text())["gin_files"][1:]
             for path in sorted(root.glob(f"*/{ROW_FILE}"))]
    return [file for file in files[0] if all(file in other for other in files)] if files else []


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


def fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if digits >= 0 else f"{value:.2e}"


# markdown columns: (title, our column, digits (-1: scientific), with the paper's number,
# with the difference). The difference of absolute FLOPs or of run counts says nothing new.
GROUPS = (("Acc %", "acc", 2, True, True), ("NLL", "nll", 3, True, True),
          ("ECE", "ece", 3, True, True), ("cAcc %", "cacc", 2, True, True),
          ("cNLL", "cnll", 3, True, True), ("cECE", "cece", 3, True, True),
          ("aAcc %", "aacc", 2, True, True), ("aNLL", "anll", 2, True, True),
          ("aECE", "aece", 2, True, True), ("train FLOPs", "train_flops", -1, True, False),
          ("train FLOPs x", "train_flops_ratio", 2, True, True),
          ("test FLOPs x", "test_flops_ratio", 2, True, True),
          ("ms/img", "infer_ms", 3, False, False),
          ("sparse ms/img", "sparse_infer_ms", 3, False, False),
          ("runs", "training_runs", 1, True, False))


def markdown_columns(frame: pd.DataFrame) -> list[tuple[str, str, int, str]]:
    """(title, column, digits, kind) with kind 'ours', 'paper' or 'delta'; a metric with no
    number of ours shows the paper's alone, one with no number at all is left out."""
    columns = []
    for title, name, digits, paper, delta in GROUPS:
        has_ours = frame[name].notna().any()
        has_paper = paper and frame[f"paper_{name}"].notna().any()
        if has_ours:
            columns.append((title, name, digits, "ours"))
        if has_paper:
            columns.append(("paper" if has_ours else f"{title} (paper)", name, digits, "paper"))
        if has_ours and has_paper and delta:
            columns.append(("Δ", name, digits, "delta"))
    return columns


def markdown_cell(row: dict, name: str, digits: int, kind: str) -> str:
    ours, paper = row[name], row.get(f"paper_{name}", np.nan)
    if kind == "paper":
        return fmt(paper, digits)
    if kind == "delta":
        return fmt(ours - paper, digits)
    std = row.get(f"{name}_std", np.nan)
    return fmt(ours, digits) + ("" if np.isnan(std) else f" ± {fmt(std, digits)}")


def to_markdown(frame: pd.DataFrame, table: int, scale: str, layered: list[str]) -> str:
    """Ours (mean ± std over seeds), the paper's number and the difference, per metric."""
    columns = markdown_columns(frame)
    header = ["method", "M", "S", "seeds", *(title for title, *_ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [row["method"] + (f" ({row['row']})" if isinstance(row["row"], str) else ""),
                 str(row["M"]), fmt(row["sparsity"], 1),
                 str(row["seeds"]) if row["status"] == "ok" else "missing",
                 *(markdown_cell(row, *column[1:]) for column in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    ours = frame[frame.status == "ok"]
    settings = ", ".join(sorted({f"{d} / {m}" for d, m in zip(ours.dataset, ours.model)}))
    commits = ", ".join(sorted({c for value in ours.git_commit for c in value.split(",")}))
    layering = f" (layered with {', '.join(f'`{f}`' for f in layered)})" if layered else ""
    intro = [f"# Table {table}: ours at scale `{scale}` beside the paper", "",
             f"Ours: {settings}, scale `{scale}`{layering}, git {commits}. Paper: "
             f"`reports/reference/freetickets_tables.csv`.",
             "Accuracies in %, NLL in nats, ECE as a fraction (15 bins); ours = mean ± sample "
             "std over seeds; Δ = ours − paper; FLOPs x = relative to the dense single model "
             "at the reference schedule. 'missing': no finished run of that row (its method "
             "or suite is not built, or it has not run)."]
    if frame["infer_ms"].notna().any():
        intro.append("ms/img: measured wall-clock per test image of the whole ensemble (batch "
                     "size, device and threads in each run's summary.json); sparse ms/img: "
                     "the same members in sparse inference form (harness/sparse_inference.py). "
                     "They depend on the machine and its load.")
    if scale != "paper":
        intro.append(f"At scale `{scale}` the data, model and lengths are reduced: Δ measures "
                     f"the scale as much as the method.")
    return "\n".join(intro + [""] + lines + havasi_notes(frame.method)
                     + pruning_notes(frame.method)) + "\n"


def write_report(frame: pd.DataFrame, stem: Path, markdown: str) -> None:
    """`<stem>.parquet` and `<stem>.md`, each replaced durably and only once complete."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".parquet"),
                 lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))


def report(table: int, scale: str, runs_dir: Path, output_dir: Path,
           seeds: int | None = None) -> Path:
    """Builds and writes table<N>; names the unfinished runs it skipped on stderr. Tables 4
    and up are long-format reports (harness/long_tables.py)."""
    from harness import long_tables  # it builds on this module

    if table in long_tables.TABLES:
        return long_tables.report(table, scale, runs_dir, output_dir, seeds)
    frame, skipped = build_table(table, scale, runs_dir, seeds)
    for path in skipped:
        print(f"skipped unfinished run {path} (no {SUMMARY})", file=sys.stderr)
    stem = output_dir / f"table{table}"
    write_report(frame, stem, to_markdown(frame, table, scale,
                                          layered_files(runs_dir, table, scale)))
    return stem.with_suffix(".md")


def significant(value) -> str:
    """4 significant digits for a number, '-' for none."""
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def write_table(rows: list[dict], stem: Path, title: str) -> pd.DataFrame:
    """A plain table of `run_row`s (`make demo`): `<stem>.parquet` and `<stem>.md`."""
    frame = pd.DataFrame(rows, columns=list(DEMO_COLUMNS))
    lines = [f"# {title}", "", "| " + " | ".join(frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(significant, row)) + " |"
              for row in frame.itertuples(index=False)]
    write_report(frame, stem, "\n".join(lines) + "\n")
    return frame


def tables_with_runs(runs_dir: Path, scale: str) -> list[int]:
    return sorted(int(path.parent.name[5:]) for path in runs_dir.glob(f"table*/{scale}")
                  if path.parent.name[5:].isdigit())


def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.report", __doc__)
    parser.integers("table", None, "table numbers, comma-separated (default: every table "
                                   "with runs)")
    parser.string("scale", "paper", "paper, cpu, tiny or smoke")
    parser.integer("seeds", None, "use seeds 0..N-1 (default: all finished)")
    parser.path("runs_dir", "runs", "the table runs' folder")
    parser.path("output_dir", "reports", "where the tables go")
    args = parser.parse(argv)
    try:
        tables = args.table or tables_with_runs(args.runs_dir, args.scale)
        if not tables:
            raise UserError(f"no table runs at scale {args.scale!r} under {args.runs_dir}: "
                            f"run `make table1 SCALE={args.scale}` first")
        for table in tables:
            print(report(table, args.scale, args.runs_dir, args.output_dir, args.seeds)
                  .read_text())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
