"""Moves runs of the layout and the store formats of earlier versions into the run store
(harness/store/runs.py):

    python -m harness.migrate_runs [--runs_dir=runs] [--dry_run]

Store format 1 named a configuration by its explicit bindings alone; this version's id is its
operative configuration (harness/store/configuration.py). Each run of a format-1 store moves,
with the records beside it, to the id today's code gives the configuration it recorded: its
`config.gin`, overridden by its `operative_config.gin` where it finished (the defaults it was
trained under, so a default changed since then gives it an id of its own, not today's). Once every
run is in its place the store's `store.json` records the new format.

Earlier versions filed runs by the table or figure that asked for them,
`<runs_dir>/table<N>/<scale>/<row>/seed<k>/` (and `figure<N>/...`), with a `row.json` per row.
Each run there (a folder holding the `config.gin` a run writes first) moves to its place in the
store, `<runs_dir>/<method>-<configuration id>/seed<k>/`, with the lock, job and failure
records beside it. Then the `row.json` files these versions wrote and the folders left empty
are removed. Nothing else is touched: a run whose place in the store is taken (the same
configuration and seed twice, e.g. one finished and one interrupted) or that is being trained
now stays where it is and is named, and so is anything the harness did not write. A run whose
configuration cannot be read (a `config.gin` cut short by a crash) stays too, named with what to
do; it does not hold the others back: once every readable run is in its place the store records
the new format.
"""
import json
import os
import sys
from pathlib import Path

from harness.core import cli
from harness.core.errors import UserError
from harness.store import paths, readers
from harness.store.record import check_is_run, is_finished, write_json
from harness.store.locks import running
from harness.store.runs import OLD_LAYOUT, RunStore
from harness.store.configuration import STORE_FORMAT, trained_configuration

ROW_FILE = "row.json"


def old_runs(runs_dir: Path) -> list[Path]:
    return sorted(path for pattern in OLD_LAYOUT for path in runs_dir.glob(pattern)
                  if path.is_dir() and paths.config(path).is_file())


def is_row_record(path: Path) -> bool:
    """A row.json as earlier versions of harness/tables/make.py wrote it."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"row", "method", "gin_files"} <= record.keys()


def migrate(runs_dir: Path, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """(what was moved or removed, what was left and why)."""
    if not runs_dir.is_dir():
        raise UserError(f"--runs_dir {runs_dir} is not a folder")
    store = RunStore(runs_dir)
    done, left, damaged = [], [], []
    for old in old_runs(runs_dir):
        move_run(store, old, dry_run, done, left, damaged)
    if store.format() < STORE_FORMAT:
        for old in [path for folder in store.configuration_dirs()
                    for path in sorted(folder.glob("seed*"))
                    if path.is_dir() and path.name[4:].isdigit()]:
            move_run(store, old, dry_run, done, left, damaged)
        for folder in store.configuration_dirs() if not dry_run else ():
            if not any(folder.iterdir()):
                folder.rmdir()
        if not left and not dry_run:
            write_json(paths.store_format(runs_dir), {"format": STORE_FORMAT})
    if not dry_run:
        for pattern in ("table*/*/*", "figure*/*/*"):
            for row_dir in sorted(runs_dir.glob(pattern)):
                if is_row_record(row_dir / ROW_FILE):
                    (row_dir / ROW_FILE).unlink()
                    done.append(f"removed {row_dir / ROW_FILE}")
        for top in (*runs_dir.glob("table*"), *runs_dir.glob("figure*")):
            for folder, _, _ in os.walk(top, topdown=False):
                if not any(Path(folder).iterdir()):
                    Path(folder).rmdir()
    return done, left + damaged


def recorded_configuration(run_dir: Path) -> str:
    """The configuration a run was trained under (`trained_configuration`) once it finished,
    else its `config.gin`."""
    config = readers.config_text(run_dir)
    if is_finished(run_dir) and paths.operative_config(run_dir).is_file():
        return trained_configuration(config, readers.operative_config_text(run_dir))
    return config


def move_run(store: RunStore, old: Path, dry_run: bool, done: list[str], left: list[str],
             damaged: list[str]) -> None:
    """Moves the run `old` (and the records beside it) to its configuration's place in the
    store, or says in `left` why it stays (in `damaged` where its configuration is
    unreadable: nothing could place it)."""
    try:
        check_is_run(old)
    except UserError as error:
        left.append(str(error))
        return
    try:
        new = store.configuration_dir(recorded_configuration(old)) / old.name
    except readers.DamagedRecord as error:
        damaged.append(str(error))
        return
    except UserError as error:
        left.append(f"{old}: its configuration cannot be read with this version ({error})")
        return
    if new == old:
        return
    if running(old) is not None:
        left.append(f"{old}: being trained now; migrate once it is done")
    elif new.exists():
        finished = "finished" if is_finished(new) else "unfinished"
        left.append(f"{old}: the store already has this configuration and seed ({new}, "
                    f"{finished}); compare them and remove the one you do not want")
    else:
        done.append(f"{old} -> {new}")
        if not dry_run:
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, new)
            for record in (paths.lock, paths.job_record, paths.failure_record,
                           paths.error_record):
                if record(old).is_file():
                    os.replace(record(old), record(new))


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.migrate_runs", __doc__)
    parser.path("runs_dir", "runs", "the runs folder to migrate in place")
    parser.boolean("dry_run", False, "say what would move; move nothing")
    parser.modules()  # the modules of one's own that runs were trained with: their ids need them
    args = parser.parse(argv)
    done, left = migrate(args.runs_dir, args.dry_run)
    for line in done:
        print(("would move " if args.dry_run and "->" in line else "") + line)
    for line in left:
        print(f"left: {line}", file=sys.stderr)
    print(f"{sum('->' in line for line in done)} run(s) {'to move' if args.dry_run else 'moved'}"
          f", {len(left)} left")
    return 1 if left else 0
