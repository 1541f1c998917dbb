"""Every record the harness reads back, read in one place per kind and checked for its shape,
so that a damaged file (a crash while it was written by an older version, a hand edit, a
truncated copy) is one line naming the file and what to do, never a Python error from deep
inside a table build.

    run files      config.gin, operative_config.gin, command.json, summary.json,
                   metrics.parquet, flops.json, history.csv, rescored/ (harness/store/paths.py)
    beside a run   seed<k>.job.json, seed<k>.failed.json, seed<k>.error.json, seed<k>.lock
    the store      store.json
    elsewhere      the GPU check's gpu_check.json (harness/bench/gpu_check.py), the bench's
                   bench.json (harness/bench/suite.py, harness/bench/edst_wallclock.py), the
                   page's timings.json (harness/paper/build.py), a generated corrupted set's
                   GENERATED.json (harness/data/corrupt.py)

A damaged run is not a finished run that happens to fail later: `run_damage` says what is
wrong with a finished run's records, so that the table builds, the compute plan and
`harness.compare` skip it and name it, and the others go on.
"""
import json
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.errors import UserError
from harness.store import paths

if TYPE_CHECKING:  # pandas loads where a frame is read: most commands read none
    import pandas as pd
# The columns metrics.parquet has (harness/store/record.py writes it).
METRIC_COLUMNS = ("method", "member", "suite", "corruption", "severity", "metric", "value")
Number = numbers.Real
# What the readers of summary.json rely on: the tables (harness/tables/run_numbers.py), the
# figures and the compare command.
SUMMARY_SHAPE = {"method": str, "dataset": str, "model": str, "num_members": int,
                 "sparsity": Number, "seed": int, "epoch_factor": Number, "metrics": dict,
                 "git_commit": str, "config_hash": str}
COMMAND_SHAPE = {"gin_files_resolved": list, "gin_bindings": list}
FAILURE_SHAPE = {"error": str}
JOB_SHAPE = {"executor": str, "job_id": (str, int)}
ERROR_SHAPE = {"error": str}
STORE_SHAPE = {"format": int}
FLOPS_SHAPE = {"train_flops": Number, "train_flops_ratio": Number, "test_flops_ratio": Number,
               "training_runs": Number}
GPU_CHECK_SHAPE = {"device": str, "plan_flops_per_s": dict}
# The columns of history.csv every run writes (harness/evaluation/history.py), numbers but stage.
HISTORY_COLUMNS = ("stage", "epoch", "loss")
JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
              type(None): "null"}


class DamagedRecord(UserError):
    """A record of the harness that cannot be read as what it should be."""

    def __init__(self, path: Path, problem: str, remedy: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path} is damaged ({problem}): {remedy}")


def rerun(run_dir: Path) -> str:
    return f"delete {run_dir} and run it again"


