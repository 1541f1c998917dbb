"""`make paper SCALE=smoke|cpu|paper`: every table and figure of the paper regenerated beside
the published numbers, on one static page:

    python -m harness.paper [--scale=smoke] [--seeds=1] [--runs_dir=runs]
        [--output_dir=reports/paper] [--protocol=printed|uniform] [--page_only]
        [--retrain_stale] [--module=my_package.my_method]

1. Tables: each table of the catalogue (harness/tables/catalogue.py) runs (or reuses) its rows through `python -m harness.tables
   --table=N` (one process per table; a finished run is reused, an unfinished one resumed),
   which writes `<output_dir>/<scale>/tables/table<N>.{parquet,md}`. A table that cannot be
   made (a missing dataset, ...) is named missing with the reason its command gave.
2. Figures: the runs a figure needs beyond the tables' (Fig. 3's trajectory checkpoints,
   `gin/figure3/`) run or are reused the same way; then each figure of the catalogue is drawn
   from the runs and tables into `<output_dir>/<scale>/figures/`.
3. The page `<output_dir>/<scale>/index.html` (harness/paper/page.py): static HTML (pandas and matplotlib, figures
   embedded, readable offline and without a server), every table with ours, the paper's
   number and the difference (at scale `paper` coloured green where ours is better than the
   paper's, red where worse; harness/tables/render.py, which also writes the tables' markdown), which
   data and model our numbers come from, every figure, the scale and the git commits it came
   from, what each table took to make, and every missing table, row, cell and figure with
   why. Its tables sort by a click on a column's header, and each row names on hover the runs
   behind its numbers (paths in the run store, seeds, commits).

`--page_only` skips steps 1 and 2's training: the page from what exists. `--retrain_stale`
trains again the finished runs whose code changed since (harness/tables/make.py).

`--protocol` decides the protocol behind each row's numbers. `printed` (the default): each row
under the protocol that produced the paper's printed number, as its gin file includes it (the
authors' validation protocol for their sparse rows, the full training set and last checkpoint
for the rows quoted from uncertainty-baselines; the table notes say which). `uniform`: every
row of every table under one clean protocol, `gin/protocol/uniform.gin` layered last, so that
methods are compared on equal terms; that page goes to `<output_dir>/<scale>-uniform/`. Where
both pages exist each links the other at the top and at every table: the two side by side.
"""
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from harness.core import cli, provenance

from harness.paper import figures

from harness.tables import catalogue
from harness.tables.catalogue import Catalogue, Figure, Table
from harness.core.durable import atomic_write
from harness.core.errors import UserError
from harness.tables.context import DEFAULT_GIN_DIR, TableContext
from harness.tables.rows import figure_rows
from harness.paper.page import Outcome, page, table_layers
from harness.tables.catalogue import CATALOGUE_HELP
from harness.experiment.config import module_imports
from harness.store import readers
from harness.store.runs import RunStore

# --protocol: the extra gin file every table row is layered with, and the page folder's suffix
PROTOCOLS = {"printed": ((), ""), "uniform": (("protocol/uniform.gin",), "-uniform")}
from harness.tables.sources import FigureUnavailable, Sources

SCALES = ("smoke", "cpu", "paper")


def last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1].removeprefix("error:").strip()


