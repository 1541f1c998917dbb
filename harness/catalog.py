"""`python -m harness.run --list`: what exists to run. Every registered method with the first
line of its docstring and its gin file, and every paper table (gin/table<N>/) with its rows,
a row whose configuration another table's row already has marked as reusing that row's run
(harness/tables.py reuses finished runs by configuration; here compared at paper scale)."""
from pathlib import Path

import gin

from harness.config import parse
from harness.table_runs import table_rows


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


def table_numbers(gin_dir: Path) -> list[int]:
    return sorted(int(folder.name.removeprefix("table")) for folder in gin_dir.glob("table*")
                  if folder.is_dir() and folder.name.removeprefix("table").isdigit())


def table_lines(gin_dir: Path) -> list[str]:
    """Per table its rows; `row (= tableK/other)` where tableK's row has its configuration."""
    import harness.experiment  # noqa: F401  registers Experiment before any row is parsed

    seen: dict[str, str] = {}  # configuration -> the first table row that has it
    lines = []
    for table in table_numbers(gin_dir):
        rows = []
        for row in table_rows(table, "paper", gin_dir):
            parse(row.gin_files)
            config = gin.config_str()
            first = seen.setdefault(config, f"table{table}/{row.name}")
            rows.append(row.name if first == f"table{table}/{row.name}" else
                        f"{row.name} (= {first})")
        lines.append(f"  table{table:<3} {len(rows)} rows: {', '.join(rows)}")
    gin.clear_config()
    return lines


def catalog(gin_dir: Path = Path("gin")) -> str:
    return "\n".join([
        "methods (python -m harness.run --gin_file=<gin file> [--gin_file=gin/scale/smoke.gin]):",
        *method_lines(gin_dir), "",
        "tables (python -m harness.tables --table=N; '(= tableK/row)': that row's run is "
        "reused):", *table_lines(gin_dir)])
