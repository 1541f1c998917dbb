"""`make paper SCALE=smoke|cpu|paper`: every table and figure of the paper regenerated beside
the published numbers, on one static page:

    python -m harness.paper [--scale=smoke] [--seeds=1] [--runs_dir=runs]
        [--output_dir=reports/paper] [--page_only]

1. Tables: each of `TABLES` runs (or reuses) its rows through `python -m harness.tables
   --table=N` (one process per table; a finished run is reused, an unfinished one resumed),
   which writes `<output_dir>/<scale>/tables/table<N>.{parquet,md}`. A table that cannot be
   made (no rows `gin/table<N>/` yet, a missing dataset, ...) is named missing with the
   reason its command gave.
2. Figures: the runs a figure needs beyond the tables' (Fig. 3's trajectory checkpoints,
   `gin/figure3/`) run or are reused the same way; then each of `FIGURES` is drawn from the
   runs and tables into `<output_dir>/<scale>/figures/`.
3. The page `<output_dir>/<scale>/index.html`: static HTML (pandas and matplotlib, figures
   embedded, readable offline and without a server), every table with ours, the paper's
   number and the difference (coloured: green where ours is better than the paper's, red
   where worse), every figure, the scale and the git commits it came from, what each table
   took to make, and every missing table, row, cell and figure with why.

`--page_only` skips steps 1 and 2's training: the page from what exists.
"""
import base64
import html
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness import cli, figures
from harness.durable import atomic_write
from harness.errors import UserError
from harness.record import is_finished, read_summary
from harness.report import GROUPS, ROW_FILE, dataset_family, fmt, markdown_cell, seed_dirs

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    # The scale a table's rows run at where it differs from the page's: Table 3 (ImageNet)
    # stands in at smoke scale by its own `tiny` scale (real JPEGs in ImageNet's layout).
    scales: dict = field(default_factory=dict)

    def scale(self, page_scale: str) -> str:
        return self.scales.get(page_scale, page_scale)


# The paper's tables and figures, in the paper's order: the one list the page follows.
TABLES = (
    PaperTable(1, "CIFAR-10 (WRN-28-10): accuracy, NLL, ECE, corrupted CIFAR-10-C, FLOPs"),
    PaperTable(2, "CIFAR-100 (WRN-28-10): the same as Table 1"),
    PaperTable(3, "ImageNet (ResNet-50): accuracy, NLL, ECE, ImageNet-A, FLOPs",
               {"smoke": "tiny"}),
    PaperTable(4, "Prediction disagreement and KL between members (M = 3, S = 0.8)"),
    PaperTable(5, "Parameter exploration ablation (DST-based ensembles with and without)"),
    PaperTable(6, "Against Snapshot Ensembles and Fast Geometric Ensembling (App. E)"),
    PaperTable(7, "Per-class disagreement on the first 10 CIFAR-100 classes (App. G)"),
    PaperTable(8, "Correlation between member accuracy and ensemble accuracy across sparsity"),
    PaperTable(9, "EDST's global exploration rate q"),
    PaperTable(10, "EDST with random versus gradient regrowth"),
    PaperTable(11, "Out-of-distribution detection AUROC, CIFAR-10-trained models"),
    PaperTable(12, "Out-of-distribution detection AUROC, CIFAR-100-trained models"),
    PaperTable(13, "FGSM (8/255) robust accuracy over members"),
)


class Missing(Exception):
    """Why a figure cannot be drawn; the page names it."""


