"""Long-format tables (paper Tables 4, 5 and 7 and up): one row per printed number, ours beside
the paper's, from the runs of the table's rows (harness/tables/sources.py); harness/tables/report.py
writes them as `<output_dir>/table<N>.parquet` (for `python -m harness.diff`) and `.md`.
The paper's numbers come from `reports/reference/freetickets_tables_extra.csv` (long format,
described in `reports/reference/README.md`), matched on (table, dataset, method, M, sparsity,
setting, metric). A printed number with no finished run of ours is kept with status 'missing'
and the reason; a number of ours the paper lacks (e.g. digits at smoke scale, which stands in
for no paper dataset) is listed after the paper's.

A long table is an entry of harness/tables/catalogue.py with a `measure` (and optionally `across`):

    def measure(run_dir: Path) -> dict:  # one finished run -> its numbers, in table units
        return {"acc": 96.1, ...}        # a key `metric`: a number of the row's own setting
        return {("class 2: baby", "disagreement"): 0.2}  # a key (setting, metric): its own
        return {("svhn", "auroc", 1): 0.9}  # (setting, metric, M): a cell of M members of
                                            # the run's (member 0 alone: the paper's M = 1)
        return {("svhn", "auroc"): MissingCell("SVHN is not on disk")}  # a cell without number

    def across(cells: pd.DataFrame) -> list[dict]: ...  # numbers that span rows (Table 8's
                                                        # correlations): LONG_COLUMNS identity
                                                        # + value

Metric names are the reference CSV's: disagreement, kl, acc, individual_acc (accuracies in %),
pearson, spearman, auroc, robust_acc (_min / _mean / _max). Each metric is the mean over the
row's finished seeds, with the sample standard deviation (ddof=1) in `value_std`. `measure`
raising a UserError or ValueError (no cached predictions, one member) makes the row's numbers
'missing' with that reason; a value `MissingCell(reason)` does so for one cell. Diversity
(disagreement, KL between members, paper §5.1) is computed in one place,
harness/evaluation/cached_predictions.py `member_diversity`.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from harness.tables import render
from harness.data.facts import class_name, dataset_family
from harness.core.errors import UserError
from harness.store import readers
from harness.tables.context import TableContext
from harness.tables.sources import RowRuns
from harness.tables.wide import ROOT, run_names

REFERENCE_EXTRA = ROOT / "reports" / "reference" / "freetickets_tables_extra.csv"
IDENTITY = ("table", "dataset", "model", "method", "M", "sparsity", "setting", "metric", "row")
LONG_COLUMNS = (*IDENTITY, "status", "value", "value_std", "seeds", "paper", "difference",
                "reason", "note", "scale", "runs", "git_commit", "config_hash")


class MissingCell(str):
    """A measure's value for a cell it cannot give: the reason (e.g. an OoD set that is not
    on disk, and the file to put where)."""


def class_setting(index: int, name: str) -> str:
    """The setting of a per-class number: 'class 2: baby'."""
    return f"class {index}: {name}"


def load_reference_extra(path: Path = REFERENCE_EXTRA) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"the paper's reference table {path} is missing")
    frame = pd.read_csv(path, dtype={"setting": str, "note": str})
    frame[["setting", "note"]] = frame[["setting", "note"]].fillna("")
    return frame.astype({"table": "int64", "M": "int64", "sparsity": "float64",
                         "value": "float64"})


def paper_cells(table, reference: pd.DataFrame) -> pd.DataFrame:
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


def run_cells(table, row: RowRuns, scale: str) -> tuple[list[dict], list[dict]]:
    """(our cells of one row, averaged over its finished seeds; the row's identity with the
    reason when its runs cannot be measured, or each cell's that has a `MissingCell` value)."""
    summary = readers.summary(row.finished[0])
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
    summaries = [readers.summary(path) for path in row.finished]
    provenance = {"runs": run_names(row.finished),
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


def build_long_table(table, scale: str, rows: list[RowRuns],
                     reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The frame of a long catalogue table (LONG_COLUMNS; paper order, then our cells the
    paper lacks) from its rows' runs."""
    number = table.number
    reference = load_reference_extra() if reference is None else reference
    ours, failed = [], []
    for row in rows:
        if row.finished:
            cells, failures = run_cells(table, row, scale)
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
    return frame.astype({"table": "int64", "M": "int64", "seeds": "int64",
                         "sparsity": "float64", "value": "float64", "value_std": "float64",
                         "paper": "float64", "difference": "float64"})


def table_model(frame: pd.DataFrame, table, scale: str, layered: list[str]) -> render.Table:
    """A long catalogue table with its notes, for the .md file and the page."""
    reference = Path(table.reference or REFERENCE_EXTRA)
    shown = reference.relative_to(ROOT).as_posix() if reference.is_relative_to(ROOT) \
        else str(reference)
    return render.long(frame, f"Table {table.number}: {table.title}", scale, layered,
                       [f"- {note}" for note in table.notes], shown)


class LongKind:
    """The long kind of table (harness/tables/kinds.py `TableKind`): one line per printed
    number, so a row that cannot run (or has no finished run) shows as missing cells with the
    reason, and the table is written all the same."""

    keeps_missing_rows = True

    def build(self, context: TableContext, entry, runs: list[RowRuns]) -> pd.DataFrame:
        reference = load_reference_extra(Path(entry.reference or REFERENCE_EXTRA))
        return build_long_table(entry, context.scale, runs, reference)

    def model(self, frame: pd.DataFrame, entry, scale: str, layered: list[str]
              ) -> render.Table:
        return table_model(frame, entry, scale, layered)
