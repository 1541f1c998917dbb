"""Compare any finished runs, a user's own as well as the paper's, in one wide table:

    python -m harness.compare RUN [RUN ...] [--labels=A,B,...] [--baseline=RUN]
                              [--output_dir=DIR [--plot]]
    python -m harness.compare 'runs/mine/*'            # a glob, expanded here if quoted

A RUN is a run directory, a folder searched for runs below it, or a quoted glob. A run given
twice (the same folder, however it is written) counts once. An unfinished run (`config.gin`
without `summary.json`) is skipped with one line `skipped unfinished run <path> (no
summary.json)`, a damaged one with `skipped damaged run: ...`; an error when none is left.

Runs whose configurations differ only in `Experiment.seed` are seeds of one row: its numbers
are the mean over them, with the sample standard deviation (ddof=1) beside each metric and
timing. Method keys and units are the paper tables' (harness/tables/report.py): the method as
the paper names it (`Method.display_name`), accuracies in %, NLL in nats, ECE as a fraction,
FLOPs as ratios to the dense reference, the whole ensemble's inference time in ms per image
and the training's wall-clock seconds (`train_seconds` of summary.json); each cell formatted as
in the paper tables (harness/tables/render.py). Each binding that the rows' `config.gin` give
differently (the seed apart) is a column: a row that does not give it shows the value its run
used (`operative_config.gin`), else nothing. The last column names each row's runs, relative
to the folder that holds them all. `--labels` names the RUN arguments, one label each, in
order (`baseline` names `--baseline`'s): a row is labelled by the arguments that found its
runs, joined by `+`.

`--baseline=RUN` (a run directory, folder or glob of one configuration's runs, compared with
the others whether or not it is among the RUNs) adds a table of each row's difference to that
row, acc, NLL, ECE and cAcc, cNLL, cECE, with a 95% interval (harness/tables/significance.py):
Welch's t over seeds where both rows have two or more seeds, else a paired bootstrap over the
test examples of the runs' `predictions/test.npz` (acc, NLL and ECE only); `*` marks an
interval that excludes 0.

Markdown goes to stdout; with `--output_dir` the table is also written there as
`compare.parquet` (one row per configuration, `<metric>_std` columns, the binding columns,
`run_dirs`; with a baseline `<metric>_diff`, `_diff_low`, `_diff_high`, `_diff_method`) and
`compare.md`. `--plot` (with `--output_dir`) also draws the rows under `DIR/plots/`: the
efficiency frontier (Acc, NLL, ECE against training FLOPs), each metric against every numeric
binding that differs (a sweep), the reliability diagrams of the saved test predictions and
the training curves of history.csv (harness/tables/compare_plots.py), shown with the table in
`DIR/compare.html` (harness/tables/compare_page.py).
"""
import functools
import glob
import hashlib
import os
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from harness.core import cli
from harness.store.configuration import SEED_BINDING, bindings
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.store.record import is_finished
from harness.tables.render import MEASURES, Measure, grid, sparsity_text
from harness.core.durable import write_report
from harness.tables.run_numbers import METRICS, PERCENT, run_row

if TYPE_CHECKING:  # imported where used: scipy and torch take seconds, needed with a baseline only
    from harness.tables.significance import Interval

IDENTITY = ("method", "dataset", "model", "M", "sparsity")
RATIOS = ("train_flops_ratio", "test_flops_ratio")
TIMES = ("infer_ms", "sparse_infer_ms", "train_seconds")
# The markdown table's measures (titles and digits: harness/tables/render.py), each with its std.
SHOWN = ("acc", "nll", "ece", "cacc", "cnll", "cece", "aacc", "train_flops_ratio",
         "test_flops_ratio", *TIMES)
FORMATS = {**MEASURES, "train_seconds": Measure("train s", 1, "s", False, printed=False,
                                                delta=False)}
# The metrics differenced against a baseline; the clean ones can also be bootstrapped from
# the saved test predictions (by metrics.py's name), the corrupted ones only compared over
# seeds: no run keeps its corrupted predictions.
DIFFERENCES = ("acc", "nll", "ece", "cacc", "cnll", "cece")
BOOTSTRAPPED = {"acc": "accuracy", "nll": "nll", "ece": "ece"}
WELCH, BOOTSTRAP = "welch", "bootstrap"


