"""One cell model for every table of ours (the paper's Tables 1-13, `harness.tables.compare`, the demo
table), rendered to markdown (`table<N>.md`, compare's stdout) and to HTML (the page,
harness/paper/build.py) by the same code, so that a number reads the same wherever it is shown.

`MEASURES` holds, per measure, its title, decimals, unit, whether higher is better, whether
the paper prints it and whether Δ is shown beside it. The conventions, in this one place:

- Units are the paper's (§4, Tables 1-3): accuracies in %, NLL in nats, ECE as a fraction (15
  bins, harness/evaluation/metrics.py), FLOPs as ratios to a dense single model at the reference schedule
  (App. D), AUROC with the 4 decimals of Tables 11-12.
- Ours = mean ± sample standard deviation (ddof=1) over seeds; Δ = ours − paper.
- A measure with no number of ours shows the paper's alone; one with no number at all is left
  out. A printed row or number without one of ours is 'missing', with why.
- Δ is coloured (HTML: green where ours is better, red where worse) only at scale `paper`: at
  another scale ours ran on other data and another model, so the comparison says nothing about
  the method. Every table says which data and model its numbers of ours come from (per table,
  and per row where rows differ).

A `Table` (intro, header, rows of `Cell`s, notes, what is missing) is built once by `wide` or
`long` and written by `markdown` or `html`. Markdown goes through tabulate (aligned columns,
readable raw in a terminal); the HTML is written here, one class per <td>: pandas' Styler would
need the same class per cell beside the text and adds per-cell ids and jinja2 for no gain.
"""
import html as html_text
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness.store import paths

UNITS = {"%": "in %", "nats": "in nats", "fraction": "as fractions",
         "ratio": "relative to the dense single model at the reference schedule",
         "FLOPs": "in FLOPs of the whole training", "count": "as counts of training runs",
         "correlation": "as correlation coefficients",
         "ms": "measured wall-clock per test image of the whole ensemble, the sparse one in "
               "sparse inference form (batch size, device and threads in each run's "
               f"{paths.SUMMARY}; they depend on the machine and its load)"}


@dataclass(frozen=True)
class Measure:
    title: str
    digits: int  # decimals; -1: scientific notation
    unit: str  # a key of UNITS
    higher_is_better: bool | None  # None: Δ is never coloured
    printed: bool = True  # the paper prints it
    delta: bool = True  # Δ beside it (not for absolute FLOPs or counts: it says nothing new)

    def text(self, value) -> str:
        if value is None or pd.isna(value):
            return "-"
        return f"{value:.{self.digits}f}" if self.digits >= 0 else f"{value:.2e}"

    def ours(self, mean, std=np.nan) -> str:
        """Mean ± sample std over seeds (the mean alone for one seed)."""
        spread = "" if pd.isna(mean) or pd.isna(std) else f" ± {self.text(std)}"
        return self.text(mean) + spread

    def difference(self, ours, paper, coloured: bool) -> "Cell":
        """Δ = ours − paper, signed; 'better' or 'worse' only where `coloured` and it does not
        round to zero."""
        if pd.isna(ours) or pd.isna(paper):
            return Cell("-")
        delta = round(float(ours) - float(paper), max(self.digits, 0)) + 0.0  # no -0.00
        kind = ""
        if coloured and self.higher_is_better is not None and delta != 0:
            kind = "better" if (delta > 0) == self.higher_is_better else "worse"
        return Cell(f"{delta:+.{max(self.digits, 0)}f}", kind)