def make_table(table: Table, context: TableContext, out: Path,
               catalogue_file: Path | None = None, retrain_stale: bool = False) -> Outcome:
    """Runs (or reuses) the table's rows and writes it, in its own process, at its scale of
    the page's (the context's), with its extra files and bindings. A long table written
    although some rows could not run (harness/tables/make.py) is kept, with the error beside
    it."""
    start, started = time.perf_counter(), time.time()
    scale = context.for_table(table).scale
    command = [sys.executable, "-m", "harness.tables", f"--table={table.number}",
               f"--scale={scale}", f"--seeds={context.seeds}",
               f"--runs_dir={context.store.root}", f"--output_dir={out / 'tables'}",
               f"--gin_dir={context.gin_dir}", "--noprogress",
               *(f"--gin_file={file}" for file in context.extra_files),
               *(f"--gin_bindings={binding}" for binding in context.bindings),
               *(["--retrain_stale"] if retrain_stale else []),
               *([f"--catalogue={catalogue_file}"] if catalogue_file else [])]
    print(f"table {table.number}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    log = out / "logs" / f"table{table.number}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    seconds = time.perf_counter() - start
    if done.returncode == 130:
        raise KeyboardInterrupt
    path = out / "tables" / f"table{table.number}.parquet"
    if done.returncode == 0:
        return Outcome(seconds, path=path)
    written = path.is_file() and path.stat().st_mtime >= started
    return Outcome(seconds, path=path if written else None,
                   missing=f"`python -m harness.tables --table={table.number} "
                           f"--scale={scale}` failed: "
                           f"{last_error(done.stderr or done.stdout)}")


def run_figure_rows(contents: Catalogue, context: TableContext) -> dict[str, Outcome]:
    """Runs (or reuses) every figure's own rows, seed 0; per figure folder the seconds it took
    and, where a run failed, why."""
    from harness.tables.run_rows import run_seed

    outcomes = {}
    for item in contents.figures:
        if item.folder in outcomes:
            continue
        start, failure = time.perf_counter(), None
        for row in figure_rows(item, context):
            print(f"{item.folder} [{context.scale}] {row.name}", flush=True)
            try:
                outcome = run_seed(row, 0, context, progress=False)
            except UserError as error:
                failure = f"its run {row.name} failed: {error}"
                break
            print(f"  {outcome}", flush=True)
        outcomes[item.folder] = Outcome(time.perf_counter() - start, missing=failure)
    return outcomes


def draw_figure(item: Figure, sources: Sources, out: Path, runs: Outcome | None
                ) -> Outcome:
    """Draws one figure; `runs` is how its own rows went, if it has any."""
    before = runs.seconds if runs else 0.0
    if runs and runs.missing:
        return Outcome(before, missing=runs.missing)
    if item.draw is None:
        return Outcome(0.0)
    start = time.perf_counter()
    try:
        fig = getattr(figures, item.draw)(*item.inputs(sources))
    except (FigureUnavailable, UserError) as error:
        return Outcome(before + time.perf_counter() - start, missing=str(error))
    if fig is None:
        return Outcome(before + time.perf_counter() - start,
                       missing="nothing to draw: no run of the kind it shows")
    path = figures.save_png(fig, out / "figures" / f"figure{item.key}.png")
    return Outcome(before + time.perf_counter() - start, path=path)


def make_paper(context: TableContext, output_dir: Path = Path("reports/paper"),
               page_only: bool = False, catalogue_file: Path | None = None,
               protocol: str = "printed", retrain_stale: bool = False,
               link_back: bool = True) -> Path:
    """Runs (or reuses) what every table and figure of the catalogue (the paper's, or the one
    `catalogue_file` defines) needs at the context's (page) scale and seeds under `protocol`
    (`PROTOCOLS`), draws them and writes the page; returns its path. The other protocol's
    page, where it exists, is written again (from what exists) to link this one, unless
    `link_back` is False."""
    contents = catalogue.load(catalogue_file, context.gin_dir)
    scale = context.scale
    if scale not in SCALES:
        raise UserError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    files, suffix = PROTOCOLS[protocol]
    paper_context = context
    context = replace(context, extra_files=(*context.extra_files,
                                            *(str(context.gin_dir / file) for file in files)))
    out = output_dir / f"{scale}{suffix}"
    [other] = [name for name in PROTOCOLS if name != protocol]
    other_folder = f"{scale}{PROTOCOLS[other][1]}"
    other_page = (output_dir / other_folder / "index.html").is_file()
    recorded = readers.page_timings(out / "timings.json") if page_only else {}
    # The figures' rows first: a figure row that shares a table's run (Figure 3's DST and EDST
    # rows are Table 1-2's runs, their checkpoint cadence only observes) then trains it with
    # what the figure reads, and the table reuses it.
    figure_runs = {} if page_only else run_figure_rows(contents, context)
    tables = {}
    for table in contents.tables:
        if page_only:  # the seconds the table took when it was made
            path = out / "tables" / f"table{table.number}.parquet"
            tables[table.number] = (
                Outcome(recorded.get(f"table{table.number}", 0.0), path=path) if path.is_file()
                else Outcome(0.0, missing=f"not made yet: run `make paper SCALE={scale}`"))
        else:
            tables[table.number] = make_table(table, context, out, catalogue_file,
                                              retrain_stale)
    # The figures draw from the first finished seed of each row, whichever seeds ran.
    sources = Sources(replace(context, seeds=None), out / "tables", contents.tables,
                      contents.figures)
    figure_outcomes = {}
    for item in contents.figures:
        print(f"figure {item.key}", flush=True)
        figure_outcomes[item.key] = draw_figure(item, sources, out,
                                                figure_runs.get(item.folder))
    timings = {**{f"table{number}": round(o.seconds, 1) for number, o in tables.items()},
               **{f"figure{key}": round(o.seconds, 1) for key, o in figure_outcomes.items()}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "timings.json", lambda tmp: tmp.write_text(json.dumps(timings, indent=1)))
    path = out / "index.html"
    text = page(contents, scale, provenance.head_commit(), tables, figure_outcomes,
                {table.number: table_layers(table, context) for table in contents.tables},
                runs_dir=context.store.root, folder=out,
                protocols=(protocol, (other, f"../{other_folder}/index.html") if other_page
                           else None))
    atomic_write(path, lambda tmp: tmp.write_text(text))
    if other_page and link_back:
        make_paper(paper_context, output_dir, True, catalogue_file, other, link_back=False)
    return path


@cli.command(interrupted="interrupted: run the same command again to continue where it "
                          "stopped")
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.paper", __doc__)
    parser.string("scale", "paper", ", ".join(SCALES))
    parser.integer("seeds", 1, "seeds 0..N-1 per table row")
    parser.path("runs_dir", "runs", "the run store")
    parser.path("output_dir", "reports/paper", "where the page goes")
    parser.path("gin_dir", str(DEFAULT_GIN_DIR), "folder of the table gin files")
    parser.boolean("page_only", False, "no training: the page from the tables and runs that "
                                       "exist")
    parser.path("catalogue", None, CATALOGUE_HELP)
    parser.choice("protocol", "printed", list(PROTOCOLS),
                  "printed: each row under its printed number's protocol; uniform: every row "
                  "under gin/protocol/uniform.gin, the page in <output_dir>/<scale>-uniform/")
    parser.boolean("retrain_stale", False, "train again the finished runs whose code changed "
                                           "since they were trained")
    parser.modules()
    args = parser.parse(argv)
    context = TableContext(args.scale, RunStore(args.runs_dir), args.gin_dir,
                           bindings=module_imports(args.module), seeds=args.seeds)
    path = make_paper(context, args.output_dir, args.page_only, args.catalogue, args.protocol,
                      args.retrain_stale)
    print(path)
    return 0
