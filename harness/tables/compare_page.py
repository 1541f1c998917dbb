"""`<output_dir>/compare.html` of `python -m harness.compare --plot`: the tables as compare.md
holds them, a note for each thing that could not be drawn, then the figures
(harness/tables/compare_plots.py) by relative path. One static file: no script, no style
sheet or font from elsewhere, so it opens from a copied folder without a network."""
import html
from pathlib import Path

from harness.core.durable import atomic_write

PAGE = "compare.html"
STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:110em}"
         "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right;white-space:nowrap}"
         "th{background:#f3f3f3}img{max-width:100%}.note{color:#7a4b00}")


def write_page(markdown: str, figures: list[tuple[str, Path]], notes: list[str],
               output_dir: Path) -> Path:
    """`markdown`: compare's table (and differences); `figures`: (caption, PNG under
    output_dir) in the order shown."""
    path = output_dir / PAGE
    sections = [f"<h2>{html.escape(caption)}</h2>\n"
                f"<img src=\"{html.escape(png.relative_to(output_dir).as_posix())}\" "
                f"alt=\"{html.escape(caption)}\">" for caption, png in figures]
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>harness.compare</title><style>{STYLE}</style></head><body>",
        "<h1>Comparison of runs</h1>", markdown_html(markdown),
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
        *sections, "</body></html>", ""])
    atomic_write(path, lambda partial: partial.write_text(page, encoding="utf-8"))
    return path


def markdown_html(markdown: str) -> str:
    """compare's markdown: each table as a <table>, any other line as a paragraph."""
    lines, parts = markdown.splitlines(), []
    index = 0
    while index < len(lines):
        if lines[index].startswith("|"):
            end = index
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            parts.append(table_html(lines[index:end]))
            index = end
        else:
            if lines[index].strip():
                parts.append(f"<p>{html.escape(lines[index])}</p>")
            index += 1
    return "\n".join(parts)


def table_html(lines: list[str]) -> str:
    """A markdown table as tabulate aligns it (header, separator, rows): each cell cut where
    the separator's '|' stand, so a '|' inside a cell stays in its cell."""
    bounds = [position for position, character in enumerate(lines[1]) if character == "|"]

    def cells(line: str) -> list[str]:
        return [html.escape(line[start + 1:end].strip()) for start, end in zip(bounds, bounds[1:])]
    head = "".join(f"<th>{cell}</th>" for cell in cells(lines[0]))
    rows = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in cells(line)) + "</tr>"
            for line in lines[2:]]
    return "\n".join([f"<table><tr>{head}</tr>", *rows, "</table>"])