MEASURES = {
    # the wide tables (1-3, 6) and harness.tables.compare
    "acc": Measure("Acc %", 2, "%", True),
    "nll": Measure("NLL", 3, "nats", False),
    "ece": Measure("ECE", 3, "fraction", False),
    "cacc": Measure("cAcc %", 2, "%", True),
    "cnll": Measure("cNLL", 3, "nats", False),
    "cece": Measure("cECE", 3, "fraction", False),
    "aacc": Measure("aAcc %", 2, "%", True),
    "anll": Measure("aNLL", 2, "nats", False),
    "aece": Measure("aECE", 2, "fraction", False),
    "train_flops": Measure("train FLOPs", -1, "FLOPs", False, delta=False),
    "train_flops_ratio": Measure("train FLOPs x", 2, "ratio", False),
    "test_flops_ratio": Measure("test FLOPs x", 2, "ratio", False),
    "infer_ms": Measure("ms/img", 3, "ms", False, printed=False, delta=False),
    "sparse_infer_ms": Measure("sparse ms/img", 3, "ms", False, printed=False, delta=False),
    "training_runs": Measure("runs", 1, "count", None, delta=False),
    # the long tables' metrics (4, 5, 7-13)
    "disagreement": Measure("disagreement", 3, "fraction", True),
    "kl": Measure("kl", 3, "nats", True),
    "individual_acc": Measure("individual_acc", 2, "%", True),
    "pearson": Measure("pearson", 3, "correlation", True),
    "spearman": Measure("spearman", 3, "correlation", True),
    "auroc": Measure("auroc", 4, "fraction", True),
    "robust_acc": Measure("robust_acc", 2, "%", True),
    "robust_acc_min": Measure("robust_acc_min", 2, "%", True),
    "robust_acc_mean": Measure("robust_acc_mean", 2, "%", True),
    "robust_acc_max": Measure("robust_acc_max", 2, "%", True),
}
PERCENT = tuple(name for name, measure in MEASURES.items() if measure.unit == "%")
# The wide tables' measures, in column order.
WIDE = ("acc", "nll", "ece", "cacc", "cnll", "cece", "aacc", "anll", "aece", "train_flops",
        "train_flops_ratio", "test_flops_ratio", "infer_ms", "sparse_infer_ms", "training_runs")


def measure(metric: str) -> Measure:
    if metric not in MEASURES:
        raise ValueError(f"metric {metric!r} has no cell format: add it to "
                         f"harness/tables/render.py MEASURES")
    return MEASURES[metric]


def sparsity_text(value) -> str:
    return "-" if pd.isna(value) else f"{value:g}"


@dataclass(frozen=True)
class Cell:
    text: str
    kind: str = ""  # its class on the page: name, better, worse, missing


@dataclass
class Table:
    title: str  # the markdown heading (the page has its own)
    intro: list[str]  # paragraphs
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)  # paragraphs; '- ' items form a list
    missing: list[str] = field(default_factory=list)  # each row or number without ours: why


# -- building a table ------------------------------------------------------------------------

def source(dataset, model) -> str:
    """Which data and model a number comes from: 'digits / wrn10_2'."""
    return " / ".join(str(part) for part in (dataset, model) if not pd.isna(part)) or "-"


def intro(frame: pd.DataFrame, scale: str, layered: list[str], reference: str,
          units: dict[str, Measure], by_row: bool) -> list[str]:
    """What every table says first: which data, model, scale, layering and commits our numbers
    come from, the conventions and the units of the measures it shows."""
    ours = frame[frame.status == "ok"]
    sources = ", ".join(sorted({source(d, m) for d, m in zip(ours.dataset, ours.model)}))
    commits = ", ".join(sorted({commit for value in ours.git_commit.dropna()
                                for commit in str(value).split(",") if commit}))
    layering = f" (layered with {', '.join(f'`{f}`' for f in layered)})" if layered else ""
    groups: dict[str, list[str]] = {}
    for label, item in units.items():
        groups.setdefault(item.unit, []).append(label)
    paragraphs = [
        f"Ours: {sources or 'no finished run'} at scale `{scale}`{layering}, git "
        f"{commits or '-'}. Paper: `{reference}`.",
        "Ours = mean ± sample std over seeds; Δ = ours − paper; 'missing': no number of ours, "
        "with why." + (" Units: " + "; ".join(f"{', '.join(labels)} {UNITS[unit]}"
                                               for unit, labels in groups.items()) + "."
                       if groups else "")]
    if scale == "paper":
        paragraphs.append("On the page Δ is green where ours is better, red where worse.")
    else:
        paragraphs.append(f"At scale `{scale}` the data, model and lengths are reduced from the "
                          f"paper's: Δ measures the scale as much as the method and is not "
                          f"marked better or worse.")
    if by_row:
        paragraphs.append("data / model: where the row's numbers of ours come from (for a "
                          "missing row, the paper's).")
    return paragraphs


