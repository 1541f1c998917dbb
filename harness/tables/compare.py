"""Compare any finished runs, a user's own as well as the paper's, in one wide table:

    python -m harness.compare RUN_DIR [RUN_DIR ...] [--output_dir=DIR]
    python -m harness.compare 'runs/mine/*'            # a glob, expanded here if quoted

A path is a run directory (it holds `summary.json`) or a folder searched for runs below it.
Runs whose configurations differ only in `Experiment.seed` are seeds of one row: its numbers
are the mean over them, with the sample standard deviation (ddof=1) beside each metric.
Method keys and units are the paper tables' (harness/tables/report.py): the method as the paper names
it (`Method.display_name`), accuracies in %, NLL in nats, ECE as a fraction, FLOPs as ratios to
the dense reference, and the whole ensemble's inference time in ms per image; each cell
formatted as in the paper tables (harness/tables/render.py).

Markdown goes to stdout; with `--output_dir` the table is also written there as
`compare.parquet` (one row per configuration, `<metric>_std` columns) and `compare.md`.
"""
import glob
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core import cli
from harness.store.configuration import bindings
from harness.core.errors import UserError
from harness.store import paths
from harness.store.record import is_finished, read_summary
from harness.tables.render import MEASURES, grid, sparsity_text
from harness.core.durable import write_report
from harness.tables.run_numbers import METRICS, run_row

IDENTITY = ("method", "dataset", "model", "M", "sparsity")
RATIOS = ("train_flops_ratio", "test_flops_ratio")
TIMES = ("infer_ms",)
# The markdown table's measures (titles and digits: harness/tables/render.py), each with its std.
SHOWN = ("acc", "nll", "ece", "cacc", "cnll", "cece", "aacc", "train_flops_ratio",
         "test_flops_ratio", "infer_ms")
SEED_BINDING = "Experiment.seed"


def find_runs(patterns: list[str]) -> list[Path]:
    """The finished run directories named by `patterns` (paths or globs), each once, in the
    order given; a folder that is not a run is searched below for runs."""
    if not patterns:
        raise UserError("give at least one run directory, folder of runs or glob")
    found: list[Path] = []
    for pattern in patterns:
        # A glob's files (a run's lock or job records beside it) are not runs: folders only.
        matched = ([Path(path) for path in sorted(glob.glob(pattern)) if Path(path).is_dir()]
                   if glob.has_magic(pattern) else [Path(pattern)])
        if not matched or not all(path.exists() for path in matched):
            raise UserError(f"{pattern} matches no file or folder" if not glob.has_magic(pattern)
                            else f"{pattern} matches no folder")
        for path in matched:
            runs = ([path] if is_finished(path)
                    else sorted(summary.parent for summary in path.rglob(paths.SUMMARY)))
            if not runs:
                raise UserError(f"{path} holds no finished run (no {paths.SUMMARY} in it or "
                                f"below)")
            found += [run for run in runs if run not in found]
    return found


def configuration_key(run_dir: Path) -> str:
    """What makes runs seeds of one row: their recorded configuration without the seed."""
    path = paths.config(run_dir)
    if not path.is_file():
        raise UserError(f"{run_dir} has no {paths.CONFIG}: it was not written by this harness")
    given = bindings(path.read_text())
    given.pop(SEED_BINDING, None)
    text = "\n".join(f"{name} = {value}" for name, value in sorted(given.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_runs(patterns: list[str]) -> pd.DataFrame:
    """One row per run: its identity, metrics and FLOPs in table units, `run_dir`, `seed` and
    `configuration` (the key its seeds share)."""
    records = []
    for run_dir in find_runs(patterns):
        row = run_row(run_dir)
        summary = read_summary(run_dir)
        row["method"] = summary.get("display_name", summary["method"])
        records.append({**row, "run_dir": str(run_dir),
                        "configuration": configuration_key(run_dir)})
    return pd.DataFrame(records)


def compare(runs: pd.DataFrame) -> pd.DataFrame:
    """The wide table: one row per configuration, in the order the runs came, the mean over its
    seeds of every metric with `<metric>_std`, FLOPs ratios from its first seed (they depend on
    the configuration only), `seeds` and the run directories."""
    rows = []
    for _, group in runs.groupby("configuration", sort=False):
        first = group.iloc[0]
        row = {key: first[key] for key in (*IDENTITY, *RATIOS)}
        for name in (*METRICS, *TIMES):
            row[name] = group[name].mean()
            row[f"{name}_std"] = group[name].std(ddof=1) if len(group) > 1 else np.nan
        row["seeds"] = len(group)
        row["run_dirs"] = ",".join(group.run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown: the identity, each shown measure that some run measured."""
    shown = [name for name in SHOWN if table[name].notna().any()]
    rows = [[row["method"], row["dataset"], row["model"], str(row["M"]),
             sparsity_text(row["sparsity"]),
             *(MEASURES[name].ours(row[name], row.get(f"{name}_std")) for name in shown),
             str(row["seeds"])] for row in table.to_dict("records")]
    return grid(["method", "data", "model", "M", "S", *(MEASURES[name].title for name in shown),
                 "seeds"], rows)


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.compare", __doc__, variadic="runs")
    parser.path("output_dir", None, "also write compare.parquet and compare.md here")
    args = parser.parse(argv)
    table = compare(load_runs(args.runs))
    text = markdown(table)
    print(text)
    if args.output_dir:
        stem = args.output_dir / "compare"
        write_report(table, stem, text + "\n")
        print(f"written to {stem}.parquet and {stem}.md", file=sys.stderr)
    return 0
