"""The wide tables (paper Tables 1-3 and 6): one line per row of the table, ours beside the
paper's numbers, from the rows' runs (harness/tables/sources.py, read in table units by
harness/tables/run_numbers.py); harness/tables/report.py writes them.

One table row per row config: the mean over its finished seeds, with the sample standard
deviation (ddof=1; NaN for one seed) in `<metric>_std`. The paper's rows come from
`reports/reference/freetickets_tables.csv`, matched on (table, method, M, sparsity); a paper
row with no finished run of ours is kept with status 'missing' and empty numbers, never a
made-up one."""
from pathlib import Path

import numpy as np
import pandas as pd

from harness.tables import render
from harness.data.facts import dataset_family
from harness.core.errors import UserError
from harness.tables.run_numbers import FLOPS, METRICS, PROVENANCE, TIMING, aggregate, run_row
from harness.tables.notes import havasi_notes, protocol_notes, pruning_notes
from harness.tables.context import TableContext
from harness.tables.sources import RowRuns

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference" / "freetickets_tables.csv"

IDENTITY = ("table", "dataset", "model", "method", "M", "sparsity", "row", "status")
# reference column -> our column it sits beside
PAPER = {**{name: name for name in METRICS}, "train_flops_abs": "train_flops",
         "train_flops_ratio": "train_flops_ratio", "test_flops_ratio": "test_flops_ratio",
         "training_runs": "training_runs"}
COLUMNS = (*IDENTITY, *METRICS, *(f"{name}_std" for name in METRICS), *FLOPS, *TIMING,
           "seeds", "scale", "runs", *PROVENANCE,
           *(f"paper_{ours}" for ours in PAPER.values()))


def run_names(run_dirs: list[Path]) -> str:
    """The runs a row's numbers come from, relative to the run store (`<method>-<id>/seed<k>`,
    harness/store/runs.py), comma-separated: what the page shows on each cell."""
    return ",".join(f"{path.parent.name}/{path.name}" for path in run_dirs)


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
             "scale": scale, "runs": run_names(row.finished),
             **aggregate([run_row(path) for path in row.finished])}
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
                       layered, havasi_notes(frame.method) + pruning_notes(frame.method)
                       + protocol_notes(frame.method, table, layered),
                       REFERENCE.relative_to(ROOT).as_posix(),
                       lambda row: missing_reason(row, frame))


class WideKind:
    """The wide kind of table (harness/tables/kinds.py `TableKind`): one line per row, so a
    row that cannot run stops the table, and a table without a finished run is an error."""

    keeps_missing_rows = False

    def build(self, context: TableContext, entry, runs: list[RowRuns]) -> pd.DataFrame:
        reference = load_reference(Path(entry.reference or REFERENCE))
        return build_table(entry.number, context.scale, runs, reference)

    def model(self, frame: pd.DataFrame, entry, scale: str, layered: list[str]
              ) -> render.Table:
        return table_model(frame, entry.number, scale, layered)