def varies(frame: pd.DataFrame) -> bool:
    """Whether the rows' numbers come from more than one data set or model."""
    return len({source(d, m) for d, m in zip(frame.dataset, frame.model)}) > 1


def row_name(row: dict) -> str:
    named = isinstance(row.get("row"), str) and row["row"]
    return row["method"] + (f" ({row['row']})" if named else "")


def wide(frame: pd.DataFrame, title: str, scale: str, layered: list[str], notes: list[str],
         reference: str, missing_reason: Callable[[dict], str]) -> Table:
    """A table of harness/tables/report.py's wide frame (Tables 1-3, 6): per measure ours, the
    paper's and Δ; `missing_reason(row)` says why a printed row has no number of ours."""
    columns = []  # (name, part): part is 'ours', 'paper' or 'delta'
    for name in WIDE:
        item = MEASURES[name]
        has_ours = frame[name].notna().any()
        has_paper = item.printed and frame[f"paper_{name}"].notna().any()
        columns += ([(name, "ours")] if has_ours else []) + (
            [(name, "paper")] if has_paper else []) + (
            [(name, "delta")] if has_ours and has_paper and item.delta else [])
    header = [{"ours": MEASURES[name].title, "paper": "paper", "delta": "Δ"}[part]
              if (name, "ours") in columns else f"{MEASURES[name].title} (paper)"
              for name, part in columns]
    by_row = varies(frame)
    coloured = scale == "paper"
    rows, missing = [], []
    for row in frame.to_dict("records"):
        name, ok = row_name(row), row["status"] == "ok"
        if ok:
            seeds = Cell(str(row["seeds"]))
        else:
            reason = missing_reason(row)
            seeds = Cell(f"missing: {reason}", "missing")
            missing.append(f"{name}, M = {row['M']}, S = {sparsity_text(row['sparsity'])}: "
                           f"{reason}")
        cells = [Cell(name, "name"), *([Cell(source(row["dataset"], row["model"]), "name")]
                                       if by_row else []),
                 Cell(str(row["M"])), Cell(sparsity_text(row["sparsity"])), seeds]
        for metric, part in columns:
            item, ours, paper = MEASURES[metric], row[metric], row.get(f"paper_{metric}")
            if part == "paper":
                cells.append(Cell(item.text(paper)))
            elif part == "delta":
                cells.append(item.difference(ours, paper, coloured))
            elif ok and pd.isna(ours) and not pd.isna(paper):
                cells.append(Cell("not measured", "missing"))
            else:
                cells.append(Cell(item.ours(ours, row.get(f"{metric}_std")) if ok else "-"))
        for metric in dict.fromkeys(metric for metric, _ in columns):
            if ok and pd.isna(row[metric]) and not pd.isna(row.get(f"paper_{metric}")):
                missing.append(f"{name}: {MEASURES[metric].title} not measured by this run "
                               f"(its suite or data set is not part of this scale's runs)")
        rows.append(cells)
    units = {MEASURES[name].title: MEASURES[name] for name, _ in columns}
    return Table(title, intro(frame, scale, layered, reference, units, by_row),
                 ["method (row)", *(["data / model"] if by_row else []), "M", "S", "seeds",
                  *header], rows, notes, missing)


