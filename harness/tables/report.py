"""Runs -> the paper's tables, ours beside the paper's numbers:

    python -m harness.report [--table=1,4] [--scale=paper] [--seeds=N] [--runs_dir=runs]
        [--gin_file=EXTRA.gin ...] [--gin_bindings='...'] [--output_dir=reports]

writes `<output_dir>/table<N>.parquet` (for machines and `python -m harness.diff`) and
`table<N>.md` (for people) for each table of the catalogue (harness/tables/catalogue.py; default:
every table with a finished run at that scale). A row's runs are those of its configuration
in the run store (harness/store/runs.py): its layered gin files plus the extra files and
bindings given here, the same as the table was run with (`python -m harness.tables`, which
comes here too). Tables 1-3 and 6 are wide (harness/tables/wide.py), 4 and up long
(harness/tables/long.py). Writing a table never trains or rescores.
"""
import sys
from pathlib import Path

from harness.core import cli

from harness.tables import catalogue, long, render, wide
from harness.core.durable import write_report
from harness.core.errors import UserError
from harness.store.record import SUMMARY
from harness.store.runs import RunStore
from harness.tables.sources import RowRuns, layered_files, table_runs

CATALOGUE_HELP = ("a Python file defining CATALOGUE: the paper's tables and your own "
                  "(harness/tables/catalogue.py `load`)")


def write_table_report(entry: catalogue.Table, scale: str, runs: list[RowRuns],
                       output_dir: Path) -> Path:
    """Builds the table from its rows' runs and writes it; returns the markdown path. Names
    the unfinished runs it skipped on stderr."""
    for path in (path for run in runs for path in run.unfinished):
        print(f"skipped unfinished run {path} (no {SUMMARY})", file=sys.stderr)
    if entry.kind == "long":
        reference = long.load_reference_extra(Path(entry.reference or
                                                          long.REFERENCE_EXTRA))
        frame = long.build_long_table(entry, scale, runs, reference)
        model = long.table_model(frame, entry, scale, layered_files(runs))
    else:
        reference = wide.load_reference(Path(entry.reference or wide.REFERENCE))
        frame = wide.build_table(entry.number, scale, runs, reference)
        model = wide.table_model(frame, entry.number, scale, layered_files(runs))
    stem = output_dir / f"table{entry.number}"
    write_report(frame, stem, render.markdown(model))
    return stem.with_suffix(".md")


def report(entry: catalogue.Table, scale: str, store: RunStore, output_dir: Path, *,
           seeds: int | None = None, gin_dir: Path = Path("gin"), extra_files=(),
           bindings=()) -> Path:
    """Writes a catalogue table from the runs in the store; a UserError when a wide table has
    no finished run (a long one is written with every cell missing and why)."""
    runs = table_runs(entry, scale, store, gin_dir=gin_dir, extra_files=extra_files,
                      bindings=bindings, seeds=seeds, require_finished=entry.kind == "wide")
    return write_table_report(entry, scale, runs, output_dir)


def tables_with_runs(contents: catalogue.Catalogue, store: RunStore, scale: str,
                     gin_dir: Path = Path("gin"), extra_files=(), bindings=()
                     ) -> list[catalogue.Table]:
    """The catalogue's tables with a finished run at `scale`."""
    return [entry for entry in contents.tables
            if any(run.finished for run in table_runs(entry, scale, store, gin_dir=gin_dir,
                                                      extra_files=extra_files,
                                                      bindings=bindings,
                                                      require_finished=False))]


def table_flags(parser: cli.Flags) -> None:
    """The flags that choose tables and find their runs (here and `python -m harness.figures`)."""
    parser.integers("table", None, "table numbers, comma-separated (default: every table "
                                   "with runs)")
    parser.string("scale", "paper", "paper, cpu, tiny or smoke")
    parser.path("runs_dir", "runs", "the run store")
    parser.repeated("gin_file", "extra gin files the tables were run with")
    parser.repeated("gin_bindings", "bindings the tables were run with")
    parser.path("gin_dir", "gin", "folder of the table gin files")
    parser.path("catalogue", None, CATALOGUE_HELP)


def chosen_tables(args) -> tuple[RunStore, list[catalogue.Table]]:
    """The store and the tables `table_flags` chose; a UserError when none has runs."""
    contents = catalogue.load(args.catalogue)
    store = RunStore(args.runs_dir)
    entries = ([contents.table(number) for number in args.table] if args.table else
               tables_with_runs(contents, store, args.scale, args.gin_dir, args.gin_file,
                                args.gin_bindings))
    if not entries:
        raise UserError(f"no table runs at scale {args.scale!r} under {args.runs_dir}: "
                        f"run `make table1 SCALE={args.scale}` first")
    return store, entries


def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.report", __doc__)
    table_flags(parser)
    parser.integer("seeds", None, "use seeds 0..N-1 (default: all finished)")
    parser.path("output_dir", "reports", "where the tables go")
    args = parser.parse(argv)
    try:
        store, entries = chosen_tables(args)
        for entry in entries:
            print(report(entry, args.scale, store, args.output_dir, seeds=args.seeds,
                         gin_dir=args.gin_dir, extra_files=args.gin_file,
                         bindings=args.gin_bindings).read_text())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
