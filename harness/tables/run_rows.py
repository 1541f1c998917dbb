"""Running the rows of the paper's tables and figures: each seed of a row is the run of its
configuration in the run store (harness/store/runs.py), trained here unless it is finished
(`run_seed`), then the table is written (`run_table`), as `python -m harness.tables`
(harness/tables/make.py, where the conventions are described) does."""
from pathlib import Path

from harness.core import provenance
from harness.tables import catalogue
from harness.store.configuration import identity_differences, seed_binding
from harness.core.errors import UserError, first_line
from harness.tables.context import TableContext
from harness.tables.kinds import kind_of
from harness.tables.rows import TableRow, table_rows
from harness.store.record import is_finished
from harness.tables.report import report
from harness.tables.robustness import rescore_phase
from harness.store import paths, readers
from harness.store.locks import Busy, training_lock, waiting_job
from harness.store.runs import clear_error, record_error
from harness.tables.sources import MethodNotBuilt, row_configuration, table_runs


def run_seed(row: TableRow, seed: int, context: TableContext, progress: bool, train=None,
             retrain_stale: bool = False) -> str:
    """Runs (or reuses) one seed of a row with the context's bindings; returns what happened,
    for the log. The run is the context's store's run of the row's configuration, whichever
    table or figure asked for it first. It
    trains under its lock (harness/store/locks.py): a run another process trains, or one the
    launcher queued, is skipped and named as such. `train(gin_files, bindings, run_dir,
    progress, overwrite)` trains it (default: in this process; harness/tables/launch.py passes
    torchrun for a run of several GPUs). A finished run trained at another commit is reused
    naming what changed since (`code_drift`); with `retrain_stale`, one whose code changed is
    trained again, replacing it only once the new run has finished (`--overwrite`). A finished
    run whose records are damaged (harness/store/readers.py) is skipped and named, never
    trained over."""
    bindings = [*context.bindings, seed_binding(seed)]
    try:
        config = row_configuration(row, bindings)
    except MethodNotBuilt as error:
        return f"skipped: {error}"
    run_dir = context.store.find(config, seed)  # written only once it must be trained
    if is_finished(run_dir):
        damage = readers.run_damage(run_dir)
        if damage:
            return f"skipped: damaged: {damage}"
        differences = identity_differences(readers.config_text(run_dir), config)
        if differences:
            raise UserError(f"{run_dir} is a finished run of another configuration than "
                            f"{' + '.join(row.gin_files)} gives now ({'; '.join(differences)})"
                            f"; remove it to run again")
        drift = code_drift(run_dir)
        if not (retrain_stale and drift.stale):
            hint = "; --retrain_stale retrains it" if drift.stale else ""
            return f"reused {run_dir}" + (f" ({drift.text}{hint})" if drift.text else "")
    try:
        failed = readers.failure(run_dir)
    except readers.DamagedRecord as damaged:
        return f"skipped: {damaged}"
    if failed is not None:
        return (f"skipped: failed: {failed['error']} (log {failed.get('log')}); fix it, then "
                f"remove {paths.failure_record(run_dir)} or launch with --retry_failed")
    queued = waiting_job(run_dir)
    if queued:
        return f"skipped: {queued}"
    try:
        context.store.record_format()
        with training_lock(run_dir):
            # Another job may have finished (or retrained) it meanwhile.
            stale = is_finished(run_dir) and retrain_stale and code_drift(run_dir).stale
            if stale or not is_finished(run_dir):
                clear_error(run_dir)
                (train or train_here)(row.gin_files, bindings, run_dir, progress,
                                      overwrite=bool(stale))
            paths.failure_record(run_dir).unlink(missing_ok=True)
    except Busy as busy:
        return f"skipped: running: {busy}"
    except UserError as error:
        record_error(run_dir, first_line(error))
        raise
    except OSError as error:  # recording the store or taking the lock: a read-only store
        raise UserError(f"cannot train {run_dir} into the run store {context.store.root} "
                        f"({error.strerror}): give a writable --runs_dir, or build the table "
                        f"from its finished runs alone with `python -m harness.report`"
                        ) from error
    return f"ran {run_dir}"


def train_here(gin_files, bindings, run_dir: Path, progress: bool, overwrite: bool = False
               ) -> None:
    """Trains (or resumes, or with `overwrite` trains again and replaces) one run in this
    process."""
    from harness.experiment.execute import run_experiment

    run_experiment(gin_files, bindings, output_dir=str(run_dir), resume=not overwrite,
                   overwrite=overwrite, progress=progress)


def code_drift(run_dir: Path) -> provenance.Drift:
    """How the code of the finished run `run_dir` (its summary's commit) compares with this
    checkout's (harness/core/provenance.py)."""
    return provenance.drift(readers.summary(run_dir)["git_commit"])


def chosen_rows(rows: list[TableRow], names: list[str] | None) -> list[TableRow]:
    """The rows named (gin file stems), in table order; all of them without names."""
    if not names:
        return rows
    unknown = sorted(set(names) - {row.name for row in rows})
    if unknown:
        raise UserError(f"--rows names no row of this table: {', '.join(unknown)}; rows: "
                        f"{', '.join(row.name for row in rows)}")
    return [row for row in rows if row.name in names]


def run_table(table: int, context: TableContext, *, output_dir: Path = Path("reports"),
              progress: bool = True, rows: list[str] | None = None,
              contents: catalogue.Catalogue = catalogue.PAPER,
              retrain_stale: bool = False) -> Path:
    """Runs every row (or the `rows` named) and seed 0..context.seeds-1 of the table, then
    writes it; returns the markdown path. A table of a kind that keeps missing rows (long:
    4 and up) runs on past a row that cannot run (e.g. CIFAR-100 absent at cpu scale): the
    table is written with that row's numbers missing and its reason, then one UserError names
    every such row. `retrain_stale`: as `run_seed`."""
    seeds, scale = context.seeds, context.scale
    if seeds is None or seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    entry = contents.table(table)
    kind = kind_of(entry)
    failed = []
    for row in chosen_rows(table_rows(entry, context), rows):
        for seed in range(seeds):
            print(f"table {table} [{scale}] {row.name} seed {seed}", flush=True)
            try:
                outcome = run_seed(row, seed, context, progress, retrain_stale=retrain_stale)
            except UserError as error:
                if not kind.keeps_missing_rows:
                    raise
                failed.append(f"{row.name} ({first_line(error)})")
                outcome = f"skipped: error: {first_line(error)}"
            print(f"  {outcome}", flush=True)
            if outcome.startswith("skipped"):
                break
    # Rescoring is a phase of its own: the table below only reads what it leaves.
    finished = table_runs(entry, context, require_finished=False)
    rescore_phase(table, [run for row in finished if not rows or row.name in rows
                          for run in row.finished], progress)
    written = report(entry, context, output_dir)
    if failed:
        raise UserError(f"{len(failed)} row(s) could not run; {written} shows them missing: "
                        f"{'; '.join(failed)}")
    return written