def long(frame: pd.DataFrame, title: str, scale: str, layered: list[str], notes: list[str],
         reference: str) -> Table:
    """A table of harness/tables/long.py's frame (Tables 4, 5, 7-13: one row per printed
    number): ours, the paper's, Δ and the status, with the reason of a missing number."""
    by_row = varies(frame)
    coloured = scale == "paper"
    rows, missing = [], []
    for row in frame.to_dict("records"):
        name, ok = row_name(row), row["status"] == "ok"
        setting = row["setting"] if isinstance(row["setting"], str) else ""
        metric = row["metric"] if isinstance(row["metric"], str) else ""
        sparsity = sparsity_text(row["sparsity"])  # none for a cell across levels (Table 8)
        if ok:
            status = Cell(f"{row['seeds']} seed(s)")
        else:
            reason = row.get("reason") or row["status"]
            status = Cell(f"missing: {reason}", "missing")
            missing.append(f"{row['dataset']}, {name}, M = {row['M']}, S = {sparsity}"
                           f"{f', {setting}' if setting else ''}, {metric or '-'}: {reason}")
        if metric:
            item = measure(metric)
            numbers = [Cell(item.ours(row["value"], row.get("value_std", np.nan))),
                       Cell(item.text(row["paper"])),
                       item.difference(row["value"], row["paper"], coloured)]
        else:  # a row whose runs could not be measured at all
            numbers = [Cell("-")] * 3
        rows.append([Cell(name, "name"), Cell(setting or "-", "name"),
                     *([Cell(source(row["dataset"], row["model"]), "name")] if by_row else []),
                     Cell(str(row["M"])), Cell(sparsity), Cell(metric or "-", "name"),
                     *numbers, status])
    metrics = [metric for metric in dict.fromkeys(frame.metric.dropna()) if metric]
    units = {metric: measure(metric) for metric in metrics}
    return Table(title, intro(frame, scale, layered, reference, units, by_row),
                 ["method (row)", "setting", *(["data / model"] if by_row else []), "M", "S",
                  "metric", "ours", "paper", "Δ", "status"], rows, notes, missing)


# -- writing it ------------------------------------------------------------------------------

def grid(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of text cells."""
    return tabulate(rows, header, tablefmt="github", disable_numparse=True)


def blocks(lines: list[str]) -> list[list[str]]:
    """Paragraphs (one line each) and lists (consecutive '- ' lines); empty lines dropped."""
    grouped: list[list[str]] = []
    for line in filter(None, lines):
        if line.startswith("- ") and grouped and grouped[-1][0].startswith("- "):
            grouped[-1].append(line)
        else:
            grouped.append([line])
    return grouped


def markdown(table: Table) -> str:
    body = grid(table.header, [[cell.text for cell in row] for row in table.rows])
    parts = [f"# {table.title}", *("\n".join(block) for block in blocks(table.intro)), body,
             *("\n".join(block) for block in blocks(table.notes))]
    return "\n\n".join(parts) + "\n"


def inline(text: str) -> str:
    """Escaped text, its `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html_text.escape(text, quote=False))


def html_blocks(lines: list[str]) -> list[str]:
    return [f'<ul class="note">{"".join(f"<li>{inline(line[2:])}</li>" for line in block)}'
            f"</ul>" if block[0].startswith("- ") else f'<p class="note">{inline(block[0])}</p>'
            for block in blocks(lines)]


def td(cell: Cell) -> str:
    kind = f' class="{cell.kind}"' if cell.kind else ""
    return f"<td{kind}>{html_text.escape(cell.text, quote=False)}</td>"


def html(table: Table, row_titles: list[str] | None = None) -> str:
    """The intro, the table and the notes (without the title: the page gives its own);
    `row_titles`: per row, what hovering any of its cells shows (the page: the runs behind
    it), none where empty."""
    head = "".join(f"<th>{html_text.escape(title, quote=False)}</th>" for title in table.header)
    titles = row_titles or [""] * len(table.rows)
    rows = [(f'<tr title="{html_text.escape(title)}">' if title else "<tr>")
            + "".join(map(td, row)) + "</tr>"
            for row, title in zip(table.rows, titles, strict=True)]
    return "\n".join([*html_blocks(table.intro), f"<table><tr>{head}</tr>", *rows, "</table>",
                      *html_blocks(table.notes)])


def significant(value) -> str:
    """4 significant digits for a number, '-' for none."""
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def frame_markdown(frame: pd.DataFrame, title: str) -> str:
    """A plain frame as a markdown table: measures in their own format, anything else to 4
    significant digits (`make demo`)."""
    rows = [[MEASURES[column].text(value) if column in MEASURES else significant(value)
             for column, value in zip(frame.columns, row)]
            for row in frame.itertuples(index=False)]
    return f"# {title}\n\n{grid(list(frame.columns), rows)}\n"