def find_runs(patterns: list[str]) -> dict[Path, list[int]]:
    """The finished run directories named by `patterns` (paths or globs), each once however
    it is written, in the order given, each with the indices of the patterns that named it; a
    folder that is not a run is searched below for runs. Unfinished runs are skipped, each
    with one line on stderr; a UserError when no finished run is left."""
    if not patterns:
        raise UserError("give at least one run directory, folder of runs or glob")
    found: dict[Path, tuple[Path, list[int]]] = {}  # by resolved path: the run as given
    unfinished: dict[Path, Path] = {}
    for index, pattern in enumerate(patterns):
        # A glob's files (a run's lock or job records beside it) are not runs: folders only.
        matched = ([Path(path) for path in sorted(glob.glob(pattern)) if Path(path).is_dir()]
                   if glob.has_magic(pattern) else [Path(pattern)])
        if not matched or not all(path.exists() for path in matched):
            raise UserError(f"{pattern} matches no file or folder" if not glob.has_magic(pattern)
                            else f"{pattern} matches no folder")
        for path in matched:
            finished, started = runs_in(path)
            if not finished and not started:
                raise UserError(f"{path} holds no finished run (no {paths.SUMMARY} in it or "
                                f"below)")
            for run in finished:
                arguments = found.setdefault(run.resolve(), (run, []))[1]
                if index not in arguments:
                    arguments.append(index)
            for run in started:
                unfinished.setdefault(run.resolve(), run)
    if not found:
        named = (f"{next(iter(unfinished.values()))} is" if len(unfinished) == 1 else
                 f"the {len(unfinished)} runs given are")
        raise UserError(f"no finished run to compare: {named} unfinished (no {paths.SUMMARY})")
    for run in unfinished.values():
        print(f"skipped unfinished run {run} (no {paths.SUMMARY})", file=sys.stderr)
    return dict(found.values())


def runs_in(path: Path) -> tuple[list[Path], list[Path]]:
    """The finished runs (with summary.json) and the unfinished ones (config.gin alone) at or
    below `path`. Hidden folders are left out: `.seed<k>.new/` and `.seed<k>.old/` are a run
    that `--overwrite` is building or setting aside (harness/store/paths.py), not runs."""
    if is_finished(path):
        return [path], []
    if paths.config(path).is_file():
        return [], [path]

    def visible(run: Path) -> bool:
        return not any(part.startswith(".") for part in run.relative_to(path).parts)
    finished = [summary.parent for summary in sorted(path.rglob(paths.SUMMARY))
                if visible(summary.parent)]
    started = [config.parent for config in sorted(path.rglob(paths.CONFIG))
               if visible(config.parent) and not is_finished(config.parent)]
    return finished, started


def given_bindings(run_dir: Path) -> dict[str, str]:
    """The bindings its config.gin gives, without the seed (a row's seeds differ in it alone)
    and the imports (which only make configurables known)."""
    given = bindings(readers.config_text(run_dir))
    return {name: value for name, value in given.items()
            if name != SEED_BINDING and not name.startswith(("import ", "from "))}