@dataclass
class Sources:
    """Where a figure finds what it is drawn from."""

    scale: str
    runs_dir: Path
    tables_dir: Path  # the page's table<N>.parquet files

    def table_runs(self, table: int) -> list[tuple[str, Path]]:
        """(label, first finished seed) of every row of a table at the page's scale."""
        table_scale = next(t for t in TABLES if t.number == table).scale(self.scale)
        try:
            return figures.first_seeds(self.runs_dir, table, table_scale)
        except UserError as error:
            raise Missing(str(error)) from error

    def sparse_members(self, table: int) -> list[tuple[str, Path]]:
        """Table rows of DST, EDST, Static and LTR at M = 3, S = 0.8 (paper Fig. 2 left)."""
        runs = []
        for label, run_dir in self.table_runs(table):
            summary = read_summary(run_dir)
            if (summary["method"] in ("dst", "edst", "static", "ltr")
                    and summary["num_members"] == 3 and np.isclose(summary["sparsity"], 0.8)):
                runs.append((label, run_dir))
        if not runs:
            raise Missing(f"Table {table} has no finished DST, EDST, Static or LTR run at "
                          f"M = 3, S = 0.8")
        return runs

    def figure_runs(self, figure: int) -> list[tuple[str, Path]]:
        """(label, seed 0) of every finished row of `gin/figure<N>/`, its own run or the run
        of the same configuration it reuses (harness/tables.py `run_seed`)."""
        root = self.runs_dir / f"figure{figure}" / self.scale
        runs = []
        for row_file in sorted(root.glob(f"*/{ROW_FILE}")):
            identity = json.loads(row_file.read_text())
            run = seed_dirs(row_file.parent, 1, identity.get("reused"))[0]
            if is_finished(run):
                runs.append((f"{identity['method']} ({row_file.parent.name})", run))
        if not runs:
            raise Missing(f"no finished run under {root}: run `make paper "
                          f"SCALE={self.scale}` (not --page_only)")
        return runs

    @staticmethod
    def rows_of(runs: list[tuple[str, Path]], method: str) -> list[tuple[str, Path]]:
        """The runs of one method (its registered name)."""
        return [(label, run) for label, run in runs if read_summary(run)["method"] == method]

    def table_frame(self, table: int) -> pd.DataFrame:
        path = self.tables_dir / f"table{table}.parquet"
        if not path.is_file():
            raise Missing(f"Table {table} is missing ({path} was not written)")
        return pd.read_parquet(path)


@dataclass(frozen=True)
class PaperFigure:
    key: str
    title: str
    draw: Callable[[Sources], object] | None  # None: nothing to regenerate (a diagram)


FIGURES = (
    PaperFigure("1", "EDST: one exploration phase, then M refinement phases (a diagram; "
                "nothing to regenerate)", None),
    PaperFigure("2-left", "KL divergence between members' intermediate feature maps, per "
                "layer (CIFAR-100 as in the paper: Table 2's DST, EDST, Static and LTR runs, "
                "M = 3, S = 0.8)",
                lambda src: figures.feature_kl_figure(src.sparse_members(2))),
    PaperFigure("2-right", "Mean pairwise disagreement and KL against the printed values "
                "(Table 1's runs)", lambda src: figures.diversity_figure(src.table_runs(1))),
    PaperFigure("3", "t-SNE of checkpoints along each member's training, DST and EDST "
                "(M = 3, S = 0.8) on CIFAR-10 and CIFAR-100 (runs of gin/figure3/)",
                lambda src: figures.trajectory_figure(src.figure_runs(3))),
    PaperFigure("4", "Individual and ensemble accuracy and KL against sparsity (Table 8's "
                "sweep)", lambda src: figures.sparsity_figure(src.table_frame(8))),
    PaperFigure("5", "Ensemble size M: DST as the first m members of Table 1's run, EDST "
                "at a fixed total training budget (runs of gin/figure5/)",
                lambda src: figures.fixed_budget_figure(src.rows_of(src.table_runs(1), "dst"),
                                                        src.figure_runs(5))),
    PaperFigure("6", "Prediction disagreement between members (Table 1's ensembles)",
                lambda src: figures.heatmap_figure(src.table_runs(1), "disagreement",
                                                   "Prediction disagreement (paper Fig. 6)")),
    PaperFigure("7", "Prediction disagreement between members (Table 2's ensembles)",
                lambda src: figures.heatmap_figure(src.table_runs(2), "disagreement",
                                                   "Prediction disagreement (paper Fig. 7)")),
)


