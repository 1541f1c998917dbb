"""The runs behind the paper's tables and figures: each row's configuration (its layered gin
files and bindings), found in the run store (harness/store/runs.py). Reading never trains."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gin

from harness.experiment.config import parse
from harness.core.errors import UserError, first_line
from harness.tables.context import TableContext
from harness.tables.rows import TableRow, common_layers, figure_rows, table_rows
from harness.store.record import is_finished
from harness.store import readers
from harness.store.runs import RunStore

if TYPE_CHECKING:  # pandas loads where a frame is read, not for --help
    import pandas as pd


class MethodNotBuilt(UserError):
    """A row whose method is not registered (yet)."""


def row_configuration(row: TableRow, bindings=()) -> str:
    """The configuration of a row (without its seed) as `gin.config_str()` writes it; a
    UserError for a row that cannot run here (a method that is not registered)."""
    import harness.experiment.assemble  # noqa: F401  `Experiment` and the methods are configurable
    from methods import METHODS

    parse(row.gin_files, bindings)
    method = gin.query_parameter("Experiment.method")
    if method not in METHODS.names():
        raise MethodNotBuilt(f"method {method!r} is not built yet")
    return gin.config_str()


@dataclass
class RowRuns:
    row: TableRow
    finished: list[Path]  # its finished seed folders whose records read as they should
    unfinished: list[Path]  # seed folders without summary.json (half-written or running)
    error: str = ""  # why it could not run
    damaged: list[str] = field(default_factory=list)  # its finished seeds left out, and why

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def method(self) -> str:
        return self.row.method

    @property
    def setting(self) -> str | None:
        return self.row.setting


def row_runs(row: TableRow, store: RunStore, seeds: int | None, bindings=()) -> RowRuns:
    """A row's seeds in the store (0..seeds-1, or every seed present when None). A finished
    seed whose records are damaged is left out and named (`damaged`): the row goes on with
    the others."""
    try:
        config = row_configuration(row, bindings)
    except UserError as error:
        return RowRuns(row, [], [], first_line(error))
    seed_dirs = store.seeds(config, seeds)
    damages = {path: readers.run_damage(path) for path in seed_dirs if is_finished(path)}
    damaged = [damage for damage in damages.values() if damage]
    errors = damaged + [readers.last_error(path) or failure_error(path)
                        for path in seed_dirs if not is_finished(path)]
    return RowRuns(row, [path for path, damage in damages.items() if not damage],
                   [path for path in seed_dirs if path.is_dir() and not is_finished(path)],
                   next((error for error in errors if error), ""), damaged)


def failure_error(run_dir: Path) -> str:
    """Why the run's job failed, '' if it did not (or what is wrong with that record)."""
    try:
        failed = readers.failure(run_dir)
    except readers.DamagedRecord as damaged:
        return str(damaged)
    return "" if failed is None else failed["error"]


def table_runs(entry, context: TableContext, *, require_finished: bool = True
               ) -> list[RowRuns]:
    """The runs of every row of a catalogue table (its seeds of the context); a UserError when
    none has a finished seed (unless not `require_finished`)."""
    runs = [row_runs(row, context.store, context.seeds, context.bindings)
            for row in table_rows(entry, context)]
    gin.clear_config()
    if require_finished and not any(row.finished for row in runs):
        damaged = [damage for row in runs for damage in row.damaged]
        if damaged:
            raise UserError(f"no readable finished run for table {entry.number}: {damaged[0]}")
        raise UserError(f"no finished runs for table {entry.number} at scale "
                        f"{context.scale!r} under {context.store.root}: run `make "
                        f"table{entry.number} SCALE={context.scale}` first")
    return runs


def layered_files(runs: list[RowRuns]) -> list[str]:
    """The gin files every row was layered with besides its own (scale, extras)."""
    return common_layers([run.row for run in runs])


class FigureUnavailable(Exception):
    """Why a figure cannot be drawn; the page names it."""


@dataclass
class Sources:
    """Where the page's figures find what they are drawn from: the catalogue's tables and
    figures, their runs in the store, and the tables the page wrote."""

    context: TableContext  # at the page's scale
    tables_dir: Path  # the page's table<N>.parquet files
    tables: tuple  # harness/tables/catalogue.py TABLES
    figures: tuple  # harness/tables/catalogue.py FIGURES

    def table_runs(self, number: int) -> list[tuple[str, Path]]:
        """(label, first finished seed) of every row of a table at its scale for the page."""
        entry = next(entry for entry in self.tables if entry.number == number)
        try:
            runs = table_runs(entry, self.context.for_table(entry))
        except UserError as error:
            raise FigureUnavailable(str(error)) from error
        return first_seeds(runs)

    def figure_runs(self, key: str) -> list[tuple[str, Path]]:
        """(label, seed 0) of every finished row of a figure's own `gin/figure<N>/`."""
        figure = next(figure for figure in self.figures if figure.key == key)
        context = self.context
        rows = figure_rows(figure, context)
        runs = first_seeds([row_runs(row, context.store, 1) for row in rows])
        gin.clear_config()
        if not runs:
            raise FigureUnavailable(f"no finished run of {context.gin_dir}/{figure.folder}/ at "
                                    f"scale {context.scale!r}: run `make paper "
                                    f"SCALE={context.scale}` (not --page_only)")
        return runs

    @staticmethod
    def rows_of(runs: list[tuple[str, Path]], *methods: str, members: int | None = None,
                sparsity: float | None = None) -> list[tuple[str, Path]]:
        """The runs of the methods named (registered names), at M = `members` and S =
        `sparsity` where given."""
        import numpy as np

        chosen = []
        for label, run_dir in runs:
            summary = readers.summary(run_dir)
            if (summary["method"] in methods
                    and (members is None or summary["num_members"] == members)
                    and (sparsity is None or np.isclose(summary["sparsity"], sparsity))):
                chosen.append((label, run_dir))
        return chosen

    def table_frame(self, number: int) -> "pd.DataFrame":
        import pandas as pd

        path = self.tables_dir / f"table{number}.parquet"
        if not path.is_file():
            raise FigureUnavailable(f"Table {number} is missing ({path} was not written)")
        return pd.read_parquet(path)


def first_seeds(runs: list[RowRuns]) -> list[tuple[str, Path]]:
    """(label, first finished seed folder) of every row with one."""
    return [(f"{run.method} ({run.name})", run.finished[0]) for run in runs if run.finished]
