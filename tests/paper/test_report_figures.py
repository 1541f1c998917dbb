"""`python -m harness.figures`: PNGs from run records; figures with nothing to draw are skipped."""
import numpy as np
import pandas as pd
import pytest

from harness.paper import figures
from harness.tables.catalogue import PAPER
from harness.core.errors import UserError
from harness.store.runs import RunStore
from harness.tables.context import TableContext
from tests.fakes import fake_row, stored_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_figures_from_run_records(tmp_path):
    runs = tmp_path / "runs"
    stored_run(runs, 1, "dense", members=1)
    stored_run(runs, 1, "dense_ensemble", members=4)
    stored_run(runs, 1, "dst_m3_s08", members=3, sparsity=0.8)
    out = tmp_path / "figures"
    assert figures.main(["--table=1", "--scale=smoke", f"--runs_dir={runs}",
                         f"--output_dir={out}"]) == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == [f"table1-smoke-{name}.png" for name in
                     ("disagreement", "ensemble_size", "kl", "layer_density")]
    assert all(path.read_bytes().startswith(PNG) for path in out.iterdir())


def test_pair_matrix_from_the_cached_predictions_and_layer_densities(tmp_path):
    row = fake_row(tmp_path, "dst", "DST Ensemble", members=3, sparsity=0.8)
    with np.load(row.finished[0] / "predictions" / "test.npz") as arrays:
        log_probs = arrays["log_probs"].astype(np.float64)
    top1 = log_probs.argmax(-1)
    disagreement = figures.pair_matrix(row.finished[0], "disagreement")
    expected = [[np.mean(top1[i] != top1[j]) for j in range(3)] for i in range(3)]
    assert np.allclose(disagreement, expected) and disagreement[0, 1] > 0
    kl = figures.pair_matrix(row.finished[0], "kl")
    p = np.exp(log_probs)
    expected = [[np.mean((p[i] * (log_probs[i] - log_probs[j])).sum(-1)) for j in range(3)]
                for i in range(3)]
    assert np.allclose(kl, expected, atol=1e-6) and not np.isclose(kl[0, 1], kl[1, 0])
    densities = figures.layer_densities(row.finished[0])
    assert len(densities) == 3 and densities[2] == pytest.approx({"conv1": 0.5, "fc": 0.2})


@pytest.mark.parametrize("method, members", [("batch_ensemble", 4), ("mimo", 3),
                                             ("snapshot", 12), ("ltr", 3)])
def test_every_ensemble_method_gets_its_heatmaps_and_size_curve(tmp_path, method, members):
    row = fake_row(tmp_path, method, method, members=members)
    runs = [(method, row.finished[0])]
    for metric in ("disagreement", "kl"):
        panel = figures.heatmap_figure(runs, metric, "t").axes[0]  # then its colour bar
        assert panel.get_title() == method
        drawn = panel.images[0].get_array()
        assert drawn.shape == (members, members)
        assert np.allclose(drawn, figures.pair_matrix(row.finished[0], metric))
    with np.load(row.finished[0] / "predictions" / "test.npz") as arrays:
        log_probs, labels = arrays["log_probs"].astype(np.float64), arrays["labels"]
    probs = np.exp(log_probs)
    ensemble, individual = figures.ensemble_size_figure(runs).axes[0].lines
    assert ensemble.get_label() == f"{method}: ensemble"
    assert individual.get_label() == f"{method}: individual"
    assert list(ensemble.get_xdata()) == list(range(1, members + 1))
    expected = [100 * np.mean(probs[:m].mean(0).argmax(-1) == labels)  # first m members
                for m in range(1, members + 1)]
    assert ensemble.get_ydata() == pytest.approx(expected)
    assert individual.get_ydata()[-1] == pytest.approx(
        100 * np.mean(probs.argmax(-1) == labels))  # the members' mean accuracy