@dataclass
class Outcome:
    """What making one table or figure gave: a file, or why not (a long table can have both:
    written with the rows that could not run missing), and the seconds it took."""

    seconds: float
    path: Path | None = None
    missing: str | None = None


def last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1].removeprefix("error:").strip()


def make_table(table: PaperTable, scale: str, seeds: int, runs_dir: Path, out: Path,
               gin_dir: Path) -> Outcome:
    """Runs (or reuses) the table's rows and writes it, in its own process. A long table
    written although some rows could not run (harness/tables.py) is kept, with the error
    beside it."""
    start, started = time.perf_counter(), time.time()
    if not (gin_dir / f"table{table.number}").is_dir():
        return Outcome(0.0, missing=f"no rows: {gin_dir}/table{table.number}/ does not exist "
                                    f"(the table is not built yet)")
    command = [sys.executable, "-m", "harness.tables", f"--table={table.number}",
               f"--scale={table.scale(scale)}", f"--seeds={seeds}", f"--runs_dir={runs_dir}",
               f"--output_dir={out / 'tables'}", f"--gin_dir={gin_dir}", "--noprogress"]
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
                           f"--scale={table.scale(scale)}` failed: "
                           f"{last_error(done.stderr or done.stdout)}")


def figure_rows(figure: int, scale: str, gin_dir: Path):
    """The runs a figure needs of its own: `gin/figure<N>/<row>.gin` (with a `# row:` line)
    layered with the scale, like a table's rows."""
    from harness.table_runs import folder_rows

    return folder_rows(f"figure{figure}", scale, gin_dir)


def run_figure_rows(scale: str, runs_dir: Path, gin_dir: Path) -> dict[str, Outcome]:
    """Runs (or reuses) every figure's own rows, seed 0; per figure the seconds it took and,
    where a run failed, why."""
    from harness.table_runs import run_seed

    outcomes = {}
    for folder in sorted(gin_dir.glob("figure*")):
        figure = folder.name.removeprefix("figure")
        start, failure = time.perf_counter(), None
        for row in figure_rows(int(figure), scale, gin_dir):
            print(f"figure {figure} [{scale}] {row.name}", flush=True)
            try:
                outcome = run_seed(row, 0, [], runs_dir / f"figure{figure}" / scale / row.name,
                                   progress=False)
            except UserError as error:
                failure = f"its run {row.name} failed: {error}"
                break
            print(f"  {outcome}", flush=True)
        outcomes[figure] = Outcome(time.perf_counter() - start, missing=failure)
    return outcomes


def draw_figure(item: PaperFigure, sources: Sources, out: Path, runs: Outcome | None
                ) -> Outcome:
    """Draws one figure; `runs` is how its own rows went, if it has any."""
    before = runs.seconds if runs else 0.0
    if runs and runs.missing:
        return Outcome(before, missing=runs.missing)
    if item.draw is None:
        return Outcome(0.0)
    start = time.perf_counter()
    try:
        fig = item.draw(sources)
    except (Missing, UserError) as error:
        return Outcome(before + time.perf_counter() - start, missing=str(error))
    if fig is None:
        return Outcome(before + time.perf_counter() - start,
                       missing="nothing to draw: no run of the kind it shows")
    path = figures.save_png(fig, out / "figures" / f"figure{item.key}.png")
    return Outcome(before + time.perf_counter() - start, path=path)


# -- the page ---------------------------------------------------------------------------------

HIGHER_IS_BETTER = ("acc", "cacc", "aacc", "individual_acc", "disagreement", "kl", "auroc",
                    "robust_acc", "pearson", "spearman")
STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 100em; }
table { border-collapse: collapse; font-size: 0.8em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; } td.name { text-align: left; }
td.better { background: #d4f4d4; } td.worse { background: #f8d4d4; }
td.missing, li.missing { color: #a00; } .note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def higher_is_better(metric: str) -> bool:
    return any(metric == name or metric.startswith(f"{name}_") for name in HIGHER_IS_BETTER)


def cell(value, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else fmt(float(value), digits)


def delta_cell(ours, paper, digits: int, metric: str) -> str:
    if pd.isna(ours) or pd.isna(paper):
        return "<td>-</td>"
    delta = float(ours) - float(paper)
    if np.isclose(delta, 0.0):
        kind = ""
    else:
        kind = "better" if (delta > 0) == higher_is_better(metric) else "worse"
    return f'<td class="{kind}">{delta:+.{max(digits, 0)}f}</td>'


def wide_missing_reason(row: dict, frame: pd.DataFrame) -> str:
    """Why a printed row of a wide table has no number of ours: the runs of its method, M and
    S that ran on another data set (Table 6's CIFAR-100 rows at smoke scale ran on digits), or
    none at all."""
    elsewhere = frame[(frame.status == "ok") & (frame.method == row["method"])
                      & (frame.M == row["M"]) & np.isclose(frame.sparsity, row["sparsity"])]
    if len(elsewhere):
        datasets = ", ".join(sorted({dataset_family(name) for name in elsewhere.dataset}))
        return (f"no run of ours on {row['dataset']}: {', '.join(elsewhere.row)} ran on "
                f"{datasets}")
    return "no finished run of this row (its method or suite is not built, or it has not run)"


def wide_table_html(frame: pd.DataFrame) -> tuple[str, list[str]]:
    """A table of harness/report.py's wide format (Tables 1-3, 6): per metric ours, the
    paper's and Δ; returns the HTML and its missing rows and cells."""
    columns = [(title, name, digits, delta) for title, name, digits, with_paper, delta in GROUPS
               if with_paper and (frame[name].notna().any()
                                  or frame[f"paper_{name}"].notna().any())]
    head = ["method (row)", "M", "S", "seeds"]
    for title, _, _, delta in columns:
        head += [title, "paper"] + (["Δ"] if delta else [])
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    missing = []
    for row in frame.to_dict("records"):
        name = row["method"] + (f" ({row['row']})" if isinstance(row["row"], str) else "")
        ok = row["status"] == "ok"
        cells = [f'<td class="name">{html.escape(name)}</td>', f"<td>{row['M']}</td>",
                 f"<td>{cell(row['sparsity'], 1)}</td>",
                 f"<td>{row['seeds']}</td>" if ok else '<td class="missing">missing</td>']
        if not ok:
            missing.append(f"{name}, M = {row['M']}, S = {row['sparsity']}: "
                           f"{wide_missing_reason(row, frame)}")
        for title, metric, digits, delta in columns:
            ours, paper = row[metric], row.get(f"paper_{metric}", np.nan)
            if ok and pd.isna(ours) and not pd.isna(paper):
                missing.append(f"{name}: {title} not measured by this run (its suite or data "
                               f"set is not part of this scale's runs)")
            text = markdown_cell(row, metric, digits, "ours") if ok else "-"
            lines_cells = [f"<td>{html.escape(text)}</td>", f"<td>{cell(paper, digits)}</td>"]
            if delta:
                lines_cells.append(delta_cell(ours, paper, digits, metric))
            cells += lines_cells
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines), missing


LONG_KEY = ("dataset", "method", "M", "sparsity", "setting", "metric")


def long_table_html(frame: pd.DataFrame) -> tuple[str, list[str]]:
    """A table of harness/long_tables.py's format (Tables 4-13: one row per printed number,
    matched on dataset, method, M, sparsity, setting and metric): ours (± std over seeds),
    the paper's, Δ and the status, with the reason of a missing number."""
    from harness.long_tables import PERCENT_METRICS

    head = ["dataset", "method (row)", "M", "S", "setting", "metric", "ours", "paper", "Δ",
            "status"]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    missing = []
    for row in frame.to_dict("records"):
        digits = 2 if row["metric"] in PERCENT_METRICS else 3
        name = row["method"] + (f" ({row['row']})" if isinstance(row.get("row"), str)
                                and row["row"] else "")
        setting = row["setting"] if isinstance(row["setting"], str) else ""
        ok = row["status"] == "ok"
        if not ok:
            sparsity = cell(row["sparsity"], 2)  # none for a cell across levels (Table 8)
            missing.append(f"{row['dataset']}, {name}, M = {row['M']}, S = {sparsity}"
                           f"{f', {setting}' if setting else ''}, {row['metric']}: "
                           f"{row.get('reason') or row['status']}")
        ours = cell(row["value"], digits)
        if not pd.isna(row.get("value_std", np.nan)):
            ours += f" ± {cell(row['value_std'], digits)}"
        status = row["status"] if ok else f"{row['status']}: {row.get('reason') or ''}"
        cells = [f'<td class="name">{html.escape(str(text))}</td>' for text in
                 (row["dataset"], name, row["M"], cell(row["sparsity"], 2), setting,
                  row["metric"])]
        cells += [f"<td>{html.escape(ours)}</td>", f"<td>{cell(row['paper'], digits)}</td>",
                  delta_cell(row["value"], row["paper"], digits, row["metric"]),
                  f'<td class="{"" if ok else "missing"}">{html.escape(status)}</td>']
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines), missing


def table_html(frame: pd.DataFrame) -> tuple[str, list[str]]:
    return (long_table_html(frame) if "metric" in frame.columns
            else wide_table_html(frame))


def commits(frame: pd.DataFrame) -> list[str]:
    if "git_commit" not in frame.columns:
        return []
    return sorted({commit for value in frame.git_commit.dropna() for commit in
                   str(value).split(",") if commit})


def embedded(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def grouped(missing: list[str]) -> dict[str, list[str]]:
    """Missing items by the table or figure they belong to ('Table 4: ...'), in page order."""
    groups: dict[str, list[str]] = {}
    for text in missing:
        groups.setdefault(text.split(":")[0], []).append(text)
    return groups


def heading(anchor: str, label: str, title: str, outcome: Outcome,
            missing: list[str]) -> list[str]:
    """A table's or figure's heading and, if it is missing, why (also added to `missing`, the
    list at the top of the page)."""
    parts = [f'<h2 id="{anchor}">{label}: {html.escape(title)}</h2>']
    if outcome.missing:
        parts.append(f'<p class="missing">Missing: {html.escape(outcome.missing)}</p>')
        missing.append(f"{label}: {outcome.missing}")
    return parts


def page(scale: str, commit: str, tables: dict[int, Outcome],
         figure_outcomes: dict[str, Outcome]) -> str:
    """The whole page as HTML text."""
    parts, missing, run_commits = [], [], set()
    for table in TABLES:
        outcome = tables[table.number]
        parts += heading(f"table{table.number}", f"Table {table.number}", table.title, outcome,
                         missing)
        if outcome.path is None:
            continue
        frame = pd.read_parquet(outcome.path)
        body, cells = table_html(frame)
        run_commits.update(commits(frame))
        note = (f" (rows at scale <code>{table.scale(scale)}</code>)"
                if table.scale(scale) != scale else "")
        parts.append(f'<p class="note">{len(frame)} rows{note}; made in '
                     f"{outcome.seconds:.0f} s.</p>{body}")
        missing += [f"Table {table.number}: {text}" for text in cells]
    for item in FIGURES:
        outcome = figure_outcomes[item.key]
        parts += heading(f"figure{item.key}", f"Figure {item.key}", item.title, outcome, missing)
        if outcome.missing:
            continue
        if outcome.path is not None:
            parts.append(embedded(outcome.path))
        else:
            parts.append('<p class="note">Nothing to regenerate.</p>')
    contents = " · ".join([*(f'<a href="#table{t.number}">Table {t.number}</a>'
                             for t in TABLES),
                           *(f'<a href="#figure{f.key}">Figure {f.key}</a>' for f in FIGURES)])
    missing_html = "".join(
        f"<details><summary>{html.escape(section)}: {len(texts)} missing</summary><ul>"
        + "".join(f'<li class="missing">{html.escape(text)}</li>' for text in texts)
        + "</ul></details>"
        for section, texts in grouped(missing).items()) or "<p>Nothing is missing.</p>"
    total = sum(o.seconds for o in [*tables.values(), *figure_outcomes.values()])
    header = (f"<h1>FreeTickets (ICLR 2022), regenerated at scale <code>{scale}</code></h1>"
              f'<p class="note">Harness commit <code>{html.escape(commit)}</code>; runs from '
              f"commit(s) <code>{html.escape(', '.join(sorted(run_commits)) or '-')}</code>; "
              f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; tables and "
              f"figures took {total:.0f} s this time (reused runs cost nothing). Ours beside "
              f"the paper's printed numbers; Δ = ours − paper, green where ours is better, "
              f"red where worse. Accuracies in %, NLL in nats, ECE as a fraction. At a scale "
              f"other than <code>paper</code> the data, models and lengths are reduced, so Δ "
              f"measures the scale as much as the method.</p><p>{contents}</p>"
              f"<h2 id=\"missing\">Missing ({len(missing)})</h2>{missing_html}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>FreeTickets at scale "
            f"{scale}</title><style>{STYLE}</style></head><body>{header}"
            + "\n".join(parts) + "</body></html>\n")


def make_paper(scale: str, seeds: int = 1, runs_dir: Path = Path("runs"),
               output_dir: Path = Path("reports/paper"), gin_dir: Path = Path("gin"),
               page_only: bool = False) -> Path:
    """Runs (or reuses) what every table and figure needs, draws them and writes the page;
    returns its path."""
    from harness.execute import git_commit

    if scale not in SCALES:
        raise UserError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    out = output_dir / scale
    recorded = (json.loads((out / "timings.json").read_text())
                if page_only and (out / "timings.json").is_file() else {})
    tables = {}
    for table in TABLES:
        if page_only:  # the seconds the table took when it was made
            path = out / "tables" / f"table{table.number}.parquet"
            tables[table.number] = (
                Outcome(recorded.get(f"table{table.number}", 0.0), path=path) if path.is_file()
                else Outcome(0.0, missing=f"not made yet: run `make paper SCALE={scale}`"))
        else:
            tables[table.number] = make_table(table, scale, seeds, runs_dir, out, gin_dir)
    figure_runs = {} if page_only else run_figure_rows(scale, runs_dir, gin_dir)
    sources = Sources(scale, runs_dir, out / "tables")
    figure_outcomes = {}
    for item in FIGURES:
        print(f"figure {item.key}", flush=True)
        figure_outcomes[item.key] = draw_figure(item, sources, out,
                                                figure_runs.get(item.key.split("-")[0]))
    timings = {**{f"table{number}": round(o.seconds, 1) for number, o in tables.items()},
               **{f"figure{key}": round(o.seconds, 1) for key, o in figure_outcomes.items()}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "timings.json", lambda tmp: tmp.write_text(json.dumps(timings, indent=1)))
    path = out / "index.html"
    text = page(scale, git_commit(), tables, figure_outcomes)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.paper", __doc__)
    parser.string("scale", "paper", ", ".join(SCALES))
    parser.integer("seeds", 1, "seeds 0..N-1 per table row")
    parser.path("runs_dir", "runs", "the table runs' folder")
    parser.path("output_dir", "reports/paper", "where the page goes")
    parser.path("gin_dir", "gin", "folder of the table gin files")
    parser.boolean("page_only", False, "no training: the page from the tables and runs that "
                                       "exist")
    args = parser.parse(argv)
    try:
        path = make_paper(args.scale, args.seeds, args.runs_dir, args.output_dir, args.gin_dir,
                          args.page_only)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue where it stopped",
              file=sys.stderr)
        return 130
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
