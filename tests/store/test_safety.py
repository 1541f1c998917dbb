"""Never lose a user's work, never mix two configurations: what `--overwrite` and `--resume`
promise, durable and recoverable checkpoints, and every input mistake as one clear error."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.data import corrupt
from harness.data.sources import npz
from harness.core.errors import Interrupted, UserError
from harness.experiment.execute import run_experiment
from harness.store.record import write_json
from harness.tables.demo import write_table
from harness.tables.rows import TableRow
from harness.store.runs import RunStore
from harness.tables.context import TableContext
from harness.tables.run_rows import run_seed
from harness.tables.sources import row_configuration

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [str(ROOT / "gin" / "dense.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")]
FAST = ["epoch_factor.factor = 0.008", "Experiment.suites = ('test',)",
        "Experiment.train_subset = 256"]


def run(out, *bindings, **kwargs):
    return run_experiment(SMOKE, [*FAST, *bindings], str(out), progress=False, **kwargs)


def unfinished_run(out, *bindings):
    """A run interrupted after training (its summary, written last, is missing)."""
    run(out, *bindings)
    (out / "summary.json").unlink()
    return out


# --- --overwrite --------------------------------------------------------------------------

def test_overwrite_refuses_a_folder_that_holds_no_run(tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    with pytest.raises(UserError, match="not a run directory of this harness"):
        run(thesis, overwrite=True)
    assert (thesis / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_overwrite_refuses_a_run_directory_holding_a_users_file(tmp_path):
    out = run(tmp_path / "run")[0]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        run(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_run_only_once_the_new_one_finished(tmp_path):
    out, first = run(tmp_path / "run")
    with pytest.raises(UserError, match=f"diverged: .*; {out} still holds the previous run"):
        run(out, "Trainer.lr = 1e30", overwrite=True)  # fails mid-training
    assert json.loads((out / "summary.json").read_text()) == first  # the old run, untouched
    # no staging left over; the training lock beside the run (harness/store/locks.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]
    _, second = run(out, "Experiment.seed = 1", overwrite=True)
    assert second["seed"] == 1 and json.loads((out / "summary.json").read_text()) == second
    assert "Experiment.seed = 1" in (out / "config.gin").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]


def test_overwrite_clears_only_its_own_leftovers(tmp_path):
    out, _ = run(tmp_path / "run")
    leftover = tmp_path / ".run.new"  # an --overwrite killed with -9 left its staging here
    leftover.mkdir()
    (leftover / "config.gin").write_text("")
    run(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]
    leftover.mkdir()
    (leftover / "mine.txt").write_text("precious")
    with pytest.raises(UserError, match=r"\.run\.new is not a run directory"):
        run(out, overwrite=True)
    assert (leftover / "mine.txt").read_text() == "precious"


def test_ctrl_c_during_overwrite_keeps_the_previous_run(tmp_path, monkeypatch):
    from harness.experiment import execute

    out, first = run(tmp_path / "run")

    def interrupted(prepared, run_dir):
        (run_dir / "config.gin").write_text("half a new run")
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "execute", interrupted)
    with pytest.raises(Interrupted, match=f"the new run was discarded; {out} still holds the "
                                          f"previous one"):
        run(out, overwrite=True)
    assert json.loads((out / "summary.json").read_text()) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.lock"]


# --- --resume -----------------------------------------------------------------------------

def test_resume_continues_an_unfinished_run_of_the_same_configuration(tmp_path):
    out = unfinished_run(tmp_path / "run")
    _, summary = run(out, resume=True)
    assert (out / "summary.json").is_file() and summary["method"] == "dense"


def test_resume_refuses_another_configuration_before_touching_anything(tmp_path):
    out = unfinished_run(tmp_path / "run")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UserError) as error:
        run(out, "Trainer.lr = 0.05", "wide_resnet.width = 4", resume=True)
    message = str(error.value)
    assert "Trainer.lr (0.1 recorded, 0.05 now)" in message
    assert "wide_resnet.width (2 recorded, 4 now)" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_of_a_missing_directory_starts_a_fresh_run(tmp_path):
    out, summary = run(tmp_path / "new", resume=True)
    assert (out / "summary.json").is_file() and summary["method"] == "dense"


def test_resume_needs_the_run_directory():
    with pytest.raises(UserError, match="--resume needs --output_dir"):
        run_experiment(SMOKE, FAST, None, resume=True)


def test_resume_refuses_a_folder_that_holds_no_run(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "data.csv").write_text("1,2")
    with pytest.raises(UserError, match="not a run directory of this harness"):
        run(folder, resume=True)
    assert sorted(p.name for p in folder.iterdir()) == ["data.csv"]


def test_tables_refuse_to_resume_an_unfinished_row_of_another_configuration(tmp_path):
    from harness.experiment.config import parse
    import gin

    row = TableRow("dense", "Dense", tuple(SMOKE))
    store = RunStore(tmp_path)
    run_dir = store.run_dir(row_configuration(row, [*FAST, "Experiment.seed = 0"]))
    parse(SMOKE, [*FAST, "Trainer.lr = 0.05", "Experiment.seed = 0"])
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.gin").write_text(gin.config_str())  # edited by hand since it started
    with pytest.raises(UserError, match=r"Trainer.lr \(0.05 recorded, 0.1 now\)"):
        run_seed(row, 0, TableContext(store=store, bindings=FAST), progress=False)
    assert "Trainer.lr = 0.05" in (run_dir / "config.gin").read_text()


# --- checkpoints --------------------------------------------------------------------------

class StopAfter:
    """Interrupts training after the checkpoint of epoch `epoch` would be due."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.seen = []

    def __getattr__(self, name):
        return lambda *args: {} if name == "state_dict" else None

    def on_epoch_end(self, state):
        self.seen.append(state.epoch)
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def tiny_fit(checkpoint, epochs, hooks=()):
    from tests.training import blobs, tiny_model, trainer
    model = tiny_model()
    state = trainer(epochs=epochs).fit(model, blobs(), seed=3, checkpoint=checkpoint,
                                       hooks=hooks)
    return model, state


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    checkpoint = tmp_path / "train.resume.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_fit(checkpoint, epochs=3, hooks=[StopAfter(3)])  # saved after epochs 1 and 2
    assert checkpoint.with_name("train.resume.pt.previous").is_file()
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated by a crash or a full disk
    watch = StopAfter(0)
    _, state = tiny_fit(checkpoint, epochs=3, hooks=[watch])
    assert watch.seen == [2, 3]  # resumed from the checkpoint of epoch 1
    assert [entry["epoch"] for entry in state.history] == [1, 2, 3]
    assert not checkpoint.with_name("train.resume.pt.previous").exists()  # finished: not kept


