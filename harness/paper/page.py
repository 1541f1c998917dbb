"""The page of `make paper` (harness/paper/build.py makes what it shows): static HTML, every table of
the catalogue through harness/tables/render.py (the same model as its markdown) with ours, the
paper's number and the difference, every figure embedded (readable offline and without a
server), the scale and the git commits it came from (per table, with what changed since each),
what each table took to make, and every missing table, row, cell and figure with why.

Each table sorts by the column whose header is clicked (`SCRIPT`, inline: the page needs no
network), and each of its rows names, on hover, the runs its numbers of ours come from: their
paths in the run store, seeds and the commits they were trained at."""
import base64
import html
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.core import provenance
from harness.tables import render
from harness.tables.catalogue import Catalogue, Table
from harness.core.errors import UserError
from harness.store import readers
from harness.tables.context import TableContext
from harness.tables.rows import common_layers, table_rows


@dataclass
class Outcome:
    """What making one table or figure gave: a file, or why not (a long table can have both:
    written with the rows that could not run missing), and the seconds it took."""

    seconds: float
    path: Path | None = None
    missing: str | None = None


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 100em; }
table { border-collapse: collapse; font-size: 0.8em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; cursor: pointer; } td.name { text-align: left; }
td.better { background: #d4f4d4; } td.worse { background: #f8d4d4; }
td.missing, li.missing { color: #a00; } .note { color: #555; font-size: 0.9em; }
td.missing { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; }
tr[title]:hover td { outline: 1px dotted #888; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
"""

# A click on a header sorts the rows below it by that column: numbers numerically ("mean ± std"
# by its mean), other text in natural order ("2 seed(s)" before "10 seed(s)"), and missing
# cells ("-", class "missing") last in either direction; a second click reverses.
SCRIPT = r"""
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?( ± \S+)?$/i;
function sortKey(cell) {
  const text = cell ? cell.textContent.trim() : "";
  if (!cell || text === "" || text === "-" || cell.classList.contains("missing")) return null;
  return NUMBER.test(text) ? parseFloat(text) : text;
}
function compareKeys(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, {numeric: true});
}
document.querySelectorAll("table").forEach(table => {
  const headers = Array.from(table.rows[0].cells);
  headers.forEach((header, column) => {
    header.title = "sort by this column (click again to reverse)";
    header.addEventListener("click", () => {
      const sign = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      headers.forEach(other => other.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", sign > 0 ? "ascending" : "descending");
      const rows = Array.from(table.rows).slice(1);
      const keys = new Map(rows.map(row => [row, sortKey(row.cells[column])]));
      rows.sort((x, y) => {
        const a = keys.get(x), b = keys.get(y);
        if (a === null || b === null) return (a === null) - (b === null);
        return sign * compareKeys(a, b);
      });
      rows.forEach(row => row.parentNode.appendChild(row));
    });
  });
});
"""


def table_layers(table: Table, context: TableContext) -> list[str]:
    """The gin files every row of the table is layered with besides its own, at its scale of
    the page's (the context's); none where its rows cannot be listed: the page names why."""
    try:
        return common_layers(table_rows(table, context.for_table(table)))
    except UserError:
        return []


def commits(frame: pd.DataFrame) -> list[str]:
    if "git_commit" not in frame.columns:
        return []
    return sorted({commit for value in frame.git_commit.dropna() for commit in
                   str(value).split(",") if commit})


def commits_note(table_commits: list[str]) -> str:
    """Which commits a table's runs were trained at and, for each but this checkout's, what
    changed since (harness/core/provenance.py): a number of an older harness says so."""
    if not table_commits:
        return "no runs of ours."
    drifts = [provenance.drift(commit) for commit in table_commits]
    said = "; ".join(html.escape(d.text) for d in drifts if d.text)
    listed = ", ".join(f"<code>{html.escape(commit)}</code>" for commit in table_commits)
    return f"runs from commit(s) {listed}{' (' + said + ')' if said else ''}."


def run_provenance(runs_dir: Path, names) -> str:
    """Where a table row's numbers of ours come from: each of its runs (the table's `runs`,
    relative to the run store) with its seed and the commit it was trained at, read from its
    summary.json (harness/core/provenance.py records them); '' for a row without runs."""
    if not isinstance(names, str) or not names:
        return ""
    lines = [f"ours from the runs in {runs_dir}:"]
    for name in names.split(","):
        try:
            summary = readers.summary(runs_dir / name)
        except FileNotFoundError:
            lines.append(f"{name}: not there any more")
            continue
        except readers.DamagedRecord as damaged:
            lines.append(f"{name}: {damaged.problem}")
            continue
        dirty = " with uncommitted changes" if summary.get("git_dirty") else ""
        lines.append(f"{name}: seed {summary['seed']}, commit {summary['git_commit']}{dirty}")
    return "\n".join(lines)


def table_files(path: Path, folder: Path) -> str:
    """Links to a table's files (markdown, parquet) that exist, relative to the page's folder."""
    links = [f'<a href="{html.escape(os.path.relpath(file, folder))}">{file.name}</a>'
             for file in (path.with_suffix(".md"), path) if file.is_file()]
    return f" Files: {', '.join(links)}." if links else ""


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


PROTOCOL_TEXT = {
    "printed": "each row under the protocol that produced the paper's printed number (the "
               "notes under each table say which)",
    "uniform": "every row under one protocol, <code>gin/protocol/uniform.gin</code> (the "
               "authors' validation split and best-validation checkpoint for every method)"}


def protocol_line(protocol: str, other: tuple[str, str] | None) -> str:
    """What protocol the page's rows were trained under, and the link to the other's page."""
    line = f"Protocol <b>{protocol}</b>: {PROTOCOL_TEXT[protocol]}."
    if other:
        line += (f' The same tables under the <a href="{other[1]}">{other[0]} protocol</a>: '
                 f"{PROTOCOL_TEXT[other[0]]}.")
    return line


def page(contents: Catalogue, scale: str, commit: str, tables: dict[int, Outcome],
         figure_outcomes: dict[str, Outcome], layered: dict[int, list[str]] | None = None,
         runs_dir: Path | None = None, folder: Path | None = None,
         protocols: tuple[str, tuple[str, str] | None] = ("printed", None)) -> str:
    """The whole page as HTML text; `layered`: per table the gin files its rows were layered
    with besides their own; `runs_dir`: the run store, whose runs each row then names on
    hover; `folder`: where the page is written, to which its links to each table's files are
    relative (none without it); `protocols`: the protocol of this page's rows (harness/paper/
    build.py `PROTOCOLS`) and, where it exists, the other protocol's page (name, link)."""
    from harness.tables.kinds import kind_of  # torch, which the page's --help must not wait for

    parts, missing, run_commits = [], [], set()
    for table in contents.tables:
        outcome = tables[table.number]
        parts += heading(f"table{table.number}", f"Table {table.number}", table.title, outcome,
                         missing)
        if outcome.path is None:
            continue
        frame = pd.read_parquet(outcome.path)
        model = kind_of(table).model(frame, table, table.scale(scale),
                                     (layered or {}).get(table.number, []))
        run_commits.update(commits(frame))
        note = (f" (rows at scale <code>{table.scale(scale)}</code>)"
                if table.scale(scale) != scale else "")
        # a table made before the tables kept their runs has none to name
        names = frame["runs"] if "runs" in frame.columns else [""] * len(frame)
        titles = [run_provenance(runs_dir, value) for value in names] if runs_dir else None
        files = table_files(outcome.path, folder) if folder else ""
        if protocols[1]:
            files += (f'; <a href="{protocols[1][1]}#table{table.number}">this table under '
                      f"the {protocols[1][0]} protocol</a>")
        parts.append(f'<p class="note">{len(frame)} rows{note}; made in '
                     f"{outcome.seconds:.0f} s; {commits_note(commits(frame))}{files}</p>"
                     f"{render.html(model, titles)}")
        missing += [f"Table {table.number}: {text}" for text in model.missing]
    for item in contents.figures:
        outcome = figure_outcomes[item.key]
        parts += heading(f"figure{item.key}", f"Figure {item.key}", item.title, outcome, missing)
        if outcome.missing:
            continue
        if outcome.path is not None:
            parts.append(embedded(outcome.path))
        else:
            parts.append('<p class="note">Nothing to regenerate.</p>')
    contents = " · ".join([*(f'<a href="#table{t.number}">Table {t.number}</a>'
                             for t in contents.tables),
                           *(f'<a href="#figure{f.key}">Figure {f.key}</a>'
                             for f in contents.figures)])
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
              f"the paper's printed numbers; each table says which data and model ours come "
              f"from, its units and conventions. At scale <code>paper</code> Δ = ours − paper "
              f"is green where ours is better, red where worse; at another scale the data, "
              f"models and lengths are reduced, so Δ measures the scale as much as the method "
              f"and is not coloured. A click on a column's header sorts its table (again: "
              f"reversed); hovering a row names the runs its numbers come from.</p>"
              f"<p>{protocol_line(*protocols)}</p><p>{contents}</p>"
              f"<h2 id=\"missing\">Missing ({len(missing)})</h2>{missing_html}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>FreeTickets at scale "
            f"{scale}</title><style>{STYLE}</style></head><body>{header}"
            + "\n".join(parts) + f"<script>{SCRIPT}</script></body></html>\n")
