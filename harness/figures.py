"""Figures from the run records of a table, as PNG:

    python -m harness.figures [--table=1 ...] [--scale=paper] [--runs_dir=runs]
        [--output_dir=reports/figures]

writes `<output_dir>/table<N>-<scale>-<figure>.png` for each table (default: every table
with runs at that scale):

    ensemble_size   accuracy of the ensemble of the first m members, m = 1..M, beside the
                    mean accuracy of those members alone (paper Fig. 5), re-scored from the
                    cached predictions (harness/predictions.py) without retraining; single
                    models as horizontal lines
    disagreement    pairwise prediction disagreement between members (paper Figs. 6-7)
    kl              pairwise KL(p_i || p_j) between members (paper §5.1; row i, column j)
    layer_density   each member's density per conv/linear layer (the run's 'structure'
                    rows, harness/structure.py), for the rows with sparsity > 0

Each figure draws the first finished seed of every row; a figure with nothing to draw (no
ensemble, no sparse row) is skipped with a message.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no display backend, no global figures

from harness.durable import atomic_write
from harness.errors import UserError
from harness.predictions import ensemble_size_curve, load_predictions
from harness.record import read_metrics, read_summary
from harness.report import table_runs, tables_with_runs


def first_seeds(runs_dir: Path, table: int, scale: str) -> list[tuple[str, Path]]:
    """(label, first finished seed folder) of every row with one."""
    return [(f"{row.method} ({row.name})", row.finished[0])
            for row in table_runs(runs_dir, table, scale) if row.finished]


def pair_matrix(run_dir: Path, metric: str) -> np.ndarray:
    """[M, M] matrix of a pairwise metric on the clean test set (NaN where not measured)."""
    frame = read_metrics(run_dir)
    pairs = frame[(frame.suite == "test") & (frame.corruption == "clean")
                  & (frame.metric == metric) & frame.member.str.contains("-")]
    members = read_summary(run_dir)["num_members"]
    matrix = np.full((members, members), np.nan)
    np.fill_diagonal(matrix, 0.0)
    for member, value in zip(pairs.member, pairs.value):
        i, j = map(int, member.split("-"))
        matrix[i, j] = value
        if metric == "disagreement":  # symmetric; KL is not, and only i < j is measured
            matrix[j, i] = value
    return matrix


def layer_densities(run_dir: Path) -> list[dict[str, float]]:
    """Per member, its density per conv/linear layer: the run's 'structure' rows
    (metric 'density/<layer>', harness/structure.py); empty for runs without them."""
    frame = read_metrics(run_dir)
    rows = frame[(frame.suite == "structure") & frame.metric.str.startswith("density/")]
    return [{metric.removeprefix("density/"): value
             for metric, value in zip(group.metric, group.value)}
            for _, group in sorted(rows.groupby("member"), key=lambda item: int(item[0]))]


def ensemble_size_figure(runs: list[tuple[str, Path]]):
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    drawn = False
    for label, run_dir in runs:
        log_probs, labels = load_predictions(run_dir)
        curve = ensemble_size_curve(log_probs, labels)
        sizes = [point["size"] for point in curve]
        if len(curve) == 1:
            ax.axhline(100 * curve[0]["accuracy"], linestyle=":", color="grey", label=label)
            continue
        line, = ax.plot(sizes, [100 * point["accuracy"] for point in curve], marker="o",
                        label=f"{label}: ensemble")
        ax.plot(sizes, [100 * point["individual_accuracy"] for point in curve], marker="x",
                linestyle="--", color=line.get_color(), label=f"{label}: individual")
        drawn = True
    if not drawn:
        return None
    ax.set(xlabel="ensemble size (first m members)", ylabel="test accuracy (%)",
           title="Ensemble size (paper Fig. 5)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def heatmap_figure(runs: list[tuple[str, Path]], metric: str, title: str):
    """One heatmap per ensemble, on one colour scale so that methods compare at a glance."""
    matrices = [(label, pair_matrix(run_dir, metric)) for label, run_dir in runs
                if read_summary(run_dir)["num_members"] > 1]
    if not matrices:
        return None
    top = max(np.nanmax(matrix) for _, matrix in matrices) or 1.0
    columns = min(4, len(matrices))
    rows = -(-len(matrices) // columns)
    fig = Figure(figsize=(3.4 * columns + 1, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(matrices):]:
        ax.axis("off")
    for ax, (label, matrix) in zip(axes.flat, matrices):
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=top)
        for (i, j), value in np.ndenumerate(matrix):
            if not np.isnan(value):  # dark text on the bright upper half of the colormap
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=6,
                        color="black" if value > top / 2 else "white")
        ticks = range(len(matrix))
        ax.set(xticks=ticks, yticks=ticks, xlabel="member", ylabel="member")
        ax.set_title(label, fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def density_figure(runs: list[tuple[str, Path]]):
    sparse = [(label, layer_densities(run_dir)) for label, run_dir in runs
              if read_summary(run_dir)["sparsity"] > 0]
    sparse = [(label, members) for label, members in sparse if members]
    if not sparse:
        return None
    fig = Figure(figsize=(8, 2.8 * len(sparse)))
    axes = fig.subplots(len(sparse), 1, squeeze=False)
    for ax, (label, members) in zip(axes[:, 0], sparse):
        names = list(members[0])
        for index, densities in enumerate(members):
            ax.plot(range(len(names)), [densities[name] for name in names], marker=".",
                    label=f"member {index}")
        ax.set(ylabel="density", ylim=(0, 1.05), title=label)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.legend(fontsize=7)
    fig.suptitle("Per-layer density of the tickets")
    fig.tight_layout()
    return fig


def figures(table: int, scale: str, runs_dir: Path, output_dir: Path) -> list[Path]:
    """Writes the table's figures; returns their paths."""
    runs = first_seeds(runs_dir, table, scale)
    makers = {"ensemble_size": lambda: ensemble_size_figure(runs),
              "disagreement": lambda: heatmap_figure(
                  runs, "disagreement", "Prediction disagreement (paper Figs. 6-7)"),
              "kl": lambda: heatmap_figure(runs, "kl", "KL divergence KL(p_row || p_column)"),
              "layer_density": lambda: density_figure(runs)}
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in makers.items():
        fig = make()
        if fig is None:
            print(f"table {table} [{scale}]: no run to draw {name} from; skipped")
            continue
        path = output_dir / f"table{table}-{scale}-{name}.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=int, action="append",
                        help="table number (repeatable; default: every table with runs)")
    parser.add_argument("--scale", default="paper", help="paper, cpu or smoke")
    parser.add_argument("--runs_dir", type=Path, default=Path("runs"))
    parser.add_argument("--output_dir", type=Path, default=Path("reports/figures"))
    args = parser.parse_args(argv)
    try:
        tables = args.table or tables_with_runs(args.runs_dir, args.scale)
        if not tables:
            raise UserError(f"no table runs at scale {args.scale!r} under {args.runs_dir}: "
                            f"run `make table1 SCALE={args.scale}` first")
        for table in tables:
            for path in figures(table, args.scale, args.runs_dir, args.output_dir):
                print(path)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
