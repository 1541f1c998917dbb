"""Long-format tables (paper Tables 4, 5 and 7 and up): one row per printed number, ours beside
the paper's.

    python -m harness.report --table=4 [--scale=paper] [--seeds=N] [--runs_dir=runs]
        [--output_dir=reports]

(`python -m harness.tables --table=N` trains or reuses the runs, then comes here too.)
Writes `<output_dir>/table<N>.parquet` (for `python -m harness.diff`) and `table<N>.md` from
the runs under `<runs_dir>/table<N>/<scale>/` (a row's own runs or those
it reuses from other tables, harness/tables.py). The paper's numbers come from
`reports/reference/freetickets_tables_extra.csv` (long format, described in
`reports/reference/README.md`), matched on (table, dataset, method, M, sparsity, setting,
metric). A printed number with no finished run of ours is kept with status 'missing' and the
reason; a number of ours the paper lacks (e.g. digits at smoke scale, which stands in for no
paper dataset) is listed after the paper's.

The API, for a new table:

    @long_table(N, "title")            # one registry: TABLES[N] = LongTable
    def measure(run_dir: Path) -> dict:  # one finished run -> its numbers, in table units
        return {"acc": 96.1, ...}        # a key `metric`: a number of the row's own setting
        return {("class 2: baby", "disagreement"): 0.2}  # a key (setting, metric): its own
        return {("svhn", "auroc", 1): 0.9}  # (setting, metric, M): a cell of M members of
                                            # the run's (member 0 alone: the paper's M = 1)
        return {("svhn", "auroc"): MissingCell("SVHN is not on disk")}  # a cell without number

    @across_rows(N)                    # optional: numbers that span rows (Table 8)
    def correlations(cells: pd.DataFrame) -> list[dict]: ...  # LONG_COLUMNS identity + value

Metric names are the reference CSV's: disagreement, kl, acc, individual_acc (accuracies in %),
pearson, spearman, auroc, robust_acc (_min / _mean / _max). Each metric is the mean over the
row's finished seeds, with the sample standard deviation (ddof=1) in `value_std`. `measure`
raising a UserError or ValueError (no cached predictions, one member) makes the row's numbers
'missing' with that reason; a value `MissingCell(reason)` does so for one cell. Diversity
(disagreement, KL between members, paper §5.1) is computed in one place,
harness/cached_predictions.py `member_diversity`.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.record import SUMMARY, read_summary
from harness.report import (ROOT, RowRuns, dataset_family, fmt, layered_files, table_runs,
                            write_report)

REFERENCE_EXTRA = ROOT / "reports" / "reference" / "freetickets_tables_extra.csv"
IDENTITY = ("table", "dataset", "model", "method", "M", "sparsity", "setting", "metric", "row")
LONG_COLUMNS = (*IDENTITY, "status", "value", "value_std", "seeds", "paper", "difference",
                "reason", "note", "scale", "runs", "git_commit", "config_hash")
PERCENT_METRICS = ("acc", "individual_acc", "robust_acc", "robust_acc_min", "robust_acc_mean",
                   "robust_acc_max")

Measure = Callable[[Path], dict]


class MissingCell(str):
    """A measure's value for a cell it cannot give: the reason (e.g. an OoD set that is not
    on disk, and the file to put where)."""


@dataclass
class LongTable:
    number: int
    title: str
    measure: Measure
    across: Callable[[pd.DataFrame], list[dict]] | None = None
    per_class: bool = False  # reference settings are class labels, matched by position
    notes: list[str] = field(default_factory=list)


TABLES: dict[int, LongTable] = {}


def long_table(number: int, title: str, *, per_class: bool = False, notes=()):
    """Registers `measure(run_dir) -> {metric or (setting, metric): value}` as table
    `number`'s. `per_class`: the reference's settings are class labels printed in class order
    (Table 7); the k-th is matched to our setting `class_setting(k, name)`."""
    def add(measure: Measure) -> Measure:
        if number in TABLES:
            raise ValueError(f"long table {number} is registered twice")
        TABLES[number] = LongTable(number, title, measure, per_class=per_class,
                                   notes=list(notes))
        return measure
    return add


def across_rows(number: int):
    """Registers a function of the table's cells of ours (a LONG_COLUMNS frame, status 'ok')
    returning more cells (dicts with IDENTITY keys and `value`), e.g. Table 8's correlations
    across sparsity levels."""
    def add(function):
        TABLES[number].across = function
        return function
    return add


def class_setting(index: int, name: str) -> str:
    """The setting of a per-class number: 'class 2: baby'."""
    return f"class {index}: {name}"


# Class names in label order, for per-class rows: CIFAR-100's first ten (the paper's Table 7),
# CIFAR-10's, and the digits that stand in for them at smoke scale.
CLASS_NAMES = {
    "cifar100": ("apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
                 "bicycle", "bottle"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "digits": tuple(str(digit) for digit in range(10)),
}


def class_name(dataset: str, index: int) -> str:
    names = CLASS_NAMES.get(dataset_family(dataset), ())
    return names[index] if index < len(names) else str(index)


def load_reference_extra(path: Path = REFERENCE_EXTRA) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"the paper's reference table {path} is missing")
    frame = pd.read_csv(path, dtype={"setting": str, "note": str})
    frame[["setting", "note"]] = frame[["setting", "note"]].fillna("")
    return frame.astype({"table": "int64", "M": "int64", "sparsity": "float64",
                         "value": "float64"})


def paper_cells(table: LongTable, reference: pd.DataFrame) -> pd.DataFrame:
    """The table's reference rows, settings of per-class tables as `class_setting` (the
    printed label kept in the note)."""
    paper = reference[reference.table == table.number].reset_index(drop=True)
    if table.per_class:
        labels = list(dict.fromkeys(paper.setting))
        paper["note"] = [f"printed as '{label}'; {note}" for label, note
                         in zip(paper.setting, paper.note)]
        paper["setting"] = [class_setting(labels.index(label), class_name(dataset,
                                                                          labels.index(label)))
                            for label, dataset in zip(paper.setting, paper.dataset)]
    return paper


def run_cells(table: LongTable, row: RowRuns, scale: str, runs_dir: Path
              ) -> tuple[list[dict], list[dict]]:
    """(our cells of one row, averaged over its finished seeds; the row's identity with the
    reason when its runs cannot be measured, or each cell's that has a `MissingCell` value)."""
    summary = read_summary(row.finished[0])
    identity = {"dataset": dataset_family(summary["dataset"]), "model": summary["model"],
                "method": row.method, "M": int(summary["num_members"]),
                "sparsity": float(summary["sparsity"]), "row": row.name}
    values: dict[tuple[str, str, int], list[float]] = {}
    missing: dict[tuple[str, str, int], str] = {}
    try:
        for run_dir in row.finished:
            for key, value in table.measure(run_dir).items():
                if not isinstance(key, tuple):
                    key = (row.setting or "", key)
                cell = key if len(key) == 3 else (*key, identity["M"])
                if isinstance(value, MissingCell):
                    missing.setdefault(cell, f"{row.name}: {value}")
                else:
                    values.setdefault(cell, []).append(float(value))
    except (UserError, ValueError) as error:
        return [], [{**identity, "setting": row.setting or "",
                     "reason": f"{row.name}: {error}"}]
    summaries = [read_summary(path) for path in row.finished]
    provenance = {"runs": ",".join(relative(path, runs_dir) for path in row.finished),
                  "git_commit": ",".join(sorted({s["git_commit"] for s in summaries})),
                  "config_hash": ",".join(sorted({s["config_hash"] for s in summaries}))}
    return [{"table": table.number, **identity, "M": members, "setting": setting,
             "metric": metric, "status": "ok", "value": float(np.mean(seeds)),
             "value_std": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else np.nan,
             "seeds": len(seeds), "scale": scale, **provenance}
            for (setting, metric, members), seeds in values.items()], \
        [{**identity, "M": members, "setting": setting, "metric": metric, "reason": reason}
         for (setting, metric, members), reason in missing.items() if (setting, metric, members)
         not in values]


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def same_cell(ours: dict, theirs: pd.Series) -> bool:
    return ((ours["dataset"], ours["method"], ours["M"], ours["setting"], ours["metric"])
            == (theirs.dataset, theirs.method, theirs.M, theirs.setting, theirs.metric)
            and bool(np.isclose(ours["sparsity"], theirs.sparsity, equal_nan=True)))


def missing_reason(theirs: pd.Series, ours: list[dict], failed: list[dict],
                   rows: list[RowRuns], scale: str) -> str:
    """Why a printed number has no number of ours."""
    same_row = lambda cell: ((cell["method"], cell["M"], cell["setting"])
                             == (theirs.method, theirs.M, theirs.setting)
                             and np.isclose(cell["sparsity"], theirs.sparsity, equal_nan=True))
    for cell in failed:
        if same_row(cell) and cell["dataset"] == theirs.dataset:
            return cell["reason"]
    # A row of the main setting (no `# setting:`) covers every sub-column (class, OoD set).
    covers = lambda row: (row.method == theirs.method
                          and (row.setting or "") in ("", theirs.setting))
    errors = [f"{row.name}: {row.error}" for row in rows if row.error and covers(row)]
    if errors:
        return f"could not run: {'; '.join(errors)}"
    # On another data set a row's settings may differ too (digits' classes are not CIFAR-100's).
    same_run = lambda cell: ((cell["method"], cell["M"]) == (theirs.method, theirs.M)
                             and np.isclose(cell["sparsity"], theirs.sparsity, equal_nan=True))
    elsewhere = [cell for cell in [*ours, *failed] if same_row(cell)
                 or (same_run(cell) and cell["dataset"] != theirs.dataset)]
    if elsewhere:
        names = ", ".join(sorted({cell["row"] for cell in elsewhere}))
        datasets = ", ".join(sorted({cell["dataset"] for cell in elsewhere}))
        return (f"no run of ours on {theirs.dataset}: {names} ran on {datasets} (scale "
                f"{scale!r})")
    unfinished = [row.name for row in rows if covers(row) and not row.finished]
    if unfinished:
        return f"no finished run yet: {', '.join(unfinished)}"
    return (f"no run of ours: no row of gin/table{theirs.table} for it has run at scale "
            f"{scale!r}")


def build_long_table(number: int, scale: str, runs_dir: Path, seeds: int | None = None,
                     reference: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """The table frame (LONG_COLUMNS; paper order, then our cells the paper lacks) and the
    unfinished seed folders that were skipped."""
    if number not in TABLES:
        raise UserError(f"table {number} is not a long-format table; these are: "
                        f"{', '.join(map(str, sorted(TABLES)))}")
    table = TABLES[number]
    reference = load_reference_extra() if reference is None else reference
    rows = table_runs(runs_dir, number, scale, seeds, require_finished=False)
    ours, failed = [], []
    for row in rows:
        if row.finished:
            cells, failures = run_cells(table, row, scale, runs_dir)
            ours += cells
            failed += failures
    if table.across is not None:
        ours += [{"table": number, "status": "ok", "seeds": 1, "scale": scale,
                  "value_std": np.nan, **cell}
                 for cell in table.across(pd.DataFrame(ours, columns=list(LONG_COLUMNS)))]
    cells, matched = [], set()
    for order, theirs in paper_cells(table, reference).iterrows():
        paper = {"paper": theirs.value, "note": theirs.note, "_order": order}
        matches = [index for index, cell in enumerate(ours) if same_cell(cell, theirs)]
        matched.update(matches)
        cells += [{**ours[index], **paper, "difference": ours[index]["value"] - theirs.value}
                  for index in matches]
        if not matches:
            cells.append({"table": number, "dataset": theirs.dataset, "model": theirs.model,
                          "method": theirs.method, "M": theirs.M, "sparsity": theirs.sparsity,
                          "setting": theirs.setting, "metric": theirs.metric,
                          "status": "missing", "seeds": 0, "scale": scale, **paper,
                          "reason": missing_reason(theirs, ours, failed, rows, scale)})
    cells += [{**cell, "_order": len(cells) + index} for index, cell in enumerate(ours)
              if index not in matched]
    cells += [{"table": number, "metric": "", **failure, "status": "missing", "seeds": 0,
               "scale": scale, "_order": len(cells) + 1} for failure in failed
              if not any(cell.get("reason") == failure["reason"] for cell in cells)]
    frame = pd.DataFrame(cells).reindex(columns=[*LONG_COLUMNS, "_order"])
    frame = frame.sort_values(["_order", "row"], kind="stable", na_position="first")
    frame = frame.reindex(columns=list(LONG_COLUMNS)).reset_index(drop=True)
    for column in ("setting", "row", "reason", "note", "runs", "git_commit", "config_hash"):
        frame[column] = frame[column].astype(object).fillna("").astype(str)
    skipped = [path for row in rows for path in row.unfinished]
    return frame.astype({"table": "int64", "M": "int64", "seeds": "int64",
                         "sparsity": "float64", "value": "float64", "value_std": "float64",
                         "paper": "float64", "difference": "float64"}), skipped


def digits_for(metric: str) -> int:
    return 2 if metric in PERCENT_METRICS else 4 if metric == "auroc" else 3


def to_markdown(frame: pd.DataFrame, table: LongTable, scale: str, layered: list[str]) -> str:
    header = ["method", "setting", "dataset", "M", "S", "metric", "ours", "paper", "Δ",
              "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        digits = digits_for(row["metric"])
        ours = fmt(row["value"], digits) + ("" if np.isnan(row["value_std"])
                                            else f" ± {fmt(row['value_std'], digits)}")
        status = (f"missing: {row['reason']}" if row["status"] == "missing"
                  else f"{row['seeds']} seed(s), {row['row']}")
        lines.append("| " + " | ".join([
            row["method"], row["setting"] or "-", row["dataset"], str(row["M"]),
            fmt(row["sparsity"], 2), row["metric"] or "-", ours, fmt(row["paper"], digits),
            fmt(row["difference"], digits), status]) + " |")
    present = frame[frame.status == "ok"]
    commits = ", ".join(sorted({c for value in present.git_commit for c in value.split(",")
                                if c}))
    layering = f" (layered with {', '.join(f'`{f}`' for f in layered)})" if layered else ""
    intro = [f"# Table {table.number}: {table.title}", "",
             f"Ours at scale `{scale}`{layering}, git {commits or '-'}; paper: "
             f"`reports/reference/freetickets_tables_extra.csv`.",
             "Accuracies in %; disagreement and KL as fractions and nats; ours = mean ± sample "
             "std over seeds; Δ = ours − paper. 'missing' says why a printed number has no "
             "number of ours."]
    if scale != "paper":
        intro.append(f"At scale `{scale}` the data, model and lengths are reduced: Δ measures "
                     f"the scale as much as the method.")
    notes = ["", *(f"- {note}" for note in table.notes)] if table.notes else []
    return "\n".join(intro + [""] + lines + notes) + "\n"


def report(number: int, scale: str, runs_dir: Path, output_dir: Path,
           seeds: int | None = None) -> Path:
    """Builds and writes table<N>; names the unfinished runs it skipped on stderr."""
    frame, skipped = build_long_table(number, scale, runs_dir, seeds)
    for path in skipped:
        print(f"skipped unfinished run {path} (no {SUMMARY})", file=sys.stderr)
    stem = output_dir / f"table{number}"
    write_report(frame, stem, to_markdown(frame, TABLES[number], scale,
                                          layered_files(runs_dir, number, scale)))
    return stem.with_suffix(".md")


# Register Tables 4, 5, 7, 9, 10 (diversity), 8 (the sparsity sweep), 11-13 (OoD, FGSM).
from harness import diversity_tables, robustness_tables, sweep  # noqa: E402,F401