def test_a_damaged_checkpoint_without_a_usable_previous_one_is_one_clear_error(tmp_path):
    checkpoint = tmp_path / "train.resume.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as error:
        tiny_fit(checkpoint, epochs=2)
    assert str(error.value).startswith(f"checkpoint {checkpoint} is damaged")
    assert "delete it" in str(error.value)


def test_checkpoints_records_and_reports_reach_the_disk_before_their_rename(tmp_path,
                                                                          monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    tiny_fit(tmp_path / "train.resume.pt", epochs=1)
    write_json(tmp_path / "summary.json", {"a": 1})
    write_table([{"x": 1}], tmp_path / "table", "title")
    for name in ("train.resume.pt.partial", "summary.json.partial", "table.parquet.partial",
                 "table.md.partial"):
        assert str(tmp_path / name) in synced, name
    assert str(tmp_path) in synced  # the directory, so the renames survive a power cut


# --- harness.data.corrupt -----------------------------------------------------------------

@pytest.fixture
def tiny_npz(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, x_test=np.zeros((3, 8, 8), np.uint8), y_test=np.arange(3))
    return path


def corrupt_cli(*args):
    return corrupt.main([*args, "--corruptions=fog"])


def test_corrupt_refuses_a_folder_it_did_not_write(tmp_path, tiny_npz, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert corrupt_cli(f"--npz={tiny_npz}", f"--output_dir={out}") == 2
    assert "was not written by harness.data.corrupt" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_corrupt_replaces_its_own_output_whole(tmp_path, tiny_npz):
    out = tmp_path / "suite"
    assert corrupt_cli(f"--npz={tiny_npz}", f"--output_dir={out}") == 0
    assert corrupt_cli(f"--npz={tiny_npz}", f"--output_dir={out}", "--seed=1") == 0
    assert json.loads((out / corrupt.MARKER).read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite", "tiny.npz"]


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_corrupt_refuses_a_limit_below_one(tmp_path, tiny_npz, capsys, limit):
    out = tmp_path / "suite"
    assert corrupt_cli(f"--npz={tiny_npz}", f"--output_dir={out}", f"--limit={limit}") == 2
    assert f"--limit must be >= 1, got {limit}" in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_refuses_an_output_that_is_a_file_before_working(tmp_path, tiny_npz, capsys,
                                                                 monkeypatch):
    out = tmp_path / "file"
    out.write_text("precious")
    monkeypatch.setattr(corrupt, "corrupt", lambda *a: pytest.fail("worked before checking"))
    assert corrupt_cli(f"--npz={tiny_npz}", f"--output_dir={out}") == 2
    assert f"{out} is a file" in capsys.readouterr().err
    assert out.read_text() == "precious"


# --- input checks -------------------------------------------------------------------------

@pytest.mark.parametrize("binding, message", [
    ("Trainer.lr = 1e999", "Trainer.lr must be a finite number > 0, got inf"),
    ("Trainer.lr = 0", "Trainer.lr must be a finite number > 0, got 0"),
    ("Trainer.batch_size = '64'", "Trainer.batch_size must be an integer, got '64'"),
    ("Trainer.epochs = 2.5", "Trainer.epochs must be an integer, got 2.5"),
    ("Experiment.train_subset = 0", "Experiment.train_subset must be >= 1 (or None for all), "
                                    "got 0"),
    ("Experiment.train_subset = -5", "Experiment.train_subset must be >= 1 (or None for all), "
                                     "got -5"),
    ("Experiment.eval_batch_size = 0", "Experiment.eval_batch_size must be >= 1, got 0"),
    ("Experiment.seed = 'one'", "Experiment.seed must be an integer, got 'one'"),
    ("Experiment.seed = 1.5", "Experiment.seed must be an integer, got 1.5"),
    ("Augment.padding = -1", "Augment.padding must be >= 0, got -1"),
    ("Experiment.validation_fraction = '0.1'",
     "Experiment.validation_fraction must be a number, got '0.1'"),
    ("Experiment.validation_fraction = 1.0",
     "Experiment.validation_fraction must be < 1, got 1.0"),
    ("epoch_factor.factor = 'fast'", "epoch_factor.factor must be a number, got 'fast'"),
    # every annotated argument, through one check at parse time (harness/core/typecheck.py)
    ("wide_resnet.depth = 'ten'", "wide_resnet.depth must be an integer, got 'ten'"),
    ("TreeNet.num_members = 'three'", "TreeNet.num_members must be an integer, got 'three'"),
    ("Experiment.deterministic = 'yes'", "Experiment.deterministic must be True or False, "
                                         "got 'yes'"),
    ("Experiment.train_subset = 2.5", "Experiment.train_subset must be an integer or None, "
                                      "got 2.5"),
])
def test_settings_are_checked_up_front_naming_the_setting(tmp_path, binding, message):
    out = tmp_path / "run"
    with pytest.raises(UserError) as error:
        run(out, binding)
    assert str(error.value).splitlines()[0] == message
    assert not out.exists()


def test_a_diverged_run_is_one_error_and_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="training diverged: .*lower Trainer.lr"):
        run(out, "Trainer.lr = 1e30")
    assert not out.exists()


def write_npz(path, **overrides):
    arrays = dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 0, 1]),
                  x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.array([0, 1]))
    arrays.update(overrides)
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("overrides, message", [
    (dict(y_train=np.array([0, 1, 0, 10**9])), "labels imply 1000000001 classes"),
    (dict(x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.int64)),
     "x_train is empty"),
    (dict(x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64)),
     "x_test is empty"),
    (dict(classes=np.array(["a", "b"]), y_test=np.array([0, 2])),
     "labels must lie in [0, 2)"),
])
def test_npz_labels_and_sizes_are_checked(tmp_path, overrides, message):
    with pytest.raises(UserError) as error:
        npz(write_npz(tmp_path / "data.npz", **overrides))
    assert message in str(error.value)


