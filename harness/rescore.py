"""A finished run scored again on suites it did not run while training, without training:
OoD detection (paper App. K, Tables 11-12) and FGSM (App. L, Table 13) on the runs that
Tables 1-2 already trained.

    rescore(run_dir, suite, settings) -> the rows, as in metrics.parquet

rebuilds the run's predictor from its recorded configuration (`config.gin`) and the results
of its training stages (`checkpoints/`) through harness/replay.py (a stage without a result is
an error, never a training); scores the
suite (harness/robustness.py) with the given settings on the run's test split; and keeps the
rows inside the run as `rescored/<suite>-<key>.parquet`, key = a hash of the suite and its
settings, so that a table built again reads them instead of scoring again. The run's
configuration does not change, so harness/tables.py still reuses it by configuration.

The table cells built on it (one function per table, read by harness/long_tables.py):

    ood_cells(run_dir, sets, member)   AUROC per OoD set (Tables 11-12)
    fgsm_cells(run_dir, member)        FGSM robust accuracy min/mean/max (Table 13)

`member` None scores the run's ensemble; '0' scores its first member alone, which is how the
paper's "M = 1" rows of Tables 11-13 are made here: member 0 of the row's M = 3 (or 7) run,
not a run of their own (the paper does not say which member it took).
"""
import hashlib
import json
from pathlib import Path

import pandas as pd

from harness.record import metrics_frame, write_metrics

RESCORED = "rescored"  # the run directory's entry (harness/record.py RUN_ENTRIES)
# Bump when the same suite and settings would score differently (a set's definition moved).
VERSION = 1


def rescored_path(run_dir: Path, suite: str, settings: dict) -> Path:
    """Where the rows of `suite` with `settings` are kept inside the run."""
    text = json.dumps({"suite": suite, "settings": settings, "version": VERSION},
                      sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return run_dir / RESCORED / f"{suite}-{key}.parquet"


def rescore(run_dir: Path, suite: str, settings: dict | None = None,
            progress: bool = False) -> pd.DataFrame:
    """The run's rows on `suite` called with `settings` (its keyword arguments), scored now or
    read from the run's `rescored/` folder. A set the suite cannot load is the suite's
    UserError, raised before the members are loaded, and nothing is written."""
    from harness.data import Splits
    from harness.evaluate import SUITES
    from harness.experiment import PRECISIONS, DataContext, default_dtype, resolve_device
    from harness.replay import finished_run, refit

    settings = dict(settings or {})
    path = rescored_path(run_dir, suite, settings)
    if path.is_file():
        return pd.read_parquet(path, engine="pyarrow")
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
    return metrics_frame(rows)
