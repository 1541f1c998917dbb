"""Compares two table reports (harness/tables/report.py) cell by cell:

    python -m harness.diff OLD.parquet NEW.parquet

Exit status 0: the same rows and every cell within its tolerance. 1: it names each cell that
drifted, and each row that only one report has. 2: a file is unreadable or not a table report
of this schema (one line).

Rows are matched on (table, method, M, sparsity, row); in a long-format table
(harness/tables/long.py, Tables 4 and up) on (table, dataset, method, M, sparsity, setting,
metric, row), one printed number per row. Tolerances are absolute, in the table's units
(accuracies in %). A deterministic CPU run (`Experiment.deterministic = True`)
repeats its numbers bit for bit on one kind of CPU at one thread count (the golden table runs
on one thread: the order of float sums follows the thread count, and training amplifies it
to whole test examples). The metric tolerances absorb only rounding noise in the scores and
stay far below what one test example moves (0.01 % of 10,000 examples, 0.28 % of the
360-image digits test set):

    exact       identity and status, seeds, scale, training_runs, train_flops,
                train_flops_ratio, test_flops_ratio, and the paper's numbers (paper_*)
    1e-4        acc, cacc, aacc (percentage points) and their _std
    1e-5        nll, cnll, anll, ece, cece, aece and their _std
    ignored     runs, git_commit, config_hash: provenance; infer_ms, sparse_infer_ms: wall-clock,
                which follows the machine and its load; counted when they differ

A long-format table compares status, seeds, scale, reason and the paper's number exactly, and
`value`, `value_std` and `difference` within the tolerance of the row's metric: 1e-4 for
accuracies in % (acc, individual_acc, robust_acc[_*]), 1e-5 for the others (disagreement, kl,
pearson, spearman, auroc); runs, note and provenance are counted when they differ.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core import cli
from harness.core.errors import UserError
from harness.tables.long import IDENTITY as LONG_KEY
from harness.tables.long import LONG_COLUMNS
from harness.tables.render import PERCENT
from harness.tables.run_numbers import METRICS, PROVENANCE, TIMING
from harness.tables.wide import COLUMNS

KEY = ("table", "method", "M", "sparsity", "row")
TOLERANCES = {**{name: 1e-4 if name in PERCENT else 1e-5 for name in METRICS},
              **{f"{name}_std": 1e-4 if name in PERCENT else 1e-5 for name in METRICS}}
INFORMATIONAL = ("runs", *PROVENANCE, *TIMING)  # printed when they differ, never compared
EXACT = tuple(column for column in COLUMNS
              if column not in TOLERANCES and column not in INFORMATIONAL and column not in KEY)
# Long-format tables: the tolerance of `value`, `value_std`, `difference` follows the metric.
LONG_MEASURED = ("value", "value_std", "difference")
LONG_INFORMATIONAL = ("note", "runs", "git_commit", "config_hash")
LONG_EXACT = tuple(column for column in LONG_COLUMNS if column not in
                   (*LONG_KEY, *LONG_MEASURED, *LONG_INFORMATIONAL))


def long_tolerance(metric: str) -> float:
    return 1e-4 if metric in PERCENT else 1e-5


def read_report(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path} not found (the golden table: make golden)")
    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} as a table report: {error}") from error
    if list(frame.columns) == list(LONG_COLUMNS):
        keys = frame.apply(long_row_key, axis=1)
    elif list(frame.columns) != list(COLUMNS):
        missing = sorted(set(COLUMNS) - set(frame.columns))
        extra = sorted(set(frame.columns) - set(COLUMNS))
        raise UserError(f"{path} is not a table report of this schema (missing: "
                        f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}"
                        f"): rebuild it with python -m harness.report (golden: make golden)")
    else:
        keys = frame.apply(row_key, axis=1)
    if keys.duplicated().any():
        raise UserError(f"{path} has duplicate rows: {', '.join(keys[keys.duplicated()])}")
    return frame.set_axis(keys).sort_index()


def row_key(row: pd.Series) -> str:
    # A paper row we have no run for is named by its dataset (Table 6 has two).
    name = f" [{row['row']}]" if isinstance(row["row"], str) else f" ({row['dataset']})"
    return f"table{row['table']} {row['method']} M={row['M']} S={row['sparsity']:g}{name}"


def long_row_key(row: pd.Series) -> str:
    setting = f" {row['setting']}" if row["setting"] else ""
    source = f" [{row['row']}]" if row["row"] else ""
    return (f"table{row['table']} {row['method']} M={row['M']} S={row['sparsity']:g} "
            f"({row['dataset']}){setting} {row['metric']}{source}")


def is_long(frame: pd.DataFrame) -> bool:
    return list(frame.columns) == list(LONG_COLUMNS)


def compared(frame: pd.DataFrame, key: str) -> list[tuple[str, float | None]]:
    """(column, tolerance or None for exact) of one row."""
    if is_long(frame):
        tolerance = long_tolerance(frame.at[key, "metric"])
        return [*((column, None) for column in LONG_EXACT),
                *((column, tolerance) for column in LONG_MEASURED)]
    return [*((column, None) for column in EXACT), *TOLERANCES.items()]


def same(old, new, tolerance: float | None) -> bool:
    if pd.isna(old) or pd.isna(new):
        return bool(pd.isna(old) and pd.isna(new))
    if tolerance is None:
        return bool(old == new)
    return abs(float(old) - float(new)) <= tolerance


def show(value) -> str:
    """Full precision for numbers (a drift may sit in the 17th digit)."""
    return repr(float(value)) if isinstance(value, (int, float, np.number)) else repr(value)


def drifted_cells(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """One line per drifted cell or unmatched row."""
    lines = [f"{key}: only in OLD" for key in old.index.difference(new.index)]
    lines += [f"{key}: only in NEW" for key in new.index.difference(old.index)]
    for key in old.index.intersection(new.index):
        for column, tolerance in compared(old, key):
            before, after = old.at[key, column], new.at[key, column]
            if not same(before, after, tolerance):
                bound = "exact" if tolerance is None else f"tolerance {tolerance:g}"
                lines.append(f"{key}: {column} {show(before)} -> {show(after)} ({bound})")
    return lines


def provenance_changes(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, int]:
    """{column: how many matched rows differ in it} over the columns never compared
    (provenance, wall-clock, notes), for the columns where any does."""
    keys = old.index.intersection(new.index)
    informational = LONG_INFORMATIONAL if is_long(old) and is_long(new) else INFORMATIONAL
    counts = {column: sum(1 for key in keys if old.at[key, column] != new.at[key, column]
                          and not (pd.isna(old.at[key, column])
                                   and pd.isna(new.at[key, column])))
              for column in informational}
    return {column: count for column, count in counts.items() if count}


def tolerance_summary(long: bool = False) -> str:
    if long:
        return "\n".join([
            "tolerances (absolute, table units):", f"  exact: {', '.join(LONG_EXACT)}",
            f"  1e-4 ({', '.join(PERCENT)}), 1e-5 (other metrics): "
            f"{', '.join(LONG_MEASURED)}",
            f"  not compared: {', '.join(LONG_INFORMATIONAL)}"])
    groups: dict[float, list[str]] = {}
    for column, tolerance in TOLERANCES.items():
        groups.setdefault(tolerance, []).append(column)
    lines = [f"  exact: {', '.join(EXACT)}"]
    lines += [f"  {tolerance:g}: {', '.join(columns)}" for tolerance, columns in groups.items()]
    lines.append(f"  not compared: {', '.join(INFORMATIONAL)}")
    return "\n".join(["tolerances (absolute, table units):", *lines])


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = cli.Flags("python -m harness.diff", __doc__, positionals=("old", "new")).parse(argv)
    old, new = read_report(args.old), read_report(args.new)
    if is_long(old) != is_long(new):
        raise UserError(f"{args.old} and {args.new} are tables of different schemas (one "
                        f"long-format, Tables 4 and up; one wide, Tables 1-3 and 6)")
    print(tolerance_summary(is_long(old)))
    changes = provenance_changes(old, new)
    if changes:
        print(f"not compared, {sum(changes.values())} value(s) differ: " + ", ".join(
            f"{column} in {count} row(s)" for column, count in changes.items()))
    drifted = drifted_cells(old, new)
    for line in drifted:
        print(f"DRIFT {line}")
    print(f"{len(drifted)} cell(s) drifted between {args.old} and {args.new}" if drifted else
          f"no drift: {args.new} matches {args.old} ({len(old)} rows)")
    return 1 if drifted else 0
