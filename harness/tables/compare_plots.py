"""The pictures of `python -m harness.compare --plot`, one PNG each under `<output_dir>/plots/`:

    frontier.png          Acc, NLL and ECE against training FLOPs (the ratio to the dense
                          reference, as the tables print it), one point per row, ± std over
                          its seeds
    sweep-<binding>.png   each metric against a numeric binding that differs among the rows
                          (a sweep's swept value), one line per group of the other differing
                          bindings, ± std over seeds
    reliability.png       per row, accuracy against confidence in the ECE's bins
                          (harness/evaluation/metrics.py `reliability_bins`) with each bin's
                          count, from its runs' predictions/test.npz, its seeds pooled
    training.png          per row, the training loss (and the held-out accuracy where the runs
                          recorded one) against epoch from each run's history.csv, the mean
                          over its seeds with a ± std band

A figure with nothing to draw is not written; what a row lacks (no saved predictions, no
history, no FLOPs) is a note for the page (harness/tables/compare_page.py), never an error.
matplotlib (the `figures` extra) is imported here, so only when --plot is given.
"""
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.tables.render import MEASURES

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no display backend, no global figures
    from matplotlib.ticker import MaxNLocator
except ImportError:  # an extra: compare prints its table without it
    raise UserError("--plot needs matplotlib: pip install 'freetickets-bench[figures]'"
                    ) from None

PLOTS = "plots"
FRONTIER = ("acc", "nll", "ece")
SWEPT = ("acc", "nll", "ece", "cacc", "cnll", "cece")
# A positive axis spanning more than this factor is drawn on a log scale.
WIDE_SPAN = 20
PANEL = (4.2, 3.4)  # inches per panel
LEGEND_WIDTH = 3.5  # inches beside the panels for a legend of row names
COLUMNS = 4  # panels per line of the reliability diagrams


