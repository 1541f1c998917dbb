"""Figures from the run records of a table, as PNG:

    python -m harness.figures [--table=1 ...] [--scale=paper] [--runs_dir=runs]
        [--output_dir=reports/figures]

writes `<output_dir>/table<N>-<scale>-<figure>.png` for each table (default: every table
with runs at that scale):

    ensemble_size   accuracy of the ensemble of the first m members, m = 1..M, beside the
                    mean accuracy of those members alone, re-scored from the cached
                    predictions (harness/evaluation/cached_predictions.py) without retraining; single models as
                    horizontal lines (the paper's Fig. 5 is `fixed_budget_figure`: for EDST
                    it varies M at a fixed training budget, which first members cannot show)
    disagreement    pairwise prediction disagreement between members (paper Figs. 6-7)
    kl              pairwise KL(p_i || p_j) between members (paper §5.1; row i, column j)
    layer_density   each member's density per conv/linear layer (the run's 'structure'
                    rows, harness/evaluation/member_structure.py), for the rows with sparsity > 0

Each figure draws the first finished seed of every row; a figure with nothing to draw (no
ensemble, no sparse row) is skipped with a message, and so is a run without cached
predictions.

The paper's other figures, drawn for the report page (harness/paper/build.py) from the runs they
need: `feature_kl_figure` (Fig. 2 left: per-layer KL between the members' feature maps,
harness/evaluation/feature_maps.py, from the members replayed out of their saved stages),
`diversity_figure` (Fig. 2 right: mean pairwise disagreement and KL beside the printed
values), `trajectory_figure` (Fig. 3: t-SNE of checkpoints along each member's training,
harness/paper/trajectory_tsne.py), `sparsity_figure` (Fig. 4: individual and ensemble accuracy and
KL against sparsity, from Table 8's sweep) and `fixed_budget_figure` (Fig. 5: accuracy against
the ensemble size, EDST from its own runs at a fixed training budget).
"""
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.core import cli
from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.paper.reference import figure_2_right
from harness.tables.report import chosen_tables, table_flags
from harness.tables.context import TableContext
from harness.tables.sources import first_seeds, table_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**options) -> "Figure":
    """A matplotlib figure, without pyplot: no display backend, no global figures. matplotlib
    (an extra: the harness runs and scores without it) loads with the first figure drawn."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("figures need matplotlib: pip install "
                        "'freetickets-bench[figures]'") from None
    return Figure(**options)


def pair_matrix(run_dir: Path, metric: str) -> np.ndarray:
    """[M, M] matrix of a pairwise metric ('disagreement'; 'kl': KL(p_row || p_column)) on the
    clean test set, from the run's cached predictions (harness/evaluation/cached_predictions.py
    `pair_diversity`, every ordered pair); the diagonal is 0."""
    from harness.evaluation.cached_predictions import load_predictions, pair_diversity

    log_probs, _ = load_predictions(run_dir)
    matrix = np.zeros((log_probs.shape[0],) * 2)
    for (i, j), values in pair_diversity(log_probs).items():
        matrix[i, j] = values[metric]
    return matrix


def with_predictions(runs: list[tuple[str, Path]], figure: str) -> list[tuple[str, Path]]:
    """The runs whose predictions were cached; the others are named and left out."""
    kept = []
    for label, run_dir in runs:
        if paths.test_predictions(run_dir).is_file():
            kept.append((label, run_dir))
        else:
            print(f"{figure}: {label} left out, {run_dir} has no cached predictions "
                  f"({paths.TEST_PREDICTIONS})")
    return kept


def layer_densities(run_dir: Path) -> list[dict[str, float]]:
    """Per member, its density per conv/linear layer: the run's 'structure' rows
    (metric 'density/<layer>', harness/evaluation/member_structure.py); empty for runs without them."""
    frame = readers.metrics(run_dir)
    rows = frame[(frame.suite == "structure") & frame.metric.str.startswith("density/")]
    return [{metric.removeprefix("density/"): value
             for metric, value in zip(group.metric, group.value)}
            for _, group in sorted(rows.groupby("member"), key=lambda item: int(item[0]))]


def plot_size_curve(ax, points: list[dict], label: str, marker: str = "o") -> None:
    """Ensemble accuracy (%) against the ensemble size, and the members' mean accuracy alone
    dashed in the same colour; `points` as `ensemble_size_curve` gives them."""
    sizes = [point["size"] for point in points]
    line, = ax.plot(sizes, [100 * point["accuracy"] for point in points], marker=marker,
                    label=f"{label}: ensemble")
    ax.plot(sizes, [100 * point["individual_accuracy"] for point in points], marker="x",
            linestyle="--", color=line.get_color(), label=f"{label}: individual")


def size_figure_done(fig, ax, xlabel: str, title: str):
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def ensemble_size_figure(runs: list[tuple[str, Path]]):
    from harness.evaluation.cached_predictions import ensemble_size_curve, load_predictions

    fig = new_figure(figsize=(9, 4))
    ax = fig.subplots()
    drawn = False
    for label, run_dir in with_predictions(runs, "ensemble_size"):
        curve = ensemble_size_curve(*load_predictions(run_dir))
        if len(curve) == 1:
            ax.axhline(100 * curve[0]["accuracy"], linestyle=":", color="grey", label=label)
            continue
        plot_size_curve(ax, curve, label)
        drawn = True
    if not drawn:
        return None
    return size_figure_done(fig, ax, "ensemble size (first m members)",
                            "Ensemble size (paper Fig. 5)")


def fixed_budget_figure(first_members: list[tuple[str, Path]],
                        fixed_budget: list[tuple[str, Path]]):
    """Paper Fig. 5 (§5.5): ensemble and mean individual accuracy against the ensemble size.
    `first_members`: runs of independent members (DST), the ensemble of their first m members
    for m = 1..M, as the paper trains m models from scratch. `fixed_budget`: one run per M at
    the same total training budget (EDST, gin/figure5/), each point the whole run's M tickets,
    so each ticket trains for less as M grows."""
    from harness.evaluation.cached_predictions import ensemble_size_curve, load_predictions

    fig = new_figure(figsize=(9, 4))
    ax = fig.subplots()
    for label, run_dir in with_predictions(first_members, "ensemble_size"):
        plot_size_curve(ax, ensemble_size_curve(*load_predictions(run_dir)),
                        f"{label}, first m")
    ends = sorted(((ensemble_size_curve(*load_predictions(run_dir))[-1], label)
                   for label, run_dir in with_predictions(fixed_budget, "ensemble_size")),
                  key=lambda end: end[0]["size"])
    if ends:
        method = ends[0][1].split(" (")[0]
        plot_size_curve(ax, [point for point, _ in ends], f"{method} at a fixed budget", "s")
    if not ax.lines:
        return None
    return size_figure_done(fig, ax, "ensemble size M",
                            "Effect of the ensemble size (paper Fig. 5)")


def heatmap_figure(runs: list[tuple[str, Path]], metric: str, title: str):
    """One heatmap per ensemble, on one colour scale so that methods compare at a glance."""
    matrices = [(label, pair_matrix(run_dir, metric))
                for label, run_dir in with_predictions(runs, metric)
                if readers.summary(run_dir)["num_members"] > 1]
    if not matrices:
        return None
    top = max(matrix.max() for _, matrix in matrices) or 1.0
    columns = min(4, len(matrices))
    rows = -(-len(matrices) // columns)
    fig = new_figure(figsize=(3.4 * columns + 1, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(matrices):]:
        ax.axis("off")
    for ax, (label, matrix) in zip(axes.flat, matrices):
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=top)
        if len(matrix) <= 8:  # numbers stay readable up to M = 8 (Snapshot's 12 are not)
            for (i, j), value in np.ndenumerate(matrix):  # dark text on the bright half
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
              if readers.summary(run_dir)["sparsity"] > 0]
    sparse = [(label, members) for label, members in sparse if members]
    if not sparse:
        return None
    fig = new_figure(figsize=(8, 2.8 * len(sparse)))
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


def feature_kl_figure(runs: list[tuple[str, Path]]):
    """Paper Fig. 2 left: one line per run, its members' feature-map KL per layer (mean over
    ordered member pairs; conventions in harness/evaluation/feature_maps.py)."""
    from harness.evaluation.feature_maps import feature_map_kl
    from harness.experiment.replay import replay

    fig = new_figure(figsize=(8, 4))
    ax = fig.subplots()
    layers: list[str] = []
    for label, run_dir in runs:
        replayed = replay(run_dir)
        kl = feature_map_kl(replayed.predictor.members(), replayed.test_inputs())
        layers = list(kl)
        ax.plot(range(len(kl)), list(kl.values()), marker="o", label=label)
    if not layers:
        return None
    ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=6)
    ax.set(xlabel="layer", ylabel="KL divergence of feature maps",
           title="Feature-map KL between members (paper Fig. 2 left)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def trajectory_figure(runs: list[tuple[str, Path]]):
    """Paper Fig. 3: one panel per run, each member's trajectory in one t-SNE of the run's
    checkpoints (a star at its first checkpoint; harness/paper/trajectory_tsne.py)."""
    from harness.experiment.replay import replay
    from harness.paper.trajectory_tsne import WINDOW_START, trajectory_embedding

    if not runs:
        return None
    fig = new_figure(figsize=(4.5 * len(runs), 4.8))
    for ax, (label, run_dir) in zip(fig.subplots(1, len(runs), squeeze=False)[0], runs):
        for index, (epochs, points) in enumerate(trajectory_embedding(replay(run_dir),
                                                                      run_dir)):
            line, = ax.plot(points[:, 0], points[:, 1], marker="o", markersize=3, alpha=0.7,
                            label=f"member {index + 1}: epochs {epochs[0]}-{epochs[-1]}")
            ax.plot(*points[0], marker="*", markersize=12, color=line.get_color())
        ax.set(xlabel="dimension 1", ylabel="dimension 2", title=label)
        ax.legend(fontsize=7, title="epochs as trained", title_fontsize=7)
    fig.suptitle("t-SNE of the members' training trajectories (paper Fig. 3): checkpoints "
                 f"after the first {WINDOW_START} paper epochs")
    fig.tight_layout()
    return fig


def diversity_figure(runs: list[tuple[str, Path]]):
    """Paper Fig. 2 right: mean pairwise disagreement and KL of each ensemble (from cached
    predictions, harness/evaluation/cached_predictions.py `member_diversity`, as Table 4), ours beside the
    printed values (harness/paper/reference.py)."""
    from harness.evaluation.cached_predictions import load_predictions, member_diversity

    printed = figure_2_right()
    rows = []
    for label, run_dir in with_predictions(runs, "diversity"):
        summary = readers.summary(run_dir)
        method = label.split(" (")[0]
        if summary["num_members"] < 2 or (method not in printed
                                          or summary["sparsity"] not in (0.0, 0.8)):
            continue
        mean = member_diversity(load_predictions(run_dir)[0])  # as Table 4's numbers
        rows.append((method, mean["disagreement"], mean["kl"],
                     printed[method]["disagreement"], printed[method]["kl"]))
    if not rows:
        return None
    fig = new_figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    positions = np.arange(len(rows))
    for ax, (title, ours, paper) in zip(axes, (("disagreement", 1, 3), ("KL", 2, 4))):
        ax.bar(positions - 0.2, [row[ours] for row in rows], 0.4, label="ours")
        ax.bar(positions + 0.2, [row[paper] for row in rows], 0.4, label="paper")
        ax.set_xticks(positions, [row[0] for row in rows], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(f"mean pairwise {title}")
        ax.legend(fontsize=7)
    fig.suptitle("Diversity of sparse and non-sparse ensembles (paper Fig. 2 right)")
    fig.tight_layout()
    return fig


SWEEP_METRICS = ("individual_acc", "acc", "kl")


def sweep_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 8's sweep as one row per (dataset, method, sparsity) with our individual_acc,
    acc and kl: from the long format (harness/tables/long.py: a `metric` column, our number
    in `value`) or a frame already wide; the table-level correlations are not sweep points."""
    if "metric" in frame.columns:
        frame = frame[frame.metric.isin(SWEEP_METRICS)].pivot_table(
            index=["dataset", "method", "sparsity"], columns="metric", values="value",
            aggfunc="first").reset_index()
    missing = [name for name in ("dataset", "method", "sparsity", *SWEEP_METRICS)
               if name not in frame.columns]
    if missing:
        raise UserError(f"Table 8's sweep lacks the column(s) {', '.join(missing)}")
    return frame.dropna(subset=list(SWEEP_METRICS), how="all").sort_values("sparsity")


