"""The training curve of a run: history.csv with one row per epoch of every stage (validation
scores when a split is held out), TensorBoard scalars as a setting, a log line per epoch where
no bar is drawn."""
from pathlib import Path

import pandas as pd

from harness.experiment.execute import run_experiment
from harness.evaluation.history import COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [str(ROOT / "gin" / "dense_ensemble.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")]
FAST = ["epoch_factor.factor = 0.012", "Experiment.suites = ('test',)",
        "Experiment.train_subset = 256", "DenseEnsemble.num_members = 2"]


def test_history_has_every_epoch_of_every_stage_with_validation_scores(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment(SMOKE, [*FAST, "Experiment.validation_fraction = 0.25",
                           "Experiment.tensorboard = True"], str(out), progress=False)
    history = pd.read_csv(out / "history.csv")
    assert tuple(history.columns) == COLUMNS
    assert history[["stage", "epoch"]].values.tolist() == [
        ["member_0", 1], ["member_0", 2], ["member_0", 3],
        ["member_1", 1], ["member_1", 2], ["member_1", 3]]
    assert history["step"].tolist() == [3, 6, 9] * 2  # 192 training rows, batches of 64
    assert history["val_accuracy"].between(0, 1).all() and (history["val_nll"] > 0).all()
    assert (history["images_per_second"] > 0).all() and (history["seconds"] > 0).all()
    assert list((out / "tensorboard" / "member_1").glob("events.out.tfevents.*"))
    log = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in log if " epoch " in line] == [
        f"member_{member} epoch {epoch}/3 step {3 * epoch}" for member in (0, 1)
        for epoch in (1, 2, 3)]


def test_without_a_validation_split_there_are_no_validation_columns(tmp_path):
    out = tmp_path / "run"
    run_experiment(SMOKE, FAST, str(out), progress=False)
    assert "val_accuracy" not in pd.read_csv(out / "history.csv").columns
    assert not (out / "tensorboard").exists()
