"""A finished run scored again on suites it did not run while training, without training:
OoD detection (paper App. K, Tables 11-12) and FGSM (App. L, Table 13) on the runs that
Tables 1-2 already trained. Rescoring is a phase of its own: `python -m harness.tables`
lists what it will rescore and roughly how long, then does it; building or rendering a table
only reads what it left (`read_rescored`).

    to_rescore(run_dirs, wanted) -> [Rescoring]   what the runs still lack, with a duration
    run_rescorings(rescorings)                     does them, saying what it does
    rescore(run_dir, suite, settings)              one, scored now or read back
    read_rescored(run_dir, suite, settings, how)   read back only (NotRescored otherwise)

`rescore` rebuilds the run's predictor from its recorded configuration (`config.gin`) and the
results of its training stages (`checkpoints/`) through harness/experiment/replay.py (a stage without a
result is an error, never a training); scores the suite (harness/evaluation/suites.py) with the given
settings on the run's test split; and keeps the rows inside the run as
`rescored/<suite>-<key>.parquet`, key = a hash of the suite and its settings. A rescoring that
fails on the user's side (an OoD set not on disk) leaves `<suite>-<key>.failed.json` with the
reason beside it, which the table shows, and is tried again by the next phase. The run's
configuration does not change, so harness/tables/make.py still reuses it by configuration.
"""
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from harness.core.errors import UserError, first_line
from harness.store import paths, readers
from harness.store.record import metrics_frame, write_json, write_metrics

# Bump when the same suite and settings would score differently (a set's definition moved).
VERSION = 1
# Suites whose rows are not a pass over an evaluation set (harness/experiment/execute.py).
NOT_SCORED = ("timing", "structure", "flops")


class NotRescored(UserError):
    """A table cell's rescoring is not in the run: the reason, and the command that does it."""


