"""The run directory: what one experiment leaves behind, written so that a reader never sees a
half-written file, and so that `summary.json`, written last, marks a finished run.

    operative_config.gin  the gin configuration the run actually used
    metrics.parquet       long format: method, member, suite, corruption, severity, metric, value
    summary.json          headline numbers, timings, provenance (present = finished)
    checkpoints/          member_<i>.pt (final member weights), <tag>.resume.pt while training
"""
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from harness.errors import UserError

METRIC_COLUMNS = ("method", "member", "suite", "corruption", "severity", "metric", "value")
SUMMARY = "summary.json"


def is_finished(run_dir: Path) -> bool:
    return (run_dir / SUMMARY).is_file()


def prepare_run_dir(run_dir: Path, *, overwrite: bool, resume: bool) -> bool:
    """Creates (or, with `resume`, reuses) the run directory; returns True when it was created
    now. A finished run is replaced only with `overwrite`; an unfinished one only with
    `overwrite` or continued with `resume`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output_dir {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if overwrite:
            shutil.rmtree(run_dir)
        elif is_finished(run_dir):
            raise UserError(f"{run_dir} already holds a finished run; choose another "
                            f"--output_dir or pass --overwrite to replace it")
        elif resume:
            return False
        else:
            raise UserError(f"{run_dir} holds an unfinished run; pass --resume to continue it "
                            f"or --overwrite to start over")
    existed = run_dir.is_dir()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output_dir {run_dir} ({error.strerror}); choose a "
                        f"writable --output_dir") from error
    return not existed


def _atomic_write(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)
                                                   + "\n"))


def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    frame["severity"] = frame["severity"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def write_metrics(path: Path, rows: list[dict]) -> None:
    _atomic_write(path, lambda tmp: metrics_frame(rows).to_parquet(tmp, engine="pyarrow",
                                                                   index=False))


def read_metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet", engine="pyarrow")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text())