def read_text(path: Path, remedy: str) -> str:
    """A text record; FileNotFoundError propagates (absent is not damaged)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DamagedRecord(path, f"not UTF-8 text at byte {error.start}", remedy) from None
    except IsADirectoryError:
        raise DamagedRecord(path, "a folder, not a file", remedy) from None
    except FileNotFoundError:
        raise
    except OSError as error:
        raise DamagedRecord(path, error.strerror or str(error), remedy) from error


def read_json(path: Path, shape: dict, remedy: str) -> dict:
    """A JSON object with at least the keys of `shape`, each of its type (a tuple: one of
    them; bool is no number); FileNotFoundError propagates."""
    text = read_text(path, remedy)
    try:
        record = json.loads(text)
    except ValueError as error:
        problem = "empty" if not text.strip() else f"not JSON: {error}"
        raise DamagedRecord(path, problem, remedy) from None
    if not isinstance(record, dict):
        raise DamagedRecord(path, f"a JSON {JSON_NAMES.get(type(record), 'value')}, not an "
                                  f"object", remedy)
    for key, kind in shape.items():
        if key not in record:
            raise DamagedRecord(path, f"no {key!r}", remedy)
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise DamagedRecord(path, f"{key!r} is {value!r}", remedy)
    return record


def config_text(run_dir: Path) -> str:
    return read_text(paths.config(run_dir), rerun(run_dir))


def operative_config_text(run_dir: Path) -> str:
    return read_text(paths.operative_config(run_dir), rerun(run_dir))


def command(run_dir: Path) -> dict:
    """command.json: what `--resume --output_dir=DIR` alone continues with."""
    remedy = (f"give the run's --gin_file and --gin_bindings to resume it, or "
              f"{rerun(run_dir)}")
    record = read_json(paths.command(run_dir), COMMAND_SHAPE, remedy)
    for key in COMMAND_SHAPE:
        if not all(isinstance(item, str) for item in record[key]):
            raise DamagedRecord(paths.command(run_dir), f"{key!r} holds a non-string", remedy)
    return record


def summary(run_dir: Path) -> dict:
    """summary.json of a finished run, its headline metrics numbers."""
    path = paths.summary(run_dir)
    record = read_json(path, SUMMARY_SHAPE, rerun(run_dir))
    wrong = next((key for key, value in record["metrics"].items()
                  if isinstance(value, bool) or not isinstance(value, Number)), None)
    if wrong is not None:
        raise DamagedRecord(path, f"metric {wrong!r} is {record['metrics'][wrong]!r}",
                            rerun(run_dir))
    return record


def timed_summary(run_dir: Path) -> dict:
    """summary.json of a finished run whose `train_seconds` (its training alone: evaluation
    and per-epoch validation excluded, resumes summed) is a positive number: what a
    wall-clock comparison of runs reads (harness/bench/edst_wallclock.py)."""
    record = summary(run_dir)
    seconds = record.get("train_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, Number) or not seconds > 0:
        raise DamagedRecord(paths.summary(run_dir), f"'train_seconds' is {seconds!r}",
                            rerun(run_dir))
    return record


def metric_rows(path: Path, remedy: str) -> "pd.DataFrame":
    """A parquet file of metric rows in their long format (METRIC_COLUMNS)."""
    import pandas as pd
    import pyarrow

    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except FileNotFoundError:
        raise
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise DamagedRecord(path, f"not a readable parquet file: {error}", remedy) from None
    missing = [column for column in METRIC_COLUMNS if column not in frame.columns]
    if missing:
        raise DamagedRecord(path, f"no column {missing[0]!r}", remedy)
    return frame


def metrics(run_dir: Path) -> "pd.DataFrame":
    """metrics.parquet of a finished run."""
    try:
        return metric_rows(paths.metrics(run_dir), rerun(run_dir))
    except FileNotFoundError:
        raise DamagedRecord(paths.metrics(run_dir), "missing from a finished run",
                            rerun(run_dir)) from None


def rescored(path: Path) -> "pd.DataFrame":
    """A finished run's rows of a suite scored after training (harness/experiment/rescore.py)."""
    return metric_rows(path, "delete it to score the run on that suite again")


def rescore_failure(path: Path) -> str:
    """Why scoring a finished run on a suite after training failed."""
    return read_json(path, ERROR_SHAPE, "delete it to score the run on that suite again")["error"]


def history(run_dir: Path) -> "pd.DataFrame | None":
    """history.csv, one row per epoch of each training stage in order; None for a run without
    one (it trained nothing of its own)."""
    import pandas as pd

    path = paths.history(run_dir)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # pandas' parser errors and bad UTF-8 are ValueErrors
        raise DamagedRecord(path, f"not a readable CSV file: {error}", rerun(run_dir)) from None
    missing = [column for column in HISTORY_COLUMNS if column not in frame.columns]
    if missing:
        raise DamagedRecord(path, f"no column {missing[0]!r}", rerun(run_dir))
    numbers = frame.drop(columns="stage")
    wrong = next((column for column in numbers.columns
                  if not pd.api.types.is_numeric_dtype(numbers[column])
                  and numbers[column].notna().any()), None)
    if wrong is not None:
        raise DamagedRecord(path, f"column {wrong!r} holds text", rerun(run_dir))
    return frame