def settings_key(suite: str, settings: dict) -> str:
    """What tells the rescorings of one run apart: a hash of the suite and its settings."""
    text = json.dumps({"suite": suite, "settings": settings, "version": VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rescored_path(run_dir: Path, suite: str, settings: dict) -> Path:
    """Where the rows of `suite` with `settings` are kept inside the run."""
    return paths.rescored(run_dir, suite, settings_key(suite, settings))


def failure_path(run_dir: Path, suite: str, settings: dict) -> Path:
    """Where a rescoring that failed keeps its reason until it succeeds."""
    return paths.rescore_failure(run_dir, suite, settings_key(suite, settings))


def read_rescored(run_dir: Path, suite: str, settings: dict, how: str) -> pd.DataFrame:
    """The rows a rescoring left in the run. Never scores: without them NotRescored says why
    (the failure recorded, or none yet) and `how` to rescore it."""
    path = rescored_path(run_dir, suite, settings)
    if path.is_file():
        return readers.rescored(path)
    failed = failure_path(run_dir, suite, settings)
    if failed.is_file():
        raise NotRescored(readers.rescore_failure(failed))
    raise NotRescored(f"not rescored yet ({suite} {json.dumps(settings, sort_keys=True)}): "
                      f"{how} rescores it")


def seconds_per_pass(run_dir: Path) -> float | None:
    """The run's evaluation time per pass of its predictor over a test-sized set: summary.json's
    `eval_seconds` over the sets metrics.parquet says it scored (the test set, each corrupted
    set); None for a run that recorded neither."""
    seconds = readers.summary(run_dir).get("eval_seconds")
    if seconds is None or not paths.metrics(run_dir).is_file():
        return None
    rows = readers.metrics(run_dir)
    rows = rows[(rows.member == "ensemble") & ~rows.suite.isin(NOT_SCORED)]
    sets = len(set(zip(rows.suite, rows.corruption, rows.severity)))
    return seconds / sets if sets else None


def passes(suite: str, settings: dict, members: int) -> float:
    """Passes over a test-sized set a rescoring makes: OoD, the test set and one set about as
    large per OoD set (App. K's three by default); FGSM, per member, that member's gradient
    (about 3 forwards of one member of M) and the ensemble scored on the attack. Rebuilding
    the members from their checkpoints is not counted (seconds, but FGE's batch-norm pass
    goes over the training set)."""
    if suite == "ood":
        return 2 * (len(settings.get("sets") or ()) or 3)
    if suite == "fgsm":
        return members + 3
    return 1


@dataclass
class Rescoring:
    run_dir: Path
    suite: str
    settings: dict
    seconds: float | None  # rough, from the run's own timings (`seconds_per_pass`, `passes`)
    failed_before: str = ""  # the reason recorded by the last try

    def __str__(self) -> str:
        about = ("duration unknown" if self.seconds is None
                 else f"about {self.seconds:.{1 if self.seconds < 10 else 0}f} s")
        before = f"; failed before: {self.failed_before}" if self.failed_before else ""
        return (f"{self.run_dir} {self.suite} {json.dumps(self.settings, sort_keys=True)} "
                f"({about}{before})")


def to_rescore(run_dirs: Sequence[Path], wanted: Sequence[tuple[str, dict]]
               ) -> list[Rescoring]:
    """The rescorings of `wanted` ((suite, settings), each on every run) that the finished
    runs lack (those that failed before included: the data may be there now), each with a
    rough duration, without loading anything but the runs' records."""
    todo = []
    for run_dir in dict.fromkeys(run_dirs):  # a run reused by several rows, once
        missing = [(suite, settings) for suite, settings in wanted
                   if not rescored_path(run_dir, suite, settings).is_file()]
        if not missing:
            continue
        per_pass = seconds_per_pass(run_dir)
        members = int(readers.summary(run_dir)["num_members"])
        for suite, settings in missing:
            failed = failure_path(run_dir, suite, settings)
            todo.append(Rescoring(
                run_dir, suite, settings,
                None if per_pass is None else per_pass * passes(suite, settings, members),
                readers.rescore_failure(failed) if failed.is_file() else ""))
    return todo


def run_rescorings(rescorings: Sequence[Rescoring], progress: bool = False) -> None:
    """Does each rescoring, printing it and its outcome; a failure's reason is kept in the run
    (`failure_path`) for the table to show."""
    for index, rescoring in enumerate(rescorings, 1):
        print(f"  [{index}/{len(rescorings)}] rescoring {rescoring}", flush=True)
        start = time.perf_counter()
        try:
            rescore(rescoring.run_dir, rescoring.suite, rescoring.settings, progress)
        except UserError as error:
            failed = failure_path(rescoring.run_dir, rescoring.suite, rescoring.settings)
            failed.parent.mkdir(exist_ok=True)
            write_json(failed, {"error": first_line(error)})
            print(f"    failed: {first_line(error)}", flush=True)
            continue
        print(f"    done in {time.perf_counter() - start:.1f} s", flush=True)


def rescore(run_dir: Path, suite: str, settings: dict | None = None,
            progress: bool = False) -> pd.DataFrame:
    """The run's rows on `suite` called with `settings` (its keyword arguments), scored now or
    read from the run's `rescored/` folder. A set the suite cannot load is the suite's
    UserError, raised before the members are loaded, and no rows are written."""
    from harness.data import Splits
    from harness.evaluation.evaluate import SUITES
    from harness.experiment.assemble import PRECISIONS, DataContext, default_dtype, resolve_device
    from harness.experiment.replay import finished_run, refit

    settings = dict(settings or {})
    path = rescored_path(run_dir, suite, settings)
    if path.is_file():
        return readers.rescored(path)
    experiment, splits = finished_run(run_dir)
    device = resolve_device(experiment.device)
    data = DataContext(Splits(splits.name, splits.train.to(device), splits.test.to(device)),
                       None, experiment.eval_batch_size, device)
    sets = list(SUITES.get(suite)(data, **settings))
    rows = []
    method, predictor, _ = refit(run_dir, experiment, data.splits)
    with default_dtype(PRECISIONS[experiment.precision]):
        for scored in sets:
            rows += [{"method": method.name, "suite": scored.suite,
                      "corruption": scored.corruption, "severity": scored.severity, **row}
                     for row in scored.score(predictor, progress)]
    path.parent.mkdir(exist_ok=True)
    write_metrics(path, rows)
    failure_path(run_dir, suite, settings).unlink(missing_ok=True)
    return metrics_frame(rows)