def sparsity_figure(frame: pd.DataFrame):
    """Paper Fig. 4: per dataset and method, individual and ensemble accuracy (%) against
    sparsity, and the members' KL on a second axis (the paper scales it to share one)."""
    points = sweep_points(frame)
    panels = list(points.groupby(["dataset", "method"], sort=True))
    if not panels:
        return None
    fig = new_figure(figsize=(4.5 * len(panels), 3.8))
    for ax, ((dataset, method), rows) in zip(fig.subplots(1, len(panels), squeeze=False)[0],
                                             panels):
        ax.plot(rows.sparsity, rows.acc, marker="o", label="ensemble acc")
        ax.plot(rows.sparsity, rows.individual_acc, marker="x", linestyle="--",
                label="individual acc")
        ax.set(xlabel="sparsity S", ylabel="test accuracy (%)", title=f"{method}, {dataset}")
        kl_axis = ax.twinx()
        kl_axis.plot(rows.sparsity, rows.kl, marker="s", color="tab:red", alpha=0.7,
                     label="KL")
        kl_axis.set_ylabel("KL between members", color="tab:red")
        handles = ax.get_legend_handles_labels()
        extra = kl_axis.get_legend_handles_labels()
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7)
    fig.suptitle("Accuracy and diversity against sparsity (paper Fig. 4)")
    fig.tight_layout()
    return fig


def save_png(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    return path


def figures(table, context: TableContext, output_dir: Path) -> list[Path]:
    """Writes the figures of a catalogue table's runs; returns their paths."""
    runs = first_seeds(table_runs(table, context))
    table, scale = table.number, context.scale
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
        written.append(save_png(fig, output_dir / f"table{table}-{scale}-{name}.png"))
    return written


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.figures", __doc__)
    table_flags(parser)
    parser.path("output_dir", "reports/figures", "where the figures go")
    args = parser.parse(argv)
    context, tables = chosen_tables(args)
    for table in tables:
        for path in figures(table, context, args.output_dir):
            print(path)
    return 0