def flops(run_dir: Path) -> dict | None:
    """flops.json, None where the run has none (runs of early versions)."""
    try:
        return read_json(paths.flops(run_dir), FLOPS_SHAPE, rerun(run_dir))
    except FileNotFoundError:
        return None


def optional_record(path: Path, shape: dict, remedy: str) -> dict | None:
    try:
        return read_json(path, shape, remedy)
    except FileNotFoundError:
        return None


def failure(run_dir: Path) -> dict | None:
    """Why the run's job failed (harness/store/locks.py `record_failure`), None if it did not."""
    path = paths.failure_record(run_dir)
    return optional_record(path, FAILURE_SHAPE,
                           "delete it to run it again")


def job(run_dir: Path) -> dict | None:
    """The launcher's record of the job it submitted for the run, None if none."""
    path = paths.job_record(run_dir)
    return optional_record(path, JOB_SHAPE, "delete it once that job is gone")


def last_error(run_dir: Path) -> str:
    """Why the run's last attempt could not start ('' if none); it blocks nothing, so a
    damaged record is said, not raised."""
    try:
        record = optional_record(paths.error_record(run_dir), ERROR_SHAPE, "delete it")
    except DamagedRecord as damaged:
        return str(damaged)
    return "" if record is None else record["error"]


def lock_holder(path: Path) -> dict:
    """Who holds a run's lock, as it wrote itself into the lock file; {} where that cannot be
    read: the flock, not the text, is what holds the run."""
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def store_format(runs_dir: Path) -> int | None:
    """The store's recorded format, None where it records none."""
    path = paths.store_format(runs_dir)
    try:
        return read_json(path, STORE_SHAPE, "move it out of the store")["format"]
    except FileNotFoundError:
        return None


def gpu_check(path: Path) -> dict:
    """The GPU check's report (harness/bench/gpu_check.py), as the compute plan reads it: its
    `plan_flops_per_s` positive numbers."""
    remedy = "run `make gpu-check` again to rewrite it"
    record = read_json(path, GPU_CHECK_SHAPE, remedy)
    for name, rate in record["plan_flops_per_s"].items():
        if isinstance(rate, bool) or not isinstance(rate, Number) or not rate > 0:
            raise DamagedRecord(path, f"plan_flops_per_s {name!r} is {rate!r}", remedy)
    return record


def bench(path: Path) -> dict:
    """bench.json of `make bench` and `make bench-edst` (each writes its own keys); {} where
    there is none yet."""
    try:
        return read_json(path, {}, "delete it and run `make bench` again")
    except FileNotFoundError:
        return {}


def page_timings(path: Path) -> dict:
    """The seconds each table and figure of a page took when it was made ({} if unrecorded)."""
    remedy = "delete it (the page then shows no times) or make the page again"
    try:
        record = read_json(path, {}, remedy)
    except FileNotFoundError:
        return {}
    wrong = next((key for key, value in record.items()
                  if isinstance(value, bool) or not isinstance(value, Number)), None)
    if wrong is not None:
        raise DamagedRecord(path, f"{wrong!r} is {record[wrong]!r}", remedy)
    return record


def generation_marker(folder: Path, name: str) -> dict | None:
    """The record `name` that harness.data.corrupt leaves in a set it generated, None for a
    folder without one (a published set)."""
    return optional_record(folder / name, {},
                           f"delete {folder} and generate it again (python -m "
                           f"harness.data.corrupt)")


def run_damage(run_dir: Path) -> str | None:
    """What is wrong with the records of the finished run `run_dir`, in one line, or None
    where its configuration, summary, metrics and FLOPs read as they should."""
    try:
        config_text(run_dir)
        summary(run_dir)
        metrics(run_dir)
        flops(run_dir)
    except DamagedRecord as damaged:
        return str(damaged)
    except FileNotFoundError as missing:
        return f"{missing.filename} is missing: {rerun(run_dir)}"
    return None