def test_a_run_without_cached_predictions_is_left_out_and_named(tmp_path, capsys):
    kept = fake_row(tmp_path, "dst", "DST Ensemble", members=3)
    bare = fake_row(tmp_path, "edst", "EDST Ensemble", members=3)
    (bare.finished[0] / "predictions" / "test.npz").unlink()
    runs = [("dst", kept.finished[0]), ("edst", bare.finished[0])]
    drawn = figures.heatmap_figure(runs, "disagreement", "t")
    assert [ax.get_title() for ax in drawn.axes if ax.images] == ["dst"]  # one panel, dst's
    assert "edst left out" in capsys.readouterr().out
    assert figures.heatmap_figure(runs[1:], "disagreement", "t") is None


def sweep_frame(long: bool):
    """Table 8's sweep points (S; individual_acc, acc, kl), long (harness/tables/long.py)
    or wide."""
    points = [("cifar10", method, sparsity, 90 + sparsity, 92 + sparsity, 0.1 * sparsity)
              for method in ("DST Ensemble", "EDST Ensemble") for sparsity in (0.8, 0.9, 0.95)]
    wide = pd.DataFrame(points, columns=["dataset", "method", "sparsity", "individual_acc",
                                         "acc", "kl"])
    if not long:
        return wide
    frame = wide.melt(id_vars=["dataset", "method", "sparsity"], var_name="metric",
                      value_name="value")
    correlation = pd.DataFrame([{"dataset": "cifar10", "method": "DST Ensemble",
                                 "sparsity": np.nan, "metric": "pearson", "value": 0.9}])
    return pd.concat([frame, correlation]).assign(table=8, paper=np.nan)


@pytest.mark.parametrize("long", [True, False])
def test_sparsity_figure_from_table8_rows(long):
    points = figures.sweep_points(sweep_frame(long))
    assert len(points) == 6 and list(points.sparsity[:2]) == [0.8, 0.8]
    assert points[points.method == "EDST Ensemble"].kl.tolist() == pytest.approx(
        [0.08, 0.09, 0.095])
    fig = figures.sparsity_figure(sweep_frame(long))
    assert len(fig.axes) == 4  # two panels, each with its KL axis


def test_a_sweep_without_kl_is_named():
    with pytest.raises(UserError, match="lacks the column.s. kl"):
        figures.sweep_points(sweep_frame(False).drop(columns="kl"))


def test_a_single_dense_model_alone_has_nothing_to_draw(tmp_path, capsys):
    runs = tmp_path / "runs"
    stored_run(runs, 1, "dense", members=1)
    context = TableContext("smoke", RunStore(runs))
    assert figures.figures(PAPER.table(1), context, tmp_path / "figures") == []
    output = capsys.readouterr().out
    assert all(f"no run to draw {name}" in output
               for name in ("ensemble_size", "disagreement", "kl", "layer_density"))


def test_no_runs_is_one_line_and_exit_2(tmp_path, capsys):
    assert figures.main(["--scale=smoke", f"--runs_dir={tmp_path}"]) == 2
    assert "no table runs at scale 'smoke'" in capsys.readouterr().err


def test_diversity_beside_the_printed_values_of_figure_2_right(tmp_path):
    dst = fake_row(tmp_path, "dst_m3_s08", "DST Ensemble", members=3, sparsity=0.8)
    other = fake_row(tmp_path, "snapshot", "Snapshot", members=3)
    assert figures.diversity_figure([("Snapshot (snapshot)", other.finished[0])]) is None
    fig = figures.diversity_figure([("DST Ensemble (dst_m3_s08)", dst.finished[0]),
                                    ("Snapshot (snapshot)", other.finished[0])])
    ours, paper = fig.axes[1].containers  # KL: ours beside the printed 0.095
    assert [bar.get_height() for bar in paper] == [0.095]
    assert [bar.get_height() for bar in fig.axes[0].containers[1]] == [0.035]  # d_dis
    with np.load(dst.finished[0] / "predictions" / "test.npz") as arrays:
        log_probs = arrays["log_probs"].astype(np.float64)
    p = np.exp(log_probs)
    kl = np.mean([np.mean((p[i] * (log_probs[i] - log_probs[j])).sum(-1))
                  for i in range(3) for j in range(3) if i != j])  # both directions
    assert ours[0].get_height() == pytest.approx(kl, abs=1e-6)