def write_plots(table: pd.DataFrame, output_dir: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Draws and writes the figures of `table` (harness.tables.compare's `compare`) under
    `output_dir/plots/`: ([(caption, file written)], [notes on what could not be drawn])."""
    names = row_names(table)
    notes: list[str] = []
    drawn = [("frontier", "Efficiency frontier: each metric against the training FLOPs",
              frontier_figure(table, names, notes))]
    drawn += [(f"sweep-{file_name(binding)}", f"Each metric against {binding}",
               sweep_figure(table, binding)) for binding in swept_bindings(table)]
    drawn += [("reliability", "Reliability diagrams of the clean test predictions",
               reliability_figure(table, names, notes)),
              ("training", "Training curves", training_figure(table, names, notes))]
    return [(caption, save_png(figure, output_dir / PLOTS / f"{name}.png"))
            for name, caption, figure in drawn if figure is not None], notes


def save_png(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    atomic_write(path, lambda partial: figure.savefig(partial, dpi=110, format="png"))
    return path


def file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def row_names(table: pd.DataFrame) -> list[str]:
    """What names each row in a legend: its label where the labels tell the rows apart, else
    its label or method with the bindings that differ; the row's number where even those
    coincide."""
    labels = list(table.label)
    if all(labels) and len(set(labels)) == len(labels):
        return labels
    names = []
    for label, row in zip(labels, table.to_dict("records")):
        settings = settings_text(row, table.attrs["bindings"])
        names.append((label or row["method"]) + (f" ({settings})" if settings else ""))
    if len(set(names)) < len(names):
        names = [f"{name} [{index + 1}]" for index, name in enumerate(names)]
    return names


def settings_text(row: dict, bindings: list[str]) -> str:
    """`sparsity=0.8, lr=0.1`: the row's values of `bindings`, where it has one."""
    return ", ".join(f"{short_name(name)}={row[name]}" for name in bindings if row[name] != "")


def short_name(binding: str) -> str:
    """A binding's parameter alone, `SparsitySpec.sparsity` -> `sparsity`."""
    return binding.rsplit(".", 1)[-1]


def title(metric: str) -> str:
    return MEASURES[metric].title


def log_x_if_wide(axis, values) -> None:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > WIDE_SPAN:
        axis.set_xscale("log")


def panels(count: int, columns: int, legend_beside: bool = False) -> tuple[Figure, list]:
    lines = math.ceil(count / columns)
    width = min(count, columns)
    figure = Figure(figsize=(PANEL[0] * width + LEGEND_WIDTH * legend_beside, PANEL[1] * lines),
                    layout="constrained")
    axes = figure.subplots(lines, width, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, list(axes[:count])


def frontier_figure(table: pd.DataFrame, names: list[str], notes: list[str]) -> Figure | None:
    has_flops = table.train_flops_ratio.notna()
    for name in np.asarray(names)[~has_flops]:
        notes.append(f"{name}: no FLOPs record ({paths.FLOPS}), left out of the frontier")
    shown = [metric for metric in FRONTIER if table[metric][has_flops].notna().any()]
    if not shown:
        return None
    figure, axes = panels(len(shown), len(shown), legend_beside=True)
    rows = table[has_flops]
    for axis, metric in zip(axes, shown):
        for (_, row), name in zip(rows.iterrows(), np.asarray(names)[has_flops]):
            axis.errorbar(row.train_flops_ratio, row[metric],
                          yerr=nan_to_zero(row[f"{metric}_std"]), fmt="o", capsize=3, label=name)
        log_x_if_wide(axis, rows.train_flops_ratio)
        axis.set_xlabel("training FLOPs (x the dense reference)")
        axis.set_ylabel(title(metric))
        axis.grid(alpha=0.3)
    legend(figure, axes[0])
    return figure


def legend(figure: Figure, axis) -> None:
    """One legend for the figure's panels, beside them: row names are long."""
    figure.legend(*axis.get_legend_handles_labels(), loc="outside right upper", fontsize=7)


def nan_to_zero(value) -> float:
    """A row of one seed has no std: no error bar."""
    return 0.0 if pd.isna(value) else float(value)


def numeric(values) -> list[float] | None:
    """The binding's values as numbers ('' where a row does not give it: NaN), None where one
    is not a number (a string, a reference, a boolean)."""
    numbers = []
    for value in values:
        if value == "":
            numbers.append(math.nan)
            continue
        try:
            numbers.append(float(value))
        except ValueError:
            return None
    return numbers


def swept_bindings(table: pd.DataFrame) -> list[str]:
    """The differing bindings whose values are numbers, two or more distinct ones."""
    return [name for name in table.attrs["bindings"]
            if (values := numeric(table[name])) is not None
            and len({value for value in values if not math.isnan(value)}) >= 2]


def sweep_figure(table: pd.DataFrame, binding: str) -> Figure:
    swept = np.asarray(numeric(table[binding]))
    others = [name for name in table.attrs["bindings"] if name != binding]
    groups = pd.Series([settings_text(row, others) for row in table.to_dict("records")])
    shown = [metric for metric in SWEPT if table[metric].notna().any()]
    figure, axes = panels(len(shown), 3, legend_beside=len(others) > 0)
    for axis, metric in zip(axes, shown):
        for group in dict.fromkeys(groups):
            rows = np.flatnonzero((groups == group).to_numpy() & ~np.isnan(swept))
            if not len(rows):
                continue
            rows = rows[np.argsort(swept[rows], kind="stable")]
            axis.errorbar(swept[rows], table[metric].to_numpy()[rows],
                          yerr=[nan_to_zero(std) for std in table[f"{metric}_std"].iloc[rows]],
                          marker="o", capsize=3, label=group or None)
        log_x_if_wide(axis, swept)
        axis.set_xlabel(binding)
        axis.set_ylabel(title(metric))
        axis.grid(alpha=0.3)
    if any(groups):
        legend(figure, axes[0])
    return figure


def reliability_figure(table: pd.DataFrame, names: list[str], notes: list[str]
                       ) -> Figure | None:
    # torch: only to draw these
    from harness.evaluation.cached_predictions import load_predictions
    from harness.evaluation.metrics import ECE_BINS, ensemble_log_probs, reliability_bins

    diagrams = []
    for name, run_dirs in zip(names, table.run_dirs):
        bins = []
        for run_dir in map(Path, run_dirs.split(",")):
            try:
                log_probs, labels = load_predictions(run_dir)
            except UserError:
                notes.append(f"{name}: {run_dir} has no saved predictions "
                             f"({paths.TEST_PREDICTIONS}), left out of its reliability diagram")
                continue
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                notes.append(f"{name}: {paths.test_predictions(run_dir)} cannot be read "
                             f"({error}), left out of its reliability diagram")
                continue
            # the probabilities MetricSums scores, so each run's bins give its own ECE
            bins.append(reliability_bins(ensemble_log_probs(log_probs).double().exp(), labels,
                                         ECE_BINS))
        if bins:
            diagrams.append((name, bins))
    if not diagrams:
        return None
    figure, axes = panels(len(diagrams), COLUMNS)
    for axis, (name, bins) in zip(axes, diagrams):
        draw_reliability(axis, name, bins)
    return figure


def draw_reliability(axis, name: str, runs: list) -> None:
    """One row's diagram: the bins of its runs pooled (every seed's test examples), the ECE
    in the title the mean over its runs, as the table's."""
    count = sum(bins.count for bins in runs).numpy()
    correct = sum(bins.correct_sum for bins in runs).numpy()
    edges = np.linspace(0, 1, len(count) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = count > 0
    accuracy = correct[filled] / count[filled]
    axis.bar(centres[filled], accuracy, width=edges[1] - edges[0], edgecolor="black",
             linewidth=0.5, label="accuracy")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    for centre, height, examples in zip(centres[filled], accuracy, count[filled]):
        axis.text(centre, min(height, 0.9) + 0.02, f"{int(examples)}", ha="center",
                  va="bottom", rotation=90, fontsize=6)
    ece = np.mean([bins.ece() for bins in runs])
    seeds = f", mean of {len(runs)} runs" if len(runs) > 1 else ""
    axis.set_title(f"{name}\nECE {ece:.{MEASURES['ece'].digits}f}{seeds}", fontsize=8)
    axis.set(xlim=(0, 1), ylim=(0, 1.1), xlabel="confidence", ylabel="accuracy")
    axis.legend(fontsize=6, loc="upper left")


def training_figure(table: pd.DataFrame, names: list[str], notes: list[str]) -> Figure | None:
    curves = []
    for name, run_dirs in zip(names, table.run_dirs):
        histories = []
        for run_dir in map(Path, run_dirs.split(",")):
            try:
                history = readers.history(run_dir)
            except readers.DamagedRecord as damaged:
                notes.append(f"{name}: {damaged}; left out of the training curves")
                continue
            if history is None:
                notes.append(f"{name}: {run_dir} has no {paths.HISTORY}, left out of the "
                             f"training curves")
            elif not history.empty:
                histories.append(history)
        if histories:
            curves.append((name, histories))
    if not curves:
        return None
    held_out = any("val_accuracy" in history and history.val_accuracy.notna().any()
                   for _, histories in curves for history in histories)
    if not held_out:
        notes.append(f"no run recorded a held-out accuracy per epoch ({paths.HISTORY} holds one "
                     f"where Experiment.validation_fraction > 0; the test set is scored only "
                     f"at the end): the training curves show the training loss alone")
    shown = {"loss": "training loss", **({"val_accuracy": "held-out Acc %"} if held_out else {})}
    figure, axes = panels(len(shown), len(shown), legend_beside=True)
    for axis, (column, label) in zip(axes, shown.items()):
        for index, (name, histories) in enumerate(curves):
            draw_curve(axis, name, f"C{index % 10}",  # a row's colour in every panel
                       [history[column] * (100 if column == "val_accuracy" else 1)
                        for history in histories if column in history])
        axis.set_xlabel("epoch (all training stages, in order)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    legend(figure, axes[0])
    return figure


def draw_curve(axis, name: str, colour: str, series: list[pd.Series]) -> None:
    """The mean over a row's seeds, epoch by epoch, with a band of ± their std."""
    if not series:
        return
    runs = pd.concat([values.reset_index(drop=True) for values in series], axis=1)
    epochs = np.arange(1, len(runs) + 1)
    mean = runs.mean(axis=1)
    axis.plot(epochs, mean, label=name, color=colour)
    if runs.shape[1] > 1:
        spread = runs.std(axis=1, ddof=1)
        axis.fill_between(epochs, mean - spread, mean + spread, alpha=0.2, color=colour)
