"""`<output_dir>/compare.html` of `python -m harness.compare --plot`: what compare.md holds,
its tables as HTML tables, a note for each thing that could not be drawn, then the figures
(harness/tables/compare_plots.py) by relative path. One static file: no script, no style
sheet or font from elsewhere, so it opens from a copied folder without a network."""
import html
from pathlib import Path

from tabulate import tabulate

from harness.core.durable import atomic_write

PAGE = "compare.html"
STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:110em}"
         "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right;white-space:nowrap}"
         "th{background:#f3f3f3}img{max-width:100%}.note{color:#7a4b00}")


def write_page(blocks: list, figures: list[tuple[str, Path]], notes: list[str],
               output_dir: Path) -> Path:
    """`blocks`: what compare shows (harness/tables/compare.py `blocks`: lines of text and
    tables); `figures`: (caption, PNG under output_dir) in the order shown."""
    path = output_dir / PAGE
    sections = [f"<h2>{html.escape(caption)}</h2>\n"
                f"<img src=\"{html.escape(png.relative_to(output_dir).as_posix())}\" "
                f"alt=\"{html.escape(caption)}\">" for caption, png in figures]
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>harness.compare</title><style>{STYLE}</style></head><body>",
        "<h1>Comparison of runs</h1>", *map(block_html, blocks),
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
        *sections, "</body></html>", ""])
    atomic_write(path, lambda partial: partial.write_text(page, encoding="utf-8"))
    return path


def block_html(block) -> str:
    """A line of text as a paragraph; a table (header, rows) through tabulate, which escapes
    its cells."""
    if isinstance(block, str):
        return f"<p>{html.escape(block)}</p>"
    header, rows = block
    return tabulate(rows, header, tablefmt="html", disable_numparse=True)
