"""`python -m harness.run --list`: what exists to run. Every registered method with the first
line of its docstring and its gin file, and every paper table of the catalogue
(harness/tables/catalogue.py) with its rows, a row whose configuration another table's row already
has marked as that row's run (the run store files runs by configuration; here compared at
paper scale)."""
from pathlib import Path

import gin

from harness.tables.catalogue import TABLES
from harness.tables.context import DEFAULT_GIN_DIR, TableContext
from harness.experiment.config import parse
from harness.tables.rows import table_rows
from harness.store.configuration import configuration_id


def method_lines(gin_dir: Path) -> list[str]:
    from methods import METHODS

    names = METHODS.names()
    width = max(map(len, names))
    lines = []
    for name in names:
        config = gin_dir / f"{name}.gin"
        lines.append(f"  {name:<{width}}  {str(config) if config.is_file() else '-':<24}  "
                     f"{summary(METHODS.get(name).__doc__ or '')}")
    return lines


def summary(doc: str, width: int = 90) -> str:
    """A docstring's first paragraph on one line, cut at a word to `width` characters."""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    return text if len(text) <= width else text[:width].rsplit(" ", 1)[0] + " ..."


def table_lines(gin_dir: Path) -> list[str]:
    """Per table its rows; `row (= tableK/other)` where tableK's row has its configuration."""
    import harness.experiment.assemble  # noqa: F401  registers Experiment before any row is parsed

    seen: dict[str, str] = {}  # configuration id -> the first table row that has it
    lines = []
    for table in TABLES:
        rows = []
        for row in table_rows(table, TableContext(gin_dir=gin_dir)):
            parse(row.gin_files)
            name = f"{table.folder}/{row.name}"
            first = seen.setdefault(configuration_id(gin.config_str()), name)
            rows.append(row.name if first == name else f"{row.name} (= {first})")
        lines.append(f"  {table.folder:<8} {len(rows)} rows: {', '.join(rows)}")
    gin.clear_config()
    return lines


def catalog(gin_dir: Path = DEFAULT_GIN_DIR) -> str:
    return "\n".join([
        "methods (python -m harness.run --gin_file=<gin file> [--gin_file=gin/scale/smoke.gin]):",
        *method_lines(gin_dir), "",
        "tables (python -m harness.tables --table=N; '(= tableK/row)': that row's run is "
        "reused):", *table_lines(gin_dir)])