def test_a_path_component_too_long_is_a_clear_error(tmp_path):
    long = "x" * 300
    with pytest.raises(UserError, match="output_dir .* too long"):
        run(tmp_path / long / "run")
    with pytest.raises(UserError, match="gin file .* too long"):
        run_experiment([str(tmp_path / (long + ".gin"))], [], str(tmp_path / "run"))
    assert sorted(tmp_path.iterdir()) == []


# --- the command line ---------------------------------------------------------------------

def run_cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.parametrize("args, message", [
    ([], "error: give at least one --gin_file (e.g. --gin_file=gin/dense.gin)"),
    (["--gin_file=gin/dense.gin", "--epochs=3"], "error: Unknown command line flag 'epochs'"),
])
def test_flag_mistakes_exit_2_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]


def test_ctrl_c_says_how_to_continue_and_exits_130(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [f"--gin_file={file}" for file in SMOKE] + [
        f"--gin_bindings={binding}" for binding in FAST[1:]] + [
        "--gin_bindings=epoch_factor.factor = 0.04", "--noprogress", f"--output_dir={out}"]
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN; a user's Ctrl-C reaches a run with the default disposition.
    process = subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoints/*.resume.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    hint = stderr.strip().splitlines()[-1]  # after one log line per finished epoch
    prefix = "interrupted: continue this run with: "
    assert hint.startswith(prefix)
    assert not (out / "summary.json").exists() and (out / "config.gin").is_file()
    pasted = shlex.split(hint.removeprefix(prefix))  # the line as printed, nothing added
    assert pasted[1:] == ["-m", "harness.run", "--resume", f"--output_dir={out}"]
    assert (ROOT / pasted[0]).resolve() == Path(sys.executable).resolve()
    resumed = subprocess.run(pasted, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "summary.json").is_file()


def test_ctrl_c_in_a_table_says_how_to_continue(monkeypatch, capsys):
    from harness.tables import make as tables

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tables, "run_table", interrupted)
    assert tables.main(["--table=1", "--scale=smoke"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "interrupted: run the same command again to continue the table where it stopped"]