def configuration_key(given: dict[str, str]) -> str:
    """What makes runs seeds of one row: their recorded configuration without the seed."""
    text = "\n".join(f"{name} = {value}" for name, value in sorted(given.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_runs(patterns: list[str]) -> pd.DataFrame:
    """One row per run: its identity, metrics, timings and FLOPs in table units, `run_dir`,
    `seed`, `bindings` (`given_bindings`), `configuration` (the key its seeds share) and
    `arguments` (the indices of the patterns that named it). A run whose records are damaged
    (harness/store/readers.py) is skipped with one line naming it; a UserError when no run is
    left."""
    records, damages = [], []
    runs = find_runs(patterns)
    for run_dir, arguments in runs.items():
        damage = readers.run_damage(run_dir)
        if damage:
            damages.append(damage)
            continue
        row = run_row(run_dir)
        summary = readers.summary(run_dir)
        row["method"] = summary.get("display_name", summary["method"])
        seconds = summary.get("train_seconds")
        row["train_seconds"] = (float(seconds) if isinstance(seconds, readers.Number)
                                and not isinstance(seconds, bool) else np.nan)
        given = given_bindings(run_dir)
        records.append({**row, "run_dir": str(run_dir), "bindings": given,
                        "configuration": configuration_key(given), "arguments": arguments})
    if not records:
        raise UserError(f"no readable finished run to compare: {damages[0]}" + (
            f" (and {len(damages) - 1} more damaged)" if len(damages) > 1 else ""))
    for damage in damages:
        print(f"skipped damaged run: {damage}", file=sys.stderr)
    return pd.DataFrame(records)


def compare(runs: pd.DataFrame, labels: Sequence[str] = ()) -> pd.DataFrame:
    """The wide table: one row per configuration, in the order the runs came, the mean over its
    seeds of every metric and timing with `<name>_std`, FLOPs ratios from its first seed (they
    depend on the configuration only), `seeds`, `label` (`labels[i]` names the pattern i; ''
    without labels), `configuration`, the run directories and `binding_columns`."""
    rows = []
    for configuration, group in runs.groupby("configuration", sort=False):
        first = group.iloc[0]
        row = {key: first[key] for key in (*IDENTITY, *RATIOS)}
        for name in (*METRICS, *TIMES):
            row[name] = group[name].mean()
            row[f"{name}_std"] = group[name].std(ddof=1) if len(group) > 1 else np.nan
        row["seeds"] = len(group)
        found_by = (dict.fromkeys(labels[index] for arguments in group.arguments
                                  for index in arguments) if labels else {})
        row["label"] = "+".join(found_by)
        row["configuration"] = configuration
        row["run_dirs"] = ",".join(group.run_dir)
        rows.append(row)
    table = pd.DataFrame(rows)
    columns = binding_columns(runs, table)
    table = table.assign(**columns)
    table.attrs["bindings"] = list(columns)  # which columns are bindings, for `markdown`
    return table


def binding_columns(runs: pd.DataFrame, table: pd.DataFrame) -> dict[str, list[str]]:
    """{binding: its value per row of `table`} for each binding the rows' config.gin give
    differently (one gives it and another not, or another value), in the order the rows give
    them; where a row does not give it, the value its first run used (operative_config.gin),
    else ''."""
    given = [runs.bindings[runs.configuration == key].iloc[0] for key in table.configuration]
    names = dict.fromkeys(name for row in given for name in row)
    differing = [name for name in names if len({row.get(name) for row in given}) > 1]
    if not differing:
        return {}
    used = [values_used(Path(run_dirs.split(",")[0])) for run_dirs in table.run_dirs]
    return {name: [row.get(name, ran.get(name, "")) for row, ran in zip(given, used)]
            for name in differing}


def values_used(run_dir: Path) -> dict[str, str]:
    """The bindings of the run's operative_config.gin: what it ran with, defaults included.
    {} where it is missing (a run of an early version) or unreadable: it only fills in a
    cell, so the comparison goes on."""
    try:
        return bindings(readers.operative_config_text(run_dir))
    except (FileNotFoundError, readers.DamagedRecord):
        return {}


def run_names(table: pd.DataFrame) -> tuple[Path, list[str]]:
    """The folder that holds every run, and each row's runs relative to it."""
    dirs = [[Path(run_dir).resolve() for run_dir in row.split(",")] for row in table.run_dirs]
    common = Path(os.path.commonpath([run_dir.parent for row in dirs for run_dir in row]))
    return common, [", ".join(str(run_dir.relative_to(common)) for run_dir in row)
                    for row in dirs]


# What the comparison shows, in order: a line of text, or a table (header, rows of text cells)
Block = str | tuple[list[str], list[list[str]]]


def markdown(table: pd.DataFrame) -> str:
    """The comparison (`blocks`) as markdown."""
    return "\n\n".join(block if isinstance(block, str) else grid(*block)
                       for block in blocks(table))


def blocks(table: pd.DataFrame) -> list[Block]:
    """The table: the label (where given), the identity, the bindings that differ, each shown
    measure that some run measured, the seeds and the runs, then the folder that holds the
    runs; with a baseline (`versus_baseline`), the table of differences below."""
    shown = [name for name in SHOWN if table[name].notna().any()]
    labelled = table.label.astype(bool).any()
    settings = table.attrs["bindings"]
    common, names = run_names(table)
    rows = [[*([row["label"]] if labelled else []), row["method"], row["dataset"], row["model"],
             str(row["M"]), sparsity_text(row["sparsity"]),
             *(row[name] for name in settings),
             *(FORMATS[name].ours(row[name], row.get(f"{name}_std")) for name in shown),
             str(row["seeds"]), runs]
            for row, runs in zip(table.to_dict("records"), names)]
    header = [*(["label"] if labelled else []), "method", "data", "model", "M", "S", *settings,
              *(FORMATS[name].title for name in shown), "seeds", "runs"]
    shown_blocks: list[Block] = [(header, rows), f"runs: in {common}"]
    if "baseline" in table.columns:
        shown_blocks += differences(table, list(table.label) if labelled else names)
    return shown_blocks


def versus_baseline(table: pd.DataFrame, runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """`table` with `baseline` (whether the row is the configuration `baseline`) and, per
    metric of `DIFFERENCES`, `<metric>_diff` (row − baseline, in table units), `_diff_low` and
    `_diff_high` (its 95% interval) and `_diff_method` (`welch`, `bootstrap`, or '' where
    there is no interval): harness/tables/significance.py."""
    # torch and scipy: only with a baseline
    from harness.evaluation.cached_predictions import load_predictions
    from harness.tables import significance

    @functools.cache
    def predictions(run_dir: str) -> significance.Predictions:
        """A run's test predictions, read once however many rows compare with it; a
        UserError where they cannot be read."""
        try:
            return significance.Predictions.of(*load_predictions(Path(run_dir)))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(f"{paths.test_predictions(Path(run_dir))} cannot be read: "
                            f"{error}") from None

    baseline_runs = runs[runs.configuration == baseline]
    columns: dict[str, list] = {"baseline": list(table.configuration == baseline)}
    for key in table.configuration:
        row_runs = runs[runs.configuration == key]
        row = {}
        for name in DIFFERENCES:
            difference = row_runs[name].mean() - baseline_runs[name].mean()
            row.update(interval_columns(name, significance.Interval(
                np.nan if key == baseline else difference, np.nan, np.nan), ""))
        if key != baseline and min(len(row_runs), len(baseline_runs)) >= 2:
            for name in DIFFERENCES:
                if row_runs[name].notna().all() and baseline_runs[name].notna().all():
                    row.update(interval_columns(name, significance.welch_interval(
                        list(row_runs[name]), list(baseline_runs[name])), WELCH))
        elif key != baseline:
            try:
                intervals = significance.bootstrap_differences(
                    [predictions(run_dir) for run_dir in row_runs.run_dir],
                    [predictions(run_dir) for run_dir in baseline_runs.run_dir])
            except (UserError, ValueError) as reason:  # no predictions saved; other test sets
                print(f"no interval for {','.join(row_runs.run_dir)} against the baseline: "
                      f"{reason}", file=sys.stderr)
            else:
                for name, metric in BOOTSTRAPPED.items():
                    scale = 100 if name in PERCENT else 1  # fractions in the predictions
                    row.update(interval_columns(name, intervals[metric].scaled(scale),
                                                BOOTSTRAP))
        for column, value in row.items():
            columns.setdefault(column, []).append(value)
    return table.assign(**columns)


def interval_columns(name: str, interval: "Interval", method: str) -> dict:
    return {f"{name}_diff": interval.difference, f"{name}_diff_low": interval.low,
            f"{name}_diff_high": interval.high, f"{name}_diff_method": method}


def differences(table: pd.DataFrame, names: list[str]) -> list[Block]:
    """The differences to the baseline, one row per other row (named by `names`), each cell
    'Δ [low, high]' with `*` where the interval excludes 0, and which method gave them."""
    from harness.tables.significance import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES

    [baseline] = [name for name, is_baseline in zip(names, table.baseline) if is_baseline]
    shown = [name for name in DIFFERENCES if table[f"{name}_diff"].notna().any()]
    rows = []
    for name, row in zip(names, table.to_dict("records")):
        if row["baseline"]:
            continue
        methods = {row[f"{metric}_diff_method"] for metric in shown} - {""}
        rows.append([name, *(difference_text(FORMATS[metric], row, metric) for metric in shown),
                     ", ".join(method_text(method, row, table) for method in sorted(methods))
                     or "none"])
    level = f"{100 * CONFIDENCE:g}%"
    return [
        f"Differences to the baseline {baseline} (row − baseline) [{level} interval]; * where "
        f"the interval excludes 0:",
        (["vs baseline", *(f"Δ{FORMATS[metric].title} [{level} CI]" for metric in shown),
          "interval"], rows),
        "welch: Welch's t interval over seeds (both rows with >= 2 seeds; assumes independent "
        "seeds, each row's metric roughly normal over seeds). bootstrap: paired bootstrap "
        f"over the test examples of {paths.TEST_PREDICTIONS} ({RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}, the same examples for both rows, percentile interval; a row is the "
        "mean over its seeds; the test set's sampling only, not seed-to-seed variation); "
        "corrupted metrics get no bootstrap interval (no corrupted predictions are kept)."]


def difference_text(measure: Measure, row: dict, name: str) -> str:
    difference, low, high = (row[f"{name}_diff"], row[f"{name}_diff_low"],
                             row[f"{name}_diff_high"])
    if pd.isna(difference):
        return "-"
    digits = max(measure.digits, 0)

    def signed(value: float) -> str:
        return f"{round(float(value), digits) + 0.0:+.{digits}f}"  # + 0.0: no -0.00
    if pd.isna(low) or pd.isna(high):
        return signed(difference)
    mark = " *" if low > 0 or high < 0 else ""
    return f"{signed(difference)} [{signed(low)}, {signed(high)}]{mark}"


def method_text(method: str, row: dict, table: pd.DataFrame) -> str:
    if method == WELCH:
        return f"welch ({row['seeds']} vs {int(table.seeds[table.baseline].iloc[0])} seeds)"
    return "bootstrap"


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.compare", __doc__, variadic="runs")
    parser.path("output_dir", None, "also write compare.parquet and compare.md here")
    parser.strings("labels", None, "one label per RUN argument, in order, shown as the "
                                   "rows' first column")
    parser.string("baseline", None, "a run directory, folder or glob of one configuration's "
                                    "runs: each row's difference to that row, with a 95% "
                                    "interval")
    parser.boolean("plot", False, "also draw the rows under --output_dir/plots/ and show them "
                                  "with the table in --output_dir/compare.html")
    args = parser.parse(argv)
    if args.plot and not args.output_dir:
        raise UserError("--plot writes its figures and compare.html under --output_dir: give "
                        "--output_dir=DIR with --plot")
    if args.plot:  # matplotlib: only with --plot, and its absence told before anything is read
        from harness.tables import compare_page, compare_plots
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise UserError(f"--labels gives {len(args.labels)} label(s) for {len(args.runs)} "
                        f"RUN argument(s): give one per RUN, in order")
    patterns = [*args.runs, *([args.baseline] if args.baseline else [])]
    runs = load_runs(patterns)
    table = compare(runs, [*args.labels, "baseline"] if args.labels else ())
    if args.baseline:
        table = versus_baseline(table, runs, baseline_configuration(runs, len(args.runs),
                                                                    args.baseline))
    shown = blocks(table)
    text = markdown(table)
    print(text)
    if args.output_dir:
        stem = args.output_dir / "compare"
        write_report(table, stem, text + "\n")
        print(f"written to {stem}.parquet and {stem}.md", file=sys.stderr)
    if args.plot:
        figures, notes = compare_plots.write_plots(table, args.output_dir)
        page = compare_page.write_page(shown, figures, notes, args.output_dir)
        print(f"{len(figures)} figure(s) in {args.output_dir / compare_plots.PLOTS}, shown in "
              f"{page}", file=sys.stderr)
    return 0


def baseline_configuration(runs: pd.DataFrame, argument: int, pattern: str) -> str:
    """The configuration of the runs that pattern `argument` (`--baseline`) found: one."""
    named = runs.configuration[runs.arguments.map(lambda arguments: argument in arguments)]
    if named.empty:
        raise UserError(f"--baseline={pattern}: none of its runs can be read (each is named "
                        f"above)")
    if named.nunique() > 1:
        raise UserError(f"--baseline={pattern} names runs of {named.nunique()} configurations: "
                        f"name the runs of one")
    return named.iloc[0]
