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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core import cli

from harness.tables import catalogue
from harness.core.durable import write_report
from harness.core.errors import UserError
from harness.experiment.config import module_imports
from harness.store import paths
from harness.store.runs import RunStore
from harness.tables.context import DEFAULT_GIN_DIR, TableContext
from harness.tables.sources import RowRuns, layered_files, table_runs

if TYPE_CHECKING:  # the kinds and their rendering need pandas and torch; --help needs neither
    from harness.tables.kinds import TableKind

CATALOGUE_HELP = catalogue.CATALOGUE_HELP


def write_table_report(entry: catalogue.Table, kind: "TableKind", context: TableContext,
                       runs: list[RowRuns], output_dir: Path) -> Path:
    """Builds the table from its rows' runs and writes it; returns the markdown path. Names
    the unfinished and the damaged runs it skipped on stderr."""
    from harness.tables import render

    for path in (path for run in runs for path in run.unfinished):
        print(f"skipped unfinished run {path} (no {paths.SUMMARY})", file=sys.stderr)
    for damage in (damage for run in runs for damage in run.damaged):
        print(f"skipped damaged run: {damage}", file=sys.stderr)
    frame = kind.build(context, entry, runs)
    model = kind.model(frame, entry, context.scale, layered_files(runs))
    stem = output_dir / f"table{entry.number}"
    write_report(frame, stem, render.markdown(model))
    return stem.with_suffix(".md")


def report(entry: catalogue.Table, context: TableContext, output_dir: Path) -> Path:
    """Writes a catalogue table from the runs in the store; a UserError when a table of a kind
    that needs them (wide) has no finished run (a long one is written with every cell missing
    and why)."""
    from harness.tables.kinds import kind_of

    kind = kind_of(entry)
    runs = table_runs(entry, context, require_finished=not kind.keeps_missing_rows)
    return write_table_report(entry, kind, context, runs, output_dir)


def tables_with_runs(contents: catalogue.Catalogue, context: TableContext
                     ) -> list[catalogue.Table]:
    """The catalogue's tables with a finished run (of any seed) at the context's scale."""
    any_seed = replace(context, seeds=None)
    return [entry for entry in contents.tables
            if any(run.finished for run in table_runs(entry, any_seed, require_finished=False))]


def table_flags(parser: cli.Flags) -> None:
    """The flags that choose tables and find their runs (here and `python -m harness.figures`)."""
    parser.integers("table", None, "table numbers, comma-separated (default: every table "
                                   "with runs)")
    parser.string("scale", "paper", "paper, cpu, tiny or smoke")
    parser.path("runs_dir", "runs", "the run store")
    parser.repeated("gin_file", "extra gin files the tables were run with")
    parser.repeated("gin_bindings", "bindings the tables were run with")
    parser.modules()
    parser.path("gin_dir", str(DEFAULT_GIN_DIR), "folder of the table gin files")
    parser.path("catalogue", None, CATALOGUE_HELP)


def chosen_tables(args) -> tuple[TableContext, list[catalogue.Table]]:
    """The context (every seed present) and the tables `table_flags` chose; a UserError when
    none has runs."""
    contents = catalogue.load(args.catalogue, args.gin_dir)
    context = TableContext(args.scale, RunStore(args.runs_dir), args.gin_dir, args.gin_file,
                           [*module_imports(args.module), *args.gin_bindings])
    entries = ([contents.table(number) for number in args.table] if args.table else
               tables_with_runs(contents, context))
    if not entries:
        raise UserError(f"no table runs at scale {args.scale!r} under {args.runs_dir}: "
                        f"run `make table1 SCALE={args.scale}` first")
    return context, entries


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.report", __doc__)
    table_flags(parser)
    parser.integer("seeds", None, "use seeds 0..N-1 (default: all finished)")
    parser.path("output_dir", "reports", "where the tables go")
    args = parser.parse(argv)
    context, entries = chosen_tables(args)
    context = replace(context, seeds=args.seeds)
    for entry in entries:
        print(report(entry, context, args.output_dir).read_text())
    return 0
