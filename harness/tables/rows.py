"""The rows of a table or figure as gin files: a row is a file of `gin/<folder>/` with a line
`# row: <method as in the reference tables>` (an ablation row also `# setting: <setting>`),
or a row of another folder that a catalogue entry reuses (harness/tables/catalogue.py), layered with
the scale: `gin/scale/<scale>.gin` (none at paper scale), then the folder's
`scale/<scale>.gin`, then its `scale/<scale>/<row>.gin`, then any extra files."""
import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError
from harness.tables.context import TableContext

ROW_LINE = re.compile(r"^#\s*row:\s*(\S.*?)\s*$", re.MULTILINE)
SETTING_LINE = re.compile(r"^#\s*setting:\s*(\S.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class TableRow:
    name: str  # unique in its table or figure; the `row` column of the table
    method: str  # the paper's name for it
    gin_files: tuple[str, ...]  # its own file first, then scale and extras
    setting: str | None = None  # its `# setting:` (ablation rows), as in the reference
    source: str = ""  # '<folder>/<stem>': the gin row it is (another table's for a reuse)


def paper_name(config: Path) -> str | None:
    """The `# row:` name of a row file; None for a file without one (an include of rows)."""
    match = ROW_LINE.search(config.read_text())
    return None if match is None else match.group(1)


def row_setting(config: Path) -> str | None:
    """The `# setting:` of a row file; None for a row of the main setting."""
    match = SETTING_LINE.search(config.read_text())
    return None if match is None else match.group(1)


def scale_files(folder: str, context: TableContext) -> list[str]:
    """The scale's layers over a row of `gin_dir/<folder>/`: the general scale file, then the
    folder's own `scale/<scale>.gin` if it has one."""
    scale, gin_dir = context.scale, context.gin_dir
    general = gin_dir / "scale" / f"{scale}.gin"
    if scale != "paper" and not general.is_file():
        known = ["paper", *sorted(path.stem for path in (gin_dir / "scale").glob("*.gin"))]
        raise UserError(f"unknown scale {scale!r}; known: {', '.join(known)}")
    own = gin_dir / folder / "scale" / f"{scale}.gin"
    return [str(path) for path in (general, own) if path.is_file()]


def layered(config: Path, context: TableContext) -> tuple[str, ...]:
    """A row file of `gin_dir/<folder>/` with its scale layers (`scale_files`), its own
    `<folder>/scale/<scale>/<row>.gin` if there is one, and the extra files."""
    folder = config.parent.name
    own = context.gin_dir / folder / "scale" / context.scale / config.name
    return (str(config), *scale_files(folder, context),
            *[str(path) for path in [own] if path.is_file()], *context.extra_files)


def folder_rows(folder: str, context: TableContext) -> list[TableRow]:
    """The rows of `gin_dir/<folder>/`: its files with a `# row:` line, layered."""
    rows = []
    for config in sorted((context.gin_dir / folder).glob("*.gin")):
        method = paper_name(config)
        if method:
            rows.append(TableRow(config.stem, method, layered(config, context),
                                 row_setting(config), f"{folder}/{config.stem}"))
    return rows


def reused_row(reuse, context: TableContext) -> TableRow:
    config = context.gin_dir / f"{reuse.row}.gin"
    method = paper_name(config) if config.is_file() else None
    if method is None:
        raise UserError(f"the catalogue reuses row {reuse.row}, but {config} is no row file "
                        f"(it is missing or has no '# row:' line)")
    return TableRow(reuse.name, reuse.method or method, layered(config, context),
                    reuse.setting or row_setting(config), reuse.row)


def table_rows(entry, context: TableContext) -> list[TableRow]:
    """The table's own rows, then the rows it reuses; a UserError when it has none."""
    rows = [*folder_rows(entry.folder, context),
            *(reused_row(reuse, context) for reuse in entry.reuses)]
    if not rows:
        raise UserError(f"table {entry.number} has no rows: no gin file in "
                        f"{context.gin_dir}/{entry.folder}/ has a '# row: <method as in the "
                        f"reference table>' line, and the catalogue gives it no rows of other "
                        f"tables")
    names = [row.name for row in rows]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"table {entry.number} has two rows named {', '.join(twice)}: rename "
                        f"the reuse in harness/tables/catalogue.py or the gin file")
    return rows


def figure_rows(figure, context: TableContext) -> list[TableRow]:
    """The runs a figure needs of its own: `gin/figure<N>/<row>.gin`, layered like a table's
    rows but without extra files (`TableContext.without_extras`); none for a figure drawn from
    the tables' runs."""
    return folder_rows(figure.folder, context.without_extras())


def common_layers(rows: list[TableRow]) -> list[str]:
    """The gin files every row was layered with besides its own (scale, extras)."""
    files = [row.gin_files[1:] for row in rows]
    return [file for file in files[0] if all(file in other for other in files)] if files else []
