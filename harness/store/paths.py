"""The name of every file in and beside a run directory, in one place (as open_lth's
`paths.py`): every other module asks here, so this layout is the whole truth about a run on
disk, and existing run stores stay readable only while these names stay as they are.

The run store (harness/store/runs.py) files each run by its configuration:

    <runs_dir>/store.json                              the store's format (`STORE_FORMAT`)
    <runs_dir>/<method>-<configuration id>/seed<k>/   one run directory, below

A run directory holds what one experiment leaves behind, each file written whole or not at
all (as `<name>.partial` first, harness/core/durable.py), and nothing else: a folder holding
anything else is not a run, and is never replaced or continued (harness/store/record.py).

    config.gin            the gin configuration as given (written first: it marks a run)
    command.json          the command line, and the gin files and bindings it gave, which
                          `--resume --output_dir=DIR` alone continues with; the code it
                          started and each resume continued with (harness/core/provenance.py)
    gin_files/            copies of those gin files as they were given (<i>-<name>)
    operative_config.gin  the gin configuration the run actually used
    metrics.parquet       long format: method, member, suite, corruption, severity, metric, value
    summary.json          headline numbers, timings, provenance (written last: present = finished)
    history.csv           one row per epoch of every training stage (harness/evaluation/history.py)
    tensorboard/          the same as TensorBoard scalars (<stage>/), with Experiment.tensorboard
    flops.json            measured and planned FLOPs
    predictions/test.npz  per-member test predictions (harness/evaluation/cached_predictions.py)
    checkpoints/          <stage>.pt per finished training stage (weights, extras, its cost),
                          member_<i>.pt for members collected within a run,
                          <stage>.resume.pt (+ <stage>.resume.pt.previous) while a stage trains,
                          trajectory/<stage>/epoch_<e>.pt along a stage (methods/base.py)
    rescored/             <suite>-<key>.parquet: the finished run scored again on a suite it
                          did not run while training, or <suite>-<key>.failed.json: why that
                          failed (harness/experiment/rescore.py)

Beside a run directory `seed<k>/` live the records of who is on it (harness/store/locks.py)
and of its last attempt (harness/store/runs.py):

    seed<k>.lock          locked (flock) by the process training the run; names the holder
                          (any run directory X, `harness.run --output_dir=X` too: X.lock)
    seed<k>.job.json      the launcher's job record (harness/tables/launch.py)
    seed<k>.failed.json   why its job failed; not submitted again until removed
    seed<k>.error.json    why its last attempt could not start; it blocks nothing
    .seed<k>.new/         the run `--overwrite` builds, swapped in once finished,
    .seed<k>.old/         the run it replaces, set aside until the new one is in place
"""
from pathlib import Path

CONFIG = "config.gin"
COMMAND = "command.json"
GIN_FILES = "gin_files"
OPERATIVE_CONFIG = "operative_config.gin"
METRICS = "metrics.parquet"
SUMMARY = "summary.json"
HISTORY = "history.csv"
TENSORBOARD = "tensorboard"
FLOPS = "flops.json"
PREDICTIONS = "predictions"
TEST_PREDICTIONS = Path(PREDICTIONS) / "test.npz"
CHECKPOINTS = "checkpoints"
RESCORED = "rescored"
TRAJECTORY = "trajectory"
# Everything a run writes at its top level.
RUN_ENTRIES = frozenset({CONFIG, COMMAND, GIN_FILES, OPERATIVE_CONFIG, METRICS, SUMMARY, HISTORY,
                         TENSORBOARD, FLOPS, PREDICTIONS, CHECKPOINTS, RESCORED})


def config(run_dir: Path) -> Path:
    return run_dir / CONFIG


def command(run_dir: Path) -> Path:
    return run_dir / COMMAND


def gin_file_copy(run_dir: Path, index: int, gin_file: str) -> Path:
    """The copy of the run's `index`-th gin file."""
    return run_dir / GIN_FILES / f"{index}-{Path(gin_file).name}"


def operative_config(run_dir: Path) -> Path:
    return run_dir / OPERATIVE_CONFIG


def metrics(run_dir: Path) -> Path:
    return run_dir / METRICS


def summary(run_dir: Path) -> Path:
    return run_dir / SUMMARY


def history(run_dir: Path) -> Path:
    return run_dir / HISTORY


def tensorboard(run_dir: Path) -> Path:
    return run_dir / TENSORBOARD


def flops(run_dir: Path) -> Path:
    return run_dir / FLOPS


def test_predictions(run_dir: Path) -> Path:
    return run_dir / TEST_PREDICTIONS


def write_probe(run_dir: Path) -> Path:
    """The empty file that tries whether the run directory is writable (a `.partial`, which a
    run directory may hold)."""
    return run_dir / ".write_test.partial"


def checkpoints(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS


def stage_checkpoint(checkpoint_dir: Path, stage: str) -> Path:
    """The result of a finished training stage."""
    return checkpoint_dir / f"{stage}.pt"


def resume_checkpoint(checkpoint_dir: Path, stage: str) -> Path:
    """Where a stage checkpoints itself while it trains."""
    return checkpoint_dir / f"{stage}.resume.pt"


def previous_checkpoint(checkpoint: Path) -> Path:
    """The checkpoint a newer `checkpoint` replaced, kept until the training finishes."""
    return checkpoint.with_name(checkpoint.name + ".previous")


def member_checkpoint(checkpoint_dir: Path, index: int) -> Path:
    """A member collected within a run."""
    return checkpoint_dir / f"member_{index}.pt"


def trajectory_dir(checkpoint_dir: Path) -> Path:
    """One folder per stage that saved its model along its training."""
    return checkpoint_dir / TRAJECTORY


def trajectory_checkpoint(checkpoint_dir: Path, stage: str, epoch: int) -> Path:
    return trajectory_dir(checkpoint_dir) / stage / f"epoch_{epoch}.pt"


def trajectory_epoch(path: Path) -> int:
    """The epoch of a `trajectory_checkpoint`."""
    return int(path.stem.removeprefix("epoch_"))


def trajectory_checkpoints(stage_dir: Path) -> list[Path]:
    """A stage's trajectory checkpoints (in `trajectory_dir`), in epoch order."""
    return sorted(stage_dir.glob("epoch_*.pt"), key=trajectory_epoch)


def rescored(run_dir: Path, suite: str, key: str) -> Path:
    """The rows of `suite` scored again with the settings `key` stands for."""
    return run_dir / RESCORED / f"{suite}-{key}.parquet"


def rescore_failure(run_dir: Path, suite: str, key: str) -> Path:
    """Why that rescoring failed, until it succeeds."""
    return rescored(run_dir, suite, key).with_suffix(".failed.json")


def lock(run_dir: Path) -> Path:
    return _beside(run_dir, ".lock")


def job_record(run_dir: Path) -> Path:
    return _beside(run_dir, ".job.json")


def failure_record(run_dir: Path) -> Path:
    return _beside(run_dir, ".failed.json")


def error_record(run_dir: Path) -> Path:
    return _beside(run_dir, ".error.json")


def staging(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.new")


def retired(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.old")


def _beside(run_dir: Path, suffix: str) -> Path:
    return run_dir.with_name(run_dir.name + suffix)


def store_format(runs_dir: Path) -> Path:
    """The record of a run store's format, at its root."""
    return runs_dir / "store.json"
