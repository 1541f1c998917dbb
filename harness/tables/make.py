"""`make table1 ... table13`: one run per row of a paper table, then the table.

    python -m harness.tables --table=1 [--scale=paper|cpu|smoke] [--seeds=1]
        [--rows=ROW,ROW] [--gin_file=EXTRA.gin ...] [--gin_bindings='...'] [--runs_dir=runs]
        [--module=my_package.my_method]
        [--output_dir=reports] [--catalogue=MY_TABLES.py] [--noprogress] [--retrain_stale]
    python -m harness.tables --plan [--table=1,2] [--scale=paper] [--gpus_per_run=1]

The tables are the catalogue's (harness/tables/catalogue.py; `--catalogue` names a Python file of
one's own that defines CATALOGUE, e.g. the paper's with a table added). The rows of table N
are the gin files `gin/table<N>/*.gin` that name the paper row they reproduce on a line
`# row: <method as in the reference tables>` (M and sparsity come from the run itself), and,
for an ablation row, a line `# setting: <setting as in the setting column of
reports/reference/freetickets_tables_extra.csv>` (e.g. `without exploration`, `q=0.1`); a
file there without a `# row:` line is an include shared by rows, not a row. A table also
shows rows of other tables again (its `reuses`: Table 4's rows are Table 1-2's). A row is
layered with `gin/scale/<scale>.gin` (none at paper scale), then its folder's
`scale/<scale>.gin` where the table needs its own (Table 2 keeps CIFAR-100 at cpu scale) and
`scale/<scale>/<row>.gin` where one row does (Table 6's CIFAR-100 rows), then any extra files
and bindings (harness/tables/rows.py), and runs once per seed k (`Experiment.seed = k`).

Seed k of a row is the run of its configuration in the run store (harness/store/runs.py:
`<runs_dir>/<method>-<configuration id>/seed<k>/`), whichever table, figure or user asked for
it first: a finished run is reused (the log names it) and an unfinished one resumed, so an
interrupted table continues where it stopped and Table 4's rows are Table 1-2's runs. A
finished run whose recorded configuration differs from the row's now (edited by hand) is an
error naming the differing bindings, rather than a stale or mixed number. A finished run
trained at another commit is reused, and the log says which commit and whether harness/,
methods/ or gin/ changed since (harness/core/provenance.py; without git, that provenance
cannot be checked); `--retrain_stale` trains such a run again (one whose code changed, or
whose commit this checkout lacks), the new run replacing it only once finished. A row whose method
is not registered yet is skipped and shows as missing in the table. A seed trains under its
lock (harness/store/locks.py): one that another process is training, that a launcher's job is
queued for, or whose job failed (harness/tables/launch.py) is skipped and named so in the table.
Then the tables that score finished runs again (11-13) rescore what their runs lack, saying
first how many and roughly how long (harness/tables/robustness.py `rescore_phase`), and
harness/tables/report.py writes `<output_dir>/table<N>.parquet` and `.md` (harness/tables/wide.py
for Tables 1-3 and 6, harness/tables/long.py for 4 and up). `--plan` prints the compute plan
instead (harness/tables/compute_plan.py) and runs nothing.
"""
from pathlib import Path

from harness.core import cli

from harness.tables import catalogue
from harness.tables.catalogue import CATALOGUE_HELP
from harness.tables.compute_plan import GPU_CHECK_JSON, plan, plan_text
from harness.tables.context import DEFAULT_GIN_DIR, TableContext
from harness.core.errors import UserError, check_integer
from harness.experiment.config import module_imports
from harness.tables.run_rows import run_table
from harness.store.runs import RunStore


@cli.command(interrupted="interrupted: run the same command again to continue the table "
                          "where it stopped")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.tables", __doc__)
    parser.integers("table", None, "a table of the catalogue; with --plan several "
                                   "(comma-separated) or none: the whole page")
    parser.string("scale", "paper", "paper, cpu, tiny or smoke")
    parser.integer("seeds", 1, "seeds 0..N-1 per row")
    parser.strings("rows", None, "only these rows (gin file stems, comma-separated)")
    parser.repeated("gin_file", "extra gin files, layered after the scale")
    parser.repeated("gin_bindings", "bindings applied after every file")
    parser.modules()
    parser.path("gin_dir", str(DEFAULT_GIN_DIR), "folder of the table gin files")
    parser.path("runs_dir", "runs", "the run store (<method>-<configuration id>/seed<k>)")
    parser.path("output_dir", "reports", "where the table goes")
    parser.progress()
    parser.boolean("plan", False, "print the compute plan (harness/tables/compute_plan.py); run "
                                  "nothing")
    parser.integer("gpus_per_run", 1, "GPUs per run (--plan)")
    parser.path("throughput", None, f"the GPU check's JSON that --plan takes its FLOP/s from "
                                    f"(default: {GPU_CHECK_JSON} where it exists)")
    parser.path("catalogue", None, CATALOGUE_HELP)
    parser.boolean("retrain_stale", False, "train again the finished runs whose code "
                   "(harness/, methods/, gin/) changed since their commit; each replaces its "
                   "run once finished (harness/core/provenance.py)")
    args = parser.parse(argv)
    if not args.plan and (args.table is None or len(args.table) != 1):
        raise UserError("--table takes one table (several, or none, only with --plan)")
    contents = catalogue.load(args.catalogue, args.gin_dir)
    for file in args.gin_file:
        if not Path(file).is_file():
            raise UserError(f"gin file {file} not found")
    context = TableContext(args.scale, RunStore(args.runs_dir), args.gin_dir, args.gin_file,
                           [*module_imports(args.module), *args.gin_bindings], args.seeds)
    if args.plan:
        check_integer("--gpus_per_run", args.gpus_per_run, 1)
        runs = plan(args.table, context, contents)
        print(plan_text(runs, args.gpus_per_run, args.throughput, args.scale))
        return 0
    table = run_table(args.table[0], context, output_dir=args.output_dir,
                      progress=args.progress, rows=args.rows, contents=contents,
                      retrain_stale=args.retrain_stale)
    print(table.read_text())
    return 0
