"""Where a table is built: each kind of catalogue table (`Table.kind`, harness/tables/
catalogue.py) is one `TableKind`, looked up once by `kind_of`, so that writing a table
(harness/tables/report.py), running its rows (harness/tables/run_rows.py) and the page
(harness/paper/page.py) ask the kind rather than branch on its name."""
from typing import Protocol

import pandas as pd

from harness.core.errors import UserError
from harness.tables import render
from harness.tables.context import TableContext
from harness.tables.long import LongKind
from harness.tables.sources import RowRuns
from harness.tables.wide import WideKind


class TableKind(Protocol):
    # True: a row that cannot run is shown missing with its reason and the table is written
    # (its other rows run on); False: it stops the table, which needs a finished run.
    keeps_missing_rows: bool

    def build(self, context: TableContext, entry, runs: list[RowRuns]) -> pd.DataFrame:
        """The table's frame (written as table<N>.parquet; `python -m harness.diff` reads it)
        from its rows' runs, beside the reference numbers."""

    def model(self, frame: pd.DataFrame, entry, scale: str, layered: list[str]
              ) -> render.Table:
        """The frame with its title and notes, rendered as markdown and on the page."""


KINDS: dict[str, TableKind] = {"wide": WideKind(), "long": LongKind()}


def kind_of(entry) -> TableKind:
    found = KINDS.get(entry.kind)
    if found is None:
        raise UserError(f"table {entry.number} is of kind {entry.kind!r}; a catalogue table is "
                        f"one of {', '.join(KINDS)}")
    return found
