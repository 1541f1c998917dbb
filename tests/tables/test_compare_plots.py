"""`python -m harness.compare --plot`: the frontier, the sweep, the reliability diagrams and the
training curves as PNGs under `<output_dir>/plots/`, shown with the table in compare.html;
from fake finished runs, nothing trained."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from harness.tables import compare_plots
from harness.tables.compare import compare, load_runs, main
from tests.tables.test_compare import my_run


def with_history(run_dir: Path, losses: list[float], val_accuracy: list[float] | None = None
                 ) -> Path:
    """A history.csv of two stages, as harness/evaluation/history.py writes it."""
    epochs = len(losses)
    frame = pd.DataFrame({"stage": ["explore"] * (epochs - 1) + ["refine"],
                          "epoch": [*range(1, epochs), 1], "step": range(10, 10 * epochs + 1, 10),
                          "loss": losses, "lr": 0.1, "seconds": 1.0, "images_per_second": 500.0})
    if val_accuracy is not None:
        frame["val_accuracy"] = val_accuracy
    frame.to_csv(run_dir / "history.csv", index=False)
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    """EDST at sparsities 0.5, 0.8 (two seeds each) and 0.9 under a step schedule, 0.8 under a
    cosine one; the run at 0.9 kept no predictions."""
    root = tmp_path / "sweep"
    points = [("s5", 0.5, "step", 0, 0.90, 0.5), ("s5", 0.5, "step", 1, 0.92, 0.5),
              ("s8", 0.8, "step", 0, 0.93, 0.3), ("s8", 0.8, "step", 1, 0.95, 0.3),
              ("s9", 0.9, "step", 0, 0.91, 0.2), ("c8", 0.8, "cosine", 0, 0.94, 0.3)]
    for name, sparsity, schedule, seed, acc, ratio in points:
        run_dir = my_run(root / f"{name}_{seed}", "edst", seed, acc, "EDST Ensemble",
                         members=3, sparsity=sparsity, ratio=ratio,
                         bindings=f"SparsitySpec.sparsity = {sparsity}\n"
                                  f"Trainer.schedule = '{schedule}'\n")
        with_history(run_dir, [2.0 - seed, 1.0 - seed / 2, 0.5], [0.5, 0.7 + seed / 10, 0.8])
    (root / "s9_0" / "predictions" / "test.npz").unlink()
    return root


def test_plot_writes_pngs_that_decode_and_a_page_showing_them_and_what_is_missing(sweep, tmp_path):
    out = tmp_path / "out"
    assert main([str(sweep), f"--output_dir={out}", "--plot"]) == 0
    written = sorted(path.relative_to(out).as_posix() for path in (out / "plots").iterdir())
    assert written == ["plots/frontier.png", "plots/reliability.png",
                       "plots/sweep-SparsitySpec.sparsity.png", "plots/training.png"]
    for name in written:
        image = imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0
    page = (out / "compare.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == written
    assert not re.search(r"https?://|<script|<link", page)  # opens without a network
    assert page.count("<table>") == 1 and page.count("<td>EDST Ensemble</td>") == 4
    assert (out / "compare.parquet").is_file() and (out / "compare.md").is_file()
    # a row without saved predictions: a line on the page, not an error
    assert (f"EDST Ensemble (sparsity=0.9, schedule=&#x27;step&#x27;): {sweep / 's9_0'} has no "
            f"saved predictions (predictions/test.npz)") in page


def test_plot_without_output_dir_is_one_line_exit_2_and_writes_nothing(sweep, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main([str(sweep), "--plot"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--plot" in error and "--output_dir" in error
    assert sorted(tmp_path.rglob("*")) == before


def test_the_sweep_draws_one_line_per_group_of_the_other_bindings(sweep):
    table = compare(load_runs([str(sweep)]))
    assert compare_plots.swept_bindings(table) == ["SparsitySpec.sparsity"]  # not the schedule
    figure = compare_plots.sweep_figure(table, "SparsitySpec.sparsity")
    accuracy = figure.axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in accuracy.containers}  # errorbars
    assert sorted(lines) == ["schedule='cosine'", "schedule='step'"]
    step = lines["schedule='step'"]
    assert list(step.get_xdata()) == [0.5, 0.8, 0.9]
    assert list(step.get_ydata()) == pytest.approx([91.0, 94.0, 91.0])  # seeds' mean, in %


def test_training_curves_are_the_seeds_mean_over_every_stage(sweep):
    table = compare(load_runs([str(sweep / "s5_0"), str(sweep / "s5_1")]))
    notes = []
    figure = compare_plots.training_figure(table, compare_plots.row_names(table), notes)
    loss, held_out = figure.axes
    [curve] = loss.get_lines()
    assert list(curve.get_xdata()) == [1, 2, 3]  # two stages, in order
    assert list(curve.get_ydata()) == pytest.approx([1.5, 0.75, 0.5])
    assert list(held_out.get_lines()[0].get_ydata()) == pytest.approx([50.0, 75.0, 80.0])
    assert len(loss.collections) == 1 and notes == []  # the band of two seeds


def test_a_damaged_history_is_a_note_not_an_error(sweep):
    (sweep / "c8_0" / "history.csv").write_text("stage,epoch,loss\nrefine,one,0.5\n")
    table = compare(load_runs([str(sweep / "c8_0")]))
    notes = []
    assert compare_plots.training_figure(table, ["cosine"], notes) is None
    assert notes == [f"cosine: {sweep / 'c8_0' / 'history.csv'} is damaged (column 'epoch' "
                     f"holds text): delete {sweep / 'c8_0'} and run it again; left out of the "
                     f"training curves"]


def test_the_reliability_title_is_the_mean_ece_of_the_rows_runs(sweep):
    from harness.evaluation.cached_predictions import load_predictions, subensemble_metrics

    table = compare(load_runs([str(sweep / "s8_0"), str(sweep / "s8_1")]))
    figure = compare_plots.reliability_figure(table, ["s8"], [])
    expected = np.mean([subensemble_metrics(*load_predictions(sweep / name), range(3))["ece"]
                        for name in ("s8_0", "s8_1")])
    assert figure.axes[0].get_title() == f"s8\nECE {expected:.3f}, mean of 2 runs"
